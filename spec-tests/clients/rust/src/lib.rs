//! Starts a fresh Sori for each test and hands out matrix-rust-sdk clients that find sliding
//! sync the way Element X does (`/versions` advertises `org.matrix.simplified_msc3575`).
//!
//! The server binary comes from `$TESTED_SORI_BINARY` (scripts/test sets it to the freshly built
//! one); `SORI_*` variables are not passed on, since they would configure the server.

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use matrix_sdk::Client;
use matrix_sdk::config::RequestConfig;
use matrix_sdk::ruma::api::client::account::register::v3::Request as RegistrationRequest;
use matrix_sdk::ruma::api::client::uiaa::{AuthData, Dummy};
use matrix_sdk::sliding_sync::VersionBuilder;
use matrix_sdk_ui::eyeball_im::{Vector, VectorDiff};

/// How long a test waits for something the server should deliver within a sync round trip.
pub const PATIENCE: Duration = Duration::from_secs(20);

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("TESTED_SORI_BINARY") {
        return path.into();
    }
    // The same default as scripts/test and scripts/run.
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.cache/sori-target",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    PathBuf::from(target).join("debug").join("sori")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// A running `sori` on a free loopback port with a temporary data directory; killed when
/// dropped, also when the test panics.
pub struct Server {
    child: Child,
    dir: tempfile::TempDir,
    pub url: String,
}

impl Server {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("sori.toml");
        std::fs::write(
            &config,
            format!(
                "server_name = \"localhost\"\n\
                 [listen]\nclient = \"127.0.0.1:{port}\"\n\
                 [storage]\npath = \"{data}\"\ncache_mb = 8\n\
                 [registration]\nenabled = true\n\
                 [rate_limits]\n\
                 login = {{ per_second = 1000.0, burst = 1000 }}\n\
                 registration = {{ per_second = 1000.0, burst = 1000 }}\n\
                 [log]\nformat = \"json\"\nlevel = \"info\"\n",
                data = dir.path().join("data").display(),
            ),
        )
        .expect("write config");
        let log = std::fs::File::create(dir.path().join("sori.log")).expect("log file");
        let binary = binary();
        let child = Command::new(&binary)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env_clear()
            .envs(std::env::vars().filter(|(key, _)| !key.starts_with("SORI_")))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let server = Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        server.wait_until_listening(port).await;
        server
    }

    async fn wait_until_listening(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "sori did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sori.log")).unwrap_or_default()
    }

    /// A new account, registered through the spec's dummy flow and logged in, with a client
    /// that discovered native sliding sync from `/versions`.
    pub async fn register(&self, name: &str) -> Client {
        let client = Client::builder()
            .homeserver_url(&self.url)
            .sliding_sync_version_builder(VersionBuilder::DiscoverNative)
            .request_config(RequestConfig::short_retry())
            .build()
            .await
            .expect("client with sliding sync discovered from /versions");
        let mut request = RegistrationRequest::new();
        request.username = Some(name.to_owned());
        request.password = Some(format!("{name}-correct-horse"));
        request.initial_device_display_name = Some("matrix-sdk".to_owned());
        let session = match client.matrix_auth().register(request.clone()).await {
            Err(e) => e
                .as_uiaa_response()
                .and_then(|info| info.session.clone())
                .unwrap_or_else(|| panic!("registration should ask for a UIA stage: {e}")),
            Ok(_) => panic!("registration succeeded without user-interactive auth"),
        };
        let mut dummy = Dummy::new();
        dummy.session = Some(session);
        request.auth = Some(AuthData::Dummy(dummy));
        client
            .matrix_auth()
            .register(request)
            .await
            .expect("register with the dummy stage");
        client
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The failing test's output then shows what the server did.
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            eprintln!("--- last lines of the sori log ---");
            tail.iter().rev().for_each(|line| eprintln!("{line}"));
        }
    }
}

/// Applies a stream of list diffs to `list` until `done(list)` holds; panics with the last
/// state of the list after [`PATIENCE`].
pub async fn wait_for_list<T, S>(
    list: &mut Vector<T>,
    diffs: &mut S,
    what: &str,
    done: impl Fn(&Vector<T>) -> bool,
) where
    T: Clone + std::fmt::Debug,
    S: Stream<Item = Vec<VectorDiff<T>>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done(list) {
        match tokio::time::timeout_at(deadline, diffs.next()).await {
            Ok(Some(batch)) => batch.into_iter().for_each(|diff| diff.apply(list)),
            Ok(None) => panic!("the list stream ended while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}; the list is {list:#?}"),
        }
    }
}

/// Polls `probe` until it yields a value; panics with `what` after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
