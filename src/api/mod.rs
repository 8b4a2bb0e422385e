//! The HTTP surface: [`ruma`] turns requests into ruma request types (authenticated, size
//! limited, JSON checked) and ruma responses back into HTTP; [`client`] holds the thin
//! client-server API handlers, one file per area of the spec; [`federation`] the
//! server-server ones; [`admin`] Sori's admin API.

pub mod admin;
pub mod client;
pub mod federation;
pub mod hold;
pub mod ruma;
