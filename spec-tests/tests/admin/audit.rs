//! The audit log over a scripted day: every audited action leaves an entry with who, what,
//! on whom and from where; admins and auditors read it (filtered, paged), users do not; a
//! room export is audited too; `sori audit verify` passes, and names the entry whose stored
//! bytes were changed.

use serde_json::{Value, json};
use spec_tests::{StatusCode, TestServer, User, assert_error, create_room, join, login, register};

use super::{server_with_admin, server_with_admin_and};

async fn entries(server: &TestServer, user: &User, query: &str) -> Value {
    let (status, body) = server
        .get(&format!("/_sori/admin/v1/audit?{query}"), user.token())
        .await;
    assert_eq!(status, StatusCode::OK, "audit {query}: {body}");
    body
}

fn actions(body: &Value) -> Vec<String> {
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn membership(server: &TestServer, user: &User, room: &str, action: &str, target: &str) {
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/{action}"),
            user.token(),
            &json!({"user_id": target, "reason": "audit test"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{action}: {body}");
}

/// Changes one byte of the stored audit entry `id` (its `ts` field), as someone with write
/// access to the data directory could.
fn tamper(data_dir: &std::path::Path, id: u64) {
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), data_dir).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), data_dir, &families).unwrap();
    let cf = db.cf_handle("audit").expect("the audit table");
    let key = id.to_be_bytes();
    let mut value = db.get_cf(&cf, key).unwrap().expect("the entry");
    let at = value
        .windows(5)
        .position(|w| w == b"\"ts\":")
        .expect("a ts field")
        + 5;
    value[at] = if value[at] == b'1' { b'2' } else { b'1' };
    db.put_cf(&cf, key, value).unwrap();
}

