//! Why a call to an object, or an operation on one, failed: one variant per
//! cause a caller may act on differently (retry, redeploy, fix the code),
//! each with its HTTP status in [`ObjectError::status`].

use http::StatusCode;

use crate::runtime::InvokeError;

/// Serializable, so that an owner can answer a call forwarded from another
/// host of a cluster with the error itself.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum ObjectError {
    #[error("no Durable Object binding named `{0}` in verge.toml")]
    UnknownBinding(String),
    #[error("{0}")]
    InvalidId(String),
    /// The call would re-enter an object already on the call chain, which
    /// waits for this call: it would deadlock.
    #[error("calling {0} would re-enter an object already on this call chain")]
    Cycle(String),
    #[error("the object did not answer in time")]
    Timeout,
    /// The host cannot take the event now; retrying later may succeed.
    #[error("{0}")]
    Overloaded(String),
    /// No deployed code can run the event: the worker, its class or the
    /// export the event needs is missing.
    #[error("{0}")]
    NotDeployed(String),
    /// The event's writes did not fit: the object's storage limit or the
    /// disk is full. Nothing was saved.
    #[error("{0}")]
    StorageFull(String),
    /// The object's code trapped or broke a limit (CPU, memory, wall
    /// clock); its instance was discarded.
    #[error("{0}")]
    GuestTrap(String),
    /// The object's handler returned an error.
    #[error("{0}")]
    Handler(String),
    /// An operation that needs the object's data found none.
    #[error("{0}")]
    NoData(String),
    /// An uploaded database was refused.
    #[error("{0}")]
    InvalidImport(String),
    #[error("the host is shutting down")]
    ShuttingDown,
    /// In a cluster: another host owns the object now.
    #[error("the object has moved to another host; retry")]
    Moved,
    /// The host failed: the database could not be opened or committed, or
    /// the object's actor stopped.
    #[error("{0}")]
    Internal(String),
}

impl ObjectError {
    /// The HTTP status that reports this error to a client.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidId(_) | Self::InvalidImport(_) => StatusCode::BAD_REQUEST,
            Self::NoData(_) => StatusCode::NOT_FOUND,
            Self::Cycle(_) => StatusCode::LOOP_DETECTED,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Overloaded(_) | Self::NotDeployed(_) | Self::ShuttingDown | Self::Moved => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::StorageFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::UnknownBinding(_) | Self::GuestTrap(_) | Self::Handler(_) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A failure of the host's own storage (opening, a transaction).
    pub(crate) fn storage(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    /// The same error, its message prefixed with what was being done.
    pub(crate) fn context(self, doing: &str) -> Self {
        let prefixed = |message: String| format!("{doing}: {message}");
        match self {
            Self::Overloaded(m) => Self::Overloaded(prefixed(m)),
            Self::NotDeployed(m) => Self::NotDeployed(prefixed(m)),
            Self::GuestTrap(m) => Self::GuestTrap(prefixed(m)),
            Self::Handler(m) => Self::Handler(prefixed(m)),
            Self::Internal(m) => Self::Internal(prefixed(m)),
            other => other,
        }
    }
}

impl From<InvokeError> for ObjectError {
    fn from(error: InvokeError) -> Self {
        match error {
            InvokeError::Handler(message) => Self::Handler(message),
            _ if error.is_overload() => Self::Overloaded(error.to_string()),
            // A trap, or a breached limit: CPU, memory, wall clock.
            _ => Self::GuestTrap(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_has_its_status() {
        let cases = [
            (
                ObjectError::Overloaded("busy".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                ObjectError::NotDeployed("gone".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (ObjectError::Cycle("a".into()), StatusCode::LOOP_DETECTED),
            (ObjectError::Timeout, StatusCode::GATEWAY_TIMEOUT),
            (
                ObjectError::StorageFull("full".into()),
                StatusCode::INSUFFICIENT_STORAGE,
            ),
            (
                ObjectError::GuestTrap("trap".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (ObjectError::NoData("none".into()), StatusCode::NOT_FOUND),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error:?}");
        }
    }

    #[test]
    fn guest_failures_keep_their_kind_and_message_under_context() {
        let error = ObjectError::from(InvokeError::Trap("unreachable".into()))
            .context("constructing Room r");
        assert!(
            matches!(&error, ObjectError::GuestTrap(m) if m == "constructing Room r: the guest trapped: unreachable"),
            "{error:?}"
        );
        let busy = ObjectError::from(InvokeError::AtCapacity);
        assert!(matches!(busy, ObjectError::Overloaded(_)));
    }
}
