//! Federation in the tests: a throwaway certificate authority (made with `openssl`) whose
//! certificate for 127.0.0.1 every federating test server uses, and which they all trust.
//! Servers are named by their federation address (`127.0.0.1:<port>`), as the spec allows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The CA and the one server certificate it issued (for IP 127.0.0.1).
pub struct TestCa {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl TestCa {
    fn make() -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=Sori test CA"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(path, &ca);
        let mut request = vec!["req", "-subj", "/CN=127.0.0.1"];
        request.extend(ec);
        request.extend(["-keyout", "server.key", "-out", "server.csr"]);
        openssl(path, &request);
        std::fs::write(
            path.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write extensions");
        openssl(
            path,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        TestCa {
            ca: path.join("ca.pem"),
            certificate: path.join("server.pem"),
            private_key: path.join("server.key"),
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
