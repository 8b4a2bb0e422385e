//! The push gateway API (`POST /_matrix/push/v1/notify`, as Sygnal serves it): what a
//! notification says, and how the gateway's answer is read.

use std::time::Duration;

use ruma::UserId;
use ruma::api::client::push::PusherKind;
use ruma::push::{Action, PushFormat};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::pushers::{PusherRecord, gateway_url};
use super::queue::Item;
use crate::error::Result;
use crate::outbound::Outbound;
use crate::rooms::notifications::Unread;
use crate::services::Services;

/// Longest wait for a gateway's answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest notification sent: gateways hand it on to APNs, which takes 4 KB in all.
const MAX_PAYLOAD: usize = 4000;
/// Longest room or sender name sent.
const MAX_NAME: usize = 256;
/// Most of a gateway's answer read.
const MAX_ANSWER: usize = 65_536;

/// The badge: the user's unread notifications over every room they are in (messages, not
/// rooms), and of those the calls.
pub fn badge(services: &Services, user_id: &UserId) -> Result<Unread> {
    let mut total = Unread::default();
    for room_id in services.timeline.joined_rooms(user_id)? {
        let Some(room) = services.timeline.room(&room_id)? else {
            continue;
        };
        let read = services.receipts.read_positions(room.short, user_id)?;
        let counts = services
            .timeline
            .unread_counts(user_id, room.short, &read)?;
        total = counts
            .threads
            .values()
            .fold(total + counts.main, |sum, u| sum + *u);
    }
    Ok(total)
}

/// The tweaks the actions set (`sound`, `highlight`…), as the gateway API's `tweaks` object.
pub fn tweaks(actions: &[Action]) -> Map<String, Value> {
    let mut tweaks = Map::new();
    for action in actions {
        if let Ok(Value::Object(object)) = serde_json::to_value(action)
            && let Some(Value::String(name)) = object.get("set_tweak")
        {
            // `highlight` without a value means true.
            let value = object.get("value").cloned().unwrap_or(Value::Bool(true));
            tweaks.insert(name.clone(), value);
        }
    }
    tweaks
}

