//! The LDAP bridge (`sori-ldap-sync`) against a real Sori and a real slapd holding a small
//! company (3 levels of units, 30 people, Korean and Latin names): the first sync makes the
//! spaces, rooms, memberships and profiles the directory says; after the directory changes
//! (a move, a leaver, a disabled person, a newcomer, a renamed unit) the next sync applies
//! exactly the difference; a sync with nothing new changes nothing; `--dry-run` changes
//! nothing; a directory that is down changes nothing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spec_tests::admin_room::{answer_from, create_admin, invited_to_admin_room};
use spec_tests::services::{LDAP_BASE, LDAP_SERVICE_DN, LDAP_SERVICE_PASSWORD, Slapd};
use spec_tests::{ServerOptions, StatusCode, TestServer, User, join, register, send_text};

const AS_TOKEN: &str = "ldap-sync-as-token";

/// Korean and Latin names for the generated people.
const NAMES: [&str; 6] = [
    "김하늘",
    "이도윤",
    "Park Ji-ho",
    "최서준",
    "Alex Kim",
    "정민지",
];

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

fn person(n: usize) -> String {
    format!(
        "dn: uid=u{n:02},ou=people,{LDAP_BASE}\nobjectClass: inetOrgPerson\nuid: u{n:02}\n\
         cn: u{n:02}\nsn: u{n:02}\ndisplayName:: {name}\ntitle: Engineer {n}\n\
         telephoneNumber: +82-2-555-{n:04}\nemployeeNumber: 2{n:03}\n\n",
        name = base64(&format!("{} {n}", NAMES[n % NAMES.len()])),
    )
}

fn unit(dn: &str, name: &str, members: &[usize]) -> String {
    let mut ldif = format!("dn: {dn}\nobjectClass: groupOfNames\ncn: {name}\n");
    for n in members {
        ldif.push_str(&format!("member: uid=u{n:02},ou=people,{LDAP_BASE}\n"));
    }
    ldif.push('\n');
    ldif
}

const ENG: &str = "cn=Engineering,ou=units,dc=sori,dc=test";
const BACKEND: &str = "cn=Backend,cn=Engineering,ou=units,dc=sori,dc=test";
const STORAGE: &str = "cn=Storage,cn=Backend,cn=Engineering,ou=units,dc=sori,dc=test";
const SALES: &str = "cn=Sales,ou=units,dc=sori,dc=test";
const SEOUL: &str = "cn=Seoul Sales,cn=Sales,ou=units,dc=sori,dc=test";

/// The company: 26 generated people besides the directory's own four (one of them
/// disabled), in five units three levels deep; u05 is in two units.
fn company() -> String {
    let mut ldif =
        format!("dn: ou=units,{LDAP_BASE}\nobjectClass: organizationalUnit\nou: units\n\n");
    for n in 1..=26 {
        ldif.push_str(&person(n));
    }
    ldif.push_str(&unit(ENG, "Engineering", &[1, 2]));
    ldif.push_str(&unit(BACKEND, "Backend", &[3, 4, 5, 10, 11, 12]));
    ldif.push_str(&unit(STORAGE, "Storage", &[13, 14, 15, 20, 21]));
    ldif.push_str(&unit(SALES, "Sales", &[5, 6, 7, 16, 17]));
    ldif.push_str(&unit(
        SEOUL,
        "Seoul Sales",
        &[8, 9, 18, 19, 22, 23, 24, 25, 26],
    ));
    ldif
}

struct Bridge {
    config: PathBuf,
    state: PathBuf,
}

impl Bridge {
    fn new(dir: &Path, server: &TestServer, slapd: &Slapd, registration: &Path) -> Self {
        let config = dir.join("ldap-sync.toml");
        let state = dir.join("state.json");
        std::fs::write(
            &config,
            format!(
                "homeserver = \"{hs}\"\nregistration = \"{reg}\"\ncompany_name = \"Sori Test Co\"\n\
                 state_file = \"{state}\"\ninterval_secs = 3600\n\n[ldap]\nurl = \"{url}\"\nbind_dn = \"{LDAP_SERVICE_DN}\"\n\
                 bind_password = \"{LDAP_SERVICE_PASSWORD}\"\nusers_base_dn = \"ou=people,{LDAP_BASE}\"\n\
                 disabled_filter = \"(employeeType=disabled)\"\nunits_base_dn = \"ou=units,{LDAP_BASE}\"\n",
                hs = server.base_url,
                reg = registration.display(),
                state = state.display(),
                url = slapd.url(),
            ),
        )
        .unwrap();
        Self { config, state }
    }

    fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(spec_tests::workspace_binary("sori-ldap-sync"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run sori-ldap-sync")
    }

    /// Starts `sori-ldap-sync daemon`; it is stopped when the returned guard goes.
    fn daemon(&self) -> Daemon {
        Daemon(
            std::process::Command::new(spec_tests::workspace_binary("sori-ldap-sync"))
                .arg("--config")
                .arg(&self.config)
                .arg("daemon")
                .env("RUST_LOG", "warn")
                .spawn()
                .expect("start sori-ldap-sync daemon"),
        )
    }

    /// The people in the state file (0 while there is none).
    fn people_synced(&self) -> usize {
        std::fs::read(&self.state)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|state| state["people"].as_object().map(|p| p.len()))
            .unwrap_or(0)
    }

    /// Runs a sync that must succeed; returns its summary line.
    fn sync(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{said}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        said
    }
}

struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn registration(dir: &Path) -> PathBuf {
    let path = dir.join("ldap-sync.yaml");
    std::fs::write(
        &path,
        format!(
            "id: ldap-sync\nurl: null\nas_token: {AS_TOKEN}\nhs_token: ldap-sync-hs-token\n\
             sender_localpart: ldap_bot\nrate_limited: false\nprotocols: [ldap]\nnamespaces:\n  users:\n    \
             - exclusive: false\n      regex: \"@[a-z0-9._=/+-]+:localhost\"\n  aliases:\n    \
             - exclusive: true\n      regex: \"#ldap_.*:localhost\"\n  rooms: []\n"
        ),
    )
    .unwrap();
    path
}

/// A client API call as the bridge, acting as `user` when given.
async fn as_bridge(server: &TestServer, path: &str, user: Option<&str>) -> (StatusCode, Value) {
    let path = match user {
        Some(user) => format!(
            "{path}{}user_id={}",
            if path.contains('?') { '&' } else { '?' },
            user.replace('@', "%40").replace(':', "%3A")
        ),
        None => path.to_owned(),
    };
    server.get(&path, Some(AS_TOKEN)).await
}

