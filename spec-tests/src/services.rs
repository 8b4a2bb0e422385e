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

/// OpenLDAP's `slapd` on a loopback port with a company directory (`dc=sori,dc=test`): the
/// people of [`LDAP_PEOPLE`], an `admins` and an `auditors` group (kept in each member's
/// `memberOf` by the memberof overlay), and a service account that may search.
pub struct Slapd {
    child: Child,
    port: u16,
    /// Where it listens for `ldaps://` (the plain port also takes StartTLS).
    tls_port: u16,
    dir: tempfile::TempDir,
}

/// Makes a CA and a certificate for 127.0.0.1 that it signed, with `openssl`, in `dir`:
/// `ca.pem`, `server.pem` and `server.key`.
pub fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Sori Test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

/// The directory's base DN.
pub const LDAP_BASE: &str = "dc=sori,dc=test";
/// The service account and its password.
pub const LDAP_SERVICE_DN: &str = "cn=sori,dc=sori,dc=test";
pub const LDAP_SERVICE_PASSWORD: &str = "service-secret";

/// A person in the test directory.
pub struct LdapPerson {
    pub uid: &'static str,
    pub employee_number: &'static str,
    pub mail: &'static str,
    pub display_name: &'static str,
    pub password: &'static str,
    /// `employeeType: disabled`, which the server's `user_filter` leaves out.
    pub disabled: bool,
    /// Member of `cn=admins` / `cn=auditors`.
    pub group: Option<&'static str>,
}

pub const LDAP_PEOPLE: &[LdapPerson] = &[
    LdapPerson {
        uid: "minsu",
        employee_number: "1001",
        mail: "minsu.kim@sori.test",
        display_name: "김민수",
        password: "minsu-ldap-password",
        disabled: false,
        group: None,
    },
    LdapPerson {
        uid: "jiwoo",
        employee_number: "1002",
        mail: "jiwoo.lee@sori.test",
        display_name: "이지우",
        password: "jiwoo-ldap-password",
        disabled: false,
        group: Some("admins"),
    },
    LdapPerson {
        uid: "seoyeon",
        employee_number: "1003",
        mail: "seoyeon.park@sori.test",
        display_name: "박서연",
        password: "seoyeon-ldap-password",
        disabled: false,
        group: Some("auditors"),
    },
    LdapPerson {
        uid: "retired",
        employee_number: "0999",
        mail: "retired@sori.test",
        display_name: "퇴사자",
        password: "retired-ldap-password",
        disabled: true,
        group: None,
    },
];

fn person_ldif(person: &LdapPerson) -> String {
    // Non-ASCII values go base64 (`attr:: value`), as LDIF requires.
    format!(
        "dn: uid={uid},ou=people,{LDAP_BASE}\nobjectClass: inetOrgPerson\nuid: {uid}\n\
         cn: {uid}\nsn: {uid}\ndisplayName:: {name}\nmail: {mail}\nemployeeNumber: {number}\n\
         userPassword: {password}\n{disabled}\n",
        uid = person.uid,
        name = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(person.display_name.as_bytes())
        },
        mail = person.mail,
        number = person.employee_number,
        password = person.password,
        disabled = if person.disabled {
            "employeeType: disabled\n"
        } else {
            ""
        },
    )
}

fn slapd_binary() -> PathBuf {
    let path = PathBuf::from("/usr/sbin/slapd");
    assert!(
        path.exists(),
        "slapd is not installed: run scripts/test (it installs slapd and ldap-utils)"
    );
    path
}

