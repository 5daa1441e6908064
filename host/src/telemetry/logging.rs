//! The host's own log output: human-readable lines on a terminal or a
//! pipe, or one JSON object per line for a log collector.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format;

use super::log_pipe::{self, LogGuard};

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-06T01:02:03Z  INFO verge::request: GET localhost/ status=200 …`
    #[default]
    Human,
    /// One JSON object per line, fields at the top level.
    Json,
}

/// Installs the process-wide subscriber: `RUST_LOG` picks what is logged
/// (by default `info`, wasmtime's and cranelift's chatter at `warn`).
/// Hold the guard until the process exits, so the last lines are written.
pub fn init_logging(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let (pipe, guard) = log_pipe::start();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(pipe);
    match format {
        // Fields as plain `name=value`: the default visitor styles every
        // name, which costs a request's line a tenth of a hello's work even
        // with colours off.
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(
                format::debug_fn(|line, field, value| match field.name() {
                    "message" => write!(line, "{value:?}"),
                    name => write!(line, "{name}={value:?}"),
                })
                .delimited(" "),
            )
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    guard
}
