//! `POST /_matrix/client/v1/appservice/{appserviceId}/ping`: an appservice checks that Sori
//! reaches it.

use std::sync::Arc;

use ruma::api::client::appservice::request_ping;

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;

pub async fn ping(
    services: Arc<Services>,
    req: Ruma<request_ping::v1::Request>,
) -> Result<request_ping::v1::Response> {
    let caller = req.session()?.appservice.as_deref();
    if caller != Some(req.body.appservice_id.as_str()) {
        return Err(Error::forbidden(
            "Only the appservice itself may ask for its ping",
        ));
    }
    let appservice = services
        .appservices
        .by_id(&req.body.appservice_id)
        .ok_or_else(|| Error::forbidden("Unknown appservice"))?;
    let duration = services
        .appservices
        .ping(
            appservice,
            req.body.transaction_id.as_deref().map(|t| t.as_str()),
        )
        .await?;
    Ok(request_ping::v1::Response::new(duration))
}
