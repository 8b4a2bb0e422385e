//! The HTTP API of the foundation (client-server, and the first server-server discovery
//! endpoints), driven over HTTP against the real binary.

mod account;
mod account_data;
mod bad_input;
mod devices;
mod discovery;
mod errors;
mod login;
mod profile;
mod push_rules;
mod register;
mod restart;
mod server_keys;
mod user_directory;
