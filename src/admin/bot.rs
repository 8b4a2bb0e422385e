//! The admin room: on first start Sori makes `#admins:<server_name>` (private, unencrypted),
//! owned by its bot `@sori:<server_name>`, and invites every admin (and each user who becomes
//! one later). The bot answers `!admin …` commands from admins with an `m.notice` and audits
//! every command. Its answer and how far it has read are stored in one commit, so a crash
//! never answers a command twice nor skips one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ruma::events::TimelineEventType;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::json;

use super::audit::Origin;
use super::commands::{AdminCommand, Reply, execute, words};
use super::ldap::Invocation;
use crate::error::{Error, Result};
use crate::rooms::membership::{self, Change};
use crate::rooms::timeline::NewEvent;
use crate::services::Services;
use crate::storage::{StoreExt, Table};
use crate::users::accounts::Role;

/// The bot's localpart.
pub const BOT: &str = "sori";
/// How the bot's account is marked: it has no password and nobody signs in as it.
pub const BOT_ACCOUNT: &str = "server";
/// Where the `Global` table keeps the position of the last command answered.
const CURSOR_KEY: &[u8] = b"admin_room_cursor";
/// Longest command line read; longer messages get a refusal.
pub const MAX_COMMAND_BYTES: usize = 2048;
/// Looks for new admins this often even without a wake-up.
const IDLE: Duration = Duration::from_secs(30);

pub fn bot_id(services: &Services) -> Result<OwnedUserId> {
    UserId::parse_with_server_name(BOT, &services.config.server_name)
        .map_err(|e| Error::internal(format!("bot id: {e}")))
}

fn admins_alias(services: &Services) -> Result<OwnedRoomAliasId> {
    OwnedRoomAliasId::try_from(format!("#admins:{}", services.config.server_name))
        .map_err(|e| Error::internal(format!("admin room alias: {e}")))
}

/// Makes sure the bot and the admin room exist; returns the room.
pub async fn ensure_room(services: &Services) -> Result<OwnedRoomId> {
    let bot = bot_id(services)?;
    match services.accounts.get(&bot)? {
        Some(account) if account.signs_in_with.as_deref() == Some(BOT_ACCOUNT) => {}
        Some(_) => {
            return Err(Error::internal(format!(
                "{bot} is someone's account: the admin room needs it for its bot"
            )));
        }
        None => {
            services
                .accounts
                .create_external(&bot, BOT_ACCOUNT, Role::User, &Origin::server())
                .await?;
            services
                .profiles
                .set_field(&bot, "displayname", Some("Sori".into()))?;
        }
    }
    let alias = admins_alias(services)?;
    if let Some(room_id) = services.aliases.resolve(&alias)? {
        let joined = services
            .timeline
            .membership(&room_id, &bot)?
            .is_some_and(|m| m.membership == "join");
        if !joined {
            return Err(Error::internal(format!(
                "{alias} names a room the bot is not in"
            )));
        }
        return Ok(room_id);
    }
    let options = crate::rooms::create::CreateOptions {
        preset: Some(crate::rooms::create::Preset::PrivateChat),
        name: Some("Sori admins".to_owned()),
        topic: Some("Server administration. Type !admin help".to_owned()),
        alias: Some(alias),
        encrypt_private: false,
        ..Default::default()
    };
    let room_id =
        crate::rooms::create::create_room(&services.timeline, &services.aliases, &bot, options)
            .await?;
    tracing::info!(%room_id, "admin room created");
    Ok(room_id)
}

/// Runs the bot for the life of the server.
pub async fn run(services: Arc<Services>) {
    let room_id = match ensure_room(&services).await {
        Ok(room_id) => room_id,
        Err(error) => {
            tracing::error!(%error, "no admin room");
            return;
        }
    };
    let Ok(bot) = bot_id(&services) else { return };
    let mut invited: HashSet<OwnedUserId> = HashSet::new();
    let mut cursor = match services.store.get(Table::Global, CURSOR_KEY) {
        Ok(Some(bytes)) => crate::storage::keys::trailing_u64(&bytes).unwrap_or(0),
        // First start: whatever is in the room already is no command to answer. Stored at
        // once, so a command sent before the first answer is not skipped after a crash.
        Ok(None) => {
            let start = services.store.committed_count();
            let stored = services.store.put(
                Table::Global,
                CURSOR_KEY.to_vec(),
                crate::storage::keys::u64_be(start).to_vec(),
            );
            if let Err(error) = stored {
                tracing::error!(%error, "no admin room");
                return;
            }
            start
        }
        Err(error) => {
            tracing::error!(%error, "no admin room");
            return;
        }
    };
    let role_changes = services.accounts.role_changes.clone();
    loop {
        let wake = services.watchers.watch(&bot);
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if let Err(error) = invite_admins(&services, &room_id, &bot, &mut invited).await {
            tracing::warn!(%error, "inviting admins to the admin room");
        }
        match answer_new(&services, &room_id, &bot, &mut cursor).await {
            Ok(()) => {}
            Err(error) => tracing::error!(%error, "admin room"),
        }
        tokio::select! {
            _ = woken => {}
            _ = role_changes.notified() => {}
            _ = tokio::time::sleep(IDLE) => {}
        }
    }
}

