//! Where log lines go: into a shared buffer that a thread of its own
//! writes to stderr in batches. Under load a request's line costs a copy,
//! not a system call or a wakeup of another thread; a slow log reader
//! never stalls serving.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer waits after the first line of a batch for more to
/// join it: lines reach the log at most this late.
const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// What may wait to be written; past it new lines are dropped, and
/// counted, rather than holding memory for a reader that does not read.
const MAX_WAITING_BYTES: usize = 8 << 20;

/// How long a flush (at exit, say) waits for the log to be written out.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Waiting {
    bytes: Vec<u8>,
    dropped: u64,
    /// Someone waits for everything so far to be written (exit).
    flushes: Vec<std::sync::mpsc::SyncSender<()>>,
}

#[derive(Default)]
struct Shared {
    waiting: Mutex<Waiting>,
    ready: Condvar,
}

impl Shared {
    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        // Plain bytes and counters: a panic elsewhere leaves nothing
        // half-done that matters.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Has the writer write out what waits, and waits for that (up to
    /// [`FLUSH_WAIT`]).
    fn flush(&self) {
        let (flushed, done) = std::sync::mpsc::sync_channel(1);
        self.waiting().flushes.push(flushed);
        self.ready.notify_one();
        let _ = done.recv_timeout(FLUSH_WAIT);
    }
}

/// The log formatter's end: hands out a buffer per line.
#[derive(Clone)]
pub(super) struct LogPipe(Arc<Shared>);

/// Writes out what is still waiting when dropped: `main` holds it until
/// the process is done.
#[must_use = "lines still waiting are lost unless the guard lives until exit"]
pub struct LogGuard(Arc<Shared>);

/// The process's log, once started: what [`flush_log`] waits for.
static STARTED: std::sync::OnceLock<Arc<Shared>> = std::sync::OnceLock::new();

/// Waits until every line logged so far is written: before a command
/// prints to stderr itself, so its message comes after them.
pub fn flush_log() {
    if let Some(shared) = STARTED.get() {
        shared.flush();
    }
}

/// Starts the writer thread.
pub(super) fn start() -> (LogPipe, LogGuard) {
    let shared = Arc::new(Shared::default());
    let _ = STARTED.set(shared.clone());
    let writer = shared.clone();
    std::thread::Builder::new()
        .name("verge-log".into())
        .spawn(move || write_batches(&writer))
        .expect("starting the log writer thread");
    (LogPipe(shared.clone()), LogGuard(shared))
}

fn write_batches(shared: &Shared) {
    let mut out = std::io::stderr();
    let mut batch = Vec::new();
    loop {
        {
            let mut waiting = shared.waiting();
            while waiting.bytes.is_empty() && waiting.flushes.is_empty() {
                waiting = shared
                    .ready
                    .wait(waiting)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if waiting.flushes.is_empty() {
                drop(waiting);
                std::thread::sleep(BATCH_WINDOW);
            }
        }
        let (flushes, dropped) = {
            let mut waiting = shared.waiting();
            std::mem::swap(&mut batch, &mut waiting.bytes);
            (
                std::mem::take(&mut waiting.flushes),
                std::mem::take(&mut waiting.dropped),
            )
        };
        let _ = out.write_all(&batch);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "verge: {dropped} log lines dropped: the log's reader did not keep up"
            );
        }
        batch.clear();
        for flushed in flushes {
            let _ = flushed.send(());
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.0.flush();
    }
}

/// One log line being formatted; queued whole when the formatter is done.
pub(super) struct LineBuffer {
    line: Vec<u8>,
    shared: Arc<Shared>,
}

impl Write for LineBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let mut waiting = self.shared.waiting();
        if waiting.bytes.len() + self.line.len() > MAX_WAITING_BYTES {
            waiting.dropped += 1;
            return;
        }
        let first = waiting.bytes.is_empty();
        waiting.bytes.extend_from_slice(&self.line);
        drop(waiting);
        // Only the first line of a batch wakes the writer.
        if first {
            self.shared.ready.notify_one();
        }
    }
}

impl<'a> MakeWriter<'a> for LogPipe {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> LineBuffer {
        LineBuffer {
            line: Vec::with_capacity(256),
            shared: self.0.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_limit_are_counted_not_kept() {
        let shared = Arc::new(Shared::default());
        let pipe = LogPipe(shared.clone());
        let line = vec![b'x'; 1 << 20];
        for _ in 0..10 {
            let mut writer = pipe.make_writer();
            writer.write_all(&line).unwrap();
        }
        let waiting = shared.waiting();
        assert_eq!(waiting.bytes.len(), 8 << 20);
        assert_eq!(waiting.dropped, 2);
    }
}
