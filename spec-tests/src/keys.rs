//! Encryption keys as a client makes them, for the tests: an ed25519 signing key, a device's
//! identity keys signed by it, and signed one-time keys.

use ruma::CanonicalJsonObject;
use ruma::serde::Base64;
use ruma::signatures::{Ed25519KeyPair, KeyPair, to_canonical_json_string_for_signing};
use serde_json::{Value, json};

use crate::User;

/// An ed25519 key a test client signs with.
pub struct Key {
    pair: Ed25519KeyPair,
    pub public: String,
}

impl Key {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let der = Ed25519KeyPair::generate();
        let pair = Ed25519KeyPair::from_der(&der, "k".to_owned()).unwrap();
        let public =
            Base64::<ruma::serde::base64::Standard>::new(pair.public_key().to_vec()).encode();
        Self { pair, public }
    }

    /// Adds `signatures.<user>.<key_id>` over the object's canonical JSON.
    pub fn sign(&self, user: &str, key_id: &str, object: &mut Value) {
        let mut canonical: CanonicalJsonObject = serde_json::from_value(object.clone()).unwrap();
        canonical.remove("signatures");
        canonical.remove("unsigned");
        let text = to_canonical_json_string_for_signing(&canonical).unwrap();
        let signature = self.pair.sign(text.as_bytes());
        let encoded =
            Base64::<ruma::serde::base64::Standard>::new(signature.as_bytes().to_vec()).encode();
        object["signatures"][user][key_id] = json!(encoded);
    }
}

/// The identity keys of a user's device, signed by the device.
pub fn device_keys(user: &User, key: &Key) -> Value {
    let device = &user.device_id;
    let mut keys = json!({
        "user_id": user.user_id, "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {format!("curve25519:{device}"): "Y3VydmU", format!("ed25519:{device}"): key.public},
    });
    key.sign(&user.user_id, &format!("ed25519:{device}"), &mut keys);
    keys
}

pub fn one_time_key(user: &User, key: &Key, value: &str, fallback: bool) -> Value {
    let mut otk = json!({"key": value});
    if fallback {
        otk["fallback"] = json!(true);
    }
    key.sign(
        &user.user_id,
        &format!("ed25519:{}", user.device_id),
        &mut otk,
    );
    otk
}