#[tokio::test]
async fn a_day_of_activity_is_audited_verifiable_and_tampering_is_named() {
    let (mut server, boss) = server_with_admin().await;
    let minsu = register(&server, "minsu").await;
    let jiwoo = register(&server, "jiwoo").await;
    let audrey = register(&server, "audrey").await;

    // A wrong password: audited with the name tried, never the password.
    let (status, _) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            &json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "jiwoo"},
                "password": "not-her-password",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    server
        .put(
            &format!("/_sori/admin/v1/users/{}/role", audrey.user_id),
            boss.token(),
            &json!({"role": "auditor"}),
        )
        .await;

    let room = create_room(&server, &minsu, json!({"name": "Planning"})).await;
    spec_tests::send_text(&server, &minsu, &room, "t1", "quarterly plan").await;
    membership(&server, &minsu, &room, "invite", &jiwoo.user_id).await;
    join(&server, &jiwoo, &room).await;
    membership(&server, &minsu, &room, "kick", &jiwoo.user_id).await;
    membership(&server, &minsu, &room, "ban", &jiwoo.user_id).await;
    membership(&server, &minsu, &room, "unban", &jiwoo.user_id).await;

    let (status, body) = server
        .post(
            "/_matrix/client/v3/account/password",
            minsu.token(),
            &json!({
                "new_password": "a-new-password-1",
                "logout_devices": false,
                "auth": {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": minsu.user_id},
                    "password": minsu.password,
                },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = server
        .post("/_matrix/client/v3/logout", jiwoo.token(), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let carol = register(&server, "carol").await;
    let (status, body) = server
        .post(
            "/_matrix/client/v3/account/deactivate",
            carol.token(),
            &json!({"auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": carol.user_id},
                "password": carol.password,
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The auditor reads the whole day, newest first.
    let all = entries(&server, &audrey, "limit=1000").await;
    let seen = actions(&all);
    for action in [
        "register",
        "login",
        "login_failed",
        "role_change",
        "room_create",
        "invite",
        "kick",
        "ban",
        "unban",
        "password_reset",
        "logout",
        "deactivate",
    ] {
        assert!(seen.iter().any(|a| a == action), "{action} in {seen:?}");
    }
    let ids: Vec<u64> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert!(all.get("next_batch").is_none());

    let failed = entries(&server, &boss, "action=login_failed").await;
    let failed = &failed["entries"][0];
    assert_eq!(failed["target"], "jiwoo");
    assert_eq!(failed["actor"], Value::Null);
    assert_eq!(failed["ip"], "127.0.0.1");
    assert!(!failed.to_string().contains("not-her-password"));

    let ban = entries(&server, &boss, "action=ban").await;
    let ban = &ban["entries"][0];
    assert_eq!(ban["actor"], minsu.user_id);
    assert_eq!(ban["target"], jiwoo.user_id);
    assert_eq!(ban["details"]["room_id"], room);
    assert_eq!(ban["ip"], "127.0.0.1");
    assert_eq!(ban["hash"].as_str().unwrap().len(), 64);

    let role = entries(&server, &boss, "action=role_change").await;
    assert_eq!(role["entries"][0]["actor"], boss.user_id);
    assert_eq!(
        role["entries"][0]["details"],
        json!({"from": "user", "to": "auditor"})
    );

    // Everything about jiwoo, paged two at a time, adds up to the unpaged answer.
    let about = entries(&server, &boss, &format!("user_id={}", jiwoo.user_id)).await;
    let mut paged = Vec::new();
    let mut from = String::new();
    loop {
        let page = entries(
            &server,
            &boss,
            &format!("user_id={}&limit=2{from}", jiwoo.user_id),
        )
        .await;
        paged.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next_batch"].as_str() {
            Some(next) => from = format!("&from={next}"),
            None => break,
        }
    }
    assert_eq!(Value::Array(paged), about["entries"]);
    assert!(about["entries"].as_array().unwrap().len() >= 6);
    let now = entries(&server, &boss, "since_ts=99999999999999").await;
    assert_eq!(now["entries"], json!([]));

    // The auditor exports the room: every event, as stored; the export is audited.
    let response = server
        .http
        .get(server.url(&format!("/_sori/admin/v1/rooms/{room}/export")))
        .bearer_auth(&audrey.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "m.room.create");
    assert!(
        lines
            .iter()
            .any(|l| l["content"]["body"] == "quarterly plan"
                && l["sender"] == minsu.user_id
                && l["origin_server_ts"].is_u64())
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["type"] == "m.room.member" && l["state_key"] == jiwoo.user_id)
            .count(),
        5,
        "invite, join, kick, ban, unban"
    );
    let export = entries(&server, &boss, "action=export").await;
    assert_eq!(export["entries"][0]["actor"], audrey.user_id);
    assert_eq!(export["entries"][0]["target"], room);

    // Refusals and bad input.
    assert_error(
        &server.get("/_sori/admin/v1/audit", minsu.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .get(
                &format!("/_sori/admin/v1/rooms/{room}/export"),
                minsu.token(),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.get("/_sori/admin/v1/audit", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    for query in [
        "from=abc",
        "limit=0",
        "limit=5000",
        "limit=-1",
        "since_ts=yesterday",
    ] {
        assert_error(
            &server
                .get(&format!("/_sori/admin/v1/audit?{query}"), boss.token())
                .await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }
    assert_error(
        &server
            .get(
                "/_sori/admin/v1/rooms/!nowhere:localhost/export",
                boss.token(),
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .get("/_sori/admin/v1/rooms/not-a-room/export", boss.token())
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    // Offline: the chain verifies, and exports as JSON lines in order.
    let total = entries(&server, &boss, "limit=1000").await["entries"]
        .as_array()
        .unwrap()
        .len();
    let verified = server.run_offline(&["audit", "verify"]).await;
    assert!(verified.status.success(), "{verified:?}");
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(said.contains("intact"), "{said}");
    let exported = server
        .run_offline(&["audit", "export", "--format", "jsonl"])
        .await;
    assert!(exported.status.success(), "{exported:?}");
    let exported: Vec<Value> = String::from_utf8(exported.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported.len(), total);
    assert!(
        exported
            .windows(2)
            .all(|w| w[1]["prev_hash"] == w[0]["hash"])
    );

    // One changed byte in the ban's entry: verify names that entry and fails.
    let ban_id = ban["id"].as_u64().unwrap();
    let data_dir = server.data_dir();
    server.stop_for(|| tamper(&data_dir, ban_id)).await;
    let verified = server.run_offline(&["audit", "verify"]).await;
    assert!(!verified.status.success());
    let said = String::from_utf8_lossy(&verified.stderr);
    assert!(
        said.contains(&format!("broken at entry {ban_id}")),
        "{said}"
    );

    // The server still runs and still audits (a new login after the damage).
    login(&server, "boss", "boss-password-1").await;
}

#[tokio::test]
async fn media_downloads_are_audited_only_when_asked() {
    for audited in [false, true] {
        let (server, boss) = server_with_admin_and(spec_tests::ServerOptions {
            extra_toml: format!("[audit]\nmedia_downloads = {audited}\n"),
            ..Default::default()
        })
        .await;
        let minsu = register(&server, "minsu").await;
        let uploaded: Value = server
            .http
            .post(server.url("/_matrix/media/v3/upload"))
            .bearer_auth(&minsu.access_token)
            .header("content-type", "text/plain")
            .body("minutes of the meeting")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mxc = uploaded["content_uri"].as_str().unwrap().to_owned();
        let path = mxc.trim_start_matches("mxc://");
        let response = server
            .http
            .get(server.url(&format!("/_matrix/client/v1/media/download/{path}")))
            .bearer_auth(&minsu.access_token)
            .header("user-agent", "audit-test/1.0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let found = entries(&server, &boss, "action=media_download").await;
        let found = found["entries"].as_array().unwrap();
        if audited {
            assert_eq!(found.len(), 1);
            assert_eq!(found[0]["actor"], minsu.user_id);
            assert_eq!(found[0]["target"], mxc);
            assert_eq!(found[0]["user_agent"], "audit-test/1.0");
        } else {
            assert!(found.is_empty(), "{found:?}");
        }
    }
}
