//! Push: each user's push rules (stored as the `m.push_rules` account data clients expect),
//! and later their evaluation on new events and delivery to push gateways.

pub mod rules;
