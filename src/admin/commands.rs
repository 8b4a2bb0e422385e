//! The admin room's commands (`!admin users list`, …): parsed with clap, so each has
//! `--help` and a wrong one gets its usage, and carried out against the services with the
//! sending admin as the actor (each action audits itself as well).

use std::sync::Arc;

use clap::{Parser, Subcommand};
use ruma::{OwnedRoomId, OwnedUserId};

use crate::admin::audit::Origin;
use crate::admin::ldap::Invocation;
use crate::admin::rooms::{self, DeleteOptions};
use crate::admin::users::{self, ListQuery};
use crate::error::{Error, Result};
use crate::services::Services;
use crate::storage::{Direction, KeyRange, Table};
use crate::users::accounts::Role;

/// Most entries a list shows in one answer.
const MAX_LISTED: usize = 100;

#[derive(Debug, Parser)]
#[command(
    name = "!admin",
    about = "Sori's admin commands. Each has --help.",
    disable_version_flag = true
)]
pub struct AdminCommand {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, look up, create, deactivate users; reset passwords; set server roles.
    #[command(subcommand)]
    Users(UsersCommand),
    /// List and look up rooms; delete a room.
    #[command(subcommand)]
    Rooms(RoomsCommand),
    /// Quarantine a file.
    #[command(subcommand)]
    Media(MediaCommand),
    /// The server's version and figures.
    #[command(subcommand)]
    Server(ServerCommand),
    /// The directory bridge (sori-ldap-sync).
    #[command(subcommand)]
    Ldap(LdapCommand),
}

