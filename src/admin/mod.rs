//! Running the server: the hash-chained audit log of who did what (`audit`). The admin API's
//! handlers are in `api::admin`; the admin room's bot joins them here.

pub mod audit;
