//! PDUs: building an event in the federation format of its room version, adding its content
//! hash and this server's signature, deriving its event id (the reference hash), and
//! redacting it as its room version prescribes.

use ruma::events::TimelineEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures::{KeyPair, hash_and_sign_event, reference_hash};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, DeviceId, MilliSecondsSinceUnixEpoch, OwnedDeviceId,
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UInt, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// A stored PDU: its id (PDUs of room versions 3+ do not carry it), the room it belongs to
/// (a v12 create event does not carry that either), the signed PDU as sent over federation,
/// and for a local user's event, the transaction its device sent it in.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct StoredPdu {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub pdu: CanonicalJsonObject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<Transaction>,
}

/// The device and transaction id an event was sent with (`PUT …/send/{type}/{txnId}`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Transaction {
    pub device_id: OwnedDeviceId,
    pub txn_id: String,
}

/// Who an event is served to: the user and the device whose access token asked.
#[derive(Clone, Copy, Debug)]
pub struct Recipient<'a> {
    pub user: &'a UserId,
    pub device: &'a DeviceId,
}

impl StoredPdu {
    /// The event as `to` sees it: [`StoredPdu::to_client_event`], plus
    /// `unsigned.transaction_id` when `to` is the very device that sent it, so that the client
    /// can match the event to its local echo.
    pub fn to_client_event_for(&self, to: Recipient<'_>) -> serde_json::Value {
        let mut event = self.to_client_event();
        if let Some(transaction) = &self.transaction
            && transaction.device_id == to.device
            && event["sender"] == to.user.as_str()
        {
            event["unsigned"]["transaction_id"] = transaction.txn_id.clone().into();
        }
        event
    }

    /// The event as clients see it (the client-server API's event format): no hashes,
    /// signatures or DAG fields, plus `event_id`, `room_id` and `unsigned.age`.
    pub fn to_client_event(&self) -> serde_json::Value {
        let mut event = serde_json::Map::new();
        for field in [
            "content",
            "origin_server_ts",
            "sender",
            "type",
            "state_key",
            "redacts",
        ] {
            if let Some(value) = self.pdu.get(field) {
                event.insert(
                    field.to_owned(),
                    serde_json::to_value(value).unwrap_or_default(),
                );
            }
        }
        // Room versions 11+ keep `redacts` in the content only; clients (matrix-js-sdk among
        // them) still read it at the top, so it is given in both places, as Synapse does.
        if event.get("type").and_then(|t| t.as_str()) == Some("m.room.redaction")
            && !event.contains_key("redacts")
            && let Some(redacts) = event.get("content").and_then(|c| c.get("redacts")).cloned()
        {
            event.insert("redacts".into(), redacts);
        }
        event.insert("event_id".into(), self.event_id.as_str().into());
        event.insert("room_id".into(), self.room_id.as_str().into());
        let sent = int_field(&self.pdu, "origin_server_ts").unwrap_or(0).max(0) as u64;
        let mut unsigned = match self.pdu.get("unsigned") {
            Some(CanonicalJsonValue::Object(u)) => serde_json::to_value(u)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default(),
            _ => serde_json::Map::new(),
        };
        unsigned.insert("age".into(), crate::now_ms().saturating_sub(sent).into());
        event.insert("unsigned".into(), unsigned.into());
        serde_json::Value::Object(event)
    }

    /// The event's content, as JSON.
    pub fn content(&self) -> serde_json::Value {
        self.pdu
            .get("content")
            .and_then(|c| serde_json::to_value(c).ok())
            .unwrap_or_default()
    }
}

/// The fields of a PDU that rules look at, parsed once.
#[derive(Clone, Debug, Deserialize)]
pub struct Pdu {
    #[serde(skip_deserializing, default = "placeholder_event_id")]
    pub event_id: OwnedEventId,
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
    #[serde(default)]
    pub prev_events: Vec<OwnedEventId>,
    #[serde(default)]
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub depth: UInt,
}

fn placeholder_event_id() -> OwnedEventId {
    OwnedEventId::try_from("$placeholder").expect("valid event id")
}

