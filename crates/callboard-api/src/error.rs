//! Errors as GraphQL clients see them: a message and `extensions.code`, from the service layer's
//! one table of codes (`callboard_catalog::ErrorCode`).

use async_graphql::{Error, ErrorExtensions};
use callboard_catalog::{CatalogError, ErrorCode};

/// A GraphQL error with `extensions.code`.
pub(crate) fn coded(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, e| e.set("code", code.as_str()))
}

/// A request the client must change.
pub(crate) fn bad_input(message: impl Into<String>) -> Error {
    coded(ErrorCode::BadUserInput, message)
}

/// A failure of the service layer (already logged there when it is internal).
pub(crate) fn from_catalog(error: CatalogError) -> Error {
    coded(error.code, error.message)
}

/// The service's result as a resolver's.
pub(crate) trait OrGraphql<T> {
    /// Maps the error with [`from_catalog`].
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> OrGraphql<T> for Result<T, CatalogError> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(from_catalog)
    }
}

/// An argument error with the argument's name in front (`asOf: …`).
pub(crate) fn argument(name: &str, error: CatalogError) -> Error {
    coded(error.code, format!("{name}: {}", error.message))
}