impl Slapd {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).unwrap();
        let port = free_port();
        let tls_port = free_port();
        make_certificates(dir.path());
        let config = dir.path().join("slapd.conf");
        std::fs::write(
            &config,
            format!(
                "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\ninclude /etc/ldap/schema/nis.schema\n\
                 TLSCACertificateFile {tls}/ca.pem\nTLSCertificateFile {tls}/server.pem\n\
                 TLSCertificateKeyFile {tls}/server.key\n\
                 pidfile {pid}\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\n\
                 database mdb\nsuffix \"{LDAP_BASE}\"\nrootdn \"cn=root,{LDAP_BASE}\"\n\
                 rootpw root-secret\ndirectory {db}\nmaxsize 10485760\noverlay memberof\n\
                 access to attrs=userPassword by self write by anonymous auth by * none\n\
                 access to * by dn.exact=\"{LDAP_SERVICE_DN}\" read by self read by * none\n",
                pid = dir.path().join("slapd.pid").display(),
                db = db.display(),
                tls = dir.path().display(),
            ),
        )
        .unwrap();
        // The tree and the people offline; the groups online, so that the memberof overlay
        // writes each member's `memberOf`.
        let mut people = format!(
            "dn: {LDAP_BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Sori\ndc: sori\n\n\
             dn: {LDAP_SERVICE_DN}\nobjectClass: person\nobjectClass: simpleSecurityObject\n\
             cn: sori\nsn: sori\nuserPassword: {LDAP_SERVICE_PASSWORD}\n\n\
             dn: ou=people,{LDAP_BASE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{LDAP_BASE}\nobjectClass: organizationalUnit\nou: groups\n\n"
        );
        for person in LDAP_PEOPLE {
            people.push_str(&person_ldif(person));
        }
        let people_file = dir.path().join("people.ldif");
        std::fs::write(&people_file, people).unwrap();
        let loaded = Command::new("/usr/sbin/slapadd")
            .arg("-f")
            .arg(&config)
            .arg("-l")
            .arg(&people_file)
            .output()
            .expect("run slapadd");
        assert!(
            loaded.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&loaded.stderr)
        );
        // A port picked free can be taken before slapd binds it (by another test): slapd
        // then exits at once, and is started again on other ports.
        let (mut port, mut tls_port) = (port, tls_port);
        let mut attempt = 1;
        let child = loop {
            let mut child = Command::new(slapd_binary())
                .arg("-f")
                .arg(&config)
                .arg("-h")
                .arg(format!(
                    "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
                ))
                // In the foreground (so the PID is the child's), logging nothing.
                .arg("-d")
                .arg("0")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start slapd");
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut exited = None;
            while TcpStream::connect(("127.0.0.1", port)).is_err()
                || TcpStream::connect(("127.0.0.1", tls_port)).is_err()
            {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("slapd did not start in 30 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            match exited {
                None => break child,
                Some(status) if attempt >= 3 => panic!("slapd exited with {status} at start-up"),
                Some(_) => {
                    attempt += 1;
                    (port, tls_port) = (free_port(), free_port());
                }
            }
        };
        let slapd = Self {
            child,
            port,
            tls_port,
            dir,
        };
        let mut groups = String::new();
        for group in ["admins", "auditors"] {
            // A group of names needs a member: the service account is one of each, so that
            // the people can leave.
            groups.push_str(&format!(
                "dn: cn={group},ou=groups,{LDAP_BASE}\nobjectClass: groupOfNames\ncn: {group}\n\
                 member: {LDAP_SERVICE_DN}\n"
            ));
            for person in LDAP_PEOPLE.iter().filter(|p| p.group == Some(group)) {
                groups.push_str(&format!(
                    "member: uid={},ou=people,{LDAP_BASE}\n",
                    person.uid
                ));
            }
            groups.push('\n');
        }
        slapd.modify("ldapadd", &groups);
        slapd
    }

    /// Runs `ldapadd` / `ldapmodify` / `ldapdelete` as the directory's root with `input`.
    pub fn modify(&self, tool: &str, input: &str) {
        let mut child = Command::new(format!("/usr/bin/{tool}"))
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                &format!("cn=root,{LDAP_BASE}"),
            ])
            .args(["-w", "root-secret"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {tool} (ldap-utils): {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The `ldaps://` URL (TLS from the first byte).
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The CA that signed the directory's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The `[ldap]` section for a server that signs people in against this directory.
    pub fn ldap_toml(&self) -> String {
        let password_file = self.dir.path().join("bind-password");
        std::fs::write(&password_file, format!("{LDAP_SERVICE_PASSWORD}\n")).unwrap();
        format!(
            "[ldap]\nenabled = true\nurl = \"{url}\"\nbind_dn = \"{LDAP_SERVICE_DN}\"\n\
             bind_password_file = \"{file}\"\nbase_dn = \"ou=people,{LDAP_BASE}\"\n\
             user_filter = \"(&(objectClass=inetOrgPerson)(!(employeeType=disabled)))\"\n\
             login_attributes = [\"uid\", \"employeeNumber\", \"mail\"]\n\
             localpart_attribute = \"uid\"\ndisplayname_attribute = \"displayName\"\n\
             mail_attribute = \"mail\"\n\
             admin_filter = \"(memberOf=cn=admins,ou=groups,{LDAP_BASE})\"\n\
             auditor_filter = \"(memberOf=cn=auditors,ou=groups,{LDAP_BASE})\"\n\
             timeout_ms = 2000\n",
            url = self.url(),
            file = password_file.display(),
        )
    }

    /// Stops the directory (a directory outage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real OpenID Connect provider (panva's `oidc-provider`, `spec-tests/services/oidc`, which
/// `scripts/test` installs with npm) on a free loopback port: PKCE required, RS256 ID tokens,
/// a plain login form, and the clients and people given.
pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    /// `config`: `{"clients": [{client_id, client_secret, redirect_uris}], "people": [{sub,
    /// login, password, claims}]}`; `port`: where to listen (0: any free port).
    pub fn start(config: &serde_json::Value, port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("provider.json");
        std::fs::write(&file, config.to_string()).unwrap();
        let services = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("services/oidc");
        assert!(
            services.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: run scripts/test (npm ci in {})",
            services.display()
        );
        let mut child = Command::new("node")
            .arg(services.join("provider.mjs"))
            .arg(&file)
            .arg(port.to_string())
            .current_dir(&services)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node");
        // The provider prints one JSON line with its issuer once it listens.
        let stdout = child.stdout.take().unwrap();
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(ready) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(issuer) = ready["issuer"].as_str()
                {
                    let _ = send.send(issuer.to_owned());
                }
            }
        });
        let issuer = receive
            .recv_timeout(Duration::from_secs(30))
            .expect("the OIDC provider did not start in 30 s");
        Self {
            child,
            issuer,
            _dir: dir,
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
