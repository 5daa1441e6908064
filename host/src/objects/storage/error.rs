//! Why guest SQL failed, in the terms of the `sql` interface (and of the
//! `d1` interface, whose databases run guest SQL under the same rules).

use rusqlite::ErrorCode;

/// The kinds of failure the `sql` interface tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum SqlErrorKind {
    Syntax,
    Constraint,
    Denied,
    Full,
    Mismatch,
    /// The result would be larger than the host hands a guest at once.
    TooLarge,
    /// The SQL time budget ran out and the statement was interrupted.
    Timeout,
    Other,
}

#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{message}")]
pub(crate) struct SqlError {
    pub(crate) kind: SqlErrorKind,
    pub(crate) message: String,
}

impl SqlError {
    pub(crate) fn new(kind: SqlErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The error of a write that would grow a database past its limit:
    /// `what` names the database ("this object"), `key` the limit's key.
    pub(crate) fn full(what: &str, limit_bytes: u64, key: &str) -> Self {
        Self::new(
            SqlErrorKind::Full,
            format!(
                "database full: {what} reached its limit of {} MiB ({key})",
                limit_bytes >> 20
            ),
        )
    }

    /// The error of a statement stopped by its SQL time budget (`limit`,
    /// named as `limits.sql_ms`); `scope` says what the budget is for.
    pub(crate) fn out_of_time(limit: std::time::Duration, scope: &str) -> Self {
        Self::new(
            SqlErrorKind::Timeout,
            format!(
                "interrupted: {scope} used up its SQL time ({} ms, limits.sql_ms, within limits.wall_ms)",
                limit.as_millis()
            ),
        )
    }

    /// SQLite's error in the interface's terms. `denial` is the
    /// authorizer's reason when it refused the statement; `full` the
    /// error to give when the database reached its size cap.
    pub(crate) fn describe(
        error: rusqlite::Error,
        denial: Option<String>,
        full: impl FnOnce() -> Self,
    ) -> Self {
        use rusqlite::Error as E;
        if let Some(reason) = denial {
            return Self::new(SqlErrorKind::Denied, reason);
        }
        // A statement that does not parse comes back with its position.
        let failure = match &error {
            E::SqliteFailure(failure, message) => Some((
                failure,
                message.clone().unwrap_or_else(|| failure.to_string()),
            )),
            E::SqlInputError { error, msg, .. } => Some((error, msg.clone())),
            _ => None,
        };
        if let Some((failure, message)) = failure {
            return match failure.code {
                ErrorCode::AuthorizationForStatementDenied => {
                    Self::new(SqlErrorKind::Denied, format!("not allowed: {message}"))
                }
                ErrorCode::ConstraintViolation => Self::new(SqlErrorKind::Constraint, message),
                ErrorCode::DiskFull => full(),
                ErrorCode::TypeMismatch | ErrorCode::ParameterOutOfRange => {
                    Self::new(SqlErrorKind::Mismatch, message)
                }
                ErrorCode::Unknown => Self::new(SqlErrorKind::Syntax, message),
                _ => Self::new(SqlErrorKind::Other, message),
            };
        }
        match &error {
            E::InvalidParameterCount(given, expected) => Self::new(
                SqlErrorKind::Mismatch,
                format!("the statement takes {expected} parameters, {given} were given"),
            ),
            E::InvalidParameterName(_)
            | E::InvalidColumnType(..)
            | E::ToSqlConversionFailure(_) => Self::new(SqlErrorKind::Mismatch, error.to_string()),
            _ => Self::new(SqlErrorKind::Other, error.to_string()),
        }
    }
}
