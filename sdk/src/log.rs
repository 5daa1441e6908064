//! Logging to the host, which tags each line with the worker name and the
//! request id.
//!
//! Use the macros: [`trace!`](crate::trace), [`debug!`](crate::debug),
//! [`info!`](crate::info), [`warn!`](crate::warn), [`error!`](crate::error).
//! They take `format!` arguments. Text a guest prints to stdout or stderr
//! reaches the same log.
//!
//! ```no_run
//! verge::info!("order {} placed", 42);
//! verge::warn!("stock low: {left} left", left = 3);
//! ```

pub use crate::__private::bindings::verge::platform::log::Level;
use crate::__private::bindings::verge::platform::log::log as host_log;

/// Sends one log line at `level`. The macros call this.
pub fn log(level: Level, message: &str) {
    host_log(level, message);
}

/// Logs at trace level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Trace, &::std::format!($($arg)*)) };
}

/// Logs at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)*)) };
}

/// Logs at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)*)) };
}

/// Logs at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)*)) };
}

/// Logs at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)*)) };
}
