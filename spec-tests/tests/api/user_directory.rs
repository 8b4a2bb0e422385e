//! `POST /_matrix/client/v3/user_directory/search`: whom one finds, and how Korean and Latin
//! names match.

use serde_json::{Value, json};
use spec_tests::{
    ServerOptions, StatusCode, TestServer, User, assert_error, create_room, join, register,
};

async fn name(server: &TestServer, user: &User, display_name: &str) {
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", user.user_id),
            user.token(),
            &json!({ "displayname": display_name }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn search(server: &TestServer, user: &User, body: Value) -> (Vec<String>, Value) {
    let (status, response) = server
        .post(
            "/_matrix/client/v3/user_directory/search",
            user.token(),
            &body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let ids = response["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_owned())
        .collect();
    (ids, response)
}

async fn find(server: &TestServer, user: &User, term: &str) -> Vec<String> {
    search(server, user, json!({ "search_term": term })).await.0
}

#[tokio::test]
async fn people_are_found_inside_korean_names_among_those_one_shares_a_room_with() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let minsu = register(&server, "minsu.kim").await;
    let alex = register(&server, "alex").await;
    let stranger = register(&server, "stranger").await;
    name(&server, &minsu, "김민수").await;
    name(&server, &alex, "Alex Kim").await;
    name(&server, &stranger, "김민정").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &minsu, &room).await;
    join(&server, &alex, &room).await;

    assert_eq!(
        find(&server, &alice, "민수").await,
        vec![minsu.user_id.clone()]
    );
    assert_eq!(
        find(&server, &alice, "김민").await,
        vec![minsu.user_id.clone()],
        "not the stranger"
    );
    assert_eq!(
        find(&server, &alice, "kim").await.len(),
        2,
        "Alex Kim, and minsu.kim by id"
    );
    assert!(
        find(&server, &alice, "김")
            .await
            .iter()
            .all(|u| *u != alex.user_id),
        "no romanization"
    );
    assert_eq!(
        find(&server, &alice, "ALEX k").await,
        vec![alex.user_id.clone()]
    );

    // A profile change shows at once.
    name(&server, &alex, "알렉스").await;
    assert_eq!(
        find(&server, &alice, "렉스").await,
        vec![alex.user_id.clone()]
    );

    // The members of a room in the public directory can be found by anyone.
    let listed = create_room(
        &server,
        &stranger,
        json!({"preset": "public_chat", "visibility": "public"}),
    )
    .await;
    assert!(!listed.is_empty());
    assert_eq!(
        find(&server, &alice, "민정").await,
        vec![stranger.user_id.clone()]
    );

    // Limits, odd input and no body at all.
    let (ids, response) = search(&server, &alice, json!({"search_term": "김", "limit": 1})).await;
    assert_eq!(ids.len(), 1);
    assert_eq!(response["limited"], true);
    for term in ["", "   ", "\"*-(:\\", &"가".repeat(10_000)] {
        let (ids, response) = search(&server, &alice, json!({ "search_term": term })).await;
        assert!(ids.is_empty(), "{term:.20}: {response}");
        assert_eq!(response["limited"], false);
    }
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/user_directory/search",
                alice.token(),
                &json!({"limit": 5}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/user_directory/search",
                alice.token(),
                &json!({"search_term": "x", "limit": -1}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    let (status, _) = server
        .post(
            "/_matrix/client/v3/user_directory/search",
            None,
            &json!({"search_term": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn with_search_all_users_the_whole_company_is_found_but_not_deactivated_accounts() {
    let server = TestServer::start_with(ServerOptions {
        extra_toml: "[user_directory]\nsearch_all_users = true\n".into(),
        ..Default::default()
    })
    .await;
    let alice = register(&server, "alice").await;
    let jiwoo = register(&server, "jiwoo").await;
    let gone = register(&server, "gone").await;
    name(&server, &jiwoo, "박지우").await;
    name(&server, &gone, "박지민").await;
    let mut found = find(&server, &alice, "박지").await;
    found.sort();
    let mut both = vec![jiwoo.user_id.clone(), gone.user_id.clone()];
    both.sort();
    assert_eq!(found, both, "no shared room needed");

    let path = "/_matrix/client/v3/account/deactivate";
    let (_, challenge) = server.post(path, gone.token(), &json!({})).await;
    let session = challenge["session"].as_str().unwrap();
    let (status, body) = server
        .post(
            path,
            gone.token(),
            &json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": gone.user_id}, "password": gone.password, "session": session}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        find(&server, &alice, "박지").await,
        vec![jiwoo.user_id.clone()]
    );
}
