//! Filters: upload once, then name by id in `/sync`.

use std::sync::Arc;

use ruma::api::client::filter::{create_filter, get_filter};

use super::require_self;
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;

/// `POST /_matrix/client/v3/user/{userId}/filter`
pub async fn create(
    services: Arc<Services>,
    req: Ruma<create_filter::v3::Request>,
) -> Result<create_filter::v3::Response> {
    require_self(req.user_id()?, &req.body.user_id)?;
    let id = services
        .filters
        .create(&req.body.user_id, &req.body.filter)?;
    Ok(create_filter::v3::Response::new(id))
}

/// `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`
pub async fn get(
    services: Arc<Services>,
    req: Ruma<get_filter::v3::Request>,
) -> Result<get_filter::v3::Response> {
    require_self(req.user_id()?, &req.body.user_id)?;
    let filter = services
        .filters
        .get(&req.body.user_id, &req.body.filter_id)?
        .ok_or_else(|| Error::not_found("No such filter"))?;
    Ok(get_filter::v3::Response::new(filter))
}
