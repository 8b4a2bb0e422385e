//! Synapse's admin API as admin tools call it: the role × action matrix (admins do, auditors
//! read, users get nothing), users, rooms (down to deletion with purge and block), media,
//! event reports and registration tokens; bad input gets Synapse's errors and changes
//! nothing.

use reqwest::Method;
use serde_json::{Value, json};
use spec_tests::{
    StatusCode, TestServer, User, assert_error, create_room, join, login, register, send_text,
};

use super::{server_with_admin, server_with_admin_and};

fn enc(id: &str) -> String {
    id.replace('@', "%40")
        .replace(':', "%3A")
        .replace('!', "%21")
        .replace('#', "%23")
}

async fn call(
    server: &TestServer,
    user: &User,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    server
        .request(
            method,
            &format!("/_synapse/admin{path}"),
            user.token(),
            body,
        )
        .await
}

/// An admin, an auditor and a plain user.
async fn staff() -> (TestServer, User, User, User) {
    let (server, boss) = server_with_admin().await;
    let audrey = register(&server, "audrey").await;
    let carol = register(&server, "carol").await;
    let (status, _) = server
        .put(
            &format!("/_sori/admin/v1/users/{}/role", audrey.user_id),
            boss.token(),
            &json!({"role": "auditor"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    (server, boss, audrey, carol)
}

#[tokio::test]
async fn admins_do_auditors_read_users_get_nothing() {
    let (server, boss, audrey, carol) = staff().await;
    let room = create_room(&server, &carol, json!({"name": "Carol's"})).await;
    let carol_id = enc(&carol.user_id);
    let room_id = enc(&room);
    let reads = [
        "/v1/server_version".to_owned(),
        "/v2/users".to_owned(),
        format!("/v2/users/{carol_id}"),
        format!("/v1/whois/{carol_id}"),
        format!("/v1/users/{carol_id}/joined_rooms"),
        format!("/v1/users/{carol_id}/media"),
        format!("/v1/users/{carol_id}/admin"),
        "/v1/rooms".to_owned(),
        format!("/v1/rooms/{room_id}"),
        format!("/v1/rooms/{room_id}/members"),
        format!("/v1/rooms/{room_id}/state"),
        format!("/v1/rooms/{room_id}/messages"),
        format!("/v1/rooms/{room_id}/block"),
        format!("/v1/room/{room_id}/media"),
        "/v1/event_reports".to_owned(),
        "/v1/registration_tokens".to_owned(),
    ];
    for path in &reads {
        for reader in [&boss, &audrey] {
            let (status, body) = call(&server, reader, Method::GET, path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        }
        if path != "/v1/server_version" {
            assert_error(
                &call(&server, &carol, Method::GET, path, None).await,
                StatusCode::FORBIDDEN,
                "M_FORBIDDEN",
            );
        }
    }
    let writes = [
        (
            Method::PUT,
            format!("/v2/users/{carol_id}"),
            json!({"displayname": "x"}),
        ),
        (
            Method::POST,
            format!("/v1/reset_password/{carol_id}"),
            json!({"new_password": "p4ssw0rd-x"}),
        ),
        (
            Method::POST,
            format!("/v1/deactivate/{carol_id}"),
            json!({}),
        ),
        (
            Method::PUT,
            format!("/v1/users/{carol_id}/admin"),
            json!({"admin": true}),
        ),
        (Method::DELETE, format!("/v2/rooms/{room_id}"), json!({})),
        (Method::DELETE, format!("/v1/rooms/{room_id}"), json!({})),
        (
            Method::PUT,
            format!("/v1/rooms/{room_id}/block"),
            json!({"block": true}),
        ),
        (
            Method::POST,
            format!("/v1/room/{room_id}/media/quarantine"),
            json!({}),
        ),
        (
            Method::POST,
            "/v1/registration_tokens/new".to_owned(),
            json!({}),
        ),
        (Method::DELETE, "/v1/event_reports/1".to_owned(), json!({})),
    ];
    for (method, path, body) in &writes {
        for refused in [&audrey, &carol] {
            assert_error(
                &call(&server, refused, method.clone(), path, Some(body)).await,
                StatusCode::FORBIDDEN,
                "M_FORBIDDEN",
            );
        }
    }
    // Nothing changed.
    let (_, carol_now) = call(
        &server,
        &boss,
        Method::GET,
        &format!("/v2/users/{carol_id}"),
        None,
    )
    .await;
    assert_eq!(carol_now["displayname"], "carol");
    assert_eq!(carol_now["deactivated"], false);
    assert_eq!(carol_now["admin"], false);
    login(&server, "carol", &carol.password).await;
    let (_, tokens) = call(&server, &boss, Method::GET, "/v1/registration_tokens", None).await;
    assert_eq!(tokens["registration_tokens"], json!([]));
    let (_, block) = call(
        &server,
        &boss,
        Method::GET,
        &format!("/v1/rooms/{room_id}/block"),
        None,
    )
    .await;
    assert_eq!(block["block"], false);
    // No token: 401.
    assert_error(
        &server.get("/_synapse/admin/v2/users", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn users_are_listed_created_changed_and_deactivated() {
    let (server, boss, _audrey, carol) = staff().await;
    let (status, version) = call(&server, &boss, Method::GET, "/v1/server_version", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        version["server_version"]
            .as_str()
            .unwrap()
            .starts_with("Sori ")
    );

    // Create: 201 with the details; the new user logs in with the password.
    let (status, made) = call(
        &server,
        &boss,
        Method::PUT,
        "/v2/users/@dana:localhost",
        Some(&json!({"password": "dana-password-1", "displayname": "Dana Kim", "admin": false})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["name"], "@dana:localhost");
    assert_eq!(made["displayname"], "Dana Kim");
    assert_eq!(made["admin"], false);
    assert!(
        made["creation_ts"].as_u64().unwrap() < 10_000_000_000,
        "seconds"
    );
    let dana = login(&server, "dana", "dana-password-1").await;

    // Modify: 200; the flag and the role agree.
    let (status, changed) = call(
        &server,
        &boss,
        Method::PUT,
        &format!("/v2/users/{}", enc(&dana.user_id)),
        Some(&json!({"displayname": "Dana K.", "admin": true, "threepids": []})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["displayname"], "Dana K.");
    assert_eq!(
        (changed["admin"].clone(), changed["role"].clone()),
        (json!(true), json!("admin"))
    );

    // The list: paged, filtered, with totals.
    let (_, all) = call(&server, &boss, Method::GET, "/v2/users?limit=2", None).await;
    // boss, audrey, carol, dana and the admin room's bot.
    assert_eq!(all["total"], 5, "{all}");
    assert_eq!(all["users"].as_array().unwrap().len(), 2);
    assert_eq!(all["next_token"], "2");
    let (_, rest) = call(
        &server,
        &boss,
        Method::GET,
        "/v2/users?from=2&limit=10",
        None,
    )
    .await;
    assert_eq!(rest["users"].as_array().unwrap().len(), 3);
    assert!(rest.get("next_token").is_none());
    let (_, admins) = call(&server, &boss, Method::GET, "/v2/users?admins=true", None).await;
    let names: Vec<&str> = admins["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["@boss:localhost", "@dana:localhost"]);
    let (_, by_name) = call(&server, &boss, Method::GET, "/v2/users?name=dana%20k", None).await;
    assert_eq!(by_name["total"], 1);
    let (_, by_date) = call(
        &server,
        &boss,
        Method::GET,
        "/v2/users?order_by=creation_ts&dir=b",
        None,
    )
    .await;
    assert_eq!(by_date["users"][0]["name"], "@dana:localhost");

    // Whois, joined rooms.
    let room = create_room(&server, &carol, json!({})).await;
    let (_, whois) = call(
        &server,
        &boss,
        Method::GET,
        &format!("/v1/whois/{}", enc(&carol.user_id)),
        None,
    )
    .await;
    let device = &whois["devices"][&carol.device_id];
    assert_eq!(
        device["sessions"][0]["connections"][0]["ip"], "127.0.0.1",
        "{whois}"
    );
    let (_, joined) = call(
        &server,
        &boss,
        Method::GET,
        &format!("/v1/users/{}/joined_rooms", enc(&carol.user_id)),
        None,
    )
    .await;
    assert_eq!(joined, json!({"joined_rooms": [room], "total": 1}));

    // Password reset logs the devices out.
    let (status, body) = call(
        &server,
        &boss,
        Method::POST,
        &format!("/v1/reset_password/{}", enc(&carol.user_id)),
        Some(&json!({"new_password": "carol-new-password"})),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_error(
        &server
            .get("/_matrix/client/v3/account/whoami", carol.token())
            .await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let carol = login(&server, "carol", "carol-new-password").await;

    // Deactivation: out of her rooms, locked out, listed only when asked.
    let (status, body) = call(
        &server,
        &boss,
        Method::POST,
        &format!("/v1/deactivate/{}", enc(&carol.user_id)),
        Some(&json!({"erase": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id_server_unbind_result"], "success");
    let (_, joined) = call(
        &server,
        &boss,
        Method::GET,
        &format!("/v1/users/{}/joined_rooms", enc(&carol.user_id)),
        None,
    )
    .await;
    assert_eq!(joined["total"], 0);
    let (status, _) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            &json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "carol"}, "password": "carol-new-password"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, listed) = call(&server, &boss, Method::GET, "/v2/users", None).await;
    assert_eq!(listed["total"], 4);
    let (_, listed) = call(
        &server,
        &boss,
        Method::GET,
        "/v2/users?deactivated=true",
        None,
    )
    .await;
    assert_eq!(listed["total"], 5);
    let (_, details) = call(
        &server,
        &boss,
        Method::GET,
        &format!("/v2/users/{}", enc(&carol.user_id)),
        None,
    )
    .await;
    assert_eq!(details["deactivated"], true);
    assert_eq!(details["displayname"], Value::Null, "erased");

    // The audit log has it all, by the admin.
    let (_, audit) = server
        .get(
            "/_sori/admin/v1/audit?user_id=%40carol%3Alocalhost",
            boss.token(),
        )
        .await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["deactivate", "password_reset", "logout"] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }

    // Bad input, nothing changed.
    for (method, path, body, status, errcode) in [
        (
            Method::GET,
            "/v2/users/not-a-user",
            None,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        ),
        (
            Method::GET,
            "/v2/users/@nobody:localhost",
            None,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        ),
        (
            Method::GET,
            "/v2/users/@x:elsewhere.example",
            None,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        ),
        (
            Method::GET,
            "/v2/users?from=abc",
            None,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        ),
        (
            Method::GET,
            "/v2/users?limit=-5",
            None,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        ),
        (
            Method::GET,
            "/v2/users?order_by=shoe_size",
            None,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        ),
        (
            Method::GET,
            "/v2/users?deactivated=maybe",
            None,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        ),
        (
            Method::PUT,
            "/v2/users/@Bad%20Name:localhost",
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "M_INVALID_USERNAME",
        ),
        (
            Method::PUT,
            "/v2/users/@UPPER:localhost",
            Some(json!({"password": "long-enough-1"})),
            StatusCode::BAD_REQUEST,
            "M_INVALID_USERNAME",
        ),
        (
            Method::PUT,
            "/v2/users/@dana:localhost",
            Some(json!({"admin": "yes"})),
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
        ),
        (
            Method::POST,
            "/v1/reset_password/@dana:localhost",
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
        ),
        (
            Method::POST,
            "/v1/deactivate/@nobody:localhost",
            Some(json!({})),
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        ),
    ] {
        assert_error(
            &call(&server, &boss, method, path, body.as_ref()).await,
            status,
            errcode,
        );
    }
    // The last admin stays: dana steps down, then boss cannot be deactivated or demoted.
    call(
        &server,
        &boss,
        Method::PUT,
        "/v2/users/@dana:localhost",
        Some(&json!({"admin": false})),
    )
    .await;
    for (method, path, body) in [
        (Method::POST, "/v1/deactivate/@boss:localhost", json!({})),
        (
            Method::PUT,
            "/v2/users/@boss:localhost",
            json!({"deactivated": true}),
        ),
        (
            Method::PUT,
            "/v2/users/@boss:localhost",
            json!({"admin": false}),
        ),
    ] {
        assert_error(
            &call(&server, &boss, method, path, Some(&body)).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    let (_, me) = call(
        &server,
        &boss,
        Method::GET,
        "/v2/users/@boss:localhost",
        None,
    )
    .await;
    assert_eq!(
        (me["admin"].clone(), me["deactivated"].clone()),
        (json!(true), json!(false))
    );
    let (_, dana_now) = call(
        &server,
        &boss,
        Method::GET,
        "/v2/users/@dana:localhost",
        None,
    )
    .await;
    assert_eq!(dana_now["displayname"], "Dana K.");
}

#[tokio::test]
async fn rooms_are_listed_read_and_deleted_with_purge_and_block() {
    let (server, boss, audrey, carol) = staff().await;
    let dave = register(&server, "dave").await;
    let room = create_room(
        &server,
        &carol,
        json!({"name": "Leaky", "room_alias_name": "leaky", "visibility": "public", "preset": "public_chat"}),
    )
    .await;
    join(&server, &dave, &room).await;
    for i in 0..5 {
        send_text(
            &server,
            &carol,
            &room,
            &format!("t{i}"),
            &format!("secret plan {i}"),
        )
        .await;
    }
    let quiet = create_room(&server, &dave, json!({"name": "Quiet"})).await;
    let room_id = enc(&room);

    let (_, list) = call(
        &server,
        &audrey,
        Method::GET,
        "/v1/rooms?order_by=name",
        None,
    )
    .await;
    // The admin room is there too, from the first start.
    assert_eq!(list["total_rooms"], 3);
    assert_eq!(list["offset"], 0);
    let names: Vec<&str> = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Leaky", "Quiet", "Sori admins"]);
    let (_, found) = call(
        &server,
        &audrey,
        Method::GET,
        "/v1/rooms?search_term=leak",
        None,
    )
    .await;
    assert_eq!(found["total_rooms"], 1);
    let (_, page) = call(&server, &audrey, Method::GET, "/v1/rooms?limit=1", None).await;
    assert_eq!(page["next_batch"], 1);

    let (_, details) = call(
        &server,
        &audrey,
        Method::GET,
        &format!("/v1/rooms/{room_id}"),
        None,
    )
    .await;
    assert_eq!(details["name"], "Leaky");
    assert_eq!(details["canonical_alias"], "#leaky:localhost");
    assert_eq!(details["joined_members"], 2);
    assert_eq!(details["creator"], carol.user_id);
    assert_eq!(details["public"], true);
    let (_, members) = call(
        &server,
        &audrey,
        Method::GET,
        &format!("/v1/rooms/{room_id}/members"),
        None,
    )
    .await;
    assert_eq!(members["total"], 2);
    let (_, state) = call(
        &server,
        &audrey,
        Method::GET,
        &format!("/v1/rooms/{room_id}/state"),
        None,
    )
    .await;
    assert!(
        state["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.create")
    );
    // An auditor who was never in the room still reads its messages.
    let (_, messages) = call(
        &server,
        &audrey,
        Method::GET,
        &format!("/v1/rooms/{room_id}/messages?dir=b&limit=3"),
        None,
    )
    .await;
    let bodies = spec_tests::bodies(&messages);
    assert_eq!(bodies, ["secret plan 4", "secret plan 3", "secret plan 2"]);
    assert!(messages["end"].is_string());

    // The admin room cannot be deleted (not yet made here: any unknown room is 404).
    assert_error(
        &call(
            &server,
            &boss,
            Method::DELETE,
            "/v2/rooms/%21nowhere%3Alocalhost",
            Some(&json!({})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &call(
            &server,
            &boss,
            Method::DELETE,
            "/v2/rooms/not-a-room",
            Some(&json!({})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &call(
            &server,
            &boss,
            Method::GET,
            "/v2/rooms/delete_status/nope",
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    let before = spec_tests::sync(&server, &dave, "timeout=0").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // Delete with block and purge, moving the members to a notice room.
    let (status, started) = call(
        &server,
        &boss,
        Method::DELETE,
        &format!("/v2/rooms/{room_id}"),
        Some(&json!({"block": true, "purge": true, "new_room_user_id": boss.user_id, "message": "Moved: see policy"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let delete_id = started["delete_id"].as_str().unwrap().to_owned();
    let mut status = Value::Null;
    for _ in 0..100 {
        let (_, now) = call(
            &server,
            &boss,
            Method::GET,
            &format!("/v2/rooms/delete_status/{delete_id}"),
            None,
        )
        .await;
        status = now;
        if status["status"] == "complete" || status["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status["status"], "complete", "{status}");
    let shutdown = &status["shutdown_room"];
    let mut kicked: Vec<&str> = shutdown["kicked_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    kicked.sort();
    assert_eq!(kicked, [carol.user_id.as_str(), dave.user_id.as_str()]);
    assert_eq!(shutdown["local_aliases"], json!(["#leaky:localhost"]));
    let new_room = shutdown["new_room_id"].as_str().unwrap().to_owned();
    let (_, by_room) = call(
        &server,
        &boss,
        Method::GET,
        &format!("/v2/rooms/{room_id}/delete_status"),
        None,
    )
    .await;
    assert_eq!(by_room["results"][0]["delete_id"], delete_id.as_str());

    // Gone: not listed, no alias, no directory entry, events purged; members moved.
    let (_, list) = call(&server, &boss, Method::GET, "/v1/rooms", None).await;
    let ids: Vec<&str> = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    assert!(
        !ids.contains(&room.as_str())
            && ids.contains(&quiet.as_str())
            && ids.contains(&new_room.as_str())
    );
    assert_error(
        &server
            .get(
                "/_matrix/client/v3/directory/room/%23leaky%3Alocalhost",
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let (_, public) = server
        .get("/_matrix/client/v3/publicRooms", carol.token())
        .await;
    assert!(!public.to_string().contains(&room));
    assert_error(
        &call(
            &server,
            &boss,
            Method::GET,
            &format!("/v1/rooms/{room_id}/messages"),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let (_, searched) = server
        .post(
            "/_matrix/client/v3/search",
            dave.token(),
            &json!({"search_categories": {"room_events": {"search_term": "secret"}}}),
        )
        .await;
    assert_eq!(
        searched["search_categories"]["room_events"]["count"], 0,
        "{searched}"
    );
    let (_, dave_rooms) = server
        .get("/_matrix/client/v3/joined_rooms", dave.token())
        .await;
    let dave_rooms = dave_rooms["joined_rooms"].as_array().unwrap();
    assert!(dave_rooms.contains(&json!(new_room)) && !dave_rooms.contains(&json!(room)));
    let (_, notice) = server
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20",
                enc(&new_room)
            ),
            dave.token(),
        )
        .await;
    assert!(spec_tests::bodies(&notice).contains(&"Moved: see policy".to_owned()));
    // Dave's client hears he left, though the room's events are gone.
    let synced = spec_tests::sync(&server, &dave, &format!("timeout=0&since={before}")).await;
    assert!(synced["rooms"]["leave"].get(&room).is_some(), "{synced}");
    assert!(synced["rooms"]["join"].get(&room).is_none());
    assert!(synced["rooms"]["join"].get(&new_room).is_some());

    // Blocked: nobody gets in again.
    let (_, block) = call(
        &server,
        &audrey,
        Method::GET,
        &format!("/v1/rooms/{room_id}/block"),
        None,
    )
    .await;
    assert_eq!(block, json!({"block": true, "user_id": boss.user_id}));
    assert_error(
        &server
            .post(
                &format!("/_matrix/client/v3/rooms/{room_id}/join"),
                dave.token(),
                &json!({}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // Unblocking is the admin's call; the audit log saw the deletion.
    let (status, _) = call(
        &server,
        &boss,
        Method::PUT,
        &format!("/v1/rooms/{room_id}/block"),
        Some(&json!({"block": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, audit) = server
        .get("/_sori/admin/v1/audit?action=room_delete", audrey.token())
        .await;
    assert_eq!(audit["entries"][0]["target"], room);
    assert_eq!(audit["entries"][0]["actor"], boss.user_id);

    // v1 deletion answers when done, without purge the room stays listed with nobody in it.
    let (status, done) = call(
        &server,
        &boss,
        Method::DELETE,
        &format!("/v1/rooms/{}", enc(&quiet)),
        Some(&json!({"purge": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["kicked_users"], json!([dave.user_id]));
    let (_, details) = call(
        &server,
        &boss,
        Method::GET,
        &format!("/v1/rooms/{}", enc(&quiet)),
        None,
    )
    .await;
    assert_eq!(details["joined_members"], 0);
}

#[tokio::test]
async fn media_is_quarantined_and_deleted() {
    let (server, boss, audrey, carol) = staff().await;
    let upload = |body: &'static str| {
        let server = &server;
        let carol = &carol;
        async move {
            let answer: Value = server
                .http
                .post(server.url("/_matrix/media/v3/upload"))
                .bearer_auth(&carol.access_token)
                .header("content-type", "text/plain")
                .body(body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["content_uri"]
                .as_str()
                .unwrap()
                .trim_start_matches("mxc://")
                .to_owned()
        }
    };
    let bad = upload("something unlawful").await;
    let gone = upload("something to delete").await;
    let room = create_room(&server, &carol, json!({})).await;
    server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/f1"),
            carol.token(),
            &json!({"msgtype": "m.file", "body": "f", "url": format!("mxc://{bad}")}),
        )
        .await;
    let download = |path: String| {
        let server = &server;
        let carol = &carol;
        async move {
            server
                .http
                .get(server.url(&format!("/_matrix/client/v1/media/download/{path}")))
                .bearer_auth(&carol.access_token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(download(bad.clone()).await, StatusCode::OK);

    let (_, of_room) = call(
        &server,
        &audrey,
        Method::GET,
        &format!("/v1/room/{}/media", enc(&room)),
        None,
    )
    .await;
    assert_eq!(
        of_room,
        json!({"local": [format!("mxc://{bad}")], "remote": []})
    );
    let (_, of_user) = call(
        &server,
        &audrey,
        Method::GET,
        &format!("/v1/users/{}/media", enc(&carol.user_id)),
        None,
    )
    .await;
    assert_eq!(of_user["total"], 2);

    let (status, _) = call(
        &server,
        &boss,
        Method::POST,
        &format!("/v1/media/quarantine/{bad}"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(download(bad.clone()).await, StatusCode::NOT_FOUND);
    let (_, of_user) = call(
        &server,
        &audrey,
        Method::GET,
        &format!("/v1/users/{}/media", enc(&carol.user_id)),
        None,
    )
    .await;
    assert!(
        of_user["media"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["quarantined_by"] == boss.user_id)
    );

    let (status, deleted) = call(
        &server,
        &boss,
        Method::DELETE,
        &format!("/v1/media/{gone}"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["total"], 1);
    assert_eq!(download(gone.clone()).await, StatusCode::NOT_FOUND);
    assert_error(
        &call(
            &server,
            &boss,
            Method::DELETE,
            &format!("/v1/media/{gone}"),
            Some(&json!({})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &call(
            &server,
            &boss,
            Method::POST,
            "/v1/media/quarantine/elsewhere.example/abc",
            Some(&json!({})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let (_, audit) = server
        .get(
            "/_sori/admin/v1/audit?action=media_quarantine",
            audrey.token(),
        )
        .await;
    assert_eq!(audit["entries"][0]["target"], format!("mxc://{bad}"));
}

#[tokio::test]
async fn event_reports_are_read_and_dismissed() {
    let (server, boss, audrey, carol) = staff().await;
    let dave = register(&server, "dave").await;
    let room = create_room(
        &server,
        &carol,
        json!({"name": "Reported", "preset": "public_chat"}),
    )
    .await;
    join(&server, &dave, &room).await;
    let (_, sent) = send_text(&server, &carol, &room, "r1", "rude words").await;
    let event_id = sent["event_id"].as_str().unwrap();
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/report/{event_id}"),
            dave.token(),
            &json!({"reason": "rude"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, reports) = call(&server, &audrey, Method::GET, "/v1/event_reports", None).await;
    assert_eq!(reports["total"], 1);
    let report = &reports["event_reports"][0];
    assert_eq!(report["reason"], "rude");
    assert_eq!(report["user_id"], dave.user_id);
    assert_eq!(report["sender"], carol.user_id);
    assert_eq!(report["name"], "Reported");
    let id = report["id"].as_u64().unwrap();
    let (_, one) = call(
        &server,
        &audrey,
        Method::GET,
        &format!("/v1/event_reports/{id}"),
        None,
    )
    .await;
    assert_eq!(one["event_json"]["content"]["body"], "rude words");
    assert_error(
        &call(
            &server,
            &boss,
            Method::GET,
            "/v1/event_reports/banana",
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let (status, _) = call(
        &server,
        &boss,
        Method::DELETE,
        &format!("/v1/event_reports/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &call(
            &server,
            &boss,
            Method::GET,
            &format!("/v1/event_reports/{id}"),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn registration_tokens_gate_registration() {
    let (server, boss) = server_with_admin_and(spec_tests::ServerOptions {
        registration_requires_token: true,
        ..Default::default()
    })
    .await;

    let register_with = |name: &'static str, token: &'static str| {
        let server = &server;
        async move {
            // The first request opens a UIA session, the second completes it with the token.
            let (_, first) = server
                .post(
                    "/_matrix/client/v3/register",
                    None,
                    &json!({"username": name, "password": "pw-long-enough"}),
                )
                .await;
            let session = first["session"].as_str().unwrap_or_default().to_owned();
            server
                .post(
                    "/_matrix/client/v3/register",
                    None,
                    &json!({"username": name, "password": "pw-long-enough",
                            "auth": {"type": "m.login.registration_token", "token": token, "session": session}}),
                )
                .await
        }
    };
    let (status, _) = register_with("early", "welcome2026").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no such token yet");

    let (status, made) = call(
        &server,
        &boss,
        Method::POST,
        "/v1/registration_tokens/new",
        Some(
            &json!({"token": "welcome2026", "uses_allowed": 1, "expiry_time": null, "length": 16}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    assert_eq!(
        made,
        json!({"token": "welcome2026", "uses_allowed": 1, "pending": 0, "completed": 0, "expiry_time": null})
    );
    let (_, valid) = server
        .get(
            "/_matrix/client/v1/register/m.login.registration_token/validity?token=welcome2026",
            None,
        )
        .await;
    assert_eq!(valid["valid"], true);

    let (status, body) = register_with("first", "welcome2026").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = register_with("second", "welcome2026").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "used up");
    let (_, token) = call(
        &server,
        &boss,
        Method::GET,
        "/v1/registration_tokens/welcome2026",
        None,
    )
    .await;
    assert_eq!(token["completed"], 1);
    let (_, valid) = call(
        &server,
        &boss,
        Method::GET,
        "/v1/registration_tokens?valid=false",
        None,
    )
    .await;
    assert_eq!(valid["registration_tokens"][0]["token"], "welcome2026");

    // More uses: the second person gets in.
    let (status, _) = call(
        &server,
        &boss,
        Method::PUT,
        "/v1/registration_tokens/welcome2026",
        Some(&json!({"uses_allowed": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = register_with("second", "welcome2026").await;
    assert_eq!(status, StatusCode::OK);

    // A random one, then bad input.
    let (_, random) = call(
        &server,
        &boss,
        Method::POST,
        "/v1/registration_tokens/new",
        Some(&json!({"length": 24})),
    )
    .await;
    assert_eq!(random["token"].as_str().unwrap().len(), 24);
    for body in [
        json!({"token": "has space"}),
        json!({"uses_allowed": -1}),
        json!({"expiry_time": 1}),
        json!({"length": 0}),
        json!({"length": 65}),
        json!({"token": "welcome2026"}),
    ] {
        assert_error(
            &call(
                &server,
                &boss,
                Method::POST,
                "/v1/registration_tokens/new",
                Some(&body),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }
    assert_error(
        &call(
            &server,
            &boss,
            Method::PUT,
            "/v1/registration_tokens/nope",
            Some(&json!({})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let (status, body) = call(
        &server,
        &boss,
        Method::DELETE,
        "/v1/registration_tokens/welcome2026",
        None,
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (_, left) = call(&server, &boss, Method::GET, "/v1/registration_tokens", None).await;
    assert_eq!(left["registration_tokens"].as_array().unwrap().len(), 1);
}
