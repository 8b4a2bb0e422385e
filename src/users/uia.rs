//! User-interactive authentication (UIA): the 401 challenge/response dance that guards
//! registration and sensitive account changes. Sessions live in memory for 15 minutes; a
//! session started for one purpose (say, registering) cannot authorise another.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ruma::api::client::uiaa::{AuthData, AuthFlow, AuthType, UiaaInfo};
use ruma::api::error::StandardErrorBody;
use serde_json::value::RawValue;

use crate::error::{Error, Result};

const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Upper bound on open sessions, so unauthenticated callers cannot grow memory without end.
const MAX_SESSIONS: usize = 10_000;

struct UiaSession {
    purpose: String,
    completed: Vec<AuthType>,
    created: Instant,
}

#[derive(Default)]
pub struct Uia {
    sessions: Mutex<HashMap<String, UiaSession>>,
}

/// What a UIA-protected request asks for.
pub struct Challenge<'a> {
    /// Binds the session to one action on one account, e.g. `password:@alice:example.org`.
    pub purpose: String,
    pub flows: Vec<AuthFlow>,
    pub params: Option<Box<RawValue>>,
    pub auth: Option<&'a AuthData>,
}

impl Uia {
    /// Runs one step. Returns `Ok(())` once the submitted stages complete a flow; otherwise
    /// `Err(Error::Uiaa)` with the flows, the stages done so far and, if this stage failed, why.
    /// `check_stage` verifies one submitted stage (it is only called for stages in a flow).
    pub async fn authenticate(
        &self,
        challenge: Challenge<'_>,
        check_stage: impl AsyncFnOnce(&AuthData) -> Result<()>,
    ) -> Result<()> {
        let Challenge {
            purpose,
            flows,
            params,
            auth,
        } = challenge;
        let Some(auth) = auth else {
            let session = self.open(&purpose);
            return Err(challenge_error(flows, params, session, Vec::new(), None));
        };

        let session_id = match auth.session() {
            Some(id) => id.to_owned(),
            None => self.open(&purpose),
        };
        let completed = {
            let sessions = self.lock();
            match sessions.get(&session_id) {
                Some(s) if s.purpose == purpose && s.created.elapsed() < SESSION_LIFETIME => {
                    s.completed.clone()
                }
                Some(_) => return Err(Error::forbidden("This session is for another request")),
                None => {
                    return Err(Error::new(
                        http::StatusCode::BAD_REQUEST,
                        ruma::api::error::ErrorKind::Unknown,
                        "Unknown or expired authentication session",
                    ));
                }
            }
        };

        // A bare {"session": …} (fallback acknowledgement) only asks where things stand.
        let Some(stage) = auth.auth_type() else {
            return Err(challenge_error(flows, params, session_id, completed, None));
        };
        let in_a_flow = flows.iter().any(|f| f.stages.contains(&stage));
        let failure = if !in_a_flow {
            Some(Error::forbidden(format!(
                "Authentication type {stage} is not offered here"
            )))
        } else {
            match check_stage(auth).await {
                Ok(()) => None,
                Err(e @ Error::Matrix { .. }) => Some(e),
                Err(e) => return Err(e),
            }
        };
        if let Some(error) = failure {
            return Err(challenge_error(
                flows,
                params,
                session_id,
                completed,
                Some(error),
            ));
        }

        let mut sessions = self.lock();
        let Some(session) = sessions.get_mut(&session_id) else {
            return Err(Error::forbidden("Authentication session ended"));
        };
        if !session.completed.contains(&stage) {
            session.completed.push(stage);
        }
        let done = flows
            .iter()
            .any(|f| f.stages.iter().all(|s| session.completed.contains(s)));
        if done {
            sessions.remove(&session_id);
            return Ok(());
        }
        let completed = session.completed.clone();
        drop(sessions);
        Err(challenge_error(flows, params, session_id, completed, None))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UiaSession>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self, purpose: &str) -> String {
        let id = crate::random::string(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", 24);
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.created.elapsed() < SESSION_LIFETIME);
        if sessions.len() >= MAX_SESSIONS {
            // Drop the oldest to make room; its client gets "unknown session" and starts over.
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            UiaSession {
                purpose: purpose.to_owned(),
                completed: Vec::new(),
                created: Instant::now(),
            },
        );
        id
    }
}

fn challenge_error(
    flows: Vec<AuthFlow>,
    params: Option<Box<RawValue>>,
    session: String,
    completed: Vec<AuthType>,
    failure: Option<Error>,
) -> Error {
    let mut info = UiaaInfo::new(flows);
    info.params = params;
    info.session = Some(session);
    info.completed = completed;
    if let Some(Error::Matrix { kind, message, .. }) = failure {
        info.auth_error = Some(Box::new(StandardErrorBody::new(kind, message)));
    }
    Error::Uiaa(Box::new(info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::api::client::uiaa::Dummy;

    fn info(e: Error) -> UiaaInfo {
        match e {
            Error::Uiaa(info) => *info,
            other => panic!("expected a UIA challenge, got {other}"),
        }
    }

    fn dummy(session: Option<String>) -> AuthData {
        let mut d = Dummy::new();
        d.session = session;
        AuthData::Dummy(d)
    }

    fn challenge<'a>(purpose: &str, auth: Option<&'a AuthData>) -> Challenge<'a> {
        Challenge {
            purpose: purpose.to_owned(),
            flows: vec![AuthFlow::new(vec![AuthType::Dummy])],
            params: None,
            auth,
        }
    }

    #[tokio::test]
    async fn a_flow_completes_once_and_sessions_do_not_cross_purposes() {
        let uia = Uia::default();
        let first = info(
            uia.authenticate(challenge("register", None), async |_| Ok(()))
                .await
                .unwrap_err(),
        );
        let session = first.session.clone().unwrap();
        assert_eq!(first.flows[0].stages, vec![AuthType::Dummy]);

        let auth = dummy(Some(session.clone()));
        let err = uia
            .authenticate(challenge("password:@a:x", Some(&auth)), async |_| Ok(()))
            .await;
        assert_eq!(err.unwrap_err().errcode(), "M_FORBIDDEN");

        uia.authenticate(challenge("register", Some(&auth)), async |_| Ok(()))
            .await
            .unwrap();
        // The session is spent.
        let again = uia
            .authenticate(challenge("register", Some(&auth)), async |_| Ok(()))
            .await;
        assert_eq!(again.unwrap_err().errcode(), "M_UNKNOWN");
    }

    #[tokio::test]
    async fn a_failed_stage_reports_why_and_keeps_the_session() {
        let uia = Uia::default();
        let auth = dummy(None);
        let failed = info(
            uia.authenticate(challenge("register", Some(&auth)), async |_| {
                Err(Error::forbidden("nope"))
            })
            .await
            .unwrap_err(),
        );
        assert_eq!(failed.auth_error.unwrap().message, "nope");
        let retry = dummy(failed.session);
        uia.authenticate(challenge("register", Some(&retry)), async |_| Ok(()))
            .await
            .unwrap();
    }
}
