//! Configuration: one typed [`Config`], read from a TOML file (`--config` or `SORI_CONFIG`) and
//! overridden by `SORI_<SECTION>__<KEY>` environment variables. Unknown keys are refused by
//! name, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ruma::OwnedServerName;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The domain in every user id (`@alice:<server_name>`) and room alias.
    pub server_name: OwnedServerName,
    /// The URL clients reach this server at, as served in `/.well-known/matrix/client`.
    /// Unset: `http://<server_name>:<client listener port>`.
    pub public_base_url: Option<String>,
    pub listen: ListenConfig,
    pub storage: StorageConfig,
    pub registration: RegistrationConfig,
    pub login: LoginConfig,
    pub limits: LimitsConfig,
    pub presence: PresenceConfig,
    pub e2ee: E2eeConfig,
    pub user_directory: UserDirectoryConfig,
    pub search: SearchConfig,
    pub rate_limits: RateLimitsConfig,
    pub well_known: WellKnownConfig,
    pub media: MediaConfig,
    pub url_preview: UrlPreviewConfig,
    pub outbound: OutboundConfig,
    pub push: PushConfig,
    pub ldap: LdapConfig,
    pub jwt: JwtConfig,
    pub oidc: OidcConfig,
    pub audit: AuditConfig,
    pub appservices: AppservicesConfig,
    pub federation: FederationConfig,
    pub tls: TlsConfig,
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "localhost".try_into().expect("valid server name"),
            public_base_url: None,
            listen: ListenConfig::default(),
            storage: StorageConfig::default(),
            registration: RegistrationConfig::default(),
            login: LoginConfig::default(),
            limits: LimitsConfig::default(),
            presence: PresenceConfig::default(),
            e2ee: E2eeConfig::default(),
            user_directory: UserDirectoryConfig::default(),
            search: SearchConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            well_known: WellKnownConfig::default(),
            media: MediaConfig::default(),
            url_preview: UrlPreviewConfig::default(),
            outbound: OutboundConfig::default(),
            push: PushConfig::default(),
            ldap: LdapConfig::default(),
            jwt: JwtConfig::default(),
            oidc: OidcConfig::default(),
            audit: AuditConfig::default(),
            appservices: AppservicesConfig::default(),
            federation: FederationConfig::default(),
            tls: TlsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Address of the client-server API listener.
    pub client: SocketAddr,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted reverse proxy),
    /// for rate limits and device "last seen" addresses.
    pub trust_forwarded_for: bool,
    /// Address of the TLS federation listener (`[tls]` has its certificate); empty: none (the
    /// federation API is still served on the client listener, for a reverse proxy).
    pub federation: String,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            client: ([127, 0, 0, 1], 8008).into(),
            trust_forwarded_for: false,
            federation: String::new(),
        }
    }
}

