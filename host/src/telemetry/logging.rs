//! The host's own log output: human-readable lines on a terminal or a
//! pipe, or one JSON object per line for a log collector.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
