//! Server-server API handlers: what other homeservers ask of this one.

pub mod directory;
pub mod e2ee;
pub mod keys;
pub mod query;