impl ListenConfig {
    /// The federation listener's address, if there is one.
    pub fn federation_addr(&self) -> Result<Option<SocketAddr>> {
        let text = self.federation.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|e| {
            Error::internal(format!(
                "listen.federation {text:?} is not an address like 0.0.0.0:8448: {e}"
            ))
        })
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory of the embedded database.
    pub path: PathBuf,
    /// Size of the database block cache, in MiB.
    pub cache_mb: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./sori-data"),
            cache_mb: 64,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Whether anyone may register through the API. Off by default: operators create
    /// accounts with `sori user create` (or through LDAP/SSO).
    pub enabled: bool,
    /// When set, registration also needs this shared token (`m.login.registration_token`).
    pub token: Option<String>,
    /// Registration needs a token: the shared one above or one an admin created through
    /// the admin API (`/_synapse/admin/v1/registration_tokens`).
    pub require_token: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// Lifetime of an access token issued together with a refresh token, in milliseconds.
    /// Tokens issued without one do not expire.
    pub refreshable_token_lifetime_ms: u64,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            refreshable_token_lifetime_ms: 5 * 60 * 1000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Seconds without activity (sending, setting presence) after which an online user shows
    /// as unavailable.
    pub idle_after_secs: u64,
    /// Seconds after a user's last `/sync` ended (with none running) after which they show as
    /// offline.
    pub offline_after_secs: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            idle_after_secs: 5 * 60,
            offline_after_secs: 30,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserDirectoryConfig {
    /// Whether the user directory finds every local user (a company's whole staff), not only
    /// those who share a room with the searcher or are in a room of the public directory.
    pub search_all_users: bool,
}

/// Message search (`POST /_matrix/client/v3/search`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    pub backend: SearchBackend,
    pub meilisearch: MeilisearchConfig,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SearchBackend {
    /// An index under `storage.path` (`search/`), with Sori's Korean-aware analyzer.
    #[default]
    Embedded,
    Meilisearch,
}

/// A Meilisearch server (`backend = "meilisearch"`); set up by the operator, so trusted.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeilisearchConfig {
    pub url: String,
    /// A key allowed to manage indexes and documents and to search; empty: none sent.
    pub api_key: String,
    /// Prefix of the index's name (`<prefix>events`), for several servers on one Meilisearch.
    pub index_prefix: String,
}

impl Default for MeilisearchConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:7700".to_owned(),
            api_key: String::new(),
            index_prefix: "sori_".to_owned(),
        }
    }
}

/// Never prints the key.
impl std::fmt::Debug for MeilisearchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeilisearchConfig")
            .field("url", &self.url)
            .field("api_key", &"<redacted>")
            .field("index_prefix", &self.index_prefix)
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct E2eeConfig {
    /// Whether new private rooms (and DMs) start encrypted, and whether clients are told to
    /// encrypt by default (`io.element.e2ee` in `/.well-known/matrix/client`). A company that
    /// must be able to read its archives turns this off (see docs/encryption.md).
    pub default_encryption: bool,
}

impl Default for E2eeConfig {
    fn default() -> Self {
        Self {
            default_encryption: true,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body the client API accepts, in bytes; larger bodies get 413.
    pub max_request_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 4 * 1024 * 1024,
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Login attempts (and token refreshes) per client address.
    pub login: RateLimit,
    /// Registration attempts (and availability checks) per client address.
    pub registration: RateLimit,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            login: RateLimit {
                per_second: 1.0,
                burst: 20,
            },
            registration: RateLimit {
                per_second: 0.5,
                burst: 20,
            },
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WellKnownConfig {
    /// `m.server` of `/.well-known/matrix/server` (`host:port` for federation). Unset: the host
    /// and port of `public_base_url`.
    pub server: Option<String>,
}

/// Who may download a file of this server.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MediaAccess {
    /// The uploader, and those who can see an event in a room that refers to it.
    #[default]
    RoomMembers,
    /// Every local user.
    AnyUser,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Where file contents are kept: a local directory, or S3-compatible object storage.
    pub backend: MediaBackend,
    /// Directory of uploaded files (and of uploads in progress). Unset: `media` inside
    /// `storage.path`.
    pub path: Option<PathBuf>,
    /// Largest file, in bytes.
    pub max_upload_size: u64,
    pub access: MediaAccess,
    /// Serve the deprecated unauthenticated `/_matrix/media/v3/download|thumbnail`.
    pub legacy_unauthenticated: bool,
    /// Bytes a user may upload per UTC day; 0 = unlimited.
    pub daily_upload_bytes: u64,
    /// Media ids a user may hold from `/create` without having uploaded to them yet.
    pub max_pending_uploads: usize,
    /// Seconds after which a media id from `/create` that got no upload expires.
    pub unused_expires_secs: u64,
    /// Largest file a thumbnail is made of, in bytes.
    pub thumbnail_max_source_bytes: u64,
    /// Largest picture (width × height, as its header says) a thumbnail is made of.
    pub thumbnail_max_source_pixels: u64,
    /// Largest thumbnail side, in pixels; larger requests get thumbnails of this size.
    pub thumbnail_max_dimension: u32,
    pub clamav: ClamavConfig,
    pub s3: S3Config,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    #[default]
    Local,
    S3,
}

/// S3-compatible object storage for file contents (`backend = "s3"`).
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// The service's URL, e.g. `https://s3.eu-central-1.amazonaws.com` or a MinIO address;
    /// empty: AWS for `region`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `endpoint/bucket/key` addressing (MinIO and most self-hosted servers) instead of
    /// `bucket.endpoint/key`.
    pub path_style: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".to_owned(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            path_style: true,
        }
    }
}