/// Invites admins who are not in the room (once per admin while the server runs).
async fn invite_admins(
    services: &Services,
    room_id: &RoomId,
    bot: &UserId,
    invited: &mut HashSet<OwnedUserId>,
) -> Result<()> {
    let admins: Vec<OwnedUserId> = services
        .accounts
        .all()?
        .into_iter()
        .filter(|(_, a)| a.role == Role::Admin && !a.deactivated)
        .map(|(user, _)| user)
        .collect();
    // One who stops being an admin is invited again on becoming one.
    invited.retain(|user| admins.contains(user));
    for admin in admins {
        if invited.contains(&admin) {
            continue;
        }
        let membership = services.timeline.membership(room_id, &admin)?;
        if !membership.is_some_and(|m| matches!(m.membership.as_str(), "join" | "invite")) {
            membership::change(
                &services.timeline,
                Change {
                    reason: Some("You are a server admin"),
                    ..Change::new(room_id, bot, &admin, "invite")
                },
            )
            .await?;
        }
        invited.insert(admin);
    }
    Ok(())
}

/// Answers every command sent since `cursor`.
async fn answer_new(
    services: &Arc<Services>,
    room_id: &RoomId,
    bot: &UserId,
    cursor: &mut u64,
) -> Result<()> {
    let record = services
        .timeline
        .room(room_id)?
        .ok_or_else(|| Error::internal("the admin room is gone"))?;
    let events: Vec<(u64, crate::rooms::pdu::StoredPdu)> = services
        .timeline
        .scan_events(
            record.short,
            cursor.saturating_add(1),
            u64::MAX,
            crate::storage::Direction::Forward,
        )?
        .collect::<Result<_>>()?;
    for (count, event) in events {
        *cursor = count;
        let client = event.to_client_event();
        let body = client["content"]["body"].as_str().unwrap_or_default();
        if client["type"] != "m.room.message"
            || client["sender"] == bot.as_str()
            || !body.starts_with("!admin")
        {
            continue;
        }
        let Ok(sender) = OwnedUserId::try_from(client["sender"].as_str().unwrap_or_default())
        else {
            continue;
        };
        let at = Invocation {
            room_id,
            event_id: &event.event_id,
        };
        let reply = answer(services, &sender, body, &at).await;
        send_reply(services, room_id, bot, &event.event_id, count, reply).await?;
    }
    Ok(())
}

/// The answer to one command line from `sender` (audited, whatever the outcome).
async fn answer(
    services: &Arc<Services>,
    sender: &UserId,
    line: &str,
    at: &Invocation<'_>,
) -> Reply {
    let origin = Origin {
        actor: Some(sender.to_owned()),
        ip: None,
        user_agent: Some("admin room".to_owned()),
    };
    let is_admin = services
        .accounts
        .get(sender)
        .ok()
        .flatten()
        .is_some_and(|a| a.role == Role::Admin && !a.deactivated);
    let (reply, outcome) = if line.len() > MAX_COMMAND_BYTES {
        (
            Reply::default().line(&format!(
                "Refused: commands are at most {MAX_COMMAND_BYTES} bytes"
            )),
            "refused",
        )
    } else if !is_admin {
        (
            Reply::default().line("Refused: only server admins may run admin commands"),
            "refused",
        )
    } else {
        let parsed = words(line).map_err(|e| (e, "usage")).and_then(|words| {
            AdminCommand::try_parse_from(words).map_err(|e| {
                let asked = matches!(e.kind(), clap::error::ErrorKind::DisplayHelp);
                (e.render().to_string(), if asked { "help" } else { "usage" })
            })
        });
        match parsed {
            Err((usage, outcome)) => (Reply::default().block(&usage), outcome),
            Ok(parsed) => match execute(services, parsed.command, &origin, at).await {
                Ok(reply) => (reply, "done"),
                Err(error) => (Reply::default().line(&format!("Failed: {error}")), "failed"),
            },
        }
    };
    let details = json!({"command": crate::admin::audit::clip(line), "outcome": outcome});
    if let Err(error) = services
        .audit
        .record(origin.record("admin_command", "", details))
    {
        tracing::error!(%error, "auditing an admin command");
    }
    reply
}

/// Sends the answer as an `m.notice` replying to the command, and stores how far the bot has
/// read in the same commit.
async fn send_reply(
    services: &Services,
    room_id: &RoomId,
    bot: &UserId,
    command: &ruma::EventId,
    count: u64,
    reply: Reply,
) -> Result<()> {
    let content = json!({
        "msgtype": "m.notice",
        "body": reply.text,
        "format": "org.matrix.custom.html",
        "formatted_body": reply.html,
        "m.relates_to": {"m.in_reply_to": {"event_id": command}},
    });
    let mut draft = services.timeline.draft();
    draft.lock(room_id).await;
    draft
        .send(
            room_id,
            bot,
            NewEvent {
                kind: TimelineEventType::RoomMessage,
                content: serde_json::value::to_raw_value(&content)
                    .map_err(|e| Error::internal(format!("reply: {e}")))?,
                state_key: None,
            },
            None,
        )
        .await?;
    draft.also().put(
        Table::Global,
        CURSOR_KEY.to_vec(),
        crate::storage::keys::u64_be(count).to_vec(),
    );
    draft.commit()
}
