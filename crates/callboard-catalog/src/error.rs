//! Errors clients see, from one table of codes: each failure of the service layer has a
//! [`ErrorCode`], which transports hand to clients as they are (GraphQL's `extensions.code`, an
//! HTTP status for REST). Internal failures are logged in full here and reach clients only as
//! "internal error".

use callboard_graph::GraphError;
use callboard_projection::{BoxError, StoreError};

/// Why an operation failed, as clients are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed or asks for something impossible (a bad ref, filter, cursor,
    /// instant or argument).
    BadUserInput,
    /// A dependency (the read model, the log, the writer) cannot be reached now; retrying later
    /// may work.
    Unavailable,
    /// The request exceeds a limit (depth, complexity, size, subscriptions).
    Limit,
    /// The request took longer than it may.
    Timeout,
    /// This process does not accept changes (an API replica without the command channel).
    ReadOnly,
    /// A subscription fell behind the changes and missed some: read the current state and
    /// subscribe again.
    Resync,
    /// Anything else: a bug or an unexpected failure, logged with its cause.
    Internal,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::BadUserInput,
        ErrorCode::Unavailable,
        ErrorCode::Limit,
        ErrorCode::Timeout,
        ErrorCode::ReadOnly,
        ErrorCode::Resync,
        ErrorCode::Internal,
    ];

    /// The code as clients see it (`extensions.code`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Limit => "LIMIT",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::ReadOnly => "READ_ONLY",
            ErrorCode::Resync => "RESYNC",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The HTTP status that goes with it (for transports that speak status codes).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadUserInput => 400,
            ErrorCode::Limit => 413,
            ErrorCode::ReadOnly => 405,
            ErrorCode::Resync => 409,
            ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
            ErrorCode::Internal => 500,
        }
    }
}

/// A failure of the service layer: a code and a message fit for clients, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CatalogError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What clients are told.
    pub message: String,
    /// What really happened (never sent to clients).
    #[source]
    pub source: Option<BoxError>,
}

impl CatalogError {
    /// A failure with a message for clients.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            source: None,
        }
    }

    /// A request the caller must change.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadUserInput, message)
    }

    /// An unexpected failure: logged here with its whole chain, reported as "internal error".
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        let cause = cause.into();
        tracing::error!(error = %chain(cause.as_ref()), "an operation failed");
        Self {
            code: ErrorCode::Internal,
            message: "internal error".into(),
            source: Some(cause),
        }
    }

    /// A dependency that cannot be reached: logged, reported with `message`.
    pub fn unavailable(message: impl Into<String>, cause: impl Into<BoxError>) -> Self {
        let cause = cause.into();
        tracing::warn!(error = %chain(cause.as_ref()), "a dependency is unavailable");
        Self {
            code: ErrorCode::Unavailable,
            message: message.into(),
            source: Some(cause),
        }
    }
}

/// An error and its causes on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

impl From<StoreError> for CatalogError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::unavailable("the read model is unavailable; try again shortly", error),
            StoreError::Invalid(message) => Self::bad_input(message),
            StoreError::TooCostly(message) => Self::new(ErrorCode::Limit, message),
            other => Self::internal(other),
        }
    }
}

impl From<GraphError> for CatalogError {
    fn from(error: GraphError) -> Self {
        match error {
            GraphError::Store(store) => store.into(),
            other => Self::internal(other),
        }
    }
}

/// Results of the service layer.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_store_errors_keep_their_meaning() {
        let codes: std::collections::HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        let down = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = CatalogError::from(StoreError::Unavailable(Box::new(down)));
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert!(!error.message.contains("refused"), "driver text stays out of messages");
        assert!(std::error::Error::source(&error).is_some(), "but the cause is kept");
        let error = CatalogError::from(StoreError::Invalid("bad cursor".into()));
        assert_eq!(
            (error.code, error.message.as_str()),
            (ErrorCode::BadUserInput, "bad cursor")
        );
        let error = CatalogError::from(StoreError::Other("boom".into()));
        assert_eq!(
            (error.code, error.message.as_str()),
            (ErrorCode::Internal, "internal error")
        );
    }
}
