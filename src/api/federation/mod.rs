//! Server-server API handlers: what other homeservers ask of this one.

pub mod keys;
pub mod query;
