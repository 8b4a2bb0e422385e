//! The one error type: every failure becomes a Matrix error response, an HTTP status plus
//! `{"errcode": "M_…", "error": "…"}` (or a user-interactive auth challenge).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use ruma::api::client::uiaa::UiaaInfo;
use ruma::api::error::{
    ErrorKind, LimitExceededErrorData, RetryAfter, StandardErrorBody, UnknownTokenErrorData,
};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// A refusal the client can act on.
    Matrix {
        status: StatusCode,
        kind: ErrorKind,
        message: String,
    },
    /// User-interactive authentication is needed (or a stage failed): 401 with the flows.
    Uiaa(Box<UiaaInfo>),
    /// A fault of the server; logged, and answered without details.
    Internal(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Matrix {
                status,
                kind,
                message,
            } => {
                write!(f, "{} {}: {message}", status.as_u16(), kind.errcode())
            }
            Error::Uiaa(_) => f.write_str("user-interactive authentication required"),
            Error::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Matrix {
            status,
            kind,
            message: message.into(),
        }
    }

    /// An errcode outside the spec (documented in docs/extensions.md), such as the Matrix
    /// content scanner's `MCS_MEDIA_NOT_CLEAN` that clients already understand.
    pub fn custom(status: StatusCode, errcode: &str, message: impl Into<String>) -> Self {
        let kind = serde_json::from_value(serde_json::json!({ "errcode": errcode }))
            .unwrap_or(ErrorKind::Unknown);
        Self::new(status, kind, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::BadJson, message)
    }

    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::NotJson, message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, message)
    }

    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::MissingParam, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge, message)
    }

    pub fn unrecognized(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, ErrorKind::Unrecognized, message)
    }

    /// 400 `M_EXCLUSIVE`: a user id or alias an appservice reserved.
    pub fn exclusive(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::Exclusive, message)
    }

    pub fn user_in_use() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::UserInUse,
            "This user id is already taken",
        )
    }

    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::MissingToken,
            "Missing access token",
        )
    }

    /// An access token that is unknown, revoked or expired. `soft_logout` tells the client that
    /// its device still exists (an expired refreshable token) and a refresh or re-login keeps it.
    pub fn unknown_token(soft_logout: bool) -> Self {
        let mut data = UnknownTokenErrorData::new();
        data.soft_logout = soft_logout;
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::UnknownToken(data),
            "Unknown or expired access token",
        )
    }

    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        let mut data = LimitExceededErrorData::new();
        data.retry_after = Some(RetryAfter::Delay(std::time::Duration::from_millis(
            retry_after_ms,
        )));
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::LimitExceeded(data),
            "Too many requests",
        )
    }

    /// The errcode string, for logs and tests.
    pub fn errcode(&self) -> String {
        match self {
            Error::Matrix { kind, .. } => kind.errcode().to_string(),
            Error::Uiaa(_) => "UIA".to_owned(),
            Error::Internal(_) => "M_UNKNOWN".to_owned(),
        }
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Matrix {
                status,
                kind,
                message,
            } => {
                let retry_after = match &kind {
                    ErrorKind::LimitExceeded(LimitExceededErrorData {
                        retry_after: Some(RetryAfter::Delay(d)),
                        ..
                    }) => Some(d.as_millis() as u64),
                    _ => None,
                };
                let soft_logout = match &kind {
                    ErrorKind::UnknownToken(data) => Some(data.soft_logout),
                    _ => None,
                };
                let mut value = serde_json::to_value(StandardErrorBody::new(kind, message))
                    .unwrap_or_else(|_| serde_json::json!({"errcode": "M_UNKNOWN", "error": ""}));
                if let Some(soft_logout) = soft_logout {
                    // Always present, so clients need not guess what a missing field means.
                    value["soft_logout"] = soft_logout.into();
                }
                if let Some(ms) = retry_after {
                    // Clients before v1.10 read the body field; later ones the header.
                    value["retry_after_ms"] = ms.into();
                }
                let mut response = json_response(status, value.to_string().into_bytes());
                if let Some(ms) = retry_after {
                    let secs = ms.div_ceil(1000).max(1);
                    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                        response.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                }
                response
            }
            Error::Uiaa(info) => {
                let mut info = *info;
                // `params` is optional in the spec, but clients (matrix-nio) read it always.
                if info.params.is_none() {
                    info.params = serde_json::value::RawValue::from_string("{}".to_owned()).ok();
                }
                let body = serde_json::to_vec(&info).unwrap_or_else(|_| b"{}".to_vec());
                json_response(StatusCode::UNAUTHORIZED, body)
            }
            Error::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    br#"{"errcode":"M_UNKNOWN","error":"Internal server error"}"#.to_vec(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: Error) -> (StatusCode, serde_json::Value, Option<HeaderValue>) {
        let response = error.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).cloned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), retry)
    }

    #[tokio::test]
    async fn unknown_token_carries_soft_logout() {
        let (status, body, _) = body_of(Error::unknown_token(false)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["errcode"], "M_UNKNOWN_TOKEN");
        assert_eq!(body["soft_logout"], false);
    }

    #[tokio::test]
    async fn limit_exceeded_has_retry_after_in_body_and_header() {
        let (status, body, retry) = body_of(Error::limit_exceeded(1500)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
        assert_eq!(body["retry_after_ms"], 1500);
        assert_eq!(retry.unwrap(), "2");
    }

    #[tokio::test]
    async fn custom_errcodes_are_answered_as_given() {
        let error = Error::custom(StatusCode::FORBIDDEN, "MCS_MEDIA_NOT_CLEAN", "infected");
        assert_eq!(error.errcode(), "MCS_MEDIA_NOT_CLEAN");
        let (status, body, _) = body_of(error).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["errcode"], "MCS_MEDIA_NOT_CLEAN");
        assert_eq!(body["error"], "infected");
    }

    #[tokio::test]
    async fn internal_errors_hide_their_details() {
        let (status, body, _) = body_of(Error::internal("disk on fire at /secret/path")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["errcode"], "M_UNKNOWN");
        assert!(!body.to_string().contains("secret"));
    }
}
