//! Real services the tests run beside the server (`scripts/test` installs them): each on a
//! free loopback port with its data in a temporary directory, killed by PID when dropped, also
//! when a test fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The EICAR test file: harmless, and detected by every virus scanner.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// ClamAV's `clamd` on a loopback port, with a signature database of one entry (EICAR, by its
/// MD5 and size), since the official databases cannot be downloaded here.
pub struct Clamd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn clamd_binary() -> PathBuf {
    ["/usr/sbin/clamd", "/usr/bin/clamd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("clamd is not installed: run scripts/test (it installs clamav-daemon)")
}

impl Clamd {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(
            db.join("eicar.hdb"),
            "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
        )
        .unwrap();
        let port = free_port();
        let config = dir.path().join("clamd.conf");
        std::fs::write(
            &config,
            format!(
                "Foreground yes\nTCPSocket {port}\nTCPAddr 127.0.0.1\nDatabaseDirectory {}\n\
                 LogFile {}\nStreamMaxLength 400M\nMaxFileSize 400M\nMaxScanSize 400M\n",
                db.display(),
                dir.path().join("clamd.log").display()
            ),
        )
        .unwrap();
        let child = Command::new(clamd_binary())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clamd");
        let mut clamd = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !clamd.answers_ping() {
            if let Ok(Some(status)) = clamd.child.try_wait() {
                panic!("clamd exited with {status} at start-up");
            }
            assert!(Instant::now() < deadline, "clamd did not start in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        clamd
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut socket) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = [0u8; 5];
        socket.write_all(b"zPING\0").is_ok()
            && socket.read_exact(&mut answer).is_ok()
            && &answer == b"PONG\0"
    }

    /// The `[media.clamav] address` of this daemon.
    pub fn address(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An S3-compatible server (moto, from PyPI) on a loopback port, with one bucket.
pub struct S3Server {
    child: Child,
    port: u16,
    pub bucket: String,
}

fn moto_binary() -> PathBuf {
    if let Ok(path) = std::env::var("SPEC_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    // Read at run time: a test binary built in another checkout would carry its own path.
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let path = PathBuf::from(manifest).join("services/.venv/bin/moto_server");
    assert!(
        path.exists(),
        "{} not found: run scripts/test (it installs spec-tests/services/requirements.txt)",
        path.display()
    );
    path
}

/// One HTTP/1.0 exchange with a loopback server; returns the status and body.
fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request =
        format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n");
    socket.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    socket.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

impl S3Server {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let mut server = Self {
            child,
            port,
            bucket: "sori-media".to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((200, _)) = http(port, "PUT", &format!("/{}", server.bucket)) {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("moto_server exited with {status} at start-up");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The server's configuration for this bucket (`[media]` and `[media.s3]`).
    pub fn media_toml(&self) -> String {
        format!(
            "[media]\nbackend = \"s3\"\n[media.s3]\nendpoint = \"http://127.0.0.1:{}\"\n\
             bucket = \"{}\"\naccess_key_id = \"test-key\"\nsecret_access_key = \"test-secret\"\n\
             path_style = true\n",
            self.port, self.bucket
        )
    }

    /// How many objects the bucket holds.
    pub fn objects(&self) -> usize {
        let (status, body) =
            http(self.port, "GET", &format!("/{}?list-type=2", self.bucket)).expect("list bucket");
        assert_eq!(status, 200, "{body}");
        body.matches("<Key>").count()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Meilisearch stand-in (`services/meilisearch_standin.py`: Meilisearch's API for the
/// endpoints Sori uses, since no Meilisearch package can be installed) on a loopback port,
/// with a master key and its data in a temporary directory; killed when dropped.
pub struct Meilisearch {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    pub key: String,
}

impl Meilisearch {
    pub fn start() -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            key: "test-master-key".to_owned(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let manifest = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
        let script = PathBuf::from(manifest).join("services/meilisearch_standin.py");
        let child = Command::new("python3")
            .arg(script)
            .args(["--port", &self.port.to_string(), "--key", &self.key])
            .arg("--data")
            .arg(self.dir.path().join("data.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Meilisearch stand-in");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Any answer (401 without a key) means it listens.
        while http(self.port, "GET", "/health").is_none() {
            assert!(
                Instant::now() < deadline,
                "the Meilisearch stand-in did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process (as an outage would); its data stays for [`Meilisearch::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn resume(&mut self) {
        self.spawn();
    }

    /// The server's configuration for this backend (`[search]` and `[search.meilisearch]`).
    pub fn search_toml(&self) -> String {
        format!(
            "[search]\nbackend = \"meilisearch\"\n[search.meilisearch]\n\
             url = \"http://127.0.0.1:{}\"\napi_key = \"{}\"\nindex_prefix = \"test_\"\n",
            self.port, self.key
        )
    }

    /// `GET path` with the master key: status and JSON body.
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let mut socket = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
            self.key
        );
        socket.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).unwrap();
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, serde_json::from_str(body).unwrap_or_default())
    }
}

impl Drop for Meilisearch {
    fn drop(&mut self) {
        self.stop();
    }
}
