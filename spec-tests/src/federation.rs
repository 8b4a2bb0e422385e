//! Federation in the tests: a throwaway certificate authority (made with `openssl`) whose
//! certificate for 127.0.0.1 every federating test server uses, and which they all trust.
//! Servers are named by their federation address (`127.0.0.1:<port>`), as the spec allows.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The CA and the one server certificate it issued (for IP 127.0.0.1).
pub struct TestCa {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

impl TestCa {
    fn make() -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        crate::services::make_certificates(dir.path());
        TestCa {
            ca: dir.path().join("ca.pem"),
            certificate: dir.path().join("server.pem"),
            private_key: dir.path().join("server.key"),
            _dir: dir,
        }
    }

    /// The CA of this test process (made once).
    pub fn shared() -> &'static TestCa {
        static CA: OnceLock<TestCa> = OnceLock::new();
        CA.get_or_init(TestCa::make)
    }
}

/// Config sections for a federating test server: the test CA's certificate for its listener,
/// that CA trusted, loopback reachable, and `settings` (more `[federation]` keys).
pub fn federation_toml(settings: &str) -> String {
    let ca = TestCa::shared();
    format!(
        "[tls]\ncertificate = \"{cert}\"\nprivate_key = \"{key}\"\n\
         [federation]\nca_file = \"{ca}\"\n{settings}\n\
         [outbound]\nip_range_whitelist = [\"127.0.0.1/32\"]\n",
        cert = ca.certificate.display(),
        key = ca.private_key.display(),
        ca = ca.ca.display(),
    )
}
