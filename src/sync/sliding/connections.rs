//! A sliding-sync connection's positions: what each `pos` had sent, so that the next request
//! sends only what changed.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;
use ruma::{DeviceId, OwnedDeviceId, OwnedRoomId, OwnedUserId, UserId};

use crate::error::{Error, Result};

/// Positions kept per connection: the latest, and the one before (a client may retry it).
const POSITIONS_KEPT: usize = 2;

/// What a connection has been sent of a room.
#[derive(Clone, Debug)]
pub(super) struct RoomSent {
    /// The server count the room was last sent up to.
    pub(super) upto: u64,
    /// The `required_state` it was sent with.
    pub(super) required: BTreeSet<(String, String)>,
    /// Unread notifications and highlights last sent.
    pub(super) unread: (u64, u64),
    /// The user's membership it was sent with.
    pub(super) membership: String,
}

/// What a connection has been sent, as of one `pos`.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    /// The server count the answer was built up to.
    pub(super) count: u64,
    /// The typing serial at that time.
    pub(super) typing: u64,
    pub(super) rooms: HashMap<OwnedRoomId, RoomSent>,
    /// Each list's room count.
    pub(super) lists: BTreeMap<String, usize>,
}

type ConnectionKey = (OwnedUserId, OwnedDeviceId, String);

/// The connections' positions, in memory: after a restart every `pos` is unknown
/// (`M_UNKNOWN_POS`) and clients start over, as the MSC allows.
pub struct Connections {
    /// Tells this process's positions from an earlier one's.
    boot: String,
    next: AtomicU64,
    positions: Mutex<HashMap<ConnectionKey, VecDeque<(u64, Sent)>>>,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            boot: crate::random::string(b"abcdefghijklmnopqrstuvwxyz", 8),
            next: AtomicU64::new(1),
            positions: Mutex::new(HashMap::new()),
        }
    }
}

fn unknown_pos() -> Error {
    Error::custom(
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN_POS",
        "Unknown position: start the connection again without pos",
    )
}

impl Connections {
    /// What the connection had been sent as of `pos` (nothing, without one); a `pos` this
    /// server cannot serve is `M_UNKNOWN_POS`, a malformed one `M_INVALID_PARAM`.
    pub fn previous(
        &self,
        user: &UserId,
        device: &DeviceId,
        conn_id: &str,
        pos: Option<&str>,
    ) -> Result<Sent> {
        let key = (user.to_owned(), device.to_owned(), conn_id.to_owned());
        let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pos) = pos else {
            // A request without a position starts the connection over.
            positions.remove(&key);
            return Ok(Sent::default());
        };
        let (boot, number) = pos
            .split_once('_')
            .and_then(|(boot, n)| Some((boot, n.parse::<u64>().ok()?)))
            .ok_or_else(|| Error::invalid_param("Malformed pos"))?;
        if boot != self.boot {
            return Err(unknown_pos());
        }
        positions
            .get(&key)
            .and_then(|kept| kept.iter().find(|(n, _)| *n == number))
            .map(|(_, sent)| sent.clone())
            .ok_or_else(unknown_pos)
    }

    /// Remembers what a connection has now been sent; returns its new `pos`.
    pub fn remember(&self, user: &UserId, device: &DeviceId, conn_id: &str, sent: Sent) -> String {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let key = (user.to_owned(), device.to_owned(), conn_id.to_owned());
        let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        let kept = positions.entry(key).or_default();
        kept.push_back((number, sent));
        while kept.len() > POSITIONS_KEPT {
            kept.pop_front();
        }
        format!("{}_{number}", self.boot)
    }
}
