//! Rooms: each room is a DAG of signed PDUs, and this module owns Matrix's room rules.
//!
//! - [`pdu`]: event format, content hash, signature, event id, redaction per room version.
//! - [`timeline`]: appending events that pass the room version's authorization rules (ruma's
//!   state-res), serialised per room, with every index written in the same batch; reads of
//!   events, current state and state at any point.
//! - [`create`], [`membership`], [`upgrade`]: the event sequences of createRoom, membership
//!   changes and room upgrades.
//! - [`visibility`]: history visibility for a viewer; [`pagination`]: `/messages` tokens,
//!   filters and pages; [`relations`]: edits, threads, references, reactions and their
//!   aggregations.
//! - [`alias`], [`directory`]: room aliases and the public room directory; [`reports`]:
//!   event reports for admins.

pub mod activity;
pub mod alias;
pub mod create;
pub mod directory;
pub mod membership;
pub mod pagination;
pub mod pdu;
pub mod receipts;
pub mod relations;
pub mod reports;
pub mod timeline;
pub mod upgrade;
pub mod visibility;
