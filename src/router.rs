//! The HTTP router: every route and the handler behind it, plus what wraps every request:
//! CORS, a tracing span with a request id, panic containment, and Matrix-shaped answers for
//! unknown paths and methods.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, delete, get, on, post, put};
use axum::{Extension, Router};
use http::{HeaderValue, Method, StatusCode, header};
use ruma::api::IncomingRequest;
use ruma::api::path_builder::PathBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::api::admin::synapse as synapse_admin;
use crate::api::client::{
    account, account_data, backup, devices, directory, discovery, filter, keys, media, membership,
    messages, presence, profile, push_rules, pushers, read_by, receipts, register, relations,
    rooms, search, session, sliding_sync, sync, tags, thirdparty, to_device, typing, voip,
};
use crate::api::federation;
use crate::api::ruma::{AuthRequirement, EmptyLastPathArg, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::services::Services;

/// A refused upload is answered before its body was read: `Connection: close` tells the
/// client not to send its next request on a connection the server is closing.
async fn close_after_refusal(mut response: Response) -> Response {
    if !response.status().is_success() {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Adds a ruma endpoint under every path its spec history gives (r0, v3, unstable).
trait RumaRoutes {
    fn ruma<Req, H, Fut>(self, handler: H) -> Self
    where
        Req: IncomingRequest + Send + 'static,
        Req::Authentication: AuthRequirement,
        Req::OutgoingResponse: Send,
        H: Fn(Arc<Services>, Ruma<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Req::OutgoingResponse>> + Send + 'static;

    /// Like [`RumaRoutes::ruma`], for handlers that build their own response.
    fn ruma_raw<Req, H, Fut>(self, handler: H) -> Self
    where
        Req: IncomingRequest + Send + 'static,
        Req::Authentication: AuthRequirement,
        H: Fn(Arc<Services>, Ruma<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static;
}

fn method_filter(method: &Method) -> MethodFilter {
    MethodFilter::try_from(method.clone()).expect("ruma endpoints use standard methods")
}

impl RumaRoutes for Router<Arc<Services>> {
    fn ruma<Req, H, Fut>(self, handler: H) -> Self
    where
        Req: IncomingRequest + Send + 'static,
        Req::Authentication: AuthRequirement,
        Req::OutgoingResponse: Send,
        H: Fn(Arc<Services>, Ruma<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Req::OutgoingResponse>> + Send + 'static,
    {
        self.ruma_raw::<Req, _, _>(move |services, req| {
            let response = handler(services, req);
            async move { response.await.map(|r| RumaResponse(r).into_response()) }
        })
    }

    fn ruma_raw<Req, H, Fut>(mut self, handler: H) -> Self
    where
        Req: IncomingRequest + Send + 'static,
        Req::Authentication: AuthRequirement,
        H: Fn(Arc<Services>, Ruma<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        let filter = method_filter(&Req::METHOD);
        let route = move |State(services): State<Arc<Services>>, req: Ruma<Req>| {
            let handler = handler.clone();
            async move { handler(services, req).await }
        };
        for path in Req::PATH_BUILDER.all_paths() {
            self = self.route(path, on(filter, route.clone()));
            // An empty state key leaves no segment to capture: serve `…/{type}/` and `…/{type}`
            // too, with the missing argument supplied as empty.
            if let Some(base) = path.strip_suffix("/{state_key}") {
                let empty = on(filter, route.clone()).layer(Extension(EmptyLastPathArg));
                self = self
                    .route(&format!("{base}/"), empty.clone())
                    .route(base, empty);
            }
        }
        self
    }
}

pub fn router(services: Arc<Services>) -> Router {
    Router::new()
        // Discovery
        .ruma(discovery::versions)
        .ruma(discovery::capabilities)
        .route(
            "/.well-known/matrix/client",
            get(discovery::well_known_client),
        )
        .route(
            "/.well-known/matrix/server",
            get(discovery::well_known_server),
        )
        // Registration and sessions
        .ruma(register::register)
        .ruma(register::available)
        .ruma(register::token_validity)
        .ruma(session::login_types)
        .ruma(session::login)
        .ruma(session::get_login_token)
        .ruma(session::refresh)
        .ruma(session::logout)
        .ruma(session::logout_all)
        .ruma(session::whoami)
        // Account
        .ruma(account::change_password)
        .ruma(account::deactivate)
        .ruma(account::threepids)
        // Devices
        .ruma(devices::list)
        .ruma(devices::get)
        .ruma(devices::update)
        .ruma(devices::delete)
        .ruma(devices::delete_many)
        // Profile
        .ruma(profile::get)
        .ruma(profile::get_field)
        .ruma(profile::set_field)
        .ruma(profile::search_users)
        .ruma(search::search)
        .ruma(profile::delete_field)
        // Filters and account data
        .ruma(filter::create)
        .ruma(filter::get)
        .ruma(account_data::get_global)
        .ruma(account_data::set_global)
        .ruma(account_data::get_room)
        .ruma(account_data::set_room)
        // Push rules
        .ruma(pushers::get)
        .ruma(pushers::set)
        .ruma(pushers::notifications)
        .ruma(push_rules::get_all)
        .ruma(push_rules::get_global)
        .ruma(push_rules::get)
        .ruma(push_rules::set)
        .ruma(push_rules::delete)
        .ruma(push_rules::get_enabled)
        .ruma(push_rules::set_enabled)
        .ruma(push_rules::get_actions)
        .ruma(push_rules::set_actions)
        // Sync, receipts
        .ruma_raw(sync::sync_events)
        .ruma_raw(sliding_sync::sliding_sync)
        .ruma(receipts::receipt)
        .ruma(receipts::read_markers)
        .ruma(typing::typing)
        // End-to-end encryption
        .ruma(keys::upload)
        .ruma_raw(keys::query)
        .ruma_raw(keys::claim)
        .ruma(keys::changes)
        .ruma(keys::upload_signing_keys)
        .ruma_raw(keys::upload_signatures)
        .ruma(to_device::send)
        .ruma_raw(backup::create_version)
        .ruma_raw(backup::latest_version)
        .ruma_raw(backup::get_version)
        .ruma_raw(backup::update_version)
        .ruma_raw(backup::delete_version)
        .ruma_raw(backup::put_keys)
        .ruma_raw(backup::put_room_keys)
        .ruma_raw(backup::put_session_key)
        .ruma_raw(backup::get_keys)
        .ruma_raw(backup::get_room_keys)
        .ruma_raw(backup::get_session_key)
        .ruma_raw(backup::delete_keys)
        .ruma_raw(backup::delete_room_keys)
        .ruma_raw(backup::delete_session_key)
        // Media: uploads and downloads stream, so they read and write their bodies themselves.
        .route(
            "/_matrix/media/v3/upload",
            post(media::upload).layer(map_response(close_after_refusal)),
        )
        .route(
            "/_matrix/media/r0/upload",
            post(media::upload).layer(map_response(close_after_refusal)),
        )
        .route(
            "/_matrix/media/v3/upload/{server_name}/{media_id}",
            put(media::upload_to).layer(map_response(close_after_refusal)),
        )
        .ruma(media::create)
        .ruma(media::config)
        .ruma(
            #[allow(deprecated)]
            media::legacy_config,
        )
        .ruma(media::preview_url)
        .ruma(
            #[allow(deprecated)]
            media::legacy_preview_url,
        )
        .route(
            "/_matrix/client/v1/media/download/{server_name}/{media_id}",
            get(media::download),
        )
        .route(
            "/_matrix/client/v1/media/download/{server_name}/{media_id}/{file_name}",
            get(media::download),
        )
        .route(
            "/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}",
            get(media::thumbnail),
        )
        .route(
            "/_matrix/media/v3/thumbnail/{server_name}/{media_id}",
            get(media::legacy_thumbnail),
        )
        .route(
            "/_matrix/media/r0/thumbnail/{server_name}/{media_id}",
            get(media::legacy_thumbnail),
        )
        .route(
            "/_matrix/media/v3/download/{server_name}/{media_id}",
            get(media::legacy_download),
        )
        .route(
            "/_matrix/media/v3/download/{server_name}/{media_id}/{file_name}",
            get(media::legacy_download),
        )
        .route(
            "/_matrix/media/r0/download/{server_name}/{media_id}",
            get(media::legacy_download),
        )
        .route(
            "/_matrix/media/r0/download/{server_name}/{media_id}/{file_name}",
            get(media::legacy_download),
        )
        // Extensions (docs/extensions.md)
        .route(
            "/_matrix/client/unstable/io.sori/rooms/{room_id}/read_by/{event_id}",
            get(read_by::read_by),
        )
        // Single sign-on
        .route(
            "/_matrix/client/v3/login/sso/redirect",
            get(crate::api::client::sso::redirect),
        )
        .route(
            "/_matrix/client/r0/login/sso/redirect",
            get(crate::api::client::sso::redirect),
        )
        .route(
            "/_matrix/client/v3/login/sso/redirect/{idp_id}",
            get(crate::api::client::sso::redirect_to),
        )
        .route(
            crate::identity::sso::CALLBACK_PATH,
            get(crate::api::client::sso::callback),
        )
        // Sori's admin API
        .route(
            "/_sori/admin/v1/users/{user_id}/role",
            get(crate::api::admin::roles::get).put(crate::api::admin::roles::put),
        )
        .route("/_sori/admin/v1/audit", get(crate::api::admin::audit::list))
        .route(
            "/_sori/admin/v1/rooms/{room_id}/export",
            get(crate::api::admin::audit::export_room),
        )
        // Synapse's admin API, for synadm and synapse-admin
        .route(
            "/_synapse/admin/v1/server_version",
            get(synapse_admin::server_version),
        )
        .route("/_synapse/admin/v2/users", get(synapse_admin::users::list))
        .route(
            "/_synapse/admin/v2/users/{user_id}",
            get(synapse_admin::users::get).put(synapse_admin::users::put),
        )
        .route(
            "/_synapse/admin/v1/whois/{user_id}",
            get(synapse_admin::users::whois),
        )
        .route(
            "/_synapse/admin/v1/reset_password/{user_id}",
            post(synapse_admin::users::reset_password),
        )
        .route(
            "/_synapse/admin/v1/deactivate/{user_id}",
            post(synapse_admin::users::deactivate),
        )
        .route(
            "/_synapse/admin/v1/users/{user_id}/joined_rooms",
            get(synapse_admin::users::joined_rooms),
        )
        .route("/_synapse/admin/v1/rooms", get(synapse_admin::rooms::list))
        .route(
            "/_synapse/admin/v1/rooms/{room_id}",
            get(synapse_admin::rooms::details).delete(synapse_admin::rooms::delete_v1),
        )
        .route(
            "/_synapse/admin/v1/rooms/{room_id}/members",
            get(synapse_admin::rooms::members),
        )
        .route(
            "/_synapse/admin/v1/rooms/{room_id}/state",
            get(synapse_admin::rooms::state),
        )
        .route(
            "/_synapse/admin/v1/rooms/{room_id}/messages",
            get(synapse_admin::rooms::messages),
        )
        .route(
            "/_synapse/admin/v1/rooms/{room_id}/block",
            get(synapse_admin::rooms::get_block).put(synapse_admin::rooms::set_block),
        )
        .route(
            "/_synapse/admin/v2/rooms/{room_id}",
            delete(synapse_admin::rooms::delete_v2),
        )
        .route(
            "/_synapse/admin/v2/rooms/{room_id}/delete_status",
            get(synapse_admin::rooms::delete_status_of_room),
        )
        .route(
            "/_synapse/admin/v2/rooms/delete_status/{delete_id}",
            get(synapse_admin::rooms::delete_status),
        )
        .route(
            "/_synapse/admin/v1/media/quarantine/{server_name}/{media_id}",
            post(synapse_admin::media::quarantine),
        )
        .route(
            "/_synapse/admin/v1/media/{server_name}/{media_id}",
            delete(synapse_admin::media::delete),
        )
        .route(
            "/_synapse/admin/v1/room/{room_id}/media",
            get(synapse_admin::media::of_room),
        )
        .route(
            "/_synapse/admin/v1/room/{room_id}/media/quarantine",
            post(synapse_admin::media::quarantine_room),
        )
        .route(
            "/_synapse/admin/v1/user/{user_id}/media/quarantine",
            post(synapse_admin::media::quarantine_user),
        )
        .route(
            "/_synapse/admin/v1/users/{user_id}/media",
            get(synapse_admin::media::of_user),
        )
        .route(
            "/_synapse/admin/v1/event_reports",
            get(synapse_admin::reports::list),
        )
        .route(
            "/_synapse/admin/v1/event_reports/{report_id}",
            get(synapse_admin::reports::get).delete(synapse_admin::reports::delete),
        )
        .route(
            "/_synapse/admin/v1/registration_tokens",
            get(synapse_admin::registration_tokens::list),
        )
        .route(
            "/_synapse/admin/v1/registration_tokens/new",
            post(synapse_admin::registration_tokens::create),
        )
        .route(
            "/_synapse/admin/v1/registration_tokens/{token}",
            get(synapse_admin::registration_tokens::get)
                .put(synapse_admin::registration_tokens::update)
                .delete(synapse_admin::registration_tokens::delete),
        )
        .route(
            "/_synapse/admin/v1/users/{user_id}/admin",
            get(synapse_admin::users::get_admin).put(synapse_admin::users::set_admin),
        )
        // Rooms
        .ruma(rooms::create_room)
        .ruma(rooms::send_message)
        .ruma(rooms::send_state)
        .ruma(rooms::get_state)
        .ruma(rooms::get_state_event)
        .ruma(rooms::get_event)
        .ruma(rooms::joined)
        .ruma(messages::messages)
        .ruma(messages::redact)
        .ruma(messages::context)
        .ruma(relations::all)
        .ruma(relations::by_type)
        .ruma(relations::by_type_and_event_type)
        .ruma(relations::threads)
        .ruma(messages::timestamp_to_event)
        .ruma(rooms::report)
        .ruma(rooms::upgrade)
        .ruma(membership::forget)
        .ruma(membership::knock)
        .ruma(tags::get)
        .ruma(tags::put)
        .ruma(tags::delete)
        // Aliases and the room directory
        .ruma(directory::create)
        .ruma(directory::get)
        .ruma(directory::delete)
        .ruma(directory::room_aliases)
        .ruma(directory::get_visibility)
        .ruma(directory::set_visibility)
        .ruma(directory::public_rooms)
        .ruma(directory::public_rooms_filtered)
        .ruma(directory::room_summary)
        .ruma(membership::join_by_id)
        .ruma(membership::join_by_id_or_alias)
        .ruma(membership::invite)
        .ruma(membership::leave)
        .ruma(membership::kick)
        .ruma(membership::ban)
        .ruma(membership::unban)
        .ruma(membership::members)
        .ruma(membership::joined)
        // What clients ask for at start-up
        .ruma_raw(voip::turn_server)
        .ruma(thirdparty::protocols)
        .ruma(presence::get)
        .ruma(presence::set)
        // Appservices
        .ruma(crate::api::client::appservice::ping)
        .ruma(crate::api::client::directory::set_appservice_visibility)
        // Server-server discovery
        .ruma(federation::keys::server_keys)
        .ruma(federation::keys::version)
        .ruma(federation::keys::query)
        .ruma(federation::keys::query_batch)
        // Server-server API
        .ruma(federation::query::profile)
        .ruma(federation::directory::alias)
        .ruma(federation::directory::public_rooms)
        .ruma(federation::directory::public_rooms_filtered)
        .ruma(federation::e2ee::devices)
        .ruma(federation::e2ee::query)
        .ruma(federation::e2ee::claim)
        .ruma(federation::history::event)
        .ruma(federation::history::state)
        .ruma(federation::history::state_ids)
        .ruma(federation::history::backfill)
        .ruma(federation::history::missing_events)
        .ruma(federation::history::timestamp_to_event)
        .ruma(federation::history::event_auth)
        .ruma(federation::membership::make_join)
        .ruma_raw(federation::membership::send_join)
        .ruma(federation::membership::make_leave)
        .ruma(federation::membership::send_leave)
        .ruma(federation::membership::make_knock)
        .ruma(federation::membership::send_knock)
        .ruma(federation::membership::invite)
        .ruma(federation::transactions::send)
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(|_| {
            Error::internal("a request handler panicked").into_response()
        }))
        .layer(middleware::from_fn_with_state(
            services.clone(),
            crate::api::ruma::with_request_origin,
        ))
        .layer(middleware::from_fn(crate::api::hold::hold_until_written))
        .layer(middleware::from_fn(request_span))
        .layer(middleware::from_fn(cors))
        .with_state(services)
}

async fn unknown_endpoint() -> Error {
    Error::unrecognized(StatusCode::NOT_FOUND, "Unrecognized request")
}

async fn method_not_allowed() -> Error {
    Error::unrecognized(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed for this endpoint",
    )
}

/// CORS as the spec asks of every client API response, so browser clients (Element Web) work;
/// pre-flight `OPTIONS` requests are answered directly.
async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Requested-With, Content-Type, Authorization"),
    );
    response
}

/// One span per request: request id, method, the route's path template (never the concrete
/// path or query, which may hold tokens), then status and latency.
async fn request_span(request: Request, next: Next) -> Response {
    let request_id = crate::random::string(b"0123456789abcdef", 16);
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let span = tracing::info_span!(
        "request",
        id = %request_id,
        method = %request.method(),
        path = %path,
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(status, latency_ms, "request failed");
        } else {
            tracing::info!(status, latency_ms, "request");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn app(dir: &tempfile::TempDir) -> Router {
        let mut config = crate::config::Config::default();
        config.storage.path = dir.path().to_owned();
        config.storage.cache_mb = 8;
        config.limits.max_request_bytes = 2048;
        crate::build(config).unwrap().router
    }

    async fn call(
        router: &Router,
        request: http::Request<Body>,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    fn request(method: Method, uri: &str, body: &'static str) -> http::Request<Body> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn unknown_path_and_method_answer_in_matrix_shape_with_cors() {
        let dir = tempfile::tempdir().unwrap();
        let router = app(&dir);
        let (status, headers, body) = call(&router, request(Method::GET, "/nope", "")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["errcode"], "M_UNRECOGNIZED");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(headers.contains_key("x-request-id"));

        let (status, _, body) = call(
            &router,
            request(Method::PATCH, "/_matrix/client/v3/login", "{}"),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["errcode"], "M_UNRECOGNIZED");

        let (status, headers, _) = call(
            &router,
            request(Method::OPTIONS, "/_matrix/client/v3/login", ""),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    #[tokio::test]
    async fn bodies_are_checked_before_handlers_run() {
        let dir = tempfile::tempdir().unwrap();
        let router = app(&dir);
        let login = "/_matrix/client/v3/login";
        let (status, _, body) = call(&router, request(Method::POST, login, "{oops")).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (StatusCode::BAD_REQUEST, Some("M_NOT_JSON"))
        );
        let (status, _, body) = call(&router, request(Method::POST, login, "")).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (StatusCode::BAD_REQUEST, Some("M_NOT_JSON"))
        );
        // A body ruma's deserialiser would panic on is still just bad JSON.
        let (status, _, body) = call(&router, request(Method::POST, login, "{}")).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (StatusCode::BAD_REQUEST, Some("M_BAD_JSON"))
        );
        let big: &'static str =
            Box::leak(format!("{{\"x\":\"{}\"}}", "a".repeat(4096)).into_boxed_str());
        let (status, _, body) = call(&router, request(Method::POST, login, big)).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("M_TOO_LARGE"))
        );
    }

    #[tokio::test]
    async fn every_authenticated_route_refuses_a_missing_token() {
        let dir = tempfile::tempdir().unwrap();
        let router = app(&dir);
        for (method, path) in [
            (Method::GET, "/_matrix/client/v3/account/whoami"),
            (Method::GET, "/_matrix/client/v3/devices"),
            (Method::POST, "/_matrix/client/v3/logout"),
            (Method::GET, "/_matrix/client/v3/pushrules/"),
            (
                Method::GET,
                "/_matrix/client/v3/user/@a:localhost/account_data/x.y",
            ),
            (Method::POST, "/_matrix/client/v3/user/@a:localhost/filter"),
            (Method::GET, "/_matrix/client/v3/voip/turnServer"),
        ] {
            let (status, _, body) = call(&router, request(method, path, "{}")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(body["errcode"], "M_MISSING_TOKEN", "{path}");
        }
    }
}
