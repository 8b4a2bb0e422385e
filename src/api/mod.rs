//! The HTTP surface: [`ruma`] turns requests into ruma request types (authenticated, size
//! limited, JSON checked) and ruma responses back into HTTP; [`client`] holds the thin
//! client-server API handlers, one file per area of the spec.

pub mod client;
pub mod ruma;
