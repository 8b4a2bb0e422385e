//! Users: accounts and passwords, devices and the access tokens that open them, profiles,
//! account data, filters, and the user-interactive authentication that guards sensitive changes.

pub mod account_data;
pub mod accounts;
pub mod filters;
pub mod passwords;
pub mod profiles;
pub mod sessions;
pub mod uia;
