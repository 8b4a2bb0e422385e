//! Room aliases: `#name:server` → room id, who may create and delete them, and the check that
//! a room's canonical alias points at the room itself.

use std::sync::{Arc, Mutex};

use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::{
    OwnedRoomAliasId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomAliasId, RoomId, UserId,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Batch, Store, StoreExt, Table, keys};

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AliasRecord {
    pub room_id: OwnedRoomId,
    pub creator: OwnedUserId,
}

pub struct Aliases {
    store: Arc<dyn Store>,
    server_name: OwnedServerName,
    lock: Mutex<()>,
}

impl Aliases {
    pub fn new(store: Arc<dyn Store>, server_name: OwnedServerName) -> Self {
        Self {
            store,
            server_name,
            lock: Mutex::new(()),
        }
    }

    fn require_local(&self, alias: &RoomAliasId) -> Result<()> {
        if alias.server_name() == self.server_name {
            Ok(())
        } else {
            Err(Error::invalid_param(
                "Aliases of other servers cannot be managed here",
            ))
        }
    }

    pub fn get(&self, alias: &RoomAliasId) -> Result<Option<AliasRecord>> {
        self.store.get_json(Table::Aliases, alias.as_bytes())
    }

    pub fn resolve(&self, alias: &RoomAliasId) -> Result<Option<OwnedRoomId>> {
        Ok(self.get(alias)?.map(|r| r.room_id))
    }

    /// Creates an alias; 409 if it is taken.
    pub fn create(&self, alias: &RoomAliasId, room_id: &RoomId, creator: &UserId) -> Result<()> {
        self.create_with(alias, room_id, creator, |batch| self.store.write(batch))
    }

    /// Creates an alias, written by `write` (with whatever else it writes): 409 if it is
    /// taken. No other alias change can come between the check and the write.
    pub fn create_with(
        &self,
        alias: &RoomAliasId,
        room_id: &RoomId,
        creator: &UserId,
        write: impl FnOnce(Batch) -> Result<()>,
    ) -> Result<()> {
        self.require_local(alias)?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.get(alias)?.is_some() {
            return Err(Error::new(
                StatusCode::CONFLICT,
                ErrorKind::Unknown,
                "This alias is already taken",
            ));
        }
        let mut batch = Batch::new();
        put(&mut batch, alias, room_id, creator)?;
        write(batch)
    }

    /// Points every local alias of room `from` at room `to`, written by `write` (with
    /// whatever else it writes).
    pub fn move_with(
        &self,
        from: &RoomId,
        to: &RoomId,
        write: impl FnOnce(Batch) -> Result<()>,
    ) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = Batch::new();
        for alias in self.of_room(from)? {
            let record = self
                .get(&alias)?
                .ok_or_else(|| Error::internal("alias vanished"))?;
            batch.delete(
                Table::RoomAliases,
                keys::room_alias(from.as_str(), alias.as_str()),
            );
            put(&mut batch, &alias, to, &record.creator)?;
        }
        write(batch)
    }

    pub fn delete(&self, alias: &RoomAliasId) -> Result<()> {
        self.require_local(alias)?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let record = self
            .get(alias)?
            .ok_or_else(|| Error::not_found("No such alias"))?;
        let mut batch = Batch::new();
        batch.delete(Table::Aliases, alias.as_bytes());
        batch.delete(
            Table::RoomAliases,
            keys::room_alias(record.room_id.as_str(), alias.as_str()),
        );
        self.store.write(batch)
    }

    /// The local aliases of a room.
    pub fn of_room(&self, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        aliases_of(&*self.store, room_id)
    }

    /// `m.room.canonical_alias` may only name local aliases of this very room (400 M_BAD_ALIAS).
    pub fn check_canonical(&self, room_id: &RoomId, content: &serde_json::Value) -> Result<()> {
        let bad_alias = |msg: String| Error::new(StatusCode::BAD_REQUEST, ErrorKind::BadAlias, msg);
        let mut named = Vec::new();
        if let Some(alias) = content.get("alias").filter(|a| !a.is_null()) {
            named.push(alias.clone());
        }
        if let Some(alt) = content.get("alt_aliases") {
            let list = alt
                .as_array()
                .ok_or_else(|| Error::bad_json("alt_aliases must be a list"))?;
            named.extend(list.iter().cloned());
        }
        for value in named {
            let text = value
                .as_str()
                .ok_or_else(|| Error::bad_json("aliases must be strings"))?;
            let alias = RoomAliasId::parse(text)
                .map_err(|_| Error::invalid_param(format!("Invalid alias {text}")))?;
            if alias.server_name() == self.server_name
                && self.resolve(&alias)?.as_deref() != Some(room_id)
            {
                return Err(bad_alias(format!("{alias} does not point to this room")));
            }
        }
        Ok(())
    }
}

/// The `m.room.canonical_alias` content without `alias` (as main or alternative alias), or
/// `None` when it does not name it: what the room's event becomes once the alias is deleted.
pub fn canonical_without(
    content: &serde_json::Value,
    alias: &RoomAliasId,
) -> Option<serde_json::Value> {
    let mut content = content.as_object()?.clone();
    let mut changed = false;
    if content.get("alias").and_then(|a| a.as_str()) == Some(alias.as_str()) {
        content.remove("alias");
        changed = true;
    }
    if let Some(alt) = content
        .get_mut("alt_aliases")
        .and_then(|a| a.as_array_mut())
    {
        let before = alt.len();
        alt.retain(|a| a.as_str() != Some(alias.as_str()));
        changed |= alt.len() != before;
    }
    changed.then_some(serde_json::Value::Object(content))
}

/// Adds the writes that make `alias` name `room_id`.
fn put(batch: &mut Batch, alias: &RoomAliasId, room_id: &RoomId, creator: &UserId) -> Result<()> {
    let record = AliasRecord {
        room_id: room_id.to_owned(),
        creator: creator.to_owned(),
    };
    batch.put_json(Table::Aliases, alias.as_bytes(), &record)?;
    batch.put(
        Table::RoomAliases,
        keys::room_alias(room_id.as_str(), alias.as_str()),
        Vec::new(),
    );
    Ok(())
}

/// The local aliases of a room, read from `store` (for readers without an [`Aliases`]).
pub fn aliases_of(store: &dyn Store, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
    let prefix = keys::of_room(room_id.as_str());
    store
        .scan_prefix(Table::RoomAliases, &prefix)?
        .map(|entry| {
            let (key, _) = entry?;
            std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|a| OwnedRoomAliasId::try_from(a).ok())
                .ok_or_else(|| Error::internal("corrupt room alias key"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_deleted_alias_leaves_the_canonical_alias_content() {
        let gone = RoomAliasId::parse("#old:localhost").unwrap();
        let content =
            json!({"alias": "#old:localhost", "alt_aliases": ["#old:localhost", "#new:localhost"]});
        assert_eq!(
            canonical_without(&content, &gone),
            Some(json!({"alt_aliases": ["#new:localhost"]}))
        );
        let unrelated = json!({"alias": "#new:localhost"});
        assert_eq!(canonical_without(&unrelated, &gone), None);
        assert_eq!(canonical_without(&json!("not an object"), &gone), None);
    }
}
