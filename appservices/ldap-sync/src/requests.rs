//! Syncs on demand. The admin room's `!admin ldap sync` reaches the daemon as a to-device
//! message from the server's bot to the bridge's bot (`io.sori.ldap_sync.request`, with the
//! room, the command's event and whether it is a dry run); the daemon long-polls `/sync` for
//! them on a device of its own, syncs, and answers the command in the room.

use serde_json::{Value, json};

use crate::matrix::{Failure, Homeserver};

/// The to-device event type of a request.
const REQUEST_TYPE: &str = "io.sori.ldap_sync.request";
/// The bot's device, the same across restarts.
const DEVICE_ID: &str = "SORI_LDAP_SYNC";
/// How long one `/sync` waits for a request.
const POLL_MS: u64 = 25_000;
/// Changes listed at most in a dry run's answer.
const MAX_LISTED: usize = 50;

/// A request for a sync.
#[derive(Debug)]
pub struct Request {
    pub room_id: String,
    pub event_id: String,
    pub dry_run: bool,
}

/// The bot's device, listening for requests.
pub struct Listener {
    token: String,
    since: Option<String>,
}

impl Listener {
    /// Signs the bot in on its device (the same one each time).
    pub async fn start(homeserver: &Homeserver) -> Result<Self, Failure> {
        let token = homeserver.login_bot(DEVICE_ID).await?;
        Ok(Self { token, since: None })
    }

    /// The next requests (none when the poll timed out). Only the server's own bot may ask.
    pub async fn next(&mut self, homeserver: &Homeserver) -> Result<Vec<Request>, Failure> {
        let synced = homeserver
            .sync_to_device(&self.token, self.since.as_deref(), POLL_MS)
            .await?;
        self.since = synced["next_batch"].as_str().map(str::to_owned);
        let server_bot = format!("@sori:{}", homeserver.server_name);
        Ok(synced["to_device"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == REQUEST_TYPE && e["sender"] == server_bot.as_str())
            .filter_map(|e| {
                Some(Request {
                    room_id: e["content"]["room_id"].as_str()?.to_owned(),
                    event_id: e["content"]["event_id"].as_str()?.to_owned(),
                    dry_run: e["content"]["dry_run"].as_bool().unwrap_or(false),
                })
            })
            .collect())
    }
}

/// The answer to a request: the summary line, and for a dry run the changes it would make.
pub fn answer_text(outcome: &Result<crate::sync::Summary, String>, dry_run: bool) -> String {
    match outcome {
        Err(e) => format!("Directory sync failed, nothing was changed: {e}"),
        Ok(summary) => {
            let mut text = format!(
                "Directory {}: {}",
                if dry_run { "dry run" } else { "sync" },
                summary.line()
            );
            if dry_run {
                for change in summary.changes.iter().take(MAX_LISTED) {
                    text.push_str(&format!("\nwould {change}"));
                }
                if summary.changes.len() > MAX_LISTED {
                    text.push_str(&format!(
                        "\n… and {} more",
                        summary.changes.len() - MAX_LISTED
                    ));
                }
            }
            text
        }
    }
}

/// Answers the request's command in its room (joining it first: the server's bot invited
/// the bridge's bot when it passed the request on).
pub async fn answer(homeserver: &Homeserver, request: &Request, text: &str) -> Result<(), Failure> {
    homeserver.join(&request.room_id).await?;
    let content: Value = json!({
        "msgtype": "m.notice",
        "body": text,
        "m.relates_to": {"m.in_reply_to": {"event_id": request.event_id}},
    });
    homeserver.send_message(&request.room_id, &content).await
}
