//! Keeping something alive until a response has been written out, not just built. A send's
//! "sending" guard lives here: the sender's own `/sync` waits for it, so that the answer to
//! the send reaches the client before the event comes back through its sync (matrix-js-sdk
//! trips over the other order). Released when the body has been handed to the connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

type Held = Vec<Box<dyn Send + Sync>>;

/// The things a request's handler asked to keep until its response is written.
#[derive(Clone, Default)]
pub struct ResponseHold(Arc<Mutex<Held>>);

impl ResponseHold {
    pub fn keep(&self, thing: impl Send + Sync + 'static) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(thing));
    }

    fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}

/// Gives each request a [`ResponseHold`], and makes the response body carry it.
pub async fn hold_until_written(mut request: Request, next: Next) -> Response {
    let hold = ResponseHold::default();
    request.extensions_mut().insert(hold.clone());
    let response = next.run(request).await;
    if hold.is_empty() {
        return response;
    }
    response.map(|inner| Body::new(HeldBody { inner, _hold: hold }))
}

struct HeldBody {
    inner: Body,
    _hold: ResponseHold,
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn what_a_handler_keeps_lives_until_the_body_is_read() {
        let kept = Arc::new(());
        let handler_copy = kept.clone();
        let router = Router::new()
            .route(
                "/",
                get(move |request: Request| {
                    let copy = handler_copy.clone();
                    async move {
                        if let Some(hold) = request.extensions().get::<ResponseHold>() {
                            hold.keep(copy);
                        }
                        "answer"
                    }
                }),
            )
            .layer(axum::middleware::from_fn(hold_until_written));
        let response = router
            .oneshot(Request::builder().uri("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        // The handler is done and the router gone (oneshot took it): only the copy the
        // handler kept is left besides ours, held by the response.
        assert_eq!(Arc::strong_count(&kept), 2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"answer");
        assert_eq!(Arc::strong_count(&kept), 1, "released with the body");
    }
}
