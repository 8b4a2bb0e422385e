//! Rooms: each room is a DAG of signed PDUs, and this module owns Matrix's room rules.
//!
//! - [`pdu`]: event format, content hash, signature, event id, redaction per room version.
//! - [`timeline`]: each room's events in order; appending events that pass the room version's
//!   authorization rules (ruma's state-res), serialised per room.
//! - [`draft`]: events built on top of each other and written with every index in one commit,
//!   so a room's creation or upgrade happens whole or not at all.
//! - [`state`]: current state, state at any point, power levels; [`snapshot`]: the state
//!   before and after every event, as layers of changes; [`resolution`]: the state where the
//!   room's DAG forks; [`members`]: the membership
//!   indices; [`notifications`]: push rule decisions per member and unread counts.
//! - [`create`], [`membership`], [`upgrade`]: the event sequences of createRoom, membership
//!   changes and room upgrades.
//! - [`visibility`]: history visibility for a viewer; [`pagination`]: `/messages` tokens,
//!   filters and pages; [`relations`]: edits, threads, references, reactions and their
//!   aggregations.
//! - [`auth_chain`]: the events that authorise others, recursively; [`walk`]: the events
//!   before others, through `prev_events`.
//! - [`history`]: the history of a room joined through another server, from before the join;
//!   [`invites`]: invites from other servers into rooms this server is not in.
//! - [`alias`], [`directory`]: room aliases and the public room directory; [`reports`]:
//!   event reports for admins; [`blocks`]: rooms an admin closed; [`server_acl`]: the servers a
//!   room lets take part; [`purge`]: removing a room's
//!   events and indices; [`export`]: a room's events as JSON lines for auditors.

pub mod activity;
pub mod alias;
pub mod auth_chain;
pub mod blocks;
pub mod create;
pub mod directory;
pub mod draft;
pub mod export;
pub mod history;
pub mod invites;
pub mod member_cache;
pub mod members;
pub mod membership;
pub mod notifications;
pub mod pagination;
pub mod pdu;
pub mod purge;
pub mod receipts;
pub mod relations;
pub mod reports;
pub mod resolution;
pub mod server_acl;
pub mod snapshot;
pub mod state;
pub mod summary;
pub mod timeline;
pub mod upgrade;
pub mod visibility;
pub mod walk;
