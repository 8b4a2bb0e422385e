//! Synapse, the reference homeserver, as a federation peer: installed from PyPI by
//! `scripts/test` (its Python is in `SPEC_SYNAPSE_PYTHON`), started on two loopback ports
//! with SQLite in a temp directory: the client API over plain HTTP, and the federation API
//! over TLS with the tests' CA certificate. It is named `127.0.0.1:<federation port>`, trusts
//! that CA, may reach loopback, and is stopped (by PID) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::federation::TestCa;
use crate::{StatusCode, free_port};

pub struct Synapse {
    child: Child,
    configs: [PathBuf; 2],
    dir: tempfile::TempDir,
    pub client_url: String,
    pub server_name: String,
    http: reqwest::Client,
}

/// A Synapse user signed in.
pub struct SynapseUser {
    pub user_id: String,
    pub device_id: String,
    pub access_token: String,
}

/// Synapse's Python, from `scripts/test`.
fn python() -> String {
    std::env::var("SPEC_SYNAPSE_PYTHON")
        .expect("SPEC_SYNAPSE_PYTHON is unset: run the tests through scripts/test")
}

/// Runs Synapse in `data` with `configs`, its output appended to `synapse.log`.
fn spawn(data: &Path, configs: &[PathBuf]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("synapse.log"))
        .expect("log file");
    let mut command = Command::new(python());
    command.args(["-m", "synapse.app.homeserver"]);
    for config in configs {
        command.arg("-c").arg(config);
    }
    command
        .current_dir(data)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start synapse")
}

/// Rate limits out of the way.
fn unlimited() -> Value {
    json!({"per_second": 10000, "burst_count": 10000})
}

impl Synapse {
    pub async fn start() -> Synapse {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path();
        let (client_port, federation_port) = (free_port(), free_port());
        let server_name = format!("127.0.0.1:{federation_port}");
        let config = data.join("homeserver.yaml");
        let generated = Command::new(python())
            .args([
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                &server_name,
            ])
            .arg("--config-path")
            .arg(&config)
            .arg("--data-directory")
            .arg(data)
            .args(["--generate-config", "--report-stats=no"])
            .current_dir(data)
            .output()
            .expect("run synapse --generate-config");
        assert!(
            generated.status.success(),
            "{}",
            String::from_utf8_lossy(&generated.stderr)
        );
        let ca = TestCa::shared();
        // JSON is YAML: a second config file overrides the generated one key by key.
        let overrides = json!({
            "listeners": [
                {"port": client_port, "bind_addresses": ["127.0.0.1"], "type": "http",
                 "tls": false, "resources": [{"names": ["client"], "compress": false}]},
                {"port": federation_port, "bind_addresses": ["127.0.0.1"], "type": "http",
                 "tls": true, "resources": [{"names": ["federation"], "compress": false}]},
            ],
            "tls_certificate_path": ca.certificate,
            "tls_private_key_path": ca.private_key,
            "federation_custom_ca_list": [ca.ca],
            "federation_verify_certificates": true,
            // Loopback is blocked by default, and the whitelist alone does not reach
            // federation to an IP literal: the test peer's block list is emptied instead.
            "ip_range_blacklist": [],
            "ip_range_whitelist": ["127.0.0.1/32"],
            "database": {"name": "sqlite3", "args": {"database": data.join("homeserver.db")}},
            "media_store_path": data.join("media"),
            "allow_public_rooms_over_federation": true,
            "room_list_publication_rules": [{"action": "allow"}],
            "alias_creation_rules": [{"action": "allow"}],
            "enable_registration": true,
            "enable_registration_without_verification": true,
            "bcrypt_rounds": 4,
            "trusted_key_servers": [],
            "suppress_key_server_warning": true,
            "report_stats": false,
            "rc_message": unlimited(),
            "rc_registration": unlimited(),
            "rc_joins": {"local": unlimited(), "remote": unlimited()},
            "rc_joins_per_room": unlimited(),
            "rc_login": {"address": unlimited(), "account": unlimited(), "failed_attempts": unlimited()},
            "rc_invites": {"per_room": unlimited(), "per_user": unlimited(), "per_issuer": unlimited()},
            "rc_room_creation": unlimited(),
            "rc_profile": unlimited(),
            "rc_presence": {"per_user": unlimited()},
            "rc_user_directory": unlimited(),
            "rc_key_requests": unlimited(),
            "rc_admin_redaction": unlimited(),
            "rc_federation": {"window_size": 1000, "sleep_limit": 100000, "sleep_delay": 1,
                              "reject_limit": 100000, "concurrent": 1000},
            "federation_rr_transactions_per_room_per_second": 10000,
            // One failed request otherwise keeps Synapse away from a server for ten minutes.
            "federation": {"client_timeout": "20s", "max_short_retry_delay": "1s",
                           "max_long_retry_delay": "5s", "destination_min_retry_interval": "1s",
                           "destination_max_retry_interval": "5s"},
        });
        let extra = data.join("overrides.yaml");
        std::fs::write(&extra, serde_json::to_string_pretty(&overrides).unwrap()).unwrap();
        let configs = [config, extra];
        let child = spawn(data, &configs);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut synapse = Synapse {
            child,
            configs,
            dir,
            client_url: format!("http://127.0.0.1:{client_port}"),
            server_name,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        synapse.wait_until_up().await;
        synapse
    }

    async fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = self
                .http
                .get(format!("{}/_matrix/client/versions", self.client_url))
                .send()
                .await
                && response.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("synapse exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "synapse did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops Synapse (SIGTERM, as an operator would) and waits for it to exit; its data stays.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Starts Synapse again on its data and ports, after `stop`.
    pub async fn start_again(&mut self) {
        self.child = spawn(self.dir.path(), &self.configs);
        self.wait_until_up().await;
    }

    /// Everything Synapse logged so far (its output, and its log file).
    pub fn log(&self) -> String {
        ["synapse.log", "homeserver.log"]
            .iter()
            .filter_map(|name| std::fs::read_to_string(self.dir.path().join(name)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A client API call; returns the status and the JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.client_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("synapse answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Registers `localpart` (open registration, dummy auth) and signs in.
    pub async fn register(&self, localpart: &str) -> SynapseUser {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                "/_matrix/client/v3/register",
                None,
                Some(
                    &json!({"username": localpart, "password": "synapse-password-1",
                             "auth": {"type": "m.login.dummy"}}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "register on synapse: {body}");
        SynapseUser {
            user_id: body["user_id"].as_str().unwrap().to_owned(),
            device_id: body["device_id"].as_str().unwrap().to_owned(),
            access_token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
