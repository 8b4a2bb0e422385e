//! A push gateway for the tests: serves `POST /_matrix/push/v1/notify` on loopback, records
//! every notification it is sent, and answers as told (accept, reject the pushkeys, fail with
//! a status, answer garbage, redirect, or hang).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// How the gateway answers a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// 200 `{"rejected": []}`.
    Accept,
    /// 200 with every pushkey of the notification rejected.
    Reject,
    /// This status with an error body.
    Status(u16),
    /// 200 with a body that is not JSON.
    Garbage,
    /// 307 to another URL.
    Redirect,
    /// No answer for a minute.
    Hang,
}

/// A request the gateway got and how it answered.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub body: Value,
    pub reply: Reply,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Answers for the next requests, in order; then `default`.
    script: VecDeque<Reply>,
    default: Option<Reply>,
}

pub struct Gateway {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    /// A gateway on a free loopback port that accepts everything.
    pub async fn start() -> Gateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(socket, shared.clone()));
            }
        });
        Gateway {
            address,
            state,
            task,
        }
    }

    /// The URL a pusher's `data.url` names.
    pub fn url(&self) -> String {
        format!("http://{}/_matrix/push/v1/notify", self.address)
    }

    /// Answer the next requests with `replies`, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Answer every request (after the scripted ones) with `reply`.
    pub fn answer_all(&self, reply: Reply) {
        self.state.lock().unwrap().default = Some(reply);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The notifications of the requests it accepted, in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.reply == Reply::Accept)
            .map(|r| r.body["notification"].clone())
            .collect()
    }

    /// Waits until `n` notifications were accepted (at most `limit`), and returns them all.
    pub async fn wait_accepted(&self, n: usize, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let accepted = self.accepted();
            if accepted.len() >= n {
                return accepted;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway accepted {} of {n} notifications in {limit:?}: {:#?}",
                accepted.len(),
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(mut socket: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let Some((head, body)) = crate::read_request(&mut socket).await else {
        return;
    };
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = {
        let mut state = state.lock().unwrap();
        let reply = state
            .script
            .pop_front()
            .or_else(|| state.default.clone())
            .unwrap_or(Reply::Accept);
        state.received.push(Received {
            path,
            body: body.clone(),
            reply: reply.clone(),
        });
        reply
    };
    let (status, extra, answer) = match reply {
        Reply::Accept => (200, String::new(), json!({"rejected": []}).to_string()),
        Reply::Reject => {
            let keys: Vec<Value> = body["notification"]["devices"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| d["pushkey"].clone())
                .collect();
            (200, String::new(), json!({ "rejected": keys }).to_string())
        }
        Reply::Status(status) => (status, String::new(), r#"{"error":"down"}"#.to_owned()),
        Reply::Garbage => (200, String::new(), "<html>not json</html>".to_owned()),
        Reply::Redirect => (
            307,
            "Location: http://127.0.0.1:9/_matrix/push/v1/notify\r\n".to_owned(),
            String::new(),
        ),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
}
