//! Joining a room of another server: a resident server prepares the join (`make_join`), this
//! server signs it and sends it back (`send_join` v2), checks every event of the room's state
//! and auth chain it is answered with (hashes, signatures, and each event against its own auth
//! events), and starts the room here with them. From then on the room's events come in
//! transactions like any other.

use std::collections::HashMap;

use ruma::api::federation::membership::{create_join_event, prepare_join_event};
use ruma::events::TimelineEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedServerName, RoomId,
    ServerName, UserId,
};

use crate::error::{Error, Result};
use crate::rooms::pdu::{self, Pdu, StoredPdu};
use crate::services::Services;

/// Joins `user` to a room this server is not in, through the first of `via` (and the server
/// of the room's id) that lets it.
pub async fn join_remote(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    via: &[OwnedServerName],
) -> Result<()> {
    services.timeline.refuse_if_blocked(room_id)?;
    let mut last = None;
    for server in servers_to_ask(services, room_id, via) {
        match join_through(services, room_id, user, &server).await {
            Ok(()) => return Ok(()),
            Err(error) => {
                tracing::warn!(%room_id, %server, %error, "joining through another server failed");
                last = Some(error);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::not_found("This server is not in the room, and knows no server to join it through")
    }))
}

/// The servers to ask about a room this server is not in: those named (`via`), then the
/// server of the room's id, but this one and those it does not talk to.
pub(super) fn servers_to_ask(
    services: &Services,
    room_id: &RoomId,
    via: &[OwnedServerName],
) -> Vec<OwnedServerName> {
    let own = &services.config.server_name;
    let mut servers: Vec<OwnedServerName> = Vec::new();
    for server in via
        .iter()
        .cloned()
        .chain(room_id.server_name().map(ToOwned::to_owned))
    {
        if server != *own && !servers.contains(&server) && services.federation.talks_to(&server) {
            servers.push(server);
        }
    }
    servers
}

fn field<'a>(object: &'a CanonicalJsonObject, name: &str) -> Option<&'a str> {
    match object.get(name) {
        Some(CanonicalJsonValue::String(value)) => Some(value),
        _ => None,
    }
}

pub(super) fn bad_answer(server: &ServerName, why: impl std::fmt::Display) -> Error {
    Error::new(
        http::StatusCode::BAD_GATEWAY,
        ruma::api::error::ErrorKind::Unknown,
        format!("{server} answered with {why}"),
    )
}

/// Makes the membership event another server prepared for `user` (`make_join`,
/// `make_leave`) this server's: with `content` and the time of now, signed. Returns it with
/// its id.
pub(super) fn sign_template(
    services: &Services,
    server: &ServerName,
    template: &serde_json::value::RawValue,
    user: &UserId,
    content: serde_json::Value,
    rules: &RoomVersionRules,
) -> Result<(CanonicalJsonObject, OwnedEventId)> {
    let mut event: CanonicalJsonObject = serde_json::from_str(template.get())
        .map_err(|e| bad_answer(server, format!("a template that is no event: {e}")))?;
    if field(&event, "type") != Some("m.room.member")
        || field(&event, "sender") != Some(user.as_str())
        || field(&event, "state_key") != Some(user.as_str())
    {
        return Err(bad_answer(server, "a template for another event"));
    }
    for name in ["hashes", "signatures", "event_id", "unsigned"] {
        event.remove(name);
    }
    event.insert(
        "content".into(),
        serde_json::from_value(content).map_err(|e| Error::internal(e.to_string()))?,
    );
    event.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(ruma::Int::new(crate::now_ms() as i64).unwrap_or_default()),
    );
    event.insert(
        "origin".into(),
        CanonicalJsonValue::String(services.config.server_name.to_string()),
    );
    let event_id = services.timeline.sign(&mut event, rules)?;
    Ok((event, event_id))
}

