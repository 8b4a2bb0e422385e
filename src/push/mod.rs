//! Push: each user's push rules (stored as the `m.push_rules` account data clients expect),
//! their pushers, and the delivery of notifications to push gateways through a durable
//! per-pusher queue.

pub mod gateway;
pub mod pushers;
pub mod queue;
pub mod rules;
pub mod sender;
