//! The HTTPS shell around [`super::review::review_body`]: `POST /validate`, `GET /healthz`
//! and `GET /readyz`, over rustls with a certificate that can be swapped while serving.
//!
//! Until the caches have finished their first list, `/validate` answers 503: judging against
//! empty caches would call every reference missing, so the API server's `failurePolicy`
//! decides instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use jiff::Timestamp;
use tokio::net::TcpListener;

use super::catalog::Catalog;
use super::config::VALIDATE_PATH;
use super::review::review_body;

/// The largest AdmissionReview accepted: an object and its old version of at most 1.5 MiB each
/// (etcd's limit), with room for the envelope.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may finish their requests after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone)]
pub struct WebhookState {
    /// The objects decisions read.
    pub catalog: Arc<dyn Catalog + Send + Sync>,
    /// Whether the catalog is complete (its caches have listed once).
    pub ready: Arc<AtomicBool>,
}

async fn validate(State(state): State<WebhookState>, body: Bytes) -> Response {
    if !state.ready.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "medplat's caches are not synced yet",
        )
            .into_response();
    }
    let review = review_body(&body, state.catalog.as_ref(), Timestamp::now());
    if let Some(r) = &review.response {
        // Names and reasons only: the objects' contents stay out of the log. Plain admissions
        // are routine; refusals and warnings are what an operator looks for.
        let warnings = r.warnings.as_ref().map_or(0, Vec::len);
        if r.allowed && warnings == 0 {
            tracing::debug!(uid = %r.uid, "admission review: allowed");
        } else {
            tracing::info!(uid = %r.uid, allowed = r.allowed, warnings, message = %r.result.message, "admission review");
        }
    }
    match serde_json::to_vec(&review) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the AdmissionReview: {e}"),
        )
            .into_response(),
    }
}

async fn readyz(State(state): State<WebhookState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

/// The webhook's routes.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(VALIDATE_PATH, post(validate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves `router` over TLS on `listener` until `shutdown`, then lets open connections finish
/// for a few seconds.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls_stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder
                .serve_connection(TokioIo::new(tls_stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
            }
        });
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}
