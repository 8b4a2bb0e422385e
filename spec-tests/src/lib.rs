//! Black-box test harness: start the real `sori` binary on a free port with a fresh data
//! directory, and talk to it over HTTP the way a client does.
//!
//! ```no_run
//! # async fn demo() {
//! use spec_tests::{TestServer, register};
//! let server = TestServer::start().await;
//! let alice = register(&server, "alice").await;
//! let (status, body) = server.get("/_matrix/client/v3/account/whoami", Some(&alice.access_token)).await;
//! # }
//! ```

pub mod admin_room;
pub mod appservice;
pub mod federation;
pub mod gateway;
pub mod keys;
pub mod remote;
pub mod services;
pub mod synapse;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use reqwest::StatusCode;
use serde_json::{Value, json};

/// Where the `sori` binary is: `SPEC_SORI_BIN`, else the workspace's own build.
pub fn sori_binary() -> PathBuf {
    if let Ok(path) = std::env::var("SPEC_SORI_BIN") {
        return PathBuf::from(path);
    }
    workspace_binary("sori")
}

/// A binary of this workspace, beside the test's own target directory
/// (`target/<profile>/deps/this-test` → `target/<profile>/NAME`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build --workspace --bins`)",
        bin.display()
    );
    bin
}

/// Reads an HTTP request's head (up to the blank line) from a socket, byte by byte so that
/// nothing of the body is consumed; `None` when the peer closes first. For the small servers
/// the tests run (web pages for previews, push gateways).
pub async fn read_request_head(socket: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Reads a whole HTTP request with a `Content-Length` body: its head and its body; `None`
/// when the peer closes first.
pub async fn read_request(
    socket: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Option<(String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let head = read_request_head(socket).await?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    socket.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

/// A port nothing listens on yet, on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// Settings for a test server beyond the defaults the harness sets.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub registration_enabled: bool,
    pub registration_token: Option<String>,
    /// Registration needs a token made through the admin API (`require_token`).
    pub registration_requires_token: bool,
    /// Extra TOML appended to the config file (sections and keys); `{port}` in it becomes the
    /// server's port.
    pub extra_toml: String,
    /// Federate: named `127.0.0.1:<federation port>`, with a TLS federation listener there
    /// (see [`federation`]); `extra_toml` must then leave out `[tls]`, `[federation]` and
    /// `[outbound]`.
    pub federation: bool,
    /// More `[federation]` keys for a federating server.
    pub federation_settings: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            registration_enabled: true,
            registration_token: None,
            registration_requires_token: false,
            extra_toml: String::new(),
            federation: false,
            federation_settings: String::new(),
        }
    }
}

/// A running `sori` process; killed when dropped.
pub struct TestServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    pub base_url: String,
    pub http: reqwest::Client,
    /// `localhost`, or `127.0.0.1:<federation port>` for a federating server.
    pub server_name: String,
}

impl TestServer {
    /// A server with open registration (dummy auth) and rate limits out of the way.
    pub async fn start() -> Self {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let (server_name, federation_listener) = if options.federation {
            let federation_port = free_port();
            (
                format!("127.0.0.1:{federation_port}"),
                format!("federation = \"127.0.0.1:{federation_port}\"\n"),
            )
        } else {
            ("localhost".to_owned(), String::new())
        };
        let mut config = format!(
            "server_name = \"{server_name}\"\n\
             [listen]\nclient = \"127.0.0.1:{port}\"\n{federation_listener}\
             [storage]\npath = \"{data}\"\ncache_mb = 8\n\
             [registration]\nenabled = {enabled}\nrequire_token = {require_token}\n{token}\
             [log]\nformat = \"json\"\nlevel = \"info\"\n",
            data = dir.path().join("data").display(),
            enabled = options.registration_enabled,
            require_token = options.registration_requires_token,
            token = options
                .registration_token
                .as_ref()
                .map(|t| format!("token = \"{t}\"\n"))
                .unwrap_or_default(),
        );
        if !options.extra_toml.contains("[rate_limits]") {
            config.push_str(
                "[rate_limits]\nlogin = { per_second = 1000.0, burst = 1000 }\n\
                 registration = { per_second = 1000.0, burst = 1000 }\n",
            );
        }
        config.push_str(&options.extra_toml.replace("{port}", &port.to_string()));
        if options.federation {
            config.push_str(&federation::federation_toml(&options.federation_settings));
        }
        std::fs::write(dir.path().join("sori.toml"), config).expect("write config");

        let mut server = Self {
            child: None,
            dir,
            port,
            base_url: format!("http://127.0.0.1:{port}"),
            http: {
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::builder()
            }
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
            server_name,
        };
        server.spawn().await;
        server
    }

