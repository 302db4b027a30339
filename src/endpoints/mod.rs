//! The HTTP listener subsystem (`PRIVACY_HTTP_ADDR`): `/metrics` for
//! Prometheus, `/healthz` (the process runs) and `/readyz` (200, or 503 with
//! the reasons: a broker session down, the store not answering, the data map
//! not loaded).
//!
//! hyper alone, HTTP/1.1: three GET routes need no router, and hyper is in the
//! build already (object_store's and reqwest's client), so serving adds its
//! `server` feature and nothing else. Each connection is its own task; a
//! cancellation stops accepting, lets each connection finish the response in
//! flight (hyper's graceful shutdown), and gives up on the stragglers after a
//! short deadline. Nothing here reads a request body, and no answer carries
//! personal data: the reasons name components, the page counts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

mod scrape;

pub use scrape::Observed;

/// How long open connections get to finish after a cancellation.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long a client may take to send its request head (a slow client must
/// not hold a connection open for ever).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The OpenMetrics text format, which Prometheus reads natively.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Binds `addr`, if there is one; why it cannot be bound is the caller's
/// fatal error (an address in use, or not this host's).
pub async fn bind(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, String> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let cannot = |e: std::io::Error| format!("cannot listen on {addr} (PRIVACY_HTTP_ADDR): {e}");
    let listener = TcpListener::bind(addr).await.map_err(cannot)?;
    let bound = listener.local_addr().map_err(cannot)?;
    info!(addr = %bound, "HTTP listener: /metrics /healthz /readyz");
    Ok(Some(listener))
}

/// Serves until `token` is cancelled.
pub async fn serve(listener: TcpListener, observed: Observed, token: &CancellationToken) {
    crate::metrics::init();
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = token.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                warn!(%error, "HTTP listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (observed, token) = (observed.clone(), token.clone());
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let observed = observed.clone();
                async move { Ok::<_, Infallible>(route(&observed, &request).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = token.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        debug!("HTTP listener: connections still open at shutdown were dropped");
    }
}

async fn route(observed: &Observed, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return answer(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
    }
    match request.uri().path() {
        "/metrics" => answer(StatusCode::OK, OPENMETRICS, observed.page().await),
        "/healthz" => answer(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => {
            let reasons = observed.not_ready().await;
            if reasons.is_empty() {
                answer(StatusCode::OK, TEXT, "ready\n".into())
            } else {
                let body = format!("not ready: {}\n", reasons.join("; "));
                answer(StatusCode::SERVICE_UNAVAILABLE, TEXT, body)
            }
        }
        _ => answer(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
    }
}

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
