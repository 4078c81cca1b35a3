//! Errors of registry changes: what a definition, entity type, on-demand feature or
//! service change was refused for. The engine wraps them in
//! [`crate::store::StoreError::Registry`]; the server maps each kind to its HTTP status
//! (invalid: 400, in use: 409, not registered: 404).

/// A registry change was refused; the message says why and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The object is invalid, or the change to it is incompatible (a new version is
    /// needed).
    #[error("{0}")]
    Invalid(String),
    /// The object is used by live feature services or on-demand features, which the
    /// message names.
    #[error("{0}")]
    InUse(String),
    /// No such object (feature definition, service...).
    #[error("{0}")]
    NotRegistered(String),
}
