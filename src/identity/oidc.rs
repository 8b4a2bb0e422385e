//! OpenID Connect, as a relying party: a provider's discovery document and keys, the
//! authorization request (code flow with PKCE), the code exchange, and the ID token check
//! (signature by the provider's JWKS, issuer, audience, expiry, nonce). Providers are the
//! operator's own: trusted, reached without the outbound guard.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::RwLock;
use url::Url;

use crate::config::OidcProviderConfig;
use crate::error::{Error, Result};

/// Longest wait for a provider.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Keys are fetched again at most this often when a token names an unknown key.
const JWKS_REFETCH: Duration = Duration::from_secs(60);
/// Signing algorithms accepted for ID tokens: asymmetric only (never `none`, nor a MAC keyed
/// with the client secret).
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

#[derive(Clone, Debug, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

pub struct OidcProvider {
    pub config: OidcProviderConfig,
    client_secret: String,
    http: reqwest::Client,
    metadata: RwLock<Option<Metadata>>,
    jwks: RwLock<Option<(JwkSet, Instant)>>,
}

fn unavailable(why: impl std::fmt::Display) -> Error {
    tracing::warn!(error = %why, "the single sign-on provider is unavailable");
    Error::custom(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "M_UNAVAILABLE",
        "The sign-on provider cannot be reached; try again shortly",
    )
}

fn refused(why: impl std::fmt::Display) -> Error {
    tracing::info!(reason = %why, "single sign-on refused");
    Error::forbidden("Single sign-on failed")
}

impl OidcProvider {
    /// A provider from its configuration; an `http://` issuer off loopback stops the start.
    pub fn new(config: &OidcProviderConfig) -> Result<Self> {
        let issuer = Url::parse(&config.issuer)
            .map_err(|e| Error::internal(format!("[oidc] {}: issuer: {e}", config.id)))?;
        match issuer.scheme() {
            "https" => {}
            "http" if is_loopback(&issuer) => tracing::warn!(
                provider = config.id,
                "an http:// OIDC issuer on loopback: for tests only"
            ),
            _ => {
                return Err(Error::internal(format!(
                    "[oidc] {}: the issuer must be https:// (http:// only on loopback)",
                    config.id
                )));
            }
        }
        let client_secret = match (&config.client_secret_file, &config.client_secret) {
            (Some(file), _) => std::fs::read_to_string(file)
                .map_err(|e| Error::internal(format!("[oidc] client_secret_file {file}: {e}")))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            (None, Some(secret)) => secret.clone(),
            (None, None) => String::new(),
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::internal(format!("OIDC HTTP client: {e}")))?;
        Ok(Self {
            config: config.clone(),
            client_secret,
            http,
            metadata: RwLock::new(None),
            jwks: RwLock::new(None),
        })
    }

