//! Paging through a room's history (`/messages`): pagination tokens, the room event filter,
//! and history visibility applied to every event handed out.
//!
//! A token `s<N>` names the position just after the event with count N (counts are the
//! server-wide order every change gets), so `/sync`'s tokens and `/messages`' compose.

use ruma::api::client::filter::{RoomEventFilter, UrlFilter};

use super::pdu::StoredPdu;
use super::timeline::Timeline;
use super::visibility::Viewer;
use crate::error::{Error, Result};
use crate::storage::Direction;

/// Most events one page returns, whatever the client asks.
pub const MAX_LIMIT: usize = 1000;

pub fn token(count: u64) -> String {
    format!("s{count}")
}

/// Reads a token (`s<N>`, possibly followed by `_…` parts other streams add).
pub fn parse_token(token: &str) -> Result<u64> {
    token
        .strip_prefix('s')
        .and_then(|rest| rest.split('_').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::invalid_param("Invalid pagination token"))
}

/// Whether `value` matches a filter pattern (`*` is a wildcard).
fn matches_pattern(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((prefix, rest)) => {
            value.starts_with(prefix) && {
                let tail = &value[prefix.len()..];
                (0..=tail.len())
                    .any(|i| tail.is_char_boundary(i) && matches_pattern(rest, &tail[i..]))
            }
        }
    }
}

/// Whether an event of type `kind` from `sender` passes a filter's type and sender lists.
pub fn type_and_sender_pass(
    types: Option<&[String]>,
    not_types: &[String],
    senders: Option<&[ruma::OwnedUserId]>,
    not_senders: &[ruma::OwnedUserId],
    kind: &str,
    sender: &str,
) -> bool {
    types.is_none_or(|types| types.iter().any(|t| matches_pattern(t, kind)))
        && !not_types.iter().any(|t| matches_pattern(t, kind))
        && senders.is_none_or(|senders| senders.iter().any(|s| s == sender))
        && !not_senders.iter().any(|s| s == sender)
}

/// Whether an event passes a room event filter.
pub fn passes(filter: &RoomEventFilter, event: &StoredPdu) -> bool {
    let json = event.to_client_event();
    let kind = json["type"].as_str().unwrap_or_default();
    let sender = json["sender"].as_str().unwrap_or_default();
    if !type_and_sender_pass(
        filter.types.as_deref(),
        &filter.not_types,
        filter.senders.as_deref(),
        &filter.not_senders,
        kind,
        sender,
    ) {
        return false;
    }
    let has_url = json["content"]["url"].is_string();
    match filter.url_filter {
        Some(UrlFilter::EventsWithUrl) => has_url,
        Some(UrlFilter::EventsWithoutUrl) => !has_url,
        _ => true,
    }
}

pub struct Page {
    /// The events with their timeline positions.
    pub events: Vec<(u64, StoredPdu)>,
    pub start: String,
    /// Where the next page starts; `None` at the start of the timeline (backwards), or when a
    /// page forwards found nothing newer.
    pub end: Option<String>,
}

/// One page of a room's timeline for a viewer, starting at position `from` (`None`: the
/// latest event backwards, the first forwards) and stopping before position `to`.
#[allow(clippy::too_many_arguments)]
pub fn page(
    timeline: &Timeline,
    viewer: &Viewer<'_>,
    short: u64,
    from: Option<u64>,
    to: Option<u64>,
    direction: Direction,
    limit: usize,
    filter: &RoomEventFilter,
) -> Result<Page> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let (lower, upper, start) = match direction {
        // Backwards from position N: events with count <= N, down to (not including) `to`.
        Direction::Backward => {
            let from = from.unwrap_or(u64::MAX - 1);
            (to.map_or(0, |t| t + 1), from.saturating_add(1), from)
        }
        // Forwards from position N: events with count > N, up to and including `to`.
        Direction::Forward => {
            let from = from.unwrap_or(0);
            (
                from.saturating_add(1),
                to.map_or(u64::MAX, |t| t.saturating_add(1)),
                from,
            )
        }
    };
    let mut events = Vec::new();
    let mut last = None;
    let mut exhausted = true;
    for entry in timeline.scan_events(short, lower, upper, direction)? {
        let (count, stored) = entry?;
        if events.len() == limit {
            exhausted = false;
            break;
        }
        last = Some(count);
        if passes(filter, &stored) && viewer.can_see(count)? {
            events.push((count, stored));
        }
    }
    let end = match (exhausted, last, direction) {
        (_, None, _) => None,
        (false, Some(count), Direction::Backward) => Some(token(count.saturating_sub(1))),
        (true, _, Direction::Backward) => None,
        // Forwards, the newest event is not the end for good: more may be sent. A page that
        // reached it still gives a token to continue from (as Synapse does); an empty page
        // from there does not.
        (false, Some(count), Direction::Forward) => Some(token(count)),
        (true, Some(count), Direction::Forward) => to.is_none().then(|| token(count)),
    };
    Ok(Page {
        events,
        start: token(start),
        end,
    })
}

/// Up to `before` visible events before position `count` and `after` after it, for `/context`
/// and search results: the page backwards (newest first) and the page forwards.
pub fn around(
    timeline: &Timeline,
    viewer: &Viewer<'_>,
    count: u64,
    (before, after): (usize, usize),
    filter: &RoomEventFilter,
) -> Result<(Page, Page)> {
    let page = |from: u64, direction: Direction, n: usize| -> Result<Page> {
        if n == 0 {
            return Ok(Page {
                events: Vec::new(),
                start: token(from),
                end: Some(token(from)),
            });
        }
        page(
            timeline,
            viewer,
            viewer.short(),
            Some(from),
            None,
            direction,
            n,
            filter,
        )
    };
    Ok((
        page(count.saturating_sub(1), Direction::Backward, before)?,
        page(count, Direction::Forward, after)?,
    ))
}

/// The event visible to the viewer closest to `ts`: the first at or after it (forwards) or the
/// last at or before it (backwards). A linear walk of the timeline.
pub fn event_at_timestamp(
    timeline: &Timeline,
    viewer: &Viewer<'_>,
    short: u64,
    ts: u64,
    direction: Direction,
) -> Result<Option<(ruma::OwnedEventId, u64)>> {
    for entry in timeline.scan_events(short, 0, u64::MAX, direction)? {
        let (count, stored) = entry?;
        let sent = super::pdu::int_field(&stored.pdu, "origin_server_ts")
            .unwrap_or(0)
            .max(0) as u64;
        let hit = match direction {
            Direction::Forward => sent >= ts,
            Direction::Backward => sent <= ts,
        };
        if hit && viewer.can_see(count)? {
            return Ok(Some((stored.event_id, sent)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(parse_token(&token(42)).unwrap(), 42);
        assert_eq!(parse_token("s42_7_9").unwrap(), 42);
        for bad in ["", "s", "42", "sX", "t42", "s-1"] {
            assert_eq!(
                parse_token(bad).unwrap_err().errcode(),
                "M_INVALID_PARAM",
                "{bad}"
            );
        }
    }

    #[test]
    fn patterns_support_wildcards() {
        assert!(matches_pattern("m.room.*", "m.room.message"));
        assert!(matches_pattern("*", "anything"));
        assert!(matches_pattern("m.*.message", "m.room.message"));
        assert!(!matches_pattern("m.room.message", "m.room.member"));
        assert!(!matches_pattern("m.room.*", "io.sori.x"));
    }
}
