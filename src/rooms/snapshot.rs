//! State snapshots: the room state before and after every event, for any shape of DAG.
//!
//! A snapshot is a layer of changes on top of a parent snapshot (DESIGN.md §3). A new layer
//! that would be at least half the size of its parent is merged into it instead (and the
//! result again into its own parent, like a binary counter's carry), so that a chain stays
//! about log₂(state) layers deep while each change writes, on average, a few entries: a
//! message writes nothing, a join in a room of 10,000 writes one small layer. Layers are
//! never changed once written, so snapshots are shared by every event that has them.
//!
//! Each layer is stored as two entries: its spine (the ids and sizes of the layers from the
//! root down to it, so a new layer is planned without reading large parents) and its entries
//! (sorted; `None` removes a key, which only state resolution does).

use std::collections::{BTreeMap, HashMap};

use ruma::OwnedEventId;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Batch, Store, StoreExt, Table, keys};

/// (event type, state key).
pub type StateKey = (String, String);
/// A whole room state: (event type, state key) → event id.
pub type StateMap = BTreeMap<StateKey, OwnedEventId>;
/// Changes to a state: a key set to an event, or removed.
pub type StateDiff = BTreeMap<StateKey, Option<OwnedEventId>>;

/// Most layers in one chain; a longer one is merged down whatever the sizes.
const MAX_DEPTH: usize = 24;

/// One layer: where it sits, and what it changes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Layer {
    /// (snapshot id, number of entries) of each layer from the root down to this one.
    pub spine: Vec<(u64, u64)>,
    /// Sorted by key.
    pub entries: Vec<(String, String, Option<OwnedEventId>)>,
}

/// Where layers are read from.
pub trait Layers {
    fn spine(&self, id: u64) -> Result<Vec<(u64, u64)>>;
    fn entries(&self, id: u64) -> Result<Vec<(String, String, Option<OwnedEventId>)>>;
}

fn missing(id: u64) -> Error {
    Error::internal(format!("state snapshot {id} is missing"))
}

/// The key of a layer's spine (`part` 0) or entries (1).
fn key(short: u64, id: u64, part: u8) -> Vec<u8> {
    let mut key = keys::pdu(short, id);
    key.push(part);
    key
}

/// The layers of one room already in the store.
pub struct Stored<'a> {
    pub store: &'a dyn Store,
    pub short: u64,
}

impl Layers for Stored<'_> {
    fn spine(&self, id: u64) -> Result<Vec<(u64, u64)>> {
        self.store
            .get_json(Table::StateSnapshots, &key(self.short, id, 0))?
            .ok_or_else(|| missing(id))
    }

    fn entries(&self, id: u64) -> Result<Vec<(String, String, Option<OwnedEventId>)>> {
        self.store
            .get_json(Table::StateSnapshots, &key(self.short, id, 1))?
            .ok_or_else(|| missing(id))
    }
}

/// Layers planned but not written yet (by a draft), over others: snapshot id → (short room
/// id, layer).
pub struct Drafted<'a> {
    pub planned: &'a HashMap<u64, (u64, Layer)>,
    pub below: &'a dyn Layers,
}

impl Layers for Drafted<'_> {
    fn spine(&self, id: u64) -> Result<Vec<(u64, u64)>> {
        match self.planned.get(&id) {
            Some((_, layer)) => Ok(layer.spine.clone()),
            None => self.below.spine(id),
        }
    }

    fn entries(&self, id: u64) -> Result<Vec<(String, String, Option<OwnedEventId>)>> {
        match self.planned.get(&id) {
            Some((_, layer)) => Ok(layer.entries.clone()),
            None => self.below.entries(id),
        }
    }
}

/// Adds a planned layer of room `short` to a batch.
pub fn write(batch: &mut Batch, short: u64, id: u64, layer: &Layer) -> Result<()> {
    batch.put_json(Table::StateSnapshots, key(short, id, 0), &layer.spine)?;
    batch.put_json(Table::StateSnapshots, key(short, id, 1), &layer.entries)
}

