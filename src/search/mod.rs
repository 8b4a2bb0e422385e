//! Search: people in the user directory ([`users`]), matched the way Korean names need.
//! Message search (`POST /_matrix/client/v3/search`) joins it here.

pub mod users;