    /// A JSON document from the provider.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T> {
        let body = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .bytes()
            .await
            .map_err(unavailable)?;
        serde_json::from_slice(&body).map_err(unavailable)
    }

    /// The discovery document, read once (and again after a failure).
    async fn metadata(&self) -> Result<Metadata> {
        if let Some(metadata) = self.metadata.read().await.clone() {
            return Ok(metadata);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let metadata: Metadata = self.get_json(&url).await?;
        if metadata.issuer.trim_end_matches('/') != self.config.issuer.trim_end_matches('/') {
            return Err(unavailable(format!(
                "the discovery document names another issuer ({})",
                metadata.issuer
            )));
        }
        *self.metadata.write().await = Some(metadata.clone());
        Ok(metadata)
    }

    /// Where to send the person: the provider's authorization endpoint with this request.
    pub async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> Result<Url> {
        let metadata = self.metadata().await?;
        let mut url = Url::parse(&metadata.authorization_endpoint).map_err(unavailable)?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url)
    }

    /// Exchanges an authorization code for the ID token's verified claims.
    pub async fn sign_in(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>> {
        #[derive(Deserialize)]
        struct Tokens {
            id_token: String,
        }
        let metadata = self.metadata().await?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_verifier", code_verifier)
            .finish();
        let response = self
            .http
            .post(&metadata.token_endpoint)
            .basic_auth(&self.config.client_id, Some(&self.client_secret))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(unavailable)?;
        if !response.status().is_success() {
            // A replayed or foreign code: the provider's answer says which.
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(refused(format!(
                "the token endpoint answered {status}: {}",
                body.chars().take(200).collect::<String>()
            )));
        }
        let body = response.bytes().await.map_err(unavailable)?;
        let tokens: Tokens = serde_json::from_slice(&body)
            .map_err(|e| refused(format!("the token answer has no ID token: {e}")))?;
        self.verify(&metadata, &tokens.id_token, nonce).await
    }

    /// The signing keys, fetched again when `refresh` and the last fetch is old enough.
    async fn jwks(&self, metadata: &Metadata, refresh: bool) -> Result<JwkSet> {
        if let Some((keys, fetched)) = self.jwks.read().await.as_ref()
            && (!refresh || fetched.elapsed() < JWKS_REFETCH)
        {
            return Ok(keys.clone());
        }
        let keys: JwkSet = self.get_json(&metadata.jwks_uri).await?;
        *self.jwks.write().await = Some((keys.clone(), Instant::now()));
        Ok(keys)
    }

    async fn verify(
        &self,
        metadata: &Metadata,
        id_token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>> {
        let header = decode_header(id_token).map_err(refused)?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(refused(format!("ID token signed with {:?}", header.alg)));
        }
        let mut keys = self.jwks(metadata, false).await?;
        let find = |keys: &JwkSet| match &header.kid {
            Some(kid) => keys.find(kid).cloned(),
            None => keys.keys.first().cloned(),
        };
        let jwk = match find(&keys) {
            Some(jwk) => jwk,
            None => {
                // The provider may have rotated its keys.
                keys = self.jwks(metadata, true).await?;
                find(&keys).ok_or_else(|| refused("no key for the ID token"))?
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(refused)?;
        verify_claims(
            id_token,
            &key,
            header.alg,
            &metadata.issuer,
            &self.config.client_id,
            nonce,
        )
    }
}

/// Checks an ID token's signature with `key` and its claims: issuer, audience, expiry
/// (required) and nonce.
fn verify_claims(
    id_token: &str,
    key: &DecodingKey,
    algorithm: Algorithm,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<Map<String, Value>> {
    let mut validation = Validation::new(algorithm);
    validation.algorithms = vec![algorithm];
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = decode::<Map<String, Value>>(id_token, key, &validation)
        .map_err(refused)?
        .claims;
    if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(refused("the ID token's nonce is not this sign-on's"));
    }
    Ok(claims)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    /// An ES256 key pair: the signing key, and the public key as a JWK.
    fn key_pair() -> (EncodingKey, DecodingKey) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256",
            "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65]),
        }))
        .unwrap();
        (
            EncodingKey::from_ec_der(pkcs8.as_ref()),
            DecodingKey::from_jwk(&jwk).unwrap(),
        )
    }

    fn now() -> u64 {
        crate::now_ms() / 1000
    }

    #[test]
    fn id_tokens_are_checked_fully() {
        let (signing, verifying) = key_pair();
        let good = json!({"iss": "https://sso.example", "aud": "sori", "sub": "u1",
                          "exp": now() + 300, "nonce": "n1", "preferred_username": "minsu"});
        let sign =
            |claims: &Value| encode(&Header::new(Algorithm::ES256), claims, &signing).unwrap();
        let check = |token: &str| {
            verify_claims(
                token,
                &verifying,
                Algorithm::ES256,
                "https://sso.example",
                "sori",
                "n1",
            )
        };
        let claims = check(&sign(&good)).unwrap();
        assert_eq!(claims["preferred_username"], "minsu");

        let with = |field: &str, value: Value| {
            let mut claims = good.clone();
            claims[field] = value;
            sign(&claims)
        };
        assert!(check(&with("iss", json!("https://evil.example"))).is_err());
        assert!(check(&with("aud", json!("another-client"))).is_err());
        assert!(check(&with("exp", json!(now() - 3600))).is_err());
        assert!(
            check(&with("nonce", json!("n2"))).is_err(),
            "another sign-on's nonce"
        );
        let mut no_nonce = good.clone();
        no_nonce.as_object_mut().unwrap().remove("nonce");
        assert!(check(&sign(&no_nonce)).is_err());

        // Signed by someone else.
        let (other, _) = key_pair();
        let forged = encode(&Header::new(Algorithm::ES256), &good, &other).unwrap();
        assert!(check(&forged).is_err());
        // Unsigned.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let unsigned = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none"}"#),
            b64.encode(good.to_string())
        );
        assert!(check(&unsigned).is_err());
    }

    #[test]
    fn plain_http_issuers_are_for_loopback_only() {
        let config = |issuer: &str| OidcProviderConfig {
            id: "test".into(),
            name: "Test".into(),
            issuer: issuer.into(),
            client_id: "sori".into(),
            client_secret: Some("secret".into()),
            client_secret_file: None,
            scopes: vec!["openid".into()],
            localpart_claim: "sub".into(),
            displayname_claim: None,
            email_claim: None,
            role_claim: None,
            admin_roles: Vec::new(),
            auditor_roles: Vec::new(),
            allow_existing_users: false,
        };
        assert!(OidcProvider::new(&config("https://sso.example.com/realms/x")).is_ok());
        assert!(OidcProvider::new(&config("http://127.0.0.1:8080")).is_ok());
        assert!(OidcProvider::new(&config("http://localhost:8080")).is_ok());
        assert!(OidcProvider::new(&config("http://sso.example.com")).is_err());
        assert!(OidcProvider::new(&config("ftp://sso.example.com")).is_err());
    }
}
