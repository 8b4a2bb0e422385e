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
