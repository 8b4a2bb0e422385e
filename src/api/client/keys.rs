//! End-to-end encryption keys: upload, query, claim, changes, cross-signing keys and
//! signatures.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::response::{IntoResponse, Response};
use ruma::api::client::keys::{
    claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys,
};
use ruma::{OneTimeKeyAlgorithm, OwnedUserId, UInt};
use serde_json::{Value, json};

use super::require_password;
use crate::api::ruma::Ruma;
use crate::e2ee::keys::{MASTER, SELF_SIGNING, USER_SIGNING};
use crate::e2ee::lookup;
use crate::error::{Error, Result};
use crate::services::Services;

/// A raw JSON value from a request as a `serde_json::Value`.
fn parse(raw: &serde_json::value::RawValue) -> Result<Value> {
    serde_json::from_str(raw.get()).map_err(|e| Error::bad_json(format!("Invalid key JSON: {e}")))
}

/// `POST /_matrix/client/v3/keys/upload`
pub async fn upload(
    services: Arc<Services>,
    req: Ruma<upload_keys::v3::Request>,
) -> Result<upload_keys::v3::Response> {
    let (user, device) = (req.user_id()?, req.device_id()?);
    let body = &req.body;
    let device_keys = body
        .device_keys
        .as_ref()
        .map(|k| parse(k.json()))
        .transpose()?;
    let collect = |keys: &BTreeMap<
        ruma::OwnedOneTimeKeyId,
        ruma::serde::Raw<ruma::encryption::OneTimeKey>,
    >| {
        keys.iter()
            .map(|(id, key)| Ok((id.to_string(), parse(key.json())?)))
            .collect::<Result<BTreeMap<String, Value>>>()
    };
    let counts = services.keys.upload(
        user,
        device,
        device_keys.as_ref(),
        &collect(&body.one_time_keys)?,
        &collect(&body.fallback_keys)?,
    )?;
    if device_keys.is_some() {
        crate::sync::wake_sharers(&services, user)?;
    }
    let counts = counts
        .into_iter()
        .map(|(algorithm, n)| {
            (
                OneTimeKeyAlgorithm::from(algorithm.as_str()),
                UInt::new_saturating(n),
            )
        })
        .collect();
    Ok(upload_keys::v3::Response::new(counts))
}

/// The client's timeout for other servers, or the default.
fn timeout(asked: Option<std::time::Duration>) -> std::time::Duration {
    asked
        .unwrap_or(lookup::DEFAULT_TIMEOUT)
        .min(std::time::Duration::from_secs(60))
}

/// `POST /_matrix/client/v3/keys/query`
pub async fn query(services: Arc<Services>, req: Ruma<get_keys::v3::Request>) -> Result<Response> {
    let requester = req.user_id()?;
    let found = lookup::query(
        &services,
        &req.body.device_keys,
        requester,
        timeout(req.body.timeout),
    )
    .await?;
    Ok(Json(json!({
        "device_keys": found.device_keys,
        "master_keys": found.master_keys,
        "self_signing_keys": found.self_signing_keys,
        "user_signing_keys": found.user_signing_keys,
        "failures": found.failures,
    }))
    .into_response())
}

/// `POST /_matrix/client/v3/keys/claim`
pub async fn claim(
    services: Arc<Services>,
    req: Ruma<claim_keys::v3::Request>,
) -> Result<Response> {
    let (claimed, failures) = lookup::claim(
        &services,
        &req.body.one_time_keys,
        timeout(req.body.timeout),
    )
    .await?;
    Ok(Json(json!({"one_time_keys": claimed, "failures": failures})).into_response())
}

/// `GET /_matrix/client/v3/keys/changes`
pub async fn changes(
    services: Arc<Services>,
    req: Ruma<get_key_changes::v3::Request>,
) -> Result<get_key_changes::v3::Response> {
    let committed = services.store.committed_count();
    let from = crate::sync::parse_since(&req.body.from, committed)?.count;
    let to = crate::sync::parse_since(&req.body.to, committed)?.count;
    let (changed, left) =
        crate::sync::device_list_changes(&services, req.user_id()?, from, to.max(from))?;
    Ok(get_key_changes::v3::Response::new(
        changed.into_iter().collect(),
        left.into_iter().collect(),
    ))
}

/// `POST /_matrix/client/v3/keys/device_signing/upload`
pub async fn upload_signing_keys(
    services: Arc<Services>,
    req: Ruma<upload_signing_keys::v3::Request>,
) -> Result<upload_signing_keys::v3::Response> {
    let user = req.user_id()?;
    let body = &req.body;
    let key = |k: &Option<ruma::serde::Raw<_>>| {
        k.as_ref()
            .map(|k: &ruma::serde::Raw<ruma::encryption::CrossSigningKey>| parse(k.json()))
            .transpose()
    };
    let (master, self_signing, user_signing) = (
        key(&body.master_key)?,
        key(&body.self_signing_key)?,
        key(&body.user_signing_key)?,
    );
    // The spec spares the first upload (no master key yet) and one that changes nothing from
    // re-authentication; replacing keys needs the password.
    let first = services.keys.cross_signing_key(user, MASTER)?.is_none();
    let unchanged = services.keys.cross_signing_unchanged(
        user,
        &[
            (MASTER, master.as_ref()),
            (SELF_SIGNING, self_signing.as_ref()),
            (USER_SIGNING, user_signing.as_ref()),
        ],
    )?;
    if !first && !unchanged {
        require_password(
            &services,
            user,
            "device_signing",
            body.auth.as_ref(),
            &req.origin(),
        )
        .await?;
    }
    services.keys.upload_cross_signing(
        user,
        master.as_ref(),
        self_signing.as_ref(),
        user_signing.as_ref(),
    )?;
    crate::sync::wake_sharers(&services, user)?;
    Ok(upload_signing_keys::v3::Response::new())
}

/// `POST /_matrix/client/v3/keys/signatures/upload`
pub async fn upload_signatures(
    services: Arc<Services>,
    req: Ruma<upload_signatures::v3::Request>,
) -> Result<Response> {
    let signer = req.user_id()?;
    let mut signed: BTreeMap<OwnedUserId, BTreeMap<String, Value>> = BTreeMap::new();
    let mut failures: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for (user, keys) in &req.body.signed_keys {
        let keys = serde_json::to_value(keys)
            .map_err(|e| Error::bad_json(format!("Invalid signed keys: {e}")))?;
        let Value::Object(keys) = keys else {
            return Err(Error::bad_json("Signed keys must be an object per user"));
        };
        if user.server_name() != services.config.server_name {
            for key_id in keys.keys() {
                failures.entry(user.to_string()).or_default().insert(
                    key_id.clone(),
                    json!({"errcode": "M_UNKNOWN", "error": "Signatures on other servers' keys are not sent to them yet"}),
                );
            }
            continue;
        }
        signed.insert(user.clone(), keys.into_iter().collect());
    }
    failures.extend(services.keys.upload_signatures(signer, &signed)?);
    if !signed.is_empty() {
        crate::sync::wake_sharers(&services, signer)?;
    }
    Ok(Json(json!({ "failures": failures })).into_response())
}