async fn join_through(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    server: &ServerName,
) -> Result<()> {
    let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user.to_owned());
    request.ver = pdu::VERSIONS.to_vec();
    let made = services
        .federation
        .client
        .send(&services.outbound, server, request)
        .await?;
    let version = made
        .room_version
        .ok_or_else(|| bad_answer(server, "no room version"))?;
    let rules = pdu::rules(&version)?;
    // The template is the resident server's; the content and the time are the joiner's.
    let mut content = serde_json::json!({"membership": "join"});
    for (name, value) in services.profiles.get(user)? {
        if name == "displayname" || name == "avatar_url" {
            content[name] = value;
        }
    }
    let (mut join, event_id) = sign_template(services, server, &made.event, user, content, &rules)?;
    let raw = serde_json::value::to_raw_value(&join)
        .map_err(|e| Error::internal(format!("serialising the join: {e}")))?;
    let answer = services
        .federation
        .client
        .send(
            &services.outbound,
            server,
            create_join_event::v2::Request::new(room_id.to_owned(), event_id.clone(), raw),
        )
        .await?
        .room_state;
    // A resident server that co-signs joins (restricted rooms) sends the join back signed.
    if let Some(signed) = &answer.event
        && let Ok(object) = serde_json::from_str::<CanonicalJsonObject>(signed.get())
        && pdu::event_id(&object, &rules).is_ok_and(|id| id == event_id)
    {
        join = object;
    }

    let mut events: HashMap<OwnedEventId, StoredPdu> = HashMap::new();
    let mut state = Vec::new();
    for (raw, in_state) in answer
        .auth_chain
        .iter()
        .map(|raw| (raw, false))
        .chain(answer.state.iter().map(|raw| (raw, true)))
    {
        let object: CanonicalJsonObject = serde_json::from_str(raw.get())
            .map_err(|e| bad_answer(server, format!("an event that is not JSON: {e}")))?;
        let checked = services
            .federation
            .check_pdu(&services.outbound, &services.server_keys, &version, object)
            .await
            .map_err(|e| bad_answer(server, e))?;
        if in_state {
            state.push(checked.event_id.clone());
        }
        events.insert(
            checked.event_id.clone(),
            StoredPdu {
                event_id: checked.event_id,
                room_id: room_id.to_owned(),
                pdu: checked.pdu,
                transaction: None,
            },
        );
    }
    check_authorised(&events, &state, &rules, room_id).map_err(|e| bad_answer(server, e))?;

    let parsed = Pdu::from_stored(&StoredPdu {
        event_id: event_id.clone(),
        room_id: room_id.to_owned(),
        pdu: join.clone(),
        transaction: None,
    })?;
    let depth = u64::from(parsed.depth).saturating_sub(1);
    let mut draft = services.timeline.draft();
    draft
        .seed(
            room_id,
            version,
            events.into_values().collect(),
            &state,
            (parsed.prev_events, depth),
        )
        .await?;
    draft
        .receive(room_id, event_id.clone(), join, false)
        .await?;
    draft.commit()?;
    tracing::info!(%room_id, %server, %user, %event_id, "joined a room of another server");
    Ok(())
}

/// Checks each state event against the authorization rules, on its own and with the state
/// its auth events make (the spec's checks on a state received with a join).
fn check_authorised(
    events: &HashMap<OwnedEventId, StoredPdu>,
    state: &[OwnedEventId],
    rules: &RoomVersionRules,
    room_id: &RoomId,
) -> Result<()> {
    let parsed: HashMap<&EventId, Pdu> = events
        .iter()
        .map(|(id, stored)| Ok((&**id, Pdu::from_stored(stored)?)))
        .collect::<Result<_>>()?;
    // From room version 12 the create event is the room id's, and named by no event.
    let create = parsed
        .values()
        .find(|e| e.kind == TimelineEventType::RoomCreate)
        .ok_or_else(|| Error::bad_json("no create event"))?;
    if create.room_id.as_deref().is_some_and(|id| id != room_id) {
        return Err(Error::bad_json("a create event of another room"));
    }
    for id in state {
        crate::rooms::auth_chain::check_by_auth_events(rules, &parsed[&**id], create, |id| {
            parsed.get(id).cloned()
        })?;
    }
    Ok(())
}
