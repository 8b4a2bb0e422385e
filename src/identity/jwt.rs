//! JWT login (`org.matrix.login.jwt`): a company system signs a token saying who the person
//! is, and Sori checks it fully (the configured algorithm only, signature, `exp` required,
//! `nbf`, `iss` and `aud` when configured) before trusting the subject.

use std::str::FromStr;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde_json::{Map, Value};

use crate::config::JwtConfig;
use crate::error::{Error, Result};
use crate::users::accounts::Role;

/// Who a valid token says the person is.
#[derive(Debug, PartialEq, Eq)]
pub struct Claims {
    pub subject: String,
    pub display_name: Option<String>,
    /// From `role_claim`, when configured.
    pub role: Option<Role>,
}

pub struct JwtLogin {
    key: DecodingKey,
    validation: Validation,
    config: JwtConfig,
}

fn config_error(message: impl std::fmt::Display) -> Error {
    Error::internal(format!("[jwt] {message}"))
}

impl JwtLogin {
    /// The verifier of `[jwt]`, or `None` when JWT login is off. A missing or unreadable key
    /// stops the start.
    pub fn new(config: &JwtConfig) -> Result<Option<Self>> {
        if !config.enabled {
            return Ok(None);
        }
        let algorithm = Algorithm::from_str(&config.algorithm)
            .map_err(|_| config_error(format!("unknown algorithm {:?}", config.algorithm)))?;
        let pem = || -> Result<Vec<u8>> {
            let file = config
                .public_key_file
                .as_ref()
                .ok_or_else(|| config_error(format!("{algorithm:?} needs public_key_file")))?;
            std::fs::read(file).map_err(|e| config_error(format!("public_key_file {file}: {e}")))
        };
        let key = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = config
                    .secret
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| config_error(format!("{algorithm:?} needs a secret")))?;
                DecodingKey::from_secret(secret.as_bytes()).map_err(config_error)?
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(&pem()?).map_err(config_error)?,
            Algorithm::ES256 | Algorithm::ES384 => {
                DecodingKey::from_ec_pem(&pem()?).map_err(config_error)?
            }
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem()?).map_err(config_error)?,
            other => return Err(config_error(format!("{other:?} is not supported"))),
        };
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
        }
        if config.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&config.audiences);
        }
        Ok(Some(Self {
            key,
            validation,
            config: config.clone(),
        }))
    }

    /// Whether accounts are created for new subjects.
    pub fn creates_users(&self) -> bool {
        self.config.create_users
    }

    /// Checks a token; `None` when it is not valid (why is logged, the token never is).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let claims = match decode::<Map<String, Value>>(token, &self.key, &self.validation) {
            Ok(data) => data.claims,
            Err(error) => {
                tracing::info!(%error, "JWT login refused");
                return None;
            }
        };
        let text = |claim: &str| claims.get(claim).and_then(Value::as_str).map(str::to_owned);
        let Some(subject) = text(&self.config.subject_claim).filter(|s| !s.is_empty()) else {
            tracing::info!(
                claim = self.config.subject_claim,
                "JWT login refused: no subject"
            );
            return None;
        };
        Some(Claims {
            subject,
            display_name: self.config.displayname_claim.as_deref().and_then(text),
            role: self.config.role_claim.as_ref().map(|claim| {
                role_from(
                    claims.get(claim),
                    &self.config.admin_roles,
                    &self.config.auditor_roles,
                )
            }),
        })
    }
}

/// The role a claim's value gives: admin if it holds one of `admin`, else auditor if it holds
/// one of `auditor`, else user. The value is a string or a list of strings.
pub fn role_from(value: Option<&Value>, admin: &[String], auditor: &[String]) -> Role {
    let values: Vec<&str> = match value {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let holds = |roles: &[String]| values.iter().any(|v| roles.iter().any(|r| r == v));
    if holds(admin) {
        Role::Admin
    } else if holds(auditor) {
        Role::Auditor
    } else {
        Role::User
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn login(config: JwtConfig) -> JwtLogin {
        JwtLogin::new(&JwtConfig {
            enabled: true,
            ..config
        })
        .unwrap()
        .unwrap()
    }

    fn hs256(claims: &Value, secret: &str) -> String {
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn later() -> u64 {
        crate::now_ms() / 1000 + 600
    }

    #[test]
    fn only_fully_valid_tokens_pass() {
        let jwt = login(JwtConfig {
            secret: Some("a-long-shared-secret-for-tests".into()),
            issuer: Some("https://sso.example.com".into()),
            audiences: vec!["sori".into()],
            displayname_claim: Some("name".into()),
            ..Default::default()
        });
        let good = json!({"sub": "hana", "name": "Hana", "exp": later(),
                          "iss": "https://sso.example.com", "aud": "sori"});
        let secret = "a-long-shared-secret-for-tests";
        assert_eq!(
            jwt.verify(&hs256(&good, secret)),
            Some(Claims {
                subject: "hana".into(),
                display_name: Some("Hana".into()),
                role: None
            })
        );
        let changed = |field: &str, value: Value| {
            let mut claims = good.clone();
            claims[field] = value;
            jwt.verify(&hs256(&claims, secret))
        };
        assert_eq!(changed("exp", json!(1_000_000)), None, "expired");
        assert_eq!(changed("iss", json!("https://evil.example")), None);
        assert_eq!(changed("aud", json!("someone-else")), None);
        assert_eq!(changed("sub", json!("")), None);
        assert_eq!(changed("nbf", json!(later() + 3600)), None, "not yet valid");
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(jwt.verify(&hs256(&no_exp, secret)), None, "exp is required");
        assert_eq!(jwt.verify(&hs256(&good, "another-secret-entirely")), None);
        assert_eq!(jwt.verify("not.a.jwt"), None);
        assert_eq!(jwt.verify(""), None);

        // alg none: the same claims, unsigned.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let unsigned = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(good.to_string())
        );
        assert_eq!(jwt.verify(&unsigned), None);
        // Another algorithm than the configured one.
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &good,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(jwt.verify(&hs512), None);
    }

    #[test]
    fn roles_come_from_a_claim() {
        let admin = vec!["sori-admin".to_owned()];
        let auditor = vec!["audit".to_owned()];
        assert_eq!(
            role_from(Some(&json!("sori-admin")), &admin, &auditor),
            Role::Admin
        );
        assert_eq!(
            role_from(Some(&json!(["staff", "audit"])), &admin, &auditor),
            Role::Auditor
        );
        assert_eq!(
            role_from(Some(&json!(["audit", "sori-admin"])), &admin, &auditor),
            Role::Admin
        );
        assert_eq!(
            role_from(Some(&json!(["staff"])), &admin, &auditor),
            Role::User
        );
        assert_eq!(role_from(None, &admin, &auditor), Role::User);
        assert_eq!(role_from(Some(&json!(42)), &admin, &auditor), Role::User);
    }

    #[test]
    fn a_missing_key_stops_the_start() {
        for config in [
            JwtConfig {
                enabled: true,
                ..Default::default()
            },
            JwtConfig {
                enabled: true,
                algorithm: "RS256".into(),
                ..Default::default()
            },
            JwtConfig {
                enabled: true,
                algorithm: "none".into(),
                secret: Some("x".into()),
                ..Default::default()
            },
        ] {
            assert!(JwtLogin::new(&config).is_err(), "{config:?}");
        }
    }
}
