//! Federation: the server's signing keys (which sign every event and every key answer) and,
//! later, the sender, receiver and resolver of the server-server API.

pub mod keys;