/// Never prints the secret key.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// Virus scanning of uploads with ClamAV's `clamd`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClamavConfig {
    /// `tcp://HOST:PORT` or `unix:/PATH` of `clamd`; empty: no scanning.
    pub address: String,
    /// Refuse uploads while `clamd` cannot be reached (else store them unscanned, logged).
    pub fail_closed: bool,
}

impl Default for ClamavConfig {
    fn default() -> Self {
        Self {
            address: String::new(),
            fail_closed: true,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            backend: MediaBackend::Local,
            path: None,
            max_upload_size: 300 * 1024 * 1024,
            access: MediaAccess::RoomMembers,
            legacy_unauthenticated: false,
            daily_upload_bytes: 0,
            max_pending_uploads: 10,
            unused_expires_secs: 24 * 60 * 60,
            thumbnail_max_source_bytes: 50 * 1024 * 1024,
            thumbnail_max_source_pixels: 32_000_000,
            thumbnail_max_dimension: 2048,
            clamav: ClamavConfig::default(),
            s3: S3Config::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UrlPreviewConfig {
    /// Serve link previews (the server fetches pages users link to).
    pub enabled: bool,
    /// Most bytes read of a page.
    pub max_page_bytes: usize,
    /// Most bytes of a page's picture (`og:image`); larger pictures are left out.
    pub max_image_bytes: usize,
}

impl Default for UrlPreviewConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_page_bytes: 512 * 1024,
            max_image_bytes: 5 * 1024 * 1024,
        }
    }
}

/// Sign-in against the company directory (OpenLDAP, Active Directory): people log in with
/// their directory password; their account is created on first sign-in.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    pub enabled: bool,
    /// `ldap://host:389` (plain, or StartTLS with `starttls`) or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// The service account that searches for people (unset: anonymous search).
    pub bind_dn: Option<String>,
    pub bind_password: Option<String>,
    /// A file holding the service account's password (preferred over `bind_password`).
    pub bind_password_file: Option<String>,
    /// Where people are searched for (the whole subtree).
    pub base_dn: String,
    /// Which entries are people who may sign in; leave disabled accounts out here.
    pub user_filter: String,
    /// Attributes a person may sign in with (any of them matches).
    pub login_attributes: Vec<String>,
    /// The attribute that becomes the Matrix localpart (lowercased).
    pub localpart_attribute: String,
    pub displayname_attribute: Option<String>,
    pub mail_attribute: Option<String>,
    /// People whose entry matches this filter are server admins (e.g. a `memberOf` test).
    pub admin_filter: Option<String>,
    /// People whose entry matches this filter are auditors (when not admins).
    pub auditor_filter: Option<String>,
    /// A PEM file with the CA that signed the directory's certificate (default: the system's).
    pub ca_file: Option<String>,
    /// Longest wait for the directory: connecting, and each operation.
    pub timeout_ms: u64,
    /// Local accounts (with a password kept by Sori) may still sign in.
    pub fallback_to_local: bool,
}

