//! Where a guest's log lines go: the host's tracing output, tagged with the
//! worker and the request, whether they come from the `log` interface or
//! from the guest's stdout and stderr.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tracing::Level;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::cpu_time::GuestCpu;
use crate::runtime::RequestId;
use crate::telemetry::TailLog;

/// Log output one request may produce; past it lines are dropped, so a guest
/// logging in a loop cannot flood the host's log.
const LOG_BUDGET_BYTES: usize = 256 << 10;

/// The longest line logged whole; a longer one is cut, saying how much.
const MAX_LINE_BYTES: usize = 8 << 10;

/// The log sink of one request (or one Durable Object event). Cheap to
/// clone; clones share the request id, the budget and the lines kept.
#[derive(Clone)]
pub struct GuestLog(Arc<Sink>);

/// What a request's log clones share: one allocation per request.
struct Sink {
    worker: Arc<str>,
    request_id: AtomicU64,
    spent: AtomicUsize,
    /// Writing a line is the host's work: a slow log pipe must not count
    /// against the guest's CPU time.
    cpu: GuestCpu,
    kept: Mutex<Kept>,
}

/// Lines kept beyond writing them out.
#[derive(Default)]
struct Kept {
    /// The last warnings and errors the guest wrote (a panic's message
    /// among them), to name in the error of a trap that follows.
    last_words: VecDeque<String>,
    /// Every line so far, only while `verge tail` watches.
    for_tail: Option<Vec<TailLog>>,
}

/// Lines, and bytes of each, kept as a guest's last words.
const LAST_WORDS: usize = 3;
const LAST_WORD_BYTES: usize = 512;

impl GuestLog {
    /// `collect`: keep the lines for a tail event.
    pub(crate) fn new(
        worker: Arc<str>,
        request_id: RequestId,
        cpu: GuestCpu,
        collect: bool,
    ) -> Self {
        Self(Arc::new(Sink {
            worker,
            request_id: AtomicU64::new(request_id.into()),
            spent: AtomicUsize::new(0),
            cpu,
            kept: Mutex::new(Kept {
                last_words: VecDeque::new(),
                for_tail: collect.then(Vec::new),
            }),
        }))
    }

