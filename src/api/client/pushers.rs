//! Pushers and the notification list: `GET /pushers`, `POST /pushers/set`,
//! `GET /notifications`.

use std::sync::Arc;

use ruma::api::client::push::{
    PusherKind, get_notifications, get_pushers, set_pusher, set_pusher::v3::PusherAction,
};
use ruma::push::Action;
use ruma::{MilliSecondsSinceUnixEpoch, UInt};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::outbound::FetchError;
use crate::push::pushers::gateway_url;
use crate::services::Services;

/// Notifications listed when the client does not say.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// `GET /_matrix/client/v3/pushers`
pub async fn get(
    services: Arc<Services>,
    req: Ruma<get_pushers::v3::Request>,
) -> Result<get_pushers::v3::Response> {
    let pushers = services
        .pushers
        .of(req.user_id()?)
        .iter()
        .map(|record| record.pusher.clone())
        .collect();
    Ok(get_pushers::v3::Response::new(pushers))
}

/// `POST /_matrix/client/v3/pushers/set`: adds, replaces (same app id and pushkey) or, with
/// `kind: null`, removes one of the user's pushers. A gateway the outbound guard would never
/// reach is refused here rather than failing quietly later.
pub async fn set(
    services: Arc<Services>,
    req: Ruma<set_pusher::v3::Request>,
) -> Result<set_pusher::v3::Response> {
    let user_id = req.user_id()?;
    match &req.body.action {
        PusherAction::Post(post) => {
            if let PusherKind::Http(data) = &post.pusher.kind {
                let url = gateway_url(&data.url)?;
                services
                    .outbound
                    .check_resolved(&url)
                    .await
                    .map_err(|e| match e {
                        FetchError::Refused(_) => Error::invalid_param(format!(
                            "This server does not send to the push gateway's address ({e})"
                        )),
                        other => Error::invalid_param(other.to_string()),
                    })?;
            }
            services
                .pushers
                .set(user_id, req.device_id()?, post.pusher.clone(), post.append)?;
        }
        PusherAction::Delete(ids) => services
            .pushers
            .delete(user_id, &ids.app_id, &ids.pushkey)?,
        _ => return Err(Error::invalid_param("Unknown pusher action")),
    }
    Ok(set_pusher::v3::Response::new())
}

/// `GET /_matrix/client/v3/notifications`: the events that notified the user, newest first,
/// each with what the push rules said and whether the user has read it.
pub async fn notifications(
    services: Arc<Services>,
    req: Ruma<get_notifications::v3::Request>,
) -> Result<get_notifications::v3::Response> {
    let user_id = req.user_id()?;
    let before = match req.body.from.as_deref() {
        None | Some("") => None,
        Some(token) => Some(
            token
                .parse::<u64>()
                .map_err(|_| Error::invalid_param("Invalid from token"))?,
        ),
    };
    let limit = req
        .body
        .limit
        .map_or(DEFAULT_LIMIT, |l| {
            usize::try_from(u64::from(l)).unwrap_or(MAX_LIMIT)
        })
        .clamp(1, MAX_LIMIT);
    let only_highlights = match req.body.only.as_deref() {
        None | Some("") => false,
        Some("highlight") => true,
        Some(other) => {
            return Err(Error::invalid_param(format!(
                "Unknown `only` filter {other:?}; the spec defines \"highlight\""
            )));
        }
    };
    let found = services
        .timeline
        .notifications_before(user_id, before, limit, only_highlights)?;
    let next_token = (found.len() == limit)
        .then(|| found.last().map(|(_, _, count, _)| count.to_string()))
        .flatten();
    let mut read_positions = std::collections::HashMap::new();
    let mut notifications = Vec::with_capacity(found.len());
    for (room_id, short, count, record) in found {
        let Some(event) = services.timeline.event_at(short, count)? else {
            continue;
        };
        let read = match read_positions.get(&short) {
            Some(read) => read,
            None => read_positions
                .entry(short)
                .or_insert(services.receipts.read_positions(short, user_id)?),
        };
        let is_read = count <= read.of(record.thread.as_deref());
        let client = event.to_client_event_for(req.recipient()?);
        let ts = client["origin_server_ts"]
            .as_u64()
            .and_then(UInt::new)
            .map_or_else(MilliSecondsSinceUnixEpoch::now, MilliSecondsSinceUnixEpoch);
        let actions = if record.actions.is_empty() {
            vec![Action::Notify]
        } else {
            record.actions
        };
        notifications.push(get_notifications::v3::Notification::new(
            actions,
            crate::rooms::pdu::raw(&client)?,
            is_read,
            room_id,
            ts,
        ));
    }
    let mut response = get_notifications::v3::Response::new(notifications);
    response.next_token = next_token;
    Ok(response)
}