async fn room_of(server: &TestServer, alias: &str) -> String {
    let (status, body) = server
        .get(
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                alias.replace('#', "%23").replace(':', "%3A")
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{alias}: {body}");
    body["room_id"].as_str().unwrap().to_owned()
}

async fn joined(server: &TestServer, user: &str) -> Vec<String> {
    let (status, body) = as_bridge(server, "/_matrix/client/v3/joined_rooms", Some(user)).await;
    assert_eq!(status, StatusCode::OK, "{user}: {body}");
    body["joined_rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

/// The entryUUID of a unit (the id in its aliases).
fn entry_uuid(slapd: &Slapd, dn: &str) -> String {
    let output = std::process::Command::new("/usr/bin/ldapsearch")
        .args([
            "-x",
            "-H",
            &slapd.url(),
            "-D",
            LDAP_SERVICE_DN,
            "-w",
            LDAP_SERVICE_PASSWORD,
        ])
        .args(["-b", dn, "-s", "base", "-LLL", "entryUUID"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("entryUUID: "))
        .unwrap_or_else(|| panic!("no entryUUID for {dn}"))
        .to_owned()
}

async fn room_name(server: &TestServer, room: &str) -> String {
    let (_, body) = as_bridge(
        server,
        &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
        None,
    )
    .await;
    body["name"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_directory_decides_people_profiles_and_the_org_chart() {
    let mut slapd = Slapd::start();
    slapd.modify("ldapadd", &company());
    let dir = tempfile::tempdir().unwrap();
    let registration = registration(dir.path());
    let server = TestServer::start_with(ServerOptions {
        extra_toml: format!(
            "[appservices]\nregistration_files = [\"{}\"]\n",
            registration.display()
        ),
        ..Default::default()
    })
    .await;
    let bridge = Bridge::new(dir.path(), &server, &slapd, &registration);

    // A dry run says what it would do and does nothing.
    let dry = bridge.sync(&["once", "--dry-run"]);
    assert!(dry.contains("would create @u05:localhost"), "{dry}");
    assert!(dry.contains("would create the unit \"Storage\""), "{dry}");
    assert!(!bridge.state.exists());
    let (status, _) = as_bridge(&server, "/_matrix/client/v3/profile/@u05:localhost", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The first sync: 29 people (the directory's 30 but the disabled one), 5 units.
    let first = bridge.sync(&["once"]);
    assert!(
        first.contains("created 29,") && first.contains("units created 5"),
        "{first}"
    );
    let company = room_of(&server, "#ldap_company:localhost").await;
    let uuid = |dn| entry_uuid(&slapd, dn);
    let (eng, backend, storage, sales, seoul) = (
        uuid(ENG),
        uuid(BACKEND),
        uuid(STORAGE),
        uuid(SALES),
        uuid(SEOUL),
    );
    let space = |id: &str| format!("#ldap_unit_{id}:localhost");
    let room = |id: &str| format!("#ldap_room_{id}:localhost");
    let backend_space = room_of(&server, &space(&backend)).await;
    let backend_room = room_of(&server, &room(&backend)).await;
    let sales_room = room_of(&server, &room(&sales)).await;
    let storage_space = room_of(&server, &space(&storage)).await;
    let eng_space = room_of(&server, &space(&eng)).await;
    let seoul_room = room_of(&server, &room(&seoul)).await;

    // The tree: company ⊃ Engineering ⊃ Backend ⊃ Storage; each unit's room in its space.
    let child = |parent: String, child: String| {
        let server = &server;
        async move {
            let (status, body) = as_bridge(
                server,
                &format!("/_matrix/client/v3/rooms/{parent}/state/m.space.child/{child}"),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{child} in {parent}: {body}");
            assert_eq!(body["via"], json!(["localhost"]));
        }
    };
    child(company.clone(), eng_space.clone()).await;
    child(eng_space.clone(), backend_space.clone()).await;
    child(backend_space.clone(), storage_space.clone()).await;
    child(backend_space.clone(), backend_room.clone()).await;

    // Memberships and profiles.
    let u05 = joined(&server, "@u05:localhost").await;
    for expected in [&company, &backend_space, &backend_room, &sales_room] {
        assert!(u05.contains(expected), "u05 in {expected}: {u05:?}");
    }
    let u13 = joined(&server, "@u13:localhost").await;
    assert!(
        u13.contains(&storage_space) && !u13.contains(&backend_room),
        "{u13:?}"
    );
    let (status, profile) =
        as_bridge(&server, "/_matrix/client/v3/profile/@u05:localhost", None).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "정민지 5");
    assert_eq!(profile["io.sori.title"], "Engineer 5");
    assert_eq!(profile["io.sori.phone"], "+82-2-555-0005");
    assert_eq!(profile["io.sori.employee_number"], "2005");
    let department = profile["io.sori.department"].as_str().unwrap();
    assert!(
        department.contains("Backend") && department.contains("Sales"),
        "{department}"
    );
    let (_, minsu) = as_bridge(&server, "/_matrix/client/v3/profile/@minsu:localhost", None).await;
    assert_eq!(minsu["displayname"], "김민수");
    let (status, _) = as_bridge(
        &server,
        "/_matrix/client/v3/profile/@retired:localhost",
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the disabled person gets no account"
    );

    // Nothing new: nothing changes.
    let again = bridge.sync(&["once"]);
    assert!(
        again.starts_with("created 0, updated 0, deactivated 0, reactivated 0, moved 0; units created 0, changed 0, removed 0; failed 0"),
        "{again}"
    );

    // The directory changes: u10 moves from Backend to Sales, u20 leaves, u21 is disabled,
    // u31 joins Storage, Seoul Sales becomes Busan Sales.
    slapd.modify(
        "ldapmodify",
        &format!(
            "dn: {BACKEND}\nchangetype: modify\ndelete: member\nmember: uid=u10,ou=people,{LDAP_BASE}\n\n\
             dn: {SALES}\nchangetype: modify\nadd: member\nmember: uid=u10,ou=people,{LDAP_BASE}\n\n\
             dn: uid=u20,ou=people,{LDAP_BASE}\nchangetype: delete\n\n\
             dn: uid=u21,ou=people,{LDAP_BASE}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n\n\
             dn: uid=u31,ou=people,{LDAP_BASE}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: u31\ncn: u31\nsn: u31\ndisplayName: Newcomer 31\n\n\
             dn: {STORAGE}\nchangetype: modify\nadd: member\nmember: uid=u31,ou=people,{LDAP_BASE}\n\n\
             dn: {SEOUL}\nchangetype: modrdn\nnewrdn: cn=Busan Sales\ndeleteoldrdn: 1\n\n"
        ),
    );
    let state_before = std::fs::read(&bridge.state).unwrap();
    let dry = bridge.sync(&["once", "--dry-run"]);
    assert!(dry.contains("would deactivate @u20:localhost"), "{dry}");
    assert_eq!(
        std::fs::read(&bridge.state).unwrap(),
        state_before,
        "a dry run writes nothing"
    );
    let changed = bridge.sync(&["once"]);
    assert!(
        changed.contains("created 1,")
            && changed.contains("deactivated 2,")
            && changed.contains("moved 1;")
            && changed.contains("units created 0, changed 1"),
        "{changed}"
    );
    let u10 = joined(&server, "@u10:localhost").await;
    assert!(
        u10.contains(&sales_room) && !u10.contains(&backend_room),
        "{u10:?}"
    );
    for gone in ["@u20:localhost", "@u21:localhost"] {
        let (status, _) = as_bridge(&server, "/_matrix/client/v3/account/whoami", Some(gone)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{gone} is deactivated");
    }
    assert!(
        joined(&server, "@u31:localhost")
            .await
            .contains(&storage_space)
    );
    assert_eq!(room_name(&server, &seoul_room).await, "Busan Sales");
    let again = bridge.sync(&["once"]);
    assert!(again.contains("created 0, updated 0, deactivated 0, reactivated 0, moved 0; units created 0, changed 0, removed 0"), "{again}");

    // u21 comes back.
    slapd.modify(
        "ldapmodify",
        &format!("dn: uid=u21,ou=people,{LDAP_BASE}\nchangetype: modify\ndelete: employeeType\n\n"),
    );
    let back = bridge.sync(&["once"]);
    assert!(back.contains("reactivated 1,"), "{back}");
    let (status, _) = as_bridge(
        &server,
        "/_matrix/client/v3/account/whoami",
        Some("@u21:localhost"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        joined(&server, "@u21:localhost")
            .await
            .contains(&storage_space)
    );

    // The directory down: the sync fails and changes nothing.
    let state_before = std::fs::read(&bridge.state).unwrap();
    slapd.stop();
    let output = bridge.run(&["once"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing was changed"));
    assert_eq!(std::fs::read(&bridge.state).unwrap(), state_before);
}

/// Sends `text` to the room as `user`; returns its event id.
async fn say(server: &TestServer, user: &User, room: &str, txn: &str, text: &str) -> String {
    let (status, sent) = send_text(server, user, room, txn, text).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    sent["event_id"].as_str().unwrap().to_owned()
}

/// Waits for `sender`'s answer to `event_id`; returns its body.
async fn answer(
    server: &TestServer,
    user: &User,
    room: &str,
    event_id: &str,
    sender: &str,
) -> String {
    let notice = answer_from(
        server,
        user,
        room,
        event_id,
        sender,
        Duration::from_secs(60),
    )
    .await;
    notice["content"]["body"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_admin_asks_the_daemon_for_a_sync_in_the_admin_room() {
    let slapd = Slapd::start();
    slapd.modify("ldapadd", &company());
    let dir = tempfile::tempdir().unwrap();
    let registration = registration(dir.path());
    let mut server = TestServer::start_with(ServerOptions {
        extra_toml: format!(
            "[appservices]\nregistration_files = [\"{}\"]\n",
            registration.display()
        ),
        ..Default::default()
    })
    .await;
    let boss = create_admin(&mut server, "boss", "boss-password-1").await;
    let admins = invited_to_admin_room(&server, &boss).await;
    join(&server, &boss, &admins).await;

    // Without a daemon running, the command says how to sync instead.
    let asked = say(&server, &boss, &admins, "a0", "!admin ldap sync").await;
    let told = answer(&server, &boss, &admins, &asked, "@sori:localhost").await;
    assert!(told.contains("is not listening"), "{told}");

    // The daemon makes its first sync on start (29 people), then waits for an hour.
    let bridge = Bridge::new(dir.path(), &server, &slapd, &registration);
    let _daemon = bridge.daemon();
    let deadline = Instant::now() + Duration::from_secs(60);
    while bridge.people_synced() < 29 {
        assert!(
            Instant::now() < deadline,
            "the daemon's first sync did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A newcomer: a dry run lists them and changes nothing; a sync makes them.
    slapd.modify("ldapadd", &person(31));
    let asked = say(&server, &boss, &admins, "a1", "!admin ldap sync --dry-run").await;
    let told = answer(&server, &boss, &admins, &asked, "@sori:localhost").await;
    assert!(
        told.contains("Asked @ldap_bot:localhost for a dry run"),
        "{told}"
    );
    let dry = answer(&server, &boss, &admins, &asked, "@ldap_bot:localhost").await;
    assert!(dry.contains("would create @u31:localhost"), "{dry}");
    assert!(dry.contains("created 1,"), "{dry}");
    let (status, _) = as_bridge(&server, "/_matrix/client/v3/profile/@u31:localhost", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a dry run changes nothing");

    let asked = say(&server, &boss, &admins, "a2", "!admin ldap sync").await;
    let done = answer(&server, &boss, &admins, &asked, "@ldap_bot:localhost").await;
    assert!(
        done.contains("created 1,") && done.contains("failed 0"),
        "{done}"
    );
    let (status, profile) =
        as_bridge(&server, "/_matrix/client/v3/profile/@u31:localhost", None).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert!(
        joined(&server, "@u31:localhost")
            .await
            .contains(&room_of(&server, "#ldap_company:localhost").await)
    );

    // Users other than admins get a refusal.
    let carol = register(&server, "carol").await;
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{admins}/invite"),
            boss.token(),
            &json!({"user_id": carol.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    join(&server, &carol, &admins).await;
    let asked = say(&server, &carol, &admins, "c1", "!admin ldap sync").await;
    let refused = answer(&server, &carol, &admins, &asked, "@sori:localhost").await;
    assert!(refused.contains("Refused"), "{refused}");
}
