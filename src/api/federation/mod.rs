//! Server-server API handlers: what other homeservers ask of this one.

pub mod directory;
pub mod keys;
pub mod query;