/// Adds the snapshots of the state before and after the event at `count` to a batch.
pub fn write_event(batch: &mut Batch, short: u64, count: u64, before: u64, after: u64) {
    let mut value = keys::u64_be(before).to_vec();
    value.extend_from_slice(&keys::u64_be(after));
    batch.put(Table::EventState, keys::pdu(short, count), value);
}

/// The snapshots of the state before and after the event at `count`, if it has them (events
/// stored before snapshots existed do not).
pub fn of_event(store: &dyn Store, short: u64, count: u64) -> Result<Option<(u64, u64)>> {
    let Some(value) = store.get(Table::EventState, &keys::pdu(short, count))? else {
        return Ok(None);
    };
    match (value.get(..8), value.get(8..16)) {
        (Some(before), Some(after)) => Ok(Some((
            u64::from_be_bytes(before.try_into().unwrap_or_default()),
            u64::from_be_bytes(after.try_into().unwrap_or_default()),
        ))),
        _ => Err(Error::internal("corrupt event state entry")),
    }
}

/// The whole state of snapshot `id`.
pub fn state(layers: &dyn Layers, id: u64) -> Result<StateMap> {
    let mut state = StateMap::new();
    for (layer, _) in layers.spine(id)? {
        for (event_type, state_key, event_id) in layers.entries(layer)? {
            match event_id {
                Some(event_id) => state.insert((event_type, state_key), event_id),
                None => state.remove(&(event_type, state_key)),
            };
        }
    }
    Ok(state)
}

/// One piece of the state of snapshot `id`: the nearest layer that mentions it decides.
pub fn lookup(
    layers: &dyn Layers,
    id: u64,
    event_type: &str,
    state_key: &str,
) -> Result<Option<OwnedEventId>> {
    for (layer, _) in layers.spine(id)?.into_iter().rev() {
        let entries = layers.entries(layer)?;
        if let Ok(found) = entries
            .binary_search_by(|(t, k, _)| (t.as_str(), k.as_str()).cmp(&(event_type, state_key)))
        {
            return Ok(entries[found].2.clone());
        }
    }
    Ok(None)
}

/// The layer that makes snapshot `id` out of `parent` (`None`: the empty state) changed by
/// `diff`. Small layers on top are merged into it while it is at least half their size.
pub fn plan(layers: &dyn Layers, parent: Option<u64>, diff: StateDiff, id: u64) -> Result<Layer> {
    let mut spine = match parent {
        Some(parent) => layers.spine(parent)?,
        None => Vec::new(),
    };
    let mut merged = diff;
    while let Some(&(below, size)) = spine.last() {
        if (2 * merged.len() as u64) < size && spine.len() < MAX_DEPTH {
            break;
        }
        let mut under: StateDiff = layers
            .entries(below)?
            .into_iter()
            .map(|(t, k, e)| ((t, k), e))
            .collect();
        under.extend(merged);
        merged = under;
        spine.pop();
    }
    if spine.is_empty() {
        // A root has nothing below it to remove from.
        merged.retain(|_, event_id| event_id.is_some());
    }
    spine.push((id, merged.len() as u64));
    Ok(Layer {
        spine,
        entries: merged.into_iter().map(|((t, k), e)| (t, k, e)).collect(),
    })
}

