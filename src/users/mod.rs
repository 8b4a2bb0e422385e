//! Users: accounts and passwords, devices and the access tokens that open them, profiles,
//! account data, filters, the user-interactive authentication that guards sensitive changes, and
//! taking devices and accounts away.

pub mod account_data;
pub mod accounts;
pub mod filters;
pub mod passwords;
pub mod profiles;
pub mod registration_tokens;
pub mod removal;
pub mod sessions;
pub mod uia;
