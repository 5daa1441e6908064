//! Why guest SQL failed, in the terms of the `sql` interface.

use rusqlite::ErrorCode;

/// The kinds of failure the `sql` interface tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlErrorKind {
    Syntax,
    Constraint,
    Denied,
    Full,
    Mismatch,
    Other,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub(crate) struct SqlError {
    pub(crate) kind: SqlErrorKind,
    pub(crate) message: String,
}

impl SqlError {
    pub(super) fn new(kind: SqlErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// SQLite's error in the interface's terms. `denial` is the
    /// authorizer's reason when it refused the statement; `limit_bytes`
    /// the database's size cap, named when it is reached.
    pub(super) fn describe(
        error: rusqlite::Error,
        denial: Option<String>,
        limit_bytes: u64,
    ) -> Self {
        use rusqlite::Error as E;
        if let Some(reason) = denial {
            return Self::new(SqlErrorKind::Denied, reason);
        }
        match &error {
            E::SqliteFailure(failure, message) => {
                let message = message.clone().unwrap_or_else(|| failure.to_string());
                match failure.code {
                    ErrorCode::AuthorizationForStatementDenied => {
                        Self::new(SqlErrorKind::Denied, format!("not allowed: {message}"))
                    }
                    ErrorCode::ConstraintViolation => Self::new(SqlErrorKind::Constraint, message),
                    ErrorCode::DiskFull => Self::new(
                        SqlErrorKind::Full,
                        format!(
                            "database full: this object reached its limit of {} MiB (limits.object_storage_mb)",
                            limit_bytes >> 20
                        ),
                    ),
                    ErrorCode::TypeMismatch | ErrorCode::ParameterOutOfRange => {
                        Self::new(SqlErrorKind::Mismatch, message)
                    }
                    ErrorCode::Unknown => Self::new(SqlErrorKind::Syntax, message),
                    _ => Self::new(SqlErrorKind::Other, message),
                }
            }
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
