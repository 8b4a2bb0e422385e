//! The client-server API of the foundation, driven over HTTP against the real binary.

mod account;
mod account_data;
mod devices;
mod discovery;
mod errors;
mod login;
mod profile;
mod push_rules;
mod register;
mod restart;
