//! A stand-in for another homeserver, driven by a test step by step: it has a signing key,
//! serves its key document over TLS on a loopback port (so the server under test can check
//! its signatures), signs the federation requests and the events it makes, and records every
//! request the server under test sends it. With it a test can play the other side of a join
//! or a transaction exactly, including the parts a well-behaved server never sends.

use std::sync::{Arc, Mutex};

use ruma::signatures::Ed25519KeyPair;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, RoomVersionId};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::federation::TestCa;
use crate::{StatusCode, TestServer};

/// A request the server under test made to the stand-in.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub body: Value,
}

pub struct RemoteServer {
    /// `127.0.0.1:<port>`.
    pub server_name: String,
    key: Arc<Ed25519KeyPair>,
    client: reqwest::Client,
    received: Arc<Mutex<Vec<Received>>>,
    /// Answers set by the test: the first whose path prefix a request's path starts with.
    answers: Answers,
    task: tokio::task::JoinHandle<()>,
}

type Answers = Arc<Mutex<Vec<(String, Value)>>>;

impl Drop for RemoteServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The key document a server publishes at `/_matrix/key/v2/server`, signed.
fn key_document(server_name: &str, key: &Ed25519KeyPair) -> Value {
    use base64::Engine;
    let public = base64::engine::general_purpose::STANDARD_NO_PAD.encode(key.public_key());
    let valid_until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 3_600_000;
    let mut document: CanonicalJsonObject = serde_json::from_value(json!({
        "server_name": server_name,
        "valid_until_ts": valid_until,
        "verify_keys": {format!("ed25519:{}", key.version()): {"key": public}},
        "old_verify_keys": {},
    }))
    .unwrap();
    ruma::signatures::sign_json(server_name, key, &mut document).unwrap();
    serde_json::to_value(document).unwrap()
}

/// An invite's event, signed by this server too (as `PUT /v2/invite` answers).
fn countersigned(server_name: &str, key: &Ed25519KeyPair, body: &Value) -> Value {
    let version = RoomVersionId::try_from(body["room_version"].as_str().unwrap_or("11"))
        .unwrap_or(RoomVersionId::V11);
    let rules = version.rules().expect("a known room version");
    let mut event: CanonicalJsonObject =
        serde_json::from_value(body["event"].clone()).unwrap_or_default();
    let _ = ruma::signatures::sign_event(server_name, key, &mut event, &rules.redaction);
    serde_json::to_value(event).unwrap()
}

