//! Rooms: each room is a DAG of signed PDUs. This module owns Matrix's room rules: event
//! format, hashing, signing and redaction ([`pdu`]), and appending events that pass the room
//! version's authorization rules through ruma's state-res ([`timeline`]).

pub mod alias;
pub mod create;
pub mod directory;
pub mod membership;
pub mod pagination;
pub mod pdu;
pub mod relations;
pub mod reports;
pub mod timeline;
pub mod upgrade;
pub mod visibility;
