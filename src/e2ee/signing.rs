//! Ed25519 signatures on key objects, as clients make them: over the canonical JSON of the
//! object without `signatures` and `unsigned`, in `signatures.<user id>.<key id>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ruma::CanonicalJsonObject;
use ruma::signatures::{
    SigningKeyAlgorithm, to_canonical_json_string_for_signing, verify_canonical_json_bytes,
};
use serde_json::Value;

/// Unpadded standard base64, as Matrix writes keys and signatures (padding is tolerated).
fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// Whether `object` carries a valid signature by `signer`'s key `key_id` (`ed25519:…`) made
/// with `public_key` (unpadded base64).
pub fn verify(object: &Value, signer: &str, key_id: &str, public_key: &str) -> bool {
    let Some(signature) = object
        .get("signatures")
        .and_then(|s| s.get(signer))
        .and_then(|s| s.get(key_id))
        .and_then(Value::as_str)
        .and_then(decode)
    else {
        return false;
    };
    let Some(public_key) = decode(public_key) else {
        return false;
    };
    let Ok(canonical) = serde_json::from_value::<CanonicalJsonObject>(object.clone()) else {
        return false;
    };
    let Ok(text) = to_canonical_json_string_for_signing(&canonical) else {
        return false;
    };
    verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        &public_key,
        &signature,
        text.as_bytes(),
    )
    .is_ok()
}

#[cfg(test)]
pub mod tests {
    use ruma::signatures::{Ed25519KeyPair, KeyPair};
    use serde_json::json;

    use super::*;

    /// A test signer: an ed25519 key pair and its unpadded base64 public key.
    pub struct Signer {
        pair: Ed25519KeyPair,
        pub public: String,
    }

    impl Signer {
        pub fn new(version: &str) -> Self {
            let der = Ed25519KeyPair::generate();
            let pair = Ed25519KeyPair::from_der(&der, version.to_owned()).unwrap();
            let public = STANDARD_NO_PAD.encode(pair.public_key());
            Self { pair, public }
        }

        /// Adds this key's signature as `signatures.<user>.<key_id>`.
        pub fn sign(&self, user: &str, key_id: &str, object: &mut Value) {
            let mut canonical: CanonicalJsonObject =
                serde_json::from_value(object.clone()).unwrap();
            canonical.remove("signatures");
            canonical.remove("unsigned");
            let text = to_canonical_json_string_for_signing(&canonical).unwrap();
            let signature = STANDARD_NO_PAD.encode(self.pair.sign(text.as_bytes()).as_bytes());
            object["signatures"][user][key_id] = json!(signature);
        }
    }

    #[test]
    fn a_signature_verifies_only_for_its_key_and_content() {
        let device = Signer::new("DEV");
        let other = Signer::new("X");
        let mut keys =
            json!({"user_id": "@a:x", "device_id": "DEV", "keys": {"ed25519:DEV": device.public}});
        device.sign("@a:x", "ed25519:DEV", &mut keys);
        keys["unsigned"] = json!({"device_display_name": "phone"});
        assert!(verify(&keys, "@a:x", "ed25519:DEV", &device.public));
        assert!(!verify(&keys, "@a:x", "ed25519:DEV", &other.public));
        assert!(!verify(&keys, "@b:x", "ed25519:DEV", &device.public));
        let mut changed = keys.clone();
        changed["device_id"] = json!("OTHER");
        assert!(!verify(&changed, "@a:x", "ed25519:DEV", &device.public));
        assert!(!verify(&keys, "@a:x", "ed25519:DEV", "not base64!"));
    }
}