impl Pdu {
    /// Parses the rule-relevant fields of a stored PDU.
    pub fn from_stored(stored: &StoredPdu) -> Result<Self> {
        let json = serde_json::to_value(&stored.pdu)
            .map_err(|e| Error::internal(format!("PDU to JSON: {e}")))?;
        let mut pdu: Pdu = serde_json::from_value(json)
            .map_err(|e| Error::internal(format!("stored PDU {}: {e}", stored.event_id)))?;
        pdu.event_id = stored.event_id.clone();
        // v11+ carries `redacts` inside the content.
        if pdu.redacts.is_none() && pdu.kind == TimelineEventType::RoomRedaction {
            #[derive(Deserialize)]
            struct Redacts {
                redacts: Option<OwnedEventId>,
            }
            pdu.redacts = serde_json::from_str::<Redacts>(pdu.content.get())
                .ok()
                .and_then(|r| r.redacts);
        }
        Ok(pdu)
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        // Rejected events are never stored in the timeline.
        false
    }
}

/// The room versions Sori supports.
pub const VERSIONS: [RoomVersionId; 3] =
    [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];

/// The rules of a room version Sori supports, or `M_UNSUPPORTED_ROOM_VERSION`.
pub fn rules(version: &RoomVersionId) -> Result<RoomVersionRules> {
    match version {
        supported if VERSIONS.contains(supported) => version
            .rules()
            .ok_or_else(|| Error::internal("rules of a known room version")),
        other => Err(Error::new(
            http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::UnsupportedRoomVersion,
            format!("Room version {other} is not supported"),
        )),
    }
}

/// Adds the content hash and this server's signature to `pdu`, and returns its event id.
/// `pdu` must hold every field but `hashes` and `signatures`.
pub fn hash_sign_and_id<K: KeyPair>(
    pdu: &mut CanonicalJsonObject,
    server_name: &str,
    key_pair: &K,
    rules: &RoomVersionRules,
) -> Result<OwnedEventId> {
    hash_and_sign_event(server_name, key_pair, pdu, &rules.redaction).map_err(json_error)?;
    // The spec's limit applies to the whole PDU as sent over federation.
    let size = serde_json::to_vec(pdu)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_PDU_BYTES {
        return Err(too_large());
    }
    event_id(pdu, rules)
}

/// Largest PDU, in bytes of canonical JSON.
pub const MAX_PDU_BYTES: usize = 65_536;

fn too_large() -> Error {
    Error::too_large("The event is larger than 65536 bytes")
}

fn json_error(e: ruma::signatures::JsonError) -> Error {
    match e {
        ruma::signatures::JsonError::PduTooLarge => too_large(),
        other => Error::internal(format!("hashing and signing a PDU: {other}")),
    }
}

