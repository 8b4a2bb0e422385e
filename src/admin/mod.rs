//! Running the server: the hash-chained audit log of who did what (`audit`), what admins see
//! of users (`users`) and rooms (`rooms`, with room deletion), and the admin room whose bot
//! (`bot`) answers `!admin` commands (`commands`). The admin API's handlers are in
//! `api::admin`.

pub mod audit;
pub mod bot;
pub mod commands;
pub mod ldap;
pub mod rooms;
pub mod users;