impl RemoteServer {
    pub async fn start() -> RemoteServer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_name = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let document = Ed25519KeyPair::generate();
        let key = Arc::new(Ed25519KeyPair::from_der(&document, "remote".into()).unwrap());
        let ca = TestCa::shared();
        let tls = {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::{CertificateDer, PrivateKeyDer};
            let chain = CertificateDer::pem_file_iter(&ca.certificate)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let private = PrivateKeyDer::from_pem_file(&ca.private_key).unwrap();
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(chain, private)
                .unwrap()
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let received = Arc::new(Mutex::new(Vec::new()));
        let answers: Answers = Arc::new(Mutex::new(Vec::new()));
        let keys = key_document(&server_name, &key).to_string();
        let log = received.clone();
        let canned = answers.clone();
        let (name, signer) = (server_name.clone(), key.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, keys, log) = (acceptor.clone(), keys.clone(), log.clone());
                let canned = canned.clone();
                let (name, signer) = (name.clone(), signer.clone());
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(socket).await else {
                        return;
                    };
                    while let Some((head, body)) = crate::read_request(&mut stream).await {
                        let line = head.lines().next().unwrap_or_default().to_owned();
                        let mut parts = line.split(' ');
                        let method = parts.next().unwrap_or_default().to_owned();
                        let path = parts.next().unwrap_or_default().to_owned();
                        let answer = if path == "/_matrix/key/v2/server" {
                            keys.clone()
                        } else {
                            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let set = canned
                                .lock()
                                .unwrap()
                                .iter()
                                .find(|(prefix, _)| path.starts_with(prefix.as_str()))
                                .map(|(_, answer)| answer.clone());
                            let answer = if let Some(set) = set {
                                set
                            } else if path.starts_with("/_matrix/federation/v2/invite/") {
                                // Invites are signed and sent back.
                                json!({"event": countersigned(&name, &signer, &body)})
                            } else {
                                // Transactions are taken.
                                json!({"pdus": {}})
                            };
                            log.lock().unwrap().push(Received { method, path, body });
                            answer.to_string()
                        };
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&ca.ca).unwrap()).unwrap(),
            )
            .build()
            .unwrap();
        RemoteServer {
            server_name,
            key,
            client,
            received,
            answers,
            task,
        }
    }

    /// Answers requests whose path starts with `prefix` with `answer` from now on.
    pub fn answer(&self, prefix: &str, answer: Value) {
        self.answers
            .lock()
            .unwrap()
            .push((prefix.to_owned(), answer));
    }

    /// A user id on this server.
    pub fn user(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }

    /// The requests the server under test has made here so far (key fetches aside).
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The `X-Matrix` authorization of a request to `destination`.
    pub fn authorization(
        &self,
        destination: &str,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> String {
        let mut signed = json!({
            "method": method,
            "uri": uri,
            "origin": self.server_name,
            "destination": destination,
        });
        if let Some(body) = body {
            signed["content"] = body.clone();
        }
        let mut object: CanonicalJsonObject = serde_json::from_value(signed).unwrap();
        ruma::signatures::sign_json(&self.server_name, &*self.key, &mut object).unwrap();
        let key_id = format!("ed25519:{}", self.key.version());
        let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
            unreachable!("sign_json adds signatures");
        };
        let Some(CanonicalJsonValue::Object(ours)) = signatures.get(&self.server_name) else {
            unreachable!("signed by this server");
        };
        let Some(CanonicalJsonValue::String(sig)) = ours.get(&key_id) else {
            unreachable!("signed with this key");
        };
        format!(
            "X-Matrix origin=\"{}\",destination=\"{destination}\",key=\"{key_id}\",sig=\"{sig}\"",
            self.server_name
        )
    }

    /// A signed federation request to the server under test (over its TLS listener).
    pub async fn request(
        &self,
        to: &TestServer,
        method: reqwest::Method,
        uri: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let authorization = self.authorization(&to.server_name, method.as_str(), uri, body);
        let mut request = self
            .client
            .request(method, format!("https://{}{uri}", to.server_name))
            .header("Authorization", authorization);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .expect("the federation listener answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, to: &TestServer, uri: &str) -> (StatusCode, Value) {
        self.request(to, reqwest::Method::GET, uri, None).await
    }

    /// The event id of an event of a room of `version` (3 and later: from the event itself).
    pub fn event_id(event: &Value, version: &RoomVersionId) -> String {
        let rules = version.rules().expect("a known room version");
        let object: CanonicalJsonObject = serde_json::from_value(event.clone()).unwrap();
        format!(
            "${}",
            ruma::signatures::reference_hash(&object, &rules).unwrap()
        )
    }

    /// The PDUs the server under test sent here in transactions, in order.
    pub fn received_pdus(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.path.starts_with("/_matrix/federation/v1/send/"))
            .flat_map(|r| r.body["pdus"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The EDUs the server under test sent here in transactions, in order.
    pub fn received_edus(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.path.starts_with("/_matrix/federation/v1/send/"))
            .flat_map(|r| r.body["edus"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Sends a transaction of `pdus` to the server under test.
    pub async fn send_transaction(
        &self,
        to: &TestServer,
        txn_id: &str,
        pdus: &[Value],
    ) -> (StatusCode, Value) {
        self.send_transaction_with_edus(to, txn_id, pdus, &[]).await
    }

    /// Sends a transaction of `pdus` and `edus` to the server under test.
    pub async fn send_transaction_with_edus(
        &self,
        to: &TestServer,
        txn_id: &str,
        pdus: &[Value],
        edus: &[Value],
    ) -> (StatusCode, Value) {
        let body = json!({
            "origin": self.server_name,
            "origin_server_ts": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
            "pdus": pdus,
            "edus": edus,
        });
        self.request(
            to,
            reqwest::Method::PUT,
            &format!("/_matrix/federation/v1/send/{txn_id}"),
            Some(&body),
        )
        .await
    }

    /// Adds the content hash and this server's signature to an event of a room of `version`;
    /// returns its event id (room versions 3 and later derive it from the event).
    pub fn sign_event(&self, event: &mut Value, version: &RoomVersionId) -> String {
        let rules = version.rules().expect("a known room version");
        let mut object: CanonicalJsonObject = serde_json::from_value(event.clone()).unwrap();
        ruma::signatures::hash_and_sign_event(
            &self.server_name,
            &*self.key,
            &mut object,
            &rules.redaction,
        )
        .unwrap();
        let hash = ruma::signatures::reference_hash(&object, &rules).unwrap();
        *event = serde_json::to_value(object).unwrap();
        format!("${hash}")
    }
}
