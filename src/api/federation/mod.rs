//! Server-server API handlers: what other homeservers ask of this one.

pub mod directory;
pub mod e2ee;
pub mod history;
pub mod keys;
pub mod membership;
pub mod query;
pub mod transactions;

/// The server that signed a request of the federation API (every such request is signed:
/// [`crate::api::ruma::Ruma`] checked it).
fn origin<T>(req: &crate::api::ruma::Ruma<T>) -> crate::error::Result<&ruma::ServerName> {
    req.origin
        .as_deref()
        .ok_or_else(|| crate::federation::unauthorized("This endpoint needs a signed request"))
}
