//! An appservice for the tests: serves the appservice API on loopback, records the
//! transactions and queries it gets (with their `Authorization`), answers transactions as
//! told (accept, fail with a status, or hang), and answers user and alias queries for the
//! names it is told it has: it registers the user (or makes the room) at the homeserver
//! first, as a bridge does.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// How the appservice answers a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Accept,
    Status(u16),
    Hang,
}

/// A request the appservice got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub authorization: String,
    pub body: Value,
    pub reply: Reply,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<Reply>,
    default: Option<Reply>,
    /// Users and aliases the bridge knows (answered 200 after creating them).
    users: HashSet<String>,
    aliases: HashSet<String>,
    homeserver: Option<String>,
}

pub struct TestAppservice {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    pub id: String,
    pub as_token: String,
    pub hs_token: String,
    pub sender_localpart: String,
}

impl Drop for TestAppservice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestAppservice {
    /// An appservice `id` on a free loopback port, claiming `@{id}_…` users and `#{id}_…`
    /// aliases exclusively; its own user is `@{id}_bot`.
    pub async fn start(id: &str) -> TestAppservice {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let as_token = format!("{id}-as-token");
        let hs_token = format!("{id}-hs-token");
        let sender = format!("{id}_bot");
        let (token, bot) = (as_token.clone(), sender.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(socket, shared.clone(), token.clone(), bot.clone()));
            }
        });
        TestAppservice {
            address,
            state,
            task,
            id: id.to_owned(),
            as_token,
            hs_token,
            sender_localpart: sender,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Writes the registration file into `dir`; returns its path.
    pub fn write_registration(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join(format!("{}.yaml", self.id));
        let id = &self.id;
        std::fs::write(
            &path,
            format!(
                "id: {id}\nurl: \"{url}\"\nas_token: {as_token}\nhs_token: {hs_token}\n\
                 sender_localpart: {sender}\nrate_limited: false\n\
                 de.sorunome.msc2409.push_ephemeral: true\nnamespaces:\n  users:\n    \
                 - exclusive: true\n      regex: \"@{id}_.*:localhost\"\n  aliases:\n    \
                 - exclusive: true\n      regex: \"#{id}_.*:localhost\"\n  rooms: []\n",
                url = self.url(),
                as_token = self.as_token,
                hs_token = self.hs_token,
                sender = self.sender_localpart,
            ),
        )
        .unwrap();
        path
    }

    /// The homeserver the bridge calls back to when it answers a query.
    pub fn set_homeserver(&self, url: &str) {
        self.state.lock().unwrap().homeserver = Some(url.to_owned());
    }

    pub fn knows_user(&self, user_id: &str) {
        self.state.lock().unwrap().users.insert(user_id.to_owned());
    }

    pub fn knows_alias(&self, alias: &str) {
        self.state.lock().unwrap().aliases.insert(alias.to_owned());
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    pub fn answer_all(&self, reply: Reply) {
        self.state.lock().unwrap().default = Some(reply);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The transactions it accepted: (txn id, events), in arrival order.
    pub fn accepted(&self) -> Vec<(String, Vec<Value>)> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.reply == Reply::Accept)
            .map(|r| {
                let txn = r.path.rsplit('/').next().unwrap_or_default().to_owned();
                (
                    txn,
                    r.body["events"].as_array().cloned().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Every ephemeral event of the accepted transactions, in order.
    pub fn ephemeral(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.reply == Reply::Accept)
            .flat_map(|r| r.body["ephemeral"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Every to-device message of the accepted transactions (MSC4203), in order.
    pub fn to_device(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.reply == Reply::Accept)
            .flat_map(|r| {
                r.body["de.sorunome.msc2409.to_device"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Every event of the accepted transactions, in order.
    pub fn events(&self) -> Vec<Value> {
        self.accepted().into_iter().flat_map(|(_, e)| e).collect()
    }

    /// Waits until an accepted event satisfies `found` (at most `limit`).
    pub async fn wait_for(&self, limit: Duration, found: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(event) = self.events().into_iter().find(|e| found(e)) {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "no such event in {limit:?}: {:#?}",
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    state: Arc<Mutex<State>>,
    as_token: String,
    sender: String,
) {
    let Some((head, body)) = crate::read_request(&mut socket).await else {
        return;
    };
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or("/").to_owned();
    let authorization = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("authorization")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let decoded = |raw: &str| {
        raw.replace("%40", "@")
            .replace("%3A", ":")
            .replace("%23", "#")
            .replace("%21", "!")
    };
    let reply = if method == "PUT" && path.starts_with("/_matrix/app/v1/transactions/") {
        let mut state = state.lock().unwrap();
        state
            .script
            .pop_front()
            .or_else(|| state.default.clone())
            .unwrap_or(Reply::Accept)
    } else if let Some(user) = path.strip_prefix("/_matrix/app/v1/users/") {
        let user = decoded(user);
        let (known, homeserver) = {
            let state = state.lock().unwrap();
            (state.users.contains(&user), state.homeserver.clone())
        };
        match (known, homeserver) {
            (true, Some(homeserver)) => {
                let localpart = user
                    .trim_start_matches('@')
                    .split(':')
                    .next()
                    .unwrap_or_default();
                let _ = reqwest::Client::new()
                    .post(format!("{homeserver}/_matrix/client/v3/register"))
                    .bearer_auth(&as_token)
                    .json(&json!({"type": "m.login.application_service", "username": localpart, "inhibit_login": true}))
                    .send()
                    .await;
                Reply::Accept
            }
            _ => Reply::Status(404),
        }
    } else if let Some(alias) = path.strip_prefix("/_matrix/app/v1/rooms/") {
        let alias = decoded(alias);
        let (known, homeserver) = {
            let state = state.lock().unwrap();
            (state.aliases.contains(&alias), state.homeserver.clone())
        };
        match (known, homeserver) {
            (true, Some(homeserver)) => {
                let name = alias
                    .trim_start_matches('#')
                    .split(':')
                    .next()
                    .unwrap_or_default();
                let _ = reqwest::Client::new()
                    .post(format!(
                        "{homeserver}/_matrix/client/v3/createRoom?user_id=@{sender}:localhost"
                    ))
                    .bearer_auth(&as_token)
                    .json(&json!({"room_alias_name": name, "preset": "public_chat"}))
                    .send()
                    .await;
                Reply::Accept
            }
            _ => Reply::Status(404),
        }
    } else {
        Reply::Accept
    };
    state.lock().unwrap().received.push(Received {
        method,
        path,
        authorization,
        body,
        reply: reply.clone(),
    });
    let (status, answer) = match reply {
        Reply::Accept => (200, "{}".to_owned()),
        Reply::Status(status) => (
            status,
            r#"{"errcode":"M_UNKNOWN","error":"down"}"#.to_owned(),
        ),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            return;
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
}
