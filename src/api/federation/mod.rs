//! Server-server API handlers: what other homeservers ask of this one.

pub mod directory;
pub mod e2ee;
pub mod history;
pub mod keys;
pub mod membership;
pub mod query;
pub mod transactions;

/// The server that signed a request of the federation API (every such request is signed:
/// [`crate::api::ruma::Ruma`] checked it).
fn origin<T>(req: &crate::api::ruma::Ruma<T>) -> crate::error::Result<&ruma::ServerName> {
    req.origin
        .as_deref()
        .ok_or_else(|| crate::federation::unauthorized("This endpoint needs a signed request"))
}

/// The PDUs of events this server has (a room's state, an auth chain), as sent to other
/// servers.
fn pdus<'a>(
    services: &crate::services::Services,
    ids: impl IntoIterator<Item = &'a ruma::OwnedEventId>,
) -> crate::error::Result<Vec<Box<serde_json::value::RawValue>>> {
    ids.into_iter()
        .map(|id| {
            let stored = services.timeline.get(id)?.ok_or_else(|| {
                crate::error::Error::internal(format!("state event {id} is missing"))
            })?;
            serde_json::value::to_raw_value(&stored.pdu)
                .map_err(|e| crate::error::Error::internal(format!("serialising a PDU: {e}")))
        })
        .collect()
}
