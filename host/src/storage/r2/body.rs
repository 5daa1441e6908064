//! An object's body on its way out: read in chunks by a guest
//! (`object-body.read`), or handed whole to the front door as a streamed
//! response body. Either way, at most one chunk is in memory at a time.

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::{GetResult, GetResultPayload};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{R2Error, R2Result};

/// Bytes read from a local file at a time: large enough that a 64 MiB
/// download is a few hundred reads, small enough to stay out of the way.
const FILE_CHUNK_BYTES: usize = 256 << 10;

/// The unread rest of an object's body.
pub struct ObjectBody {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    /// Read from the stream but not handed out yet.
    pending: Bytes,
    remaining: u64,
}

impl ObjectBody {
    /// The body of a blob store's answer to a `get` of `range`.
    pub(crate) async fn new(result: GetResult) -> R2Result<Self> {
        let remaining = result.range.end - result.range.start;
        let stream = match result.payload {
            GetResultPayload::File(file, path) => {
                // object_store reads a local file 8 KiB per blocking task;
                // tokio's file reads larger chunks on fewer tasks.
                let mut file = tokio::fs::File::from_std(file);
                file.seek(std::io::SeekFrom::Start(result.range.start))
                    .await
                    .map_err(|e| {
                        R2Error::Storage(
                            anyhow::Error::from(e).context(format!("seeking {}", path.display())),
                        )
                    })?;
                let reader = file.take(remaining);
                tokio_util::io::ReaderStream::with_capacity(reader, FILE_CHUNK_BYTES)
                    .map(move |chunk| {
                        chunk.map_err(|source| object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(source),
                        })
                    })
                    .boxed()
            }
            GetResultPayload::Stream(stream) => stream,
        };
        Ok(Self {
            stream,
            pending: Bytes::new(),
            remaining,
        })
    }

    /// A body with nothing in it.
    pub(crate) fn empty() -> Self {
        Self {
            stream: futures::stream::empty().boxed(),
            pending: Bytes::new(),
            remaining: 0,
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Up to `max` more bytes; empty at the end.
    pub(crate) async fn read(&mut self, max: usize) -> R2Result<Vec<u8>> {
        let mut out = Vec::with_capacity(max.min(self.remaining as usize));
        while out.len() < max {
            if self.pending.is_empty() {
                match self.stream.next().await {
                    Some(chunk) => self.pending = chunk?,
                    None => break,
                }
            }
            let take = self.pending.len().min(max - out.len());
            out.extend_from_slice(&self.pending.split_to(take));
        }
        self.remaining = self.remaining.saturating_sub(out.len() as u64);
        Ok(out)
    }

    /// The rest of the body as a response body.
    pub fn into_http_body(self) -> axum::body::Body {
        let first = futures::stream::iter((!self.pending.is_empty()).then(|| Ok(self.pending)));
        axum::body::Body::from_stream(first.chain(self.stream))
    }
}