    /// The data directory the server writes to.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sori.toml")
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sori.log")).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sori.log"))
            .expect("log file");
        let child = Command::new(sori_binary())
            .arg("--config")
            .arg(self.config_path())
            .env_remove("SORI_CONFIG")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start sori");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self
                .http
                .get(self.url("/_matrix/client/versions"))
                .send()
                .await
                && r.status().is_success()
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("sori exited with {status} at start-up:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "sori did not start in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills the process without warning (SIGKILL) and starts it again on the same data and
    /// port: whatever the server acknowledged before must still be there.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server, runs `sori --config <its config> ARGS` on its data directory (as an
    /// operator would with the server down), starts the server again, and returns the output.
    pub async fn run_offline(&mut self, args: &[&str]) -> std::process::Output {
        self.kill();
        let output = Command::new(sori_binary())
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("SORI_CONFIG")
            .output()
            .expect("run sori");
        self.spawn().await;
        output
    }

    /// Stops the server (SIGKILL) until [`TestServer::start_again`]: an outage.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts a stopped server again on the same data and port.
    pub async fn start_again(&mut self) {
        self.spawn().await;
    }

    /// Stops the server, runs `f` (on its data directory, say) and starts it again.
    pub async fn stop_for(&mut self, f: impl FnOnce()) {
        self.kill();
        f();
        self.spawn().await;
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a request and returns the status and the JSON body (`Null` when not JSON).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let bytes = response.bytes().await.expect("response body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Sends raw bytes as the body (for malformed-JSON tests).
    pub async fn request_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let bytes = response.bytes().await.expect("response body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::PUT, path, token, Some(body))
            .await
    }

    pub async fn delete(
        &self,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        self.request(reqwest::Method::DELETE, path, token, body)
            .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A logged-in user.
#[derive(Clone, Debug)]
pub struct User {
    pub user_id: String,
    pub access_token: String,
    pub device_id: String,
    pub password: String,
}

impl User {
    pub fn token(&self) -> Option<&str> {
        Some(&self.access_token)
    }
}

/// The password the helpers give every user.
pub fn password_of(localpart: &str) -> String {
    format!("{localpart}-secret-password")
}

/// Registers `localpart` with dummy auth (open registration) and returns the logged-in user.
pub async fn register(server: &TestServer, localpart: &str) -> User {
    let password = password_of(localpart);
    let (status, body) = server
        .post(
            "/_matrix/client/v3/register",
            None,
            &json!({
                "username": localpart,
                "password": password,
                "auth": { "type": "m.login.dummy" },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "register {localpart}: {body}");
    User {
        user_id: body["user_id"].as_str().unwrap().to_owned(),
        access_token: body["access_token"].as_str().unwrap().to_owned(),
        device_id: body["device_id"].as_str().unwrap().to_owned(),
        password,
    }
}

/// Logs in with a password and returns the new session.
pub async fn login(server: &TestServer, localpart: &str, password: &str) -> User {
    let (status, body) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            &json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": localpart },
                "password": password,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "login {localpart}: {body}");
    User {
        user_id: body["user_id"].as_str().unwrap().to_owned(),
        access_token: body["access_token"].as_str().unwrap().to_owned(),
        device_id: body["device_id"].as_str().unwrap().to_owned(),
        password: password.to_owned(),
    }
}

/// Asserts a Matrix error: the status and the errcode.
#[track_caller]
pub fn assert_error(result: &(StatusCode, Value), status: StatusCode, errcode: &str) {
    let (got_status, body) = result;
    assert_eq!(
        *got_status, status,
        "expected {status} {errcode}, got {got_status}: {body}"
    );
    assert_eq!(body["errcode"], errcode, "expected {errcode}, got {body}");
    assert!(body["error"].is_string(), "errors carry a message: {body}");
}

/// Creates a room with `POST /createRoom` and returns its id.
pub async fn create_room(server: &TestServer, user: &User, body: Value) -> String {
    let (status, response) = server
        .post("/_matrix/client/v3/createRoom", user.token(), &body)
        .await;
    assert_eq!(status, StatusCode::OK, "createRoom: {response}");
    response["room_id"].as_str().unwrap().to_owned()
}

/// Sends an `m.text` message with transaction id `txn`; returns status and body.
pub async fn send_text(
    server: &TestServer,
    user: &User,
    room: &str,
    txn: &str,
    body: &str,
) -> (StatusCode, Value) {
    server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            user.token(),
            &json!({"msgtype": "m.text", "body": body}),
        )
        .await
}

/// The message bodies of a list of events, or of a page's `chunk`.
pub fn bodies(events: &Value) -> Vec<String> {
    let list = if events.is_array() {
        events
    } else {
        &events["chunk"]
    };
    list.as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /sync?{query}` as the user; asserts it succeeded and returns the response.
pub async fn sync(server: &TestServer, user: &User, query: &str) -> Value {
    let (status, body) = server
        .get(&format!("/_matrix/client/v3/sync?{query}"), user.token())
        .await;
    assert_eq!(status, StatusCode::OK, "sync {query}: {body}");
    body
}

/// Joins a room by id; asserts it succeeded.
pub async fn join(server: &TestServer, user: &User, room: &str) {
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            user.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