    /// Starts over for the next event of a long-lived instance.
    pub fn reset(&self, request_id: RequestId, collect: bool) {
        self.0
            .request_id
            .store(request_id.into(), Ordering::Relaxed);
        self.0.spent.store(0, Ordering::Relaxed);
        *self.kept() = Kept {
            last_words: VecDeque::new(),
            for_tail: collect.then(Vec::new),
        };
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Plain lines: a panic elsewhere leaves nothing half-done that
        // matters.
        self.0.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lines collected for a tail event (none when no one watched).
    pub(crate) fn take_collected(&self) -> Vec<TailLog> {
        self.kept().for_tail.take().unwrap_or_default()
    }

    /// The guest's last warnings and errors, one line, if it wrote any:
    /// what a panicking guest said before it trapped.
    pub(crate) fn last_words(&self) -> Option<String> {
        let kept = self.kept();
        let words = &kept.last_words;
        (!words.is_empty()).then(|| words.iter().cloned().collect::<Vec<_>>().join(" / "))
    }

    /// Emits one line, unless the request has used up its log budget.
    /// Control characters are escaped, so a guest cannot forge a line of
    /// the host's own log with a newline, nor hide one with a terminal
    /// escape.
    pub fn emit(&self, level: Level, message: &str) {
        // A blank line says nothing (a panic's output starts with one).
        if !message.trim().is_empty() {
            self.0.cpu.exclude(|| self.write(level, message));
        }
    }

    fn write(&self, level: Level, message: &str) {
        let message = &escape_line(message);
        let sink = &*self.0;
        let before = sink.spent.fetch_add(message.len(), Ordering::Relaxed);
        {
            let mut kept = self.kept();
            if level <= Level::WARN {
                if kept.last_words.len() == LAST_WORDS {
                    kept.last_words.pop_front();
                }
                let cut = message.floor_char_boundary(LAST_WORD_BYTES);
                kept.last_words.push_back(message[..cut].to_owned());
            }
            if before < LOG_BUDGET_BYTES
                && let Some(lines) = &mut kept.for_tail
            {
                lines.push(TailLog {
                    level: level.as_str().to_ascii_lowercase(),
                    message: message.clone(),
                });
            }
        }
        if before >= LOG_BUDGET_BYTES {
            return;
        }
        let worker = &*sink.worker;
        let request_id = RequestId::from(sink.request_id.load(Ordering::Relaxed));
        if before + message.len() >= LOG_BUDGET_BYTES {
            tracing::warn!(target: "guest", worker, %request_id, "log budget of {LOG_BUDGET_BYTES} bytes used up; dropping the rest of this request's log");
        }
        match level {
            Level::TRACE => tracing::trace!(target: "guest", worker, %request_id, "{message}"),
            Level::DEBUG => tracing::debug!(target: "guest", worker, %request_id, "{message}"),
            Level::INFO => tracing::info!(target: "guest", worker, %request_id, "{message}"),
            Level::WARN => tracing::warn!(target: "guest", worker, %request_id, "{message}"),
            Level::ERROR => tracing::error!(target: "guest", worker, %request_id, "{message}"),
        }
    }

    /// A WASI output stream that logs each line at `level`: the guest's
    /// stdout (info) and stderr (warn).
    pub fn stream(&self, level: Level) -> LineWriter {
        LineWriter {
            log: self.clone(),
            level,
            pending: Vec::new(),
        }
    }
}

/// `line` as one log line: control characters escaped (`\n`, `\u{1b}`),
/// and cut to [`MAX_LINE_BYTES`].
fn escape_line(line: &str) -> String {
    let mut escaped = String::with_capacity(line.len().min(MAX_LINE_BYTES));
    for (at, c) in line.char_indices() {
        if escaped.len() >= MAX_LINE_BYTES {
            escaped.push_str(&format!("… ({} more bytes)", line.len() - at));
            break;
        }
        if c.is_control() {
            escaped.extend(c.escape_debug());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// Buffers bytes up to a newline, then logs the line. Never fails and never
/// blocks, so a guest's `println!` cannot trap on a full pipe.
pub struct LineWriter {
    log: GuestLog,
    level: Level,
    pending: Vec<u8>,
}

impl LineWriter {
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.log
                .emit(self.level, String::from_utf8_lossy(&line).trim_end());
        }
        // A guest writing without newlines still gets logged, in pieces.
        if self.pending.len() >= 16 << 10 {
            self.flush_pending();
        }
    }

    fn flush_pending(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.log
                .emit(self.level, String::from_utf8_lossy(&line).trim_end());
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_pending();
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().flush_pending();
        Poll::Ready(Ok(()))
    }
}

/// The factory WASI asks for each time the guest opens stdout or stderr.
pub(super) struct GuestOutput {
    log: GuestLog,
    level: Level,
}

impl GuestOutput {
    pub(super) fn new(log: GuestLog, level: Level) -> Self {
        Self { log, level }
    }
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.log.stream(self.level))
    }

    // Writes straight through, instead of the default adapter's background
    // task per stream.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.log.stream(self.level))
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cannot_forge_others_or_run_on() {
        assert_eq!(
            escape_line("ok\n2026-01-01 INFO forged\u{1b}[2J"),
            "ok\\n2026-01-01 INFO forged\\u{1b}[2J"
        );
        let long = escape_line(&"x".repeat(MAX_LINE_BYTES * 10));
        assert!(long.len() < MAX_LINE_BYTES + 64, "{}", long.len());
        assert!(long.ends_with(&format!("… ({} more bytes)", MAX_LINE_BYTES * 9)));
    }
}
