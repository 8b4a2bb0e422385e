//! End-to-end encryption plumbing. The server never sees plaintext: it stores and hands out
//! the keys clients publish ([`keys`]: device, one-time, fallback and cross-signing keys and
//! who changed them), routes [`to_device`] messages (how clients share room keys), and keeps
//! the encrypted room key [`backup`]. [`signing`] checks the ed25519 signatures on keys.

pub mod backup;
pub mod keys;
pub mod lookup;
pub mod signing;
pub mod to_device;