/// The event id of a PDU: `$` and its reference hash (room versions 4 and later).
pub fn event_id(pdu: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId> {
    let hash = reference_hash(pdu, rules).map_err(json_error)?;
    OwnedEventId::try_from(format!("${hash}"))
        .map_err(|e| Error::internal(format!("event id from reference hash: {e}")))
}

/// The PDU stripped to what its room version keeps after a redaction.
pub fn redact(pdu: CanonicalJsonObject, rules: &RoomVersionRules) -> Result<CanonicalJsonObject> {
    ruma::canonical_json::redact(pdu, &rules.redaction, None)
        .map_err(|e| Error::internal(format!("redacting a PDU: {e}")))
}

/// Reads an integer field of a PDU.
pub fn int_field(pdu: &CanonicalJsonObject, field: &str) -> Option<i64> {
    match pdu.get(field) {
        Some(CanonicalJsonValue::Integer(i)) => Some(i64::from(*i)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use ruma::signatures::Ed25519KeyPair;

    /// The signing key of the spec's appendix ("Signing Key"): seed
    /// `YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1`, key id `ed25519:1`, server `domain`,
    /// wrapped as a PKCS#8 v1 document.
    fn spec_key() -> Ed25519KeyPair {
        // The spec's seed has non-zero trailing bits, which the strict decoder refuses.
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_allow_trailing_bits(true)
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let seed = lenient
            .decode("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
            .unwrap();
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        Ed25519KeyPair::from_der(&der, "1".into()).unwrap()
    }

    fn object(json: serde_json::Value) -> CanonicalJsonObject {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn signing_json_matches_the_spec_appendix() {
        // Appendix "Signing JSON": the empty object signed by `domain` with `ed25519:1`.
        let mut empty = CanonicalJsonObject::new();
        ruma::signatures::sign_json("domain", &spec_key(), &mut empty).unwrap();
        let signatures = serde_json::to_value(&empty["signatures"]).unwrap();
        assert_eq!(
            signatures["domain"]["ed25519:1"],
            "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
        );
    }

    #[test]
    fn hashing_and_signing_an_event_matches_the_spec_appendix() {
        // Appendix "Signing Events", the minimal event; the hash and signature are the spec's.
        let mut pdu = object(serde_json::json!({
            "room_id": "!x:domain",
            "sender": "@a:domain",
            "origin": "domain",
            "origin_server_ts": 1000000,
            "type": "X",
            "content": {},
            "prev_events": [],
            "auth_events": [],
            "depth": 3,
            "unsigned": {"age_ts": 1000000},
        }));
        let rules = RoomVersionId::V1.rules().unwrap();
        hash_and_sign_event("domain", &spec_key(), &mut pdu, &rules.redaction).unwrap();
        let json = serde_json::to_value(&pdu).unwrap();
        assert_eq!(
            json["hashes"]["sha256"],
            "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
        );
        assert_eq!(
            json["signatures"]["domain"]["ed25519:1"],
            "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        );
    }

    #[test]
    fn event_ids_are_reference_hashes_that_ignore_unsigned_and_signatures() {
        let rules = rules(&RoomVersionId::V11).unwrap();
        let base = serde_json::json!({
            "room_id": "!x:domain",
            "sender": "@a:domain",
            "origin_server_ts": 1000000,
            "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": "회의는 10시"},
            "prev_events": [],
            "auth_events": [],
            "depth": 3,
        });
        let mut pdu = object(base.clone());
        let id = hash_sign_and_id(&mut pdu, "domain", &spec_key(), &rules).unwrap();
        assert!(id.as_str().starts_with('$') && !id.as_str().contains(':'));
        assert_eq!(
            id.as_str().len(),
            44,
            "$ + 43 characters of unpadded url-safe base64"
        );

        // Adding unsigned data or another server's signature does not change the id…
        let mut decorated = pdu.clone();
        decorated.insert(
            "unsigned".into(),
            CanonicalJsonValue::Object(object(serde_json::json!({"age": 5}))),
        );
        assert_eq!(event_id(&decorated, &rules).unwrap(), id);
        // …but changing the content does.
        let mut changed = object(base);
        changed.insert("depth".into(), CanonicalJsonValue::Integer(4u32.into()));
        assert_ne!(
            hash_sign_and_id(&mut changed, "domain", &spec_key(), &rules).unwrap(),
            id
        );
    }

    #[test]
    fn redaction_keeps_only_what_the_room_version_allows() {
        let rules = rules(&RoomVersionId::V11).unwrap();
        let pdu = object(serde_json::json!({
            "room_id": "!x:domain",
            "sender": "@a:domain",
            "origin_server_ts": 1000000,
            "type": "m.room.member",
            "state_key": "@a:domain",
            "content": {"membership": "join", "displayname": "Alice", "avatar_url": "mxc://d/x"},
            "prev_events": [],
            "auth_events": [],
            "depth": 3,
        }));
        let redacted = serde_json::to_value(redact(pdu, &rules).unwrap()).unwrap();
        assert_eq!(
            redacted["content"],
            serde_json::json!({"membership": "join"})
        );
        assert_eq!(redacted["state_key"], "@a:domain");
        assert_eq!(redacted["depth"], 3);

        let message = object(serde_json::json!({
            "room_id": "!x:domain", "sender": "@a:domain", "origin_server_ts": 1,
            "type": "m.room.message", "content": {"body": "secret"},
            "prev_events": [], "auth_events": [], "depth": 4,
        }));
        let redacted = serde_json::to_value(redact(message, &rules).unwrap()).unwrap();
        assert_eq!(redacted["content"], serde_json::json!({}));
    }

    #[test]
    fn only_versions_10_to_12_are_supported() {
        for v in [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12] {
            assert!(rules(&v).is_ok());
        }
        assert_eq!(
            rules(&RoomVersionId::V9).unwrap_err().errcode(),
            "M_UNSUPPORTED_ROOM_VERSION"
        );
    }
}

/// A JSON value (an event in client format) as ruma's raw event type for a response.
pub fn raw<T>(value: &serde_json::Value) -> Result<ruma::serde::Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(ruma::serde::Raw::from_json)
        .map_err(|e| Error::internal(format!("serialising an event: {e}")))
}