#[derive(Debug, Subcommand)]
pub enum LdapCommand {
    /// Ask the directory bridge for a sync now; it answers here when done.
    Sync {
        /// Only list the changes a sync would make.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Every user (active ones unless --deactivated).
    List {
        /// Only users with this server role (admin, auditor, user).
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        /// Include deactivated accounts.
        #[arg(long)]
        deactivated: bool,
    },
    /// One user's account, role, devices and rooms.
    Info { user: String },
    /// Create an account (a password is generated when none is given).
    Create {
        name: String,
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        password: Option<String>,
    },
    /// Deactivate an account: logged out, out of every room, no more logins.
    Deactivate { user: String },
    /// Give the user a new generated password and log out their devices.
    ResetPassword { user: String },
    /// Set the server role: admin, auditor or user.
    SetRole {
        user: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoomsCommand {
    /// Every room on this server.
    List,
    /// One room (by id or alias).
    Info { room: String },
    /// Delete a room: everyone leaves, aliases go, events are purged.
    Delete {
        room: String,
        /// Keep everyone out of the room id for good.
        #[arg(long)]
        block: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MediaCommand {
    /// Keep a file (mxc://server/id) but serve it to nobody.
    Quarantine { mxc: String },
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// The server's name and version.
    Version,
    /// Users, rooms, events, media bytes and store size.
    Stats,
}

fn parse_role(text: &str) -> std::result::Result<Role, String> {
    match text {
        "admin" => Ok(Role::Admin),
        "auditor" => Ok(Role::Auditor),
        "user" => Ok(Role::User),
        _ => Err("expected admin, auditor or user".to_owned()),
    }
}

/// Splits a command line into words; "double quotes" keep spaces in one word.
pub fn words(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("A quote is not closed".to_owned());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// An answer: Markdown for the body, HTML for `formatted_body`.
#[derive(Debug, Default)]
pub struct Reply {
    pub text: String,
    pub html: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Reply {
    pub fn line(mut self, text: &str) -> Self {
        self.text.push_str(text);
        self.text.push('\n');
        self.html.push_str(&format!("<p>{}</p>", escape(text)));
        self
    }

    /// Preformatted text (usage, help): as a code block.
    pub fn block(mut self, text: &str) -> Self {
        self.text
            .push_str(&format!("```\n{}\n```\n", text.trim_end()));
        self.html.push_str(&format!(
            "<pre><code>{}</code></pre>",
            escape(text.trim_end())
        ));
        self
    }

    pub fn items(mut self, items: &[String]) -> Self {
        self.html.push_str("<ul>");
        for item in items {
            self.text.push_str(&format!("- {item}\n"));
            self.html.push_str(&format!("<li>{}</li>", escape(item)));
        }
        self.html.push_str("</ul>");
        self
    }
}

fn user(services: &Services, name: &str) -> Result<OwnedUserId> {
    let user_id = services
        .accounts
        .parse_login_name(name)
        .ok_or_else(|| Error::invalid_param(format!("{name} is not a user of this server")))?;
    if !services.accounts.exists(&user_id)? {
        return Err(Error::not_found(format!("No such user: {user_id}")));
    }
    Ok(user_id)
}

fn room(services: &Services, name: &str) -> Result<OwnedRoomId> {
    let room_id = if name.starts_with('#') {
        let alias = ruma::OwnedRoomAliasId::try_from(name)
            .map_err(|_| Error::invalid_param(format!("{name} is not a room alias")))?;
        services
            .aliases
            .resolve(&alias)?
            .ok_or_else(|| Error::not_found(format!("No room has the alias {name}")))?
    } else {
        OwnedRoomId::try_from(name)
            .map_err(|_| Error::invalid_param(format!("{name} is not a room id or alias")))?
    };
    if services.timeline.room(&room_id)?.is_none() {
        return Err(Error::not_found(format!("No such room: {room_id}")));
    }
    Ok(room_id)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Auditor => "auditor",
        Role::User => "user",
    }
}

fn listed<T>(items: Vec<T>, show: impl Fn(&T) -> String) -> Vec<String> {
    let total = items.len();
    let mut shown: Vec<String> = items.iter().take(MAX_LISTED).map(show).collect();
    if total > MAX_LISTED {
        shown.push(format!("… and {} more", total - MAX_LISTED));
    }
    shown
}

/// Carries out a parsed command for the admin `origin` names, given at `at`.
pub async fn execute(
    services: &Arc<Services>,
    command: Command,
    origin: &Origin,
    at: &Invocation<'_>,
) -> Result<Reply> {
    let admin = origin
        .actor
        .clone()
        .ok_or_else(|| Error::internal("an admin command without its admin"))?;
    match command {
        Command::Users(command) => users_command(services, command, origin).await,
        Command::Rooms(command) => rooms_command(services, command, origin, admin).await,
        Command::Media(MediaCommand::Quarantine { mxc }) => {
            let (server, media_id) = mxc
                .strip_prefix("mxc://")
                .and_then(|rest| rest.split_once('/'))
                .ok_or_else(|| Error::invalid_param("Expected mxc://server/id"))?;
            if !services.media.is_local(server) {
                return Err(Error::invalid_param(
                    "Only files of this server can be quarantined",
                ));
            }
            if !services
                .media
                .quarantine(media_id, &admin, &services.audit, origin)?
            {
                return Err(Error::not_found(format!("No such file: {mxc}")));
            }
            Ok(Reply::default().line(&format!("Quarantined {mxc}: nobody can download it now.")))
        }
        Command::Server(ServerCommand::Version) => Ok(Reply::default().line(&format!(
            "{} runs Sori {}",
            services.config.server_name,
            env!("CARGO_PKG_VERSION")
        ))),
        Command::Ldap(LdapCommand::Sync { dry_run }) => {
            let bot = crate::admin::bot::bot_id(services)?;
            crate::admin::ldap::request_sync(services, &bot, at, dry_run).await
        }
        Command::Server(ServerCommand::Stats) => {
            let services = services.clone();
            tokio::task::spawn_blocking(move || stats(&services))
                .await
                .map_err(|e| Error::internal(format!("stats: {e}")))?
        }
    }
}

async fn users_command(
    services: &Arc<Services>,
    command: UsersCommand,
    origin: &Origin,
) -> Result<Reply> {
    match command {
        UsersCommand::List { role, deactivated } => {
            let found = users::list(
                services,
                &ListQuery {
                    role,
                    deactivated,
                    ..Default::default()
                },
            )?;
            let count = found.len();
            let items = listed(found, |u| {
                let mut line = format!("{} ({})", u.user_id, role_name(u.account.role));
                if let Some(name) = &u.displayname {
                    line = format!("{name} — {line}");
                }
                if u.account.deactivated {
                    line.push_str(", deactivated");
                }
                line
            });
            Ok(Reply::default()
                .line(&format!("{count} users"))
                .items(&items))
        }
        UsersCommand::Info { user: name } => {
            let user_id = user(services, &name)?;
            let view = users::view(services, &user_id)?
                .ok_or_else(|| Error::not_found(format!("No such user: {user_id}")))?;
            let devices = services.sessions.devices(&user_id)?.len();
            let rooms = services.timeline.joined_rooms(&user_id)?.len();
            let mut items = vec![
                format!("role: {}", role_name(view.account.role)),
                format!(
                    "display name: {}",
                    view.displayname.as_deref().unwrap_or("-")
                ),
                format!("deactivated: {}", view.account.deactivated),
                format!(
                    "signs in with: {}",
                    view.account.signs_in_with.as_deref().unwrap_or("password")
                ),
                format!("created: {} (ms)", view.account.created_ts),
                format!("devices: {devices}"),
                format!("joined rooms: {rooms}"),
            ];
            if let Some(seen) = view.last_seen_ts {
                items.push(format!("last seen: {seen} (ms)"));
            }
            Ok(Reply::default().line(user_id.as_str()).items(&items))
        }
        UsersCommand::Create {
            name,
            admin,
            password,
        } => {
            let user_id = services.accounts.user_id_for(&name)?;
            let generated = password.is_none();
            let password = password.unwrap_or_else(crate::random::password);
            let role = if admin { Role::Admin } else { Role::User };
            services
                .accounts
                .create(&user_id, Some(password.clone()), role, origin)
                .await?;
            services.profiles.set_field(
                &user_id,
                "displayname",
                Some(user_id.localpart().into()),
            )?;
            let reply = Reply::default().line(&format!(
                "Created {user_id}{}",
                if admin { " (admin)" } else { "" }
            ));
            Ok(if generated {
                reply.line(&format!("Password: {password} (ask them to change it)"))
            } else {
                reply
            })
        }
        UsersCommand::Deactivate { user: name } => {
            let user_id = user(services, &name)?;
            if services.accounts.is_last_admin(&user_id)? {
                return Err(Error::forbidden("The last admin cannot be deactivated"));
            }
            crate::users::removal::deactivate(services, &user_id, false, origin).await?;
            Ok(Reply::default().line(&format!("Deactivated {user_id}")))
        }
        UsersCommand::ResetPassword { user: name } => {
            let user_id = user(services, &name)?;
            services
                .signin
                .check_password_change(&services.accounts, &user_id)?;
            let password = crate::random::password();
            services
                .accounts
                .set_password(&user_id, password.clone(), origin)
                .await?;
            crate::users::removal::delete_devices(services, &user_id, None, None, origin)?;
            Ok(Reply::default()
                .line(&format!("New password for {user_id}: {password}"))
                .line("Their devices are logged out; ask them to change it."))
        }
        UsersCommand::SetRole { user: name, role } => {
            let user_id = user(services, &name)?;
            services.accounts.change_role(&user_id, role, origin)?;
            Ok(Reply::default().line(&format!("{user_id} is now {}", role_name(role))))
        }
    }
}

async fn rooms_command(
    services: &Arc<Services>,
    command: RoomsCommand,
    origin: &Origin,
    admin: OwnedUserId,
) -> Result<Reply> {
    match command {
        RoomsCommand::List => {
            let mut found = rooms::all(services)?;
            found.sort_by_key(|r| std::cmp::Reverse(r.joined_members));
            let count = found.len();
            let items = listed(found, |r| {
                format!(
                    "{} — {} ({} members)",
                    r.name.as_deref().unwrap_or("(no name)"),
                    r.canonical_alias.as_deref().unwrap_or(r.room_id.as_str()),
                    r.joined_members
                )
            });
            Ok(Reply::default()
                .line(&format!("{count} rooms"))
                .items(&items))
        }
        RoomsCommand::Info { room: name } => {
            let room_id = room(services, &name)?;
            let view = rooms::view(services, &room_id)?
                .ok_or_else(|| Error::not_found(format!("No such room: {room_id}")))?;
            let items = vec![
                format!("name: {}", view.name.as_deref().unwrap_or("-")),
                format!("alias: {}", view.canonical_alias.as_deref().unwrap_or("-")),
                format!("creator: {}", view.creator.as_deref().unwrap_or("-")),
                format!("version: {}", view.version),
                format!(
                    "members: {} joined, {} invited",
                    view.joined_members, view.invited_members
                ),
                format!(
                    "encryption: {}",
                    view.encryption.as_deref().unwrap_or("off")
                ),
                format!("join rule: {}", view.join_rules.as_deref().unwrap_or("-")),
                format!("in the directory: {}", view.public),
                format!("state events: {}", view.state_events),
            ];
            Ok(Reply::default().line(room_id.as_str()).items(&items))
        }
        RoomsCommand::Delete { room: name, block } => {
            let room_id = room(services, &name)?;
            let options = DeleteOptions {
                block,
                purge: true,
                ..Default::default()
            };
            let delete_id = rooms::start_delete(services, &room_id, &options, origin)?;
            let done =
                rooms::run_delete(services.clone(), delete_id, room_id.clone(), options, admin)
                    .await;
            if let Some(error) = done.error {
                return Err(Error::internal(error));
            }
            Ok(Reply::default().line(&format!(
                "Deleted {room_id}: {} members removed{}",
                done.shutdown_room.kicked_users.len(),
                if block { ", blocked" } else { "" }
            )))
        }
    }
}

fn stats(services: &Services) -> Result<Reply> {
    let users = services.accounts.active_users()?.len();
    let rooms = services
        .store
        .scan(Table::Rooms, KeyRange::all(), Direction::Forward)?
        .count();
    let events = services
        .store
        .scan(Table::Pdus, KeyRange::all(), Direction::Forward)?
        .count();
    let mut media_bytes = 0u64;
    for entry in services.media.records()? {
        let (_, record) = entry?;
        media_bytes += record.content.map_or(0, |c| c.size);
    }
    let store_bytes = directory_size(&services.config.storage.path);
    Ok(Reply::default().line("Server figures").items(&[
        format!("active users: {users}"),
        format!("rooms: {rooms}"),
        format!("events: {events}"),
        format!("media: {media_bytes} bytes"),
        format!("store: {store_bytes} bytes on disk"),
    ]))
}

/// The bytes of every file under `path`.
fn directory_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_spaces_and_keep_quoted_ones() {
        assert_eq!(
            words(r#"!admin users create  "kim min" --password "a b""#).unwrap(),
            ["!admin", "users", "create", "kim min", "--password", "a b"]
        );
        assert_eq!(words(r#"say """#).unwrap(), ["say", ""]);
        assert!(words(r#"!admin "open"#).is_err());
    }

    #[test]
    fn commands_parse_and_wrong_ones_get_usage() {
        let parse = |line: &str| AdminCommand::try_parse_from(words(line).unwrap());
        assert!(matches!(
            parse("!admin users set-role alice auditor")
                .unwrap()
                .command,
            Command::Users(UsersCommand::SetRole {
                role: Role::Auditor,
                ..
            })
        ));
        assert!(matches!(
            parse("!admin users list --role admin --deactivated")
                .unwrap()
                .command,
            Command::Users(UsersCommand::List {
                role: Some(Role::Admin),
                deactivated: true
            })
        ));
        assert!(matches!(
            parse("!admin ldap sync --dry-run").unwrap().command,
            Command::Ldap(LdapCommand::Sync { dry_run: true })
        ));
        for wrong in [
            "!admin",
            "!admin ldap",
            "!admin frobnicate",
            "!admin users info",
            "!admin users info a b",
            "!admin users set-role alice king",
        ] {
            let error = parse(wrong).unwrap_err().render().to_string();
            // A usage line, or what was wrong with the value and where to find help.
            assert!(
                error.contains("Usage") || error.contains("--help"),
                "{wrong}: {error}"
            );
        }
        let help = parse("!admin help").unwrap_err().render().to_string();
        assert!(help.contains("users") && help.contains("rooms"), "{help}");
    }

    #[test]
    fn replies_escape_html() {
        let reply = Reply::default().line("<b>&").items(&["x<y".to_owned()]);
        assert_eq!(reply.html, "<p>&lt;b&gt;&amp;</p><ul><li>x&lt;y</li></ul>");
        assert_eq!(reply.text, "<b>&\n- x<y\n");
    }
}