impl Default for LdapConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "ldap://127.0.0.1:389".into(),
            starttls: false,
            bind_dn: None,
            bind_password: None,
            bind_password_file: None,
            base_dn: String::new(),
            user_filter: "(objectClass=inetOrgPerson)".into(),
            login_attributes: vec!["uid".into()],
            localpart_attribute: "uid".into(),
            displayname_attribute: Some("displayName".into()),
            mail_attribute: Some("mail".into()),
            admin_filter: None,
            auditor_filter: None,
            ca_file: None,
            timeout_ms: 5000,
            fallback_to_local: true,
        }
    }
}

/// Login with a JSON Web Token from a company system (`org.matrix.login.jwt`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    pub enabled: bool,
    /// Create the account of a subject that has none yet.
    pub create_users: bool,
    /// The shared secret (HS256, HS384, HS512).
    pub secret: Option<String>,
    /// The issuer's public key, PEM (RS*, PS*, ES*, EdDSA).
    pub public_key_file: Option<String>,
    /// The one algorithm accepted.
    pub algorithm: String,
    /// The `iss` required, if any.
    pub issuer: Option<String>,
    /// `aud` must name one of these (when any are set).
    pub audiences: Vec<String>,
    /// The claim whose value is the localpart.
    pub subject_claim: String,
    pub displayname_claim: Option<String>,
    /// A claim (a string or a list of strings) that gives the server role.
    pub role_claim: Option<String>,
    /// Values of `role_claim` that make a server admin.
    pub admin_roles: Vec<String>,
    /// Values of `role_claim` that make an auditor.
    pub auditor_roles: Vec<String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            create_users: true,
            secret: None,
            public_key_file: None,
            algorithm: "HS256".into(),
            issuer: None,
            audiences: Vec::new(),
            subject_claim: "sub".into(),
            displayname_claim: None,
            role_claim: None,
            admin_roles: Vec::new(),
            auditor_roles: Vec::new(),
        }
    }
}

/// Single sign-on through OpenID Connect providers (Keycloak and others).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// Client URLs (by prefix) that a finished sign-on returns to at once; any other gets a
    /// page asking the person to confirm, so a phishing link cannot collect a login.
    pub client_redirect_allowlist: Vec<String>,
    pub providers: Vec<OidcProviderConfig>,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}

fn default_localpart_claim() -> String {
    "preferred_username".into()
}

fn default_displayname_claim() -> Option<String> {
    Some("name".into())
}

fn default_email_claim() -> Option<String> {
    Some("email".into())
}

/// One OpenID Connect provider.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// The identity provider id clients see (`/login/sso/redirect/{id}`).
    pub id: String,
    /// The name clients show on the sign-in button.
    pub name: String,
    /// The issuer; its `/.well-known/openid-configuration` is read. `http://` only on
    /// loopback.
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// A file holding the client secret (preferred over `client_secret`).
    #[serde(default)]
    pub client_secret_file: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim that becomes the localpart (lowercased).
    #[serde(default = "default_localpart_claim")]
    pub localpart_claim: String,
    #[serde(default = "default_displayname_claim")]
    pub displayname_claim: Option<String>,
    #[serde(default = "default_email_claim")]
    pub email_claim: Option<String>,
    /// A claim (a string or a list of strings) that gives the server role.
    #[serde(default)]
    pub role_claim: Option<String>,
    #[serde(default)]
    pub admin_roles: Vec<String>,
    #[serde(default)]
    pub auditor_roles: Vec<String>,
    /// Sign people into an account of the same name that this provider did not create.
    #[serde(default)]
    pub allow_existing_users: bool,
}

/// Talking to other homeservers.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Off: other servers are refused, and nothing is sent to them.
    pub enabled: bool,
    /// Servers this one federates with (server names); empty: any.
    pub domain_allowlist: Vec<String>,
    /// A CA (PEM) trusted for other servers' certificates besides the usual ones.
    pub ca_file: Option<PathBuf>,
    /// Check other servers' certificates. Off is for development only.
    pub verify_certificates: bool,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            domain_allowlist: Vec::new(),
            ca_file: None,
            verify_certificates: true,
        }
    }
}