/// What turns state `from` into state `to`.
pub fn diff(from: &StateMap, to: &StateMap) -> StateDiff {
    let mut diff: StateDiff = to
        .iter()
        .filter(|(key, event_id)| from.get(*key) != Some(*event_id))
        .map(|(key, event_id)| (key.clone(), Some(event_id.clone())))
        .collect();
    for key in from.keys() {
        if !to.contains_key(key) {
            diff.insert(key.clone(), None);
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Memory(HashMap<u64, Layer>);

    impl Layers for Memory {
        fn spine(&self, id: u64) -> Result<Vec<(u64, u64)>> {
            self.0
                .get(&id)
                .map(|l| l.spine.clone())
                .ok_or_else(|| missing(id))
        }

        fn entries(&self, id: u64) -> Result<Vec<(String, String, Option<OwnedEventId>)>> {
            self.0
                .get(&id)
                .map(|l| l.entries.clone())
                .ok_or_else(|| missing(id))
        }
    }

    impl Memory {
        fn add(&mut self, parent: Option<u64>, diff: StateDiff) -> (u64, usize) {
            let id = self.0.len() as u64 + 1;
            let layer = plan(self, parent, diff, id).unwrap();
            let written = layer.entries.len();
            self.0.insert(id, layer);
            (id, written)
        }
    }

    fn event(n: usize) -> OwnedEventId {
        OwnedEventId::try_from(format!("$e{n}")).unwrap()
    }

    fn member(n: usize) -> StateKey {
        ("m.room.member".into(), format!("@u{n}:x"))
    }

    #[test]
    fn thousands_of_changes_read_back_with_short_chains_and_few_writes() {
        let mut layers = Memory::default();
        let mut expected = StateMap::new();
        let mut current = None;
        let mut written = 0;
        for n in 0..2000 {
            // Every member joins, and every third one changes their profile later.
            let key = member(if n % 3 == 2 { n / 3 } else { n });
            expected.insert(key.clone(), event(n));
            let (id, entries) = layers.add(current, BTreeMap::from([(key, Some(event(n)))]));
            written += entries;
            current = Some(id);
            let spine = layers.spine(id).unwrap();
            assert!(spine.len() <= 12, "chain of {} layers", spine.len());
        }
        let id = current.unwrap();
        assert_eq!(state(&layers, id).unwrap(), expected);
        assert!(
            written < 32_000,
            "{written} entries written for 2000 changes"
        );
        for (key, event_id) in expected.iter().step_by(97) {
            assert_eq!(
                lookup(&layers, id, &key.0, &key.1).unwrap().as_ref(),
                Some(event_id)
            );
        }
        assert_eq!(
            lookup(&layers, id, "m.room.member", "@nobody:x").unwrap(),
            None
        );
    }

    #[test]
    fn branches_keep_their_own_state_and_removals_apply() {
        let mut layers = Memory::default();
        let base: StateDiff = (0..8).map(|n| (member(n), Some(event(n)))).collect();
        let (root, _) = layers.add(None, base);
        // Two forks from the same parent.
        let (left, _) = layers.add(Some(root), BTreeMap::from([(member(1), Some(event(100)))]));
        let (right, _) = layers.add(Some(root), BTreeMap::from([(member(2), None)]));
        let left_state = state(&layers, left).unwrap();
        let right_state = state(&layers, right).unwrap();
        assert_eq!(left_state[&member(1)], event(100));
        assert_eq!(left_state[&member(2)], event(2));
        assert_eq!(right_state[&member(1)], event(1));
        assert!(!right_state.contains_key(&member(2)));
        assert_eq!(
            lookup(&layers, right, "m.room.member", "@u2:x").unwrap(),
            None
        );
        // The parent reads as it was.
        assert_eq!(state(&layers, root).unwrap().len(), 8);
        // A snapshot made from the resolved difference of two states equals the target.
        let change = diff(&left_state, &right_state);
        let (joined, _) = layers.add(Some(left), change);
        assert_eq!(state(&layers, joined).unwrap(), right_state);
        // A removal merged down into a root leaves no trace of the key.
        let (small, _) = layers.add(None, BTreeMap::from([(member(0), Some(event(0)))]));
        let (gone, _) = layers.add(Some(small), BTreeMap::from([(member(0), None)]));
        assert_eq!(layers.spine(gone).unwrap().len(), 1);
        assert!(layers.entries(gone).unwrap().is_empty());
    }
}