/// The request body for `item` to `pusher`; `None` when there is nothing to send any more (the
/// event is gone).
pub fn notification(
    services: &Services,
    pusher: &PusherRecord,
    item: Item,
) -> Result<Option<Value>> {
    let PusherKind::Http(data) = &pusher.pusher.kind else {
        return Ok(None);
    };
    let badge = badge(services, &pusher.user_id)?;
    let counts = json!({"unread": badge.notifications, "missed_calls": badge.calls});
    let mut device_data = serde_json::to_value(data).unwrap_or_else(|_| json!({}));
    if let Some(object) = device_data.as_object_mut() {
        object.remove("url");
    }
    let mut device = json!({
        "app_id": pusher.app_id(),
        "pushkey": pusher.pushkey(),
        "pushkey_ts": pusher.pushkey_ts / 1000,
        "data": device_data,
    });
    let Item::Event { short, count } = item else {
        device["tweaks"] = json!({});
        return Ok(Some(json!({"notification": {
            "counts": counts,
            "devices": [device],
            "prio": "low",
        }})));
    };
    let timeline = &services.timeline;
    let (Some(event), Some(record)) = (
        timeline.event_at(short, count)?,
        timeline.notification(&pusher.user_id, short, count)?,
    ) else {
        return Ok(None);
    };
    let tweaks = tweaks(&record.actions);
    let one_to_one = timeline.joined_member_count(&event.room_id)? == 2;
    let high = tweaks.contains_key("sound") || tweaks.get("highlight") == Some(&Value::Bool(true));
    let prio = if high || one_to_one { "high" } else { "low" };
    device["tweaks"] = Value::Object(tweaks);
    let client = event.to_client_event();
    let mut notification = json!({
        "event_id": event.event_id,
        "room_id": event.room_id,
        "counts": counts,
        "devices": [device],
        "prio": prio,
    });
    if data.format != Some(PushFormat::EventIdOnly) {
        let object = notification.as_object_mut().expect("an object");
        object.insert("type".into(), client["type"].clone());
        object.insert("sender".into(), client["sender"].clone());
        object.insert("content".into(), client["content"].clone());
        let state = |kind: &str, key: &str, field: &str| -> Result<Option<String>> {
            Ok(timeline
                .state_event(short, kind, key)?
                .and_then(|e| e.content()[field].as_str().map(|s| cut(s, MAX_NAME))))
        };
        let sender = client["sender"].as_str().unwrap_or_default();
        if let Some(name) = state("m.room.member", sender, "displayname")? {
            object.insert("sender_display_name".into(), name.into());
        }
        if let Some(name) = state("m.room.name", "", "name")?.filter(|n| !n.is_empty()) {
            object.insert("room_name".into(), name.into());
        }
        if let Some(alias) = state("m.room.canonical_alias", "", "alias")? {
            object.insert("room_alias".into(), alias.into());
        }
        if client["type"] == "m.room.member" {
            object.insert(
                "user_is_target".into(),
                (client["state_key"] == pusher.user_id.as_str()).into(),
            );
        }
        fit(&mut notification);
    }
    Ok(Some(json!({ "notification": notification })))
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn size(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// Shrinks a notification to [`MAX_PAYLOAD`]: without the formatted body first, then with the
/// body shortened, and without any content as the last resort (the app can fetch the event).
fn fit(notification: &mut Value) {
    if size(notification) <= MAX_PAYLOAD {
        return;
    }
    if let Some(content) = notification["content"].as_object_mut() {
        content.remove("formatted_body");
        content.remove("format");
    }
    for _ in 0..4 {
        let over = size(notification).saturating_sub(MAX_PAYLOAD);
        if over == 0 {
            return;
        }
        let Some(body) = notification["content"]["body"].as_str() else {
            break;
        };
        // Escaping can make a character longer in JSON than in the string: cut a little more.
        let keep = body.len().saturating_sub(over + 16);
        if keep == 0 {
            break;
        }
        let shorter = format!("{}…", cut(body, keep));
        notification["content"]["body"] = shorter.into();
    }
    if size(notification) > MAX_PAYLOAD
        && let Some(object) = notification.as_object_mut()
    {
        object.remove("content");
    }
}

/// What the gateway did with a notification it answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// The pushkey is no longer valid: the pusher is to be removed.
    Rejected,
}

#[derive(Deserialize)]
struct GatewayResponse {
    #[serde(default)]
    rejected: Vec<String>,
}

/// Posts a notification to the pusher's gateway through the outbound guard. An error says why
/// it did not arrive (and is worth another try).
pub async fn post(
    outbound: &Outbound,
    pusher: &PusherRecord,
    body: &Value,
) -> std::result::Result<Answer, String> {
    let PusherKind::Http(data) = &pusher.pusher.kind else {
        return Err("not an http pusher".into());
    };
    let url = gateway_url(&data.url).map_err(|e| e.to_string())?;
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let (status, answer) = outbound
        .post_json(url, bytes, TIMEOUT, MAX_ANSWER)
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("the gateway answered {status}"));
    }
    let answer: GatewayResponse = serde_json::from_slice(&answer)
        .map_err(|_| "the gateway's answer is not push gateway JSON".to_owned())?;
    if answer.rejected.iter().any(|key| key == pusher.pushkey()) {
        Ok(Answer::Rejected)
    } else {
        Ok(Answer::Accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::push::{HighlightTweakValue, Tweak};

    #[test]
    fn tweaks_come_from_the_actions() {
        let actions = vec![
            Action::Notify,
            Action::SetTweak(Tweak::Sound("default".into())),
            Action::SetTweak(Tweak::Highlight(HighlightTweakValue::Yes)),
        ];
        let tweaks = tweaks(&actions);
        assert_eq!(tweaks["sound"], "default");
        assert_eq!(tweaks["highlight"], true);
        assert!(super::tweaks(&[Action::Notify]).is_empty());
    }

    #[test]
    fn long_bodies_are_cut_to_fit_the_gateway_limit() {
        let body = "가".repeat(3000); // 9,000 bytes
        let mut notification = json!({
            "event_id": "$e",
            "room_id": "!r:x",
            "content": {"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html",
                        "formatted_body": format!("<b>{body}</b>")},
            "counts": {"unread": 1},
        });
        fit(&mut notification);
        assert!(size(&notification) <= MAX_PAYLOAD);
        let cut_body = notification["content"]["body"].as_str().unwrap();
        assert!(cut_body.starts_with("가가가") && cut_body.ends_with('…'));
        assert!(notification["content"].get("formatted_body").is_none());
        assert_eq!(notification["content"]["msgtype"], "m.text");

        // Content that cannot be shortened (no body) goes altogether.
        let mut encrypted = json!({
            "event_id": "$e",
            "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "A".repeat(6000)},
        });
        fit(&mut encrypted);
        assert!(encrypted.get("content").is_none());
        assert_eq!(encrypted["event_id"], "$e");

        // Small notifications are left alone.
        let mut small = json!({"content": {"body": "hi", "formatted_body": "<i>hi</i>"}});
        fit(&mut small);
        assert_eq!(small["content"]["formatted_body"], "<i>hi</i>");
    }

    #[test]
    fn names_are_cut_on_character_boundaries() {
        assert_eq!(cut("가나다", 4), "가");
        assert_eq!(cut("abc", 10), "abc");
    }
}