/// The federation listener's certificate.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The certificate chain (PEM), the server's own first.
    pub certificate: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub private_key: Option<PathBuf>,
}

/// Application services (bridges).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppservicesConfig {
    /// Registration files (the spec's YAML format), read at start-up.
    pub registration_files: Vec<PathBuf>,
    /// How long one request to an appservice (a transaction, a query, a ping) may take
    /// before it counts as failed and is retried.
    pub timeout_secs: u64,
}

impl Default for AppservicesConfig {
    fn default() -> Self {
        Self {
            registration_files: Vec::new(),
            timeout_secs: 30,
        }
    }
}

/// The audit log (who did what, hash-chained; `GET /_sori/admin/v1/audit`, `sori audit`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Days entries are kept; 0 keeps them forever. Pruning leaves an anchor, so what remains
    /// still verifies.
    pub retention_days: u64,
    /// Also record every media download (one entry per download: a busy server writes many).
    pub media_downloads: bool,
}

/// Push notifications to the users' push gateways.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Most pushers one user may have (phones and apps, each with its own pushkey).
    pub max_pushers_per_user: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            max_pushers_per_user: 20,
        }
    }
}

/// Where requests that users can aim (link previews, push gateways, later federation) may
/// go. Addresses that are not the public internet are refused by default.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// More CIDR ranges to refuse.
    pub ip_range_blacklist: Vec<String>,
    /// CIDR ranges to allow whatever else says (an internal gateway, tests on loopback).
    pub ip_range_whitelist: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, or per module like `info,sori::api=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

impl Config {
    /// Reads the configuration: defaults, then the file (if any), then `SORI_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(Error::internal(format!(
                    "config file {} not found",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // SORI_CONFIG names the file; it is not a key.
        figment = figment.merge(Env::prefixed("SORI_").ignore(&["config"]).split("__"));
        let config: Config = figment
            .extract()
            .map_err(|e| Error::internal(format!("invalid configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if let Some(url) = &self.public_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Error::internal(
                "public_base_url must start with http:// or https://",
            ));
        }
        for (name, limit) in [
            ("login", self.rate_limits.login),
            ("registration", self.rate_limits.registration),
        ] {
            // Written negated on purpose: NaN must be refused too.
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            if !(limit.per_second > 0.0) || limit.burst == 0 {
                return Err(Error::internal(format!(
                    "rate_limits.{name}: per_second and burst must be positive"
                )));
            }
        }
        if self.media.max_upload_size == 0
            || self.media.unused_expires_secs == 0
            || self.media.thumbnail_max_source_pixels == 0
            || self.media.thumbnail_max_dimension == 0
        {
            return Err(Error::internal(
                "media: max_upload_size, unused_expires_secs, thumbnail_max_source_pixels and \
                 thumbnail_max_dimension must be positive",
            ));
        }
        if self.listen.federation_addr()?.is_some()
            && (self.tls.certificate.is_none() || self.tls.private_key.is_none())
        {
            return Err(Error::internal(
                "listen.federation needs tls.certificate and tls.private_key",
            ));
        }
        if self.limits.max_request_bytes < 1024 {
            return Err(Error::internal(
                "limits.max_request_bytes must be at least 1024",
            ));
        }
        Ok(())
    }

    /// The directory of uploaded files.
    pub fn media_path(&self) -> PathBuf {
        self.media
            .path
            .clone()
            .unwrap_or_else(|| self.storage.path.join("media"))
    }

    /// The base URL clients should use, without a trailing slash.
    pub fn base_url(&self) -> String {
        match &self.public_base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}:{}", self.server_name, self.listen.client.port()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    fn example_path() -> PathBuf {
        // Read at run time: a test binary built in another checkout sharing the target
        // directory would carry that checkout's path.
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
        Path::new(&dir).join("config.example.toml")
    }

    #[test]
    fn the_example_file_loads_and_documents_every_key() {
        Jail::expect_with(|_jail| {
            let config = Config::load(Some(&example_path())).map_err(|e| e.to_string())?;
            assert_eq!(config.server_name.as_str(), "localhost");
            assert_eq!(config.listen.client, ([127, 0, 0, 1], 8008).into());

            // Every key the struct has appears in the example, set or commented out: uncomment
            // `# key = value` lines, parse, and compare with the struct's own keys.
            let example = std::fs::read_to_string(example_path()).unwrap();
            let uncommented: String = example
                .lines()
                .map(|l| match l.strip_prefix("# ") {
                    Some(rest)
                        if rest.split_once(" = ").is_some_and(|(k, _)| {
                            !k.is_empty() && k.bytes().all(|c| c.is_ascii_lowercase() || c == b'_')
                        }) =>
                    {
                        rest
                    }
                    _ => l,
                })
                .collect::<Vec<_>>()
                .join("\n");
            let documented: serde_json::Value =
                serde_json::to_value(toml::from_str::<toml::Table>(&uncommented).unwrap()).unwrap();
            let defaults = serde_json::to_value(Config::default()).unwrap();
            let mut missing = Vec::new();
            fn walk(
                v: &serde_json::Value,
                doc: &serde_json::Value,
                path: &str,
                missing: &mut Vec<String>,
            ) {
                if let serde_json::Value::Object(map) = v {
                    for (k, v) in map {
                        let path = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        match doc.get(k) {
                            None => missing.push(path),
                            Some(d) => walk(v, d, &path, missing),
                        }
                    }
                }
            }
            walk(&defaults, &documented, "", &mut missing);
            assert!(missing.is_empty(), "undocumented keys: {missing:?}");
            Ok(())
        });
    }

    #[test]
    fn no_file_means_defaults() {
        Jail::expect_with(|_jail| {
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.server_name.as_str(), "localhost");
            assert_eq!(config.storage.path, PathBuf::from("./sori-data"));
            assert!(!config.registration.enabled);
            assert_eq!(config.log.format, LogFormat::Pretty);
            assert_eq!(config.base_url(), "http://localhost:8008");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[listen]\nclinet = \"127.0.0.1:1\"\n")?;
            let err = Config::load(Some(Path::new("c.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("clinet"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("SORI_REGISTRATION__ENABLD", "true");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("enabld"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "server_name = \"example.org\"\n[registration]\nenabled = false\n",
            )?;
            jail.set_env("SORI_CONFIG", "ignored-here");
            jail.set_env("SORI_REGISTRATION__ENABLED", "true");
            jail.set_env("SORI_LISTEN__CLIENT", "0.0.0.0:9000");
            jail.set_env("SORI_LOG__FORMAT", "json");
            let config = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.server_name.as_str(), "example.org");
            assert!(config.registration.enabled);
            assert_eq!(config.listen.client.port(), 9000);
            assert_eq!(config.log.format, LogFormat::Json);
            Ok(())
        });
    }

    #[test]
    fn invalid_values_are_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("SORI_SERVER_NAME", "not a server name");
            assert!(Config::load(None).is_err());
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("SORI_RATE_LIMITS__LOGIN__BURST", "0");
            assert!(Config::load(None).is_err());
            Ok(())
        });
        // A federation listener needs an address and a certificate.
        Jail::expect_with(|jail| {
            jail.set_env("SORI_LISTEN__FEDERATION", "not an address");
            assert!(Config::load(None).is_err());
            jail.set_env("SORI_LISTEN__FEDERATION", "127.0.0.1:8448");
            assert!(Config::load(None).is_err(), "no [tls] certificate");
            jail.set_env("SORI_TLS__CERTIFICATE", "/etc/sori/cert.pem");
            jail.set_env("SORI_TLS__PRIVATE_KEY", "/etc/sori/key.pem");
            assert!(Config::load(None).is_ok());
            Ok(())
        });
    }
}
