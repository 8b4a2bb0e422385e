//! The homeserver, through the appservice API: the bridge's bot makes spaces and rooms and
//! invites; each person's account is registered, deactivated, brought back and given its
//! profile by acting as them (`?user_id=`).

use reqwest::Method;
use serde_json::{Value, json};

pub struct Homeserver {
    http: reqwest::Client,
    base: String,
    token: String,
    pub server_name: String,
    pub bot: String,
}

/// A failed call: the status and the homeserver's errcode.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    pub errcode: String,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.errcode, self.message)
    }
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Homeserver {
    pub async fn connect(base: &str, token: &str, bot_localpart: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let mut homeserver = Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            server_name: String::new(),
            bot: String::new(),
        };
        let me = homeserver
            .call(Method::GET, "/_matrix/client/v3/account/whoami", None, None)
            .await
            .map_err(|e| format!("the homeserver does not accept the bridge's token: {e}"))?;
        let bot = me["user_id"].as_str().unwrap_or_default().to_owned();
        let Some((_, server)) = bot.split_once(':') else {
            return Err("whoami gave no user id".to_owned());
        };
        if !bot.starts_with(&format!("@{bot_localpart}:")) {
            return Err(format!("the token acts for {bot}, not @{bot_localpart}"));
        }
        homeserver.server_name = server.to_owned();
        homeserver.bot = bot;
        Ok(homeserver)
    }

    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }

    /// A client API call, as the bot or as `user`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        user: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let mut path = path.to_owned();
        if let Some(user) = user {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(&format!("user_id={}", encode(user)));
        }
        self.call_with(&self.token, method, &path, body).await
    }

    /// A client API call with `token` (the bot's device's, for `/sync`).
    async fn call_with(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| Failure {
            status: 0,
            errcode: "M_CONNECTION_FAILED".into(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(Failure {
                status,
                errcode: value["errcode"].as_str().unwrap_or("M_UNKNOWN").to_owned(),
                message: value["error"].as_str().unwrap_or_default().to_owned(),
            })
        }
    }

    /// Registers the person (or brings back one the bridge deactivated).
    pub async fn register(&self, localpart: &str) -> Result<(), Failure> {
        let body = json!({"type": "m.login.application_service", "username": localpart, "inhibit_login": true});
        match self
            .call(
                Method::POST,
                "/_matrix/client/v3/register",
                None,
                Some(&body),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if f.errcode == "M_USER_IN_USE" => Ok(()),
            Err(f) => Err(f),
        }
    }

    pub async fn deactivate(&self, user: &str) -> Result<(), Failure> {
        match self
            .call(
                Method::POST,
                "/_matrix/client/v3/account/deactivate",
                Some(user),
                Some(&json!({})),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Gone already (deactivated some other way).
            Err(f) if f.status == 403 => Ok(()),
            Err(f) => Err(f),
        }
    }

    /// Sets (or, with `None`, removes) a profile field of the user.
    pub async fn set_profile(
        &self,
        user: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), Failure> {
        let path = format!(
            "/_matrix/client/v3/profile/{}/{}",
            encode(user),
            encode(key)
        );
        match value {
            Some(value) => self
                .call(Method::PUT, &path, Some(user), Some(&json!({ key: value })))
                .await
                .map(drop),
            None => self
                .call(Method::DELETE, &path, Some(user), None)
                .await
                .map(drop),
        }
    }

    /// The room an alias names, if any.
    pub async fn resolve(&self, alias: &str) -> Result<Option<String>, Failure> {
        let path = format!("/_matrix/client/v3/directory/room/{}", encode(alias));
        match self.call(Method::GET, &path, None, None).await {
            Ok(v) => Ok(v["room_id"].as_str().map(str::to_owned)),
            Err(f) if f.status == 404 => Ok(None),
            Err(f) => Err(f),
        }
    }

    /// The room (or space) with this alias, made by the bot when missing.
    pub async fn ensure_room(
        &self,
        alias_localpart: &str,
        name: &str,
        space: bool,
    ) -> Result<String, Failure> {
        let alias = format!("#{alias_localpart}:{}", self.server_name);
        if let Some(room) = self.resolve(&alias).await? {
            return Ok(room);
        }
        let mut body =
            json!({"room_alias_name": alias_localpart, "name": name, "preset": "private_chat"});
        if space {
            body["creation_content"] = json!({"type": "m.space"});
        }
        let created = self
            .call(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                None,
                Some(&body),
            )
            .await?;
        Ok(created["room_id"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn set_state(
        &self,
        room: &str,
        kind: &str,
        state_key: &str,
        content: &Value,
    ) -> Result<(), Failure> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/{kind}/{}",
            encode(room),
            encode(state_key)
        );
        self.call(Method::PUT, &path, None, Some(content))
            .await
            .map(drop)
    }

    /// Makes `child` a child of the space `parent` (and says so in the child).
    pub async fn link(&self, parent: &str, child: &str) -> Result<(), Failure> {
        let via = json!({"via": [self.server_name]});
        self.set_state(parent, "m.space.child", child, &via).await?;
        let mut canonical = via;
        canonical["canonical"] = true.into();
        self.set_state(child, "m.space.parent", parent, &canonical)
            .await
    }

    /// Takes `child` out of the space `parent`.
    pub async fn unlink(&self, parent: &str, child: &str) -> Result<(), Failure> {
        self.set_state(parent, "m.space.child", child, &json!({}))
            .await?;
        self.set_state(child, "m.space.parent", parent, &json!({}))
            .await
    }

    /// Invites (as the bot) and joins (as the user); already in is fine.
    pub async fn add_member(&self, room: &str, user: &str) -> Result<(), Failure> {
        let invite = format!("/_matrix/client/v3/rooms/{}/invite", encode(room));
        match self
            .call(Method::POST, &invite, None, Some(&json!({"user_id": user})))
            .await
        {
            Ok(_) => {}
            // Already joined (or invited): the join below settles it.
            Err(f) if f.status == 403 => {}
            Err(f) => return Err(f),
        }
        let join = format!("/_matrix/client/v3/rooms/{}/join", encode(room));
        self.call(Method::POST, &join, Some(user), Some(&json!({})))
            .await
            .map(drop)
    }

    /// The user leaves (as themself); not in it is fine.
    pub async fn remove_member(&self, room: &str, user: &str) -> Result<(), Failure> {
        let leave = format!("/_matrix/client/v3/rooms/{}/leave", encode(room));
        match self
            .call(Method::POST, &leave, Some(user), Some(&json!({})))
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if f.status == 403 || f.status == 404 => Ok(()),
            Err(f) => Err(f),
        }
    }

    /// Signs the bot in on `device_id` (kept across restarts); returns the device's token.
    pub async fn login_bot(&self, device_id: &str) -> Result<String, Failure> {
        let body = json!({
            "type": "m.login.application_service",
            "identifier": {"type": "m.id.user", "user": self.bot},
            "device_id": device_id,
            "initial_device_display_name": "sori-ldap-sync",
        });
        let login = self
            .call(Method::POST, "/_matrix/client/v3/login", None, Some(&body))
            .await?;
        Ok(login["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// One `/sync` long-poll of the bot's device for to-device messages only.
    pub async fn sync_to_device(
        &self,
        token: &str,
        since: Option<&str>,
        timeout_ms: u64,
    ) -> Result<Value, Failure> {
        // Rooms, presence and account data left out: only to-device messages are wanted.
        let filter = encode(
            r#"{"room":{"rooms":[]},"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]}}"#,
        );
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}&filter={filter}");
        if let Some(since) = since {
            path.push_str(&format!("&since={}", encode(since)));
        }
        self.call_with(token, Method::GET, &path, None).await
    }

    /// The bot joins a room it is invited to (or already in).
    pub async fn join(&self, room: &str) -> Result<(), Failure> {
        let path = format!("/_matrix/client/v3/rooms/{}/join", encode(room));
        self.call(Method::POST, &path, None, Some(&json!({})))
            .await
            .map(drop)
    }

    /// The bot sends an `m.room.message`.
    pub async fn send_message(&self, room: &str, content: &Value) -> Result<(), Failure> {
        let txn = format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
            encode(room)
        );
        self.call(Method::PUT, &path, None, Some(content))
            .await
            .map(drop)
    }
}
