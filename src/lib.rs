//! Sori (소리, "voice"): a Matrix homeserver for company messaging.
//!
//! # Layout
//!
//! - [`config`]: the one typed [`Config`](config::Config), from a TOML file and `SORI_*`
//!   environment variables.
//! - [`error`]: the one [`Error`](error::Error) type; every failure becomes a Matrix errcode.
//! - [`storage`]: the [`Store`](storage::Store) abstraction (tables, atomic batches, ordered
//!   scans, a durable counter) and its RocksDB backend; only it knows key encodings.
//! - [`rooms`]: Matrix's room rules: signed PDUs, the timeline with authorization through
//!   ruma's state-res, state, history visibility, relations, aliases and the directory.
//! - [`users`]: accounts, devices and tokens, profiles, account data, filters, and
//!   user-interactive authentication.
//! - [`identity`]: who may sign in and how: local passwords, the company directory (LDAP),
//!   single sign-on (OpenID Connect), signed tokens (JWT), login tokens; accounts and roles
//!   follow the identity provider.
//! - [`media`]: uploaded files: streamed uploads, content-addressed storage, who may
//!   download them.
//! - [`outbound`]: the one guarded way out for requests users can aim (link previews, push
//!   gateways; later federation): resolved and checked addresses only.
//! - [`preview`]: link previews (OpenGraph), fetched through [`outbound`].
//! - [`federation`]: signing keys (ours and other servers'), finding other servers, signed
//!   requests both ways, and the TLS federation listener.
//! - [`e2ee`]: end-to-end encryption plumbing: device, one-time and cross-signing keys,
//!   to-device messages, room key backup (the server never sees plaintext).
//! - [`watchers`]: wake-ups for sleeping long-polls, fired by every service that changes
//!   something a user should hear of.
//! - [`sync`]: `/sync` and simplified sliding sync (MSC4186): what changed for a user since a
//!   token, shaped either way.
//! - [`search`]: message search through a backend fed by a durable outbox (the embedded
//!   index finds Korean words inside inflected forms), and the user directory.
//! - [`typing`]: typing notifications (memory only).
//! - [`push`]: push rules, pushers, and notifications delivered to push gateways from a
//!   durable per-pusher queue.
//! - [`presence`]: online/offline status.
//! - [`rate_limit`]: per-address token buckets for login and registration.
//! - [`admin`]: running the server: the hash-chained audit log, written in the same batch as
//!   each audited action.
//! - [`appservice`]: bridges: registrations and namespaces, durable per-appservice queues
//!   and the transactions that deliver them, queries about unknown users and aliases.
//! - [`random`]: secure tokens and ids.
//! - [`services`]: [`Services`](services::Services), every service built once and shared.
//! - [`api`]: the HTTP surface, ruma request/response plumbing and thin handlers.
//! - [`router`]: routes, CORS, request spans, Matrix-shaped 404/405.
//!
//! [`build`] opens the store and wires the services and router; [`serve`] runs it.

pub mod admin;
pub mod api;
pub mod appservice;
pub mod config;
pub mod e2ee;
pub mod error;
pub mod federation;
pub mod identity;
pub mod media;
pub mod outbound;
pub mod presence;
pub mod preview;
pub mod push;
pub mod random;
pub mod rate_limit;
pub mod rooms;
pub mod router;
pub mod search;
pub mod services;
pub mod storage;
pub mod sync;
pub mod typing;
pub mod users;
pub mod watchers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::services::Services;
use crate::storage::rocksdb::RocksStore;

/// A built server: its services and the router that serves them.
pub struct App {
    pub services: Arc<Services>,
    pub router: axum::Router,
}

/// Opens the store named by `config` and builds every service and the router.
pub fn build(config: Config) -> Result<App> {
    // Outbound TLS (S3, later federation and push gateways) uses ring, as the rest of Sori;
    // already installed is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = Arc::new(RocksStore::open(
        &config.storage.path,
        config.storage.cache_mb,
    )?);
    let services = Arc::new(Services::new(config, store)?);
    let router = router::router(services.clone());
    Ok(App { services, router })
}

/// Serves the client API on the configured listener until `shutdown` completes.
pub async fn serve(app: App, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let addr = app.services.config.listen.client;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::internal(format!("cannot listen on {addr}: {e}")))?;
    tracing::info!(%addr, server_name = %app.services.config.server_name, "listening");
    tokio::spawn(expire_presence(app.services.clone()));
    tokio::spawn(expire_media(app.services.clone()));
    tokio::spawn(search::indexer::run(app.services.clone()));
    tokio::spawn(push::sender::run(app.services.clone()));
    app.services
        .audit
        .spawn_retention(app.services.config.audit.retention_days);
    tokio::spawn(admin::bot::run(app.services.clone()));
    appservice::ensure_senders(&app.services).await?;
    appservice::sender::spawn(&app.services);
    federation::sender::spawn(&app.services);
    federation::device_lists::spawn(&app.services);
    let shutdown = futures_util::FutureExt::shared(Box::pin(shutdown));
    if let Some(addr) = app.services.config.listen.federation_addr()? {
        let tls = &app.services.config.tls;
        let (Some(certificate), Some(private_key)) = (&tls.certificate, &tls.private_key) else {
            return Err(Error::internal(
                "listen.federation needs tls.certificate and tls.private_key",
            ));
        };
        let config = federation::tls::server_config(certificate, private_key)?;
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::internal(format!("cannot listen on {addr}: {e}")))?;
        let listener = federation::tls::TlsListener::new(tcp, config)?;
        tracing::info!(%addr, "federation listening (TLS)");
        // TapIo gives the connections their peer address, as on the client listener.
        let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
        let router = app.router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await;
            if let Err(error) = served {
                tracing::error!(%error, "the federation listener stopped");
            }
        });
    }
    // Without TCP_NODELAY, a small body written after its headers (a streamed thumbnail or
    // file) waits for the client's delayed ACK: 40 ms for nothing.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        app.router
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|e| Error::internal(format!("server: {e}")))
}

/// Announces presence that changed by time alone (idle users, users who stopped syncing).
async fn expire_presence(services: Arc<Services>) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for user in services.presence.expire() {
            let announced = sync::wake_sharers(&services, &user)
                .and_then(|()| federation::presence::announce(&services, &user));
            if let Err(error) = announced {
                tracing::warn!(%error, "cannot announce a presence change");
            }
        }
    }
}

/// Forgets media ids made for uploads that never came.
async fn expire_media(services: Arc<Services>) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(60));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = services.media.expire_pending() {
            tracing::warn!(%error, "cannot expire unused media ids");
        }
    }
}

/// Milliseconds since the Unix epoch, as Matrix timestamps are.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
