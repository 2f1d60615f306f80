//! The HTTP server: accepts connections and serves the API router on them, with the limits a
//! public endpoint needs so that slow or idle clients cannot hold the node (SPEC §3.9).
//!
//! The webhook route is public and takes bodies up to 1 MiB, so without limits each client
//! that sends slowly holds a task, a socket and up to a body's worth of memory for as long as
//! it likes. Three limits bound that, all under `[api]` in the configuration:
//!
//! - **connection limit** (`max_connections`): [`serve`] takes a slot before it accepts a
//!   connection and gives it back when the connection closes. While every slot is taken it
//!   stops accepting: new clients wait in the kernel's listen backlog (and are refused by the
//!   kernel once that is full) until a slot frees.
//! - **header read timeout** (`header_read_timeout_ms`): hyper closes a connection whose
//!   request head has not arrived in full within this time of starting to wait for it. This
//!   also bounds how long an idle keep-alive connection keeps its slot.
//! - **body read timeout** (`body_read_timeout_ms`): [`body_deadline`] gives each request's
//!   body a deadline counted from its head. A body still arriving then is cut off: the handler
//!   reading it sees [`BodyTimeout`], the client gets `408` and the connection is closed.
//!   Data that has already arrived is always delivered, so a handler that reads late (after a
//!   slow store call) is not punished for its own delay.
//!
//! HTTP/1.1 only: cleartext HTTP/2 is not served, so every connection is subject to the header
//! timeout (a TLS terminator in front may speak HTTP/2 to clients).

use crate::api::error::REQUEST_ID;
use crate::api::{ApiError, REQUEST_ID_HEADER};
use crate::config::ApiConfig;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The server's limits, from `[api]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl Limits {
    pub fn from_config(api: &ApiConfig) -> Limits {
        Limits {
            max_connections: api.max_connections,
            header_read_timeout: Duration::from_millis(api.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(api.body_read_timeout_ms),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, lets open connections finish their requests, and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let router = router.layer(middleware::from_fn_with_state(
        limits.body_read_timeout,
        body_deadline,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = pin!(shutdown);
    // Whether the limit was hit and not yet relieved: said once per episode, not per client.
    let mut saturated = false;
    loop {
        if slots.available_permits() == 0 && !saturated {
            saturated = true;
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached; new connections wait until one closes"
            );
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slot semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if saturated && slots.available_permits() > 0 {
            saturated = false;
        }
        let service = router
            .clone()
            .map_request(move |req: Request<hyper::body::Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(remote));
                req
            });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Header timeouts, resets and malformed requests: the client's doing.
                tracing::debug!(remote = %remote, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A request body still arriving when its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
pub struct BodyTimeout;

/// Whether `error`, or any error it wraps, is a [`BodyTimeout`].
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(error);
    while let Some(e) = cur {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Gives the request body a deadline; answers 408 (and closes the connection) when it passed.
async fn body_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let flag = expired.clone();
    let req = req.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(limit)),
            expired: flag,
        })
    });
    let mut resp = next.run(req).await;
    if !expired.load(Ordering::Acquire) {
        return resp;
    }
    if resp.status() != StatusCode::REQUEST_TIMEOUT {
        // Whatever the handler made of its failed read (a 400 from a JSON extractor, say),
        // the cause is the client's slowness.
        let id = resp
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut timed_out = REQUEST_ID.sync_scope(id, request_timeout);
        if let Some(v) = resp.headers().get(REQUEST_ID_HEADER) {
            timed_out.headers_mut().insert(REQUEST_ID_HEADER, v.clone());
        }
        resp = timed_out;
    }
    // The rest of the body is unread: the connection cannot carry another request.
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The 408 answered for a body cut off at its deadline.
pub fn request_timeout() -> Response {
    ApiError::new(
        crate::api::error::ErrorCode::RequestTimeout,
        "the request body did not arrive in time",
    )
    .into_response()
}

/// A body that fails with [`BodyTimeout`] once its deadline passes while it waits for data.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.expired.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
                }
                Poll::Pending
            }
        }
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
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_stalled_body_fails_at_its_deadline_and_data_already_there_is_delivered() {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        tx.try_send(Ok(Bytes::from_static(b"abc"))).unwrap();
        let expired = Arc::new(AtomicBool::new(false));
        let mut body = DeadlineBody {
            inner: Body::from_stream(rx),
            deadline: Box::pin(tokio::time::sleep(Duration::from_millis(20))),
            expired: expired.clone(),
        };
        // Delivered even after the deadline: it had arrived.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"abc"));
        assert!(!expired.load(Ordering::Acquire));
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(is_body_timeout(err.as_ref()), "{err}");
        assert!(expired.load(Ordering::Acquire));
        drop(tx);
    }
}
