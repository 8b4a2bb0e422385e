//! Recall and precision on a Korean corpus (corpus-ko.json): realistic chat lines with
//! particles and endings glued to the words, and mixed Latin words and file names.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};
use spec_tests::{StatusCode, TestServer, create_room, register};

use super::{search, wait_indexed};

/// The hits a whitespace tokenizer (Synapse's SQLite and PostgreSQL search) would give: the
/// query's words equal to whole words of the text, case aside.
fn whitespace_hits(query: &str, texts: &HashMap<String, String>) -> BTreeSet<String> {
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    texts
        .iter()
        .filter(|(_, text)| {
            let text_words: Vec<String> = text
                .split(|c: char| !c.is_alphanumeric())
                .map(str::to_lowercase)
                .collect();
            words.iter().all(|w| text_words.contains(w))
        })
        .map(|(id, _)| id.clone())
        .collect()
}

#[tokio::test]
async fn korean_corpus_recall_and_precision() {
    let corpus: Value = serde_json::from_str(include_str!("corpus-ko.json")).unwrap();
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = create_room(&server, &alice, json!({"preset": "private_chat"})).await;
    // Message id → event id, and the searchable texts of each message.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut texts: HashMap<String, String> = HashMap::new();
    for (i, message) in corpus["messages"].as_array().unwrap().iter().enumerate() {
        let id = message["id"].as_str().unwrap();
        let mut content = json!({
            "msgtype": message["msgtype"].as_str().unwrap_or("m.text"),
            "body": message["body"],
        });
        let mut text = message["body"].as_str().unwrap().to_owned();
        if let Some(filename) = message["filename"].as_str() {
            content["filename"] = filename.into();
            text = format!("{text} {filename}");
        }
        if content["msgtype"] != "m.text" {
            content["url"] = "mxc://localhost/corpusfile".into();
        }
        let (status, response) = server
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/c{i}"),
                alice.token(),
                &content,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{response}");
        ids.insert(
            response["event_id"].as_str().unwrap().to_owned(),
            id.to_owned(),
        );
        texts.insert(id.to_owned(), text);
    }
    // The corpus's last message, once findable, means every earlier one was indexed too.
    wait_indexed(&server, &alice, "알림 설정을", 1).await;

    let (mut expected_total, mut found_total, mut correct_total) = (0, 0, 0);
    let mut whitespace_correct = 0;
    let mut misses = Vec::new();
    println!(
        "{:<14} {:>8} {:>9} {:>11}",
        "query", "recall", "precision", "whitespace"
    );
    for query in corpus["queries"].as_array().unwrap() {
        let q = query["q"].as_str().unwrap();
        let expected: BTreeSet<String> = query["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_owned())
            .collect();
        let (status, body) = search(
            &server,
            &alice,
            &json!({"search_categories": {"room_events": {
                "search_term": q, "filter": {"limit": 100}
            }}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{q}: {body}");
        let found: BTreeSet<String> = body["search_categories"]["room_events"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| ids[r["result"]["event_id"].as_str().unwrap()].clone())
            .collect();
        let correct = found.intersection(&expected).count();
        let whitespace = whitespace_hits(q, &texts).intersection(&expected).count();
        println!(
            "{q:<14} {:>8.2} {:>9.2} {:>11.2}",
            correct as f64 / expected.len() as f64,
            if found.is_empty() {
                0.0
            } else {
                correct as f64 / found.len() as f64
            },
            whitespace as f64 / expected.len() as f64,
        );
        if found != expected {
            misses.push(format!("{q}: expected {expected:?}, found {found:?}"));
        }
        expected_total += expected.len();
        found_total += found.len();
        correct_total += correct;
        whitespace_correct += whitespace;
    }
    let recall = correct_total as f64 / expected_total as f64;
    let precision = correct_total as f64 / found_total as f64;
    let whitespace_recall = whitespace_correct as f64 / expected_total as f64;
    println!(
        "overall: recall {recall:.3}, precision {precision:.3} \
         (a whitespace tokenizer: recall {whitespace_recall:.3})"
    );
    assert!(
        misses.is_empty(),
        "queries that missed or over-matched:\n{}",
        misses.join("\n")
    );
}
