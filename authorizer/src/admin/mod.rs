//! The admin HTTP server: `/health/live`, `/health/ready`, `/state`, `/accounts/{account_id}`
//! and `/metrics`, on loopback by default (`admin.listen`).
//!
//! The server knows nothing of the daemon: it asks an [`AdminSource`] (implemented by the daemon
//! over its ledger, links and spool) and encodes a [`Metrics`] registry. Each answer is built
//! per request from what the source returns; the source's calls run on the blocking pool, so a
//! source may wait on the ledger thread.
//!
//! Must never: answer with a PAN, track data, a PIN block, a key or any secret (the views have
//! no field for one), log a requested path (an operator may paste a PAN into it), change any
//! state (every route is a read), or decide money.

pub mod metrics;
pub mod state;

use std::io;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use metrics::Metrics;
pub use state::{AccountView, LinkView, StateCounts, StateView};

/// What the admin server asks of the daemon. Implementations must be cheap enough to call on
/// every scrape and must never put a secret in a view.
pub trait AdminSource: Send + Sync + 'static {
    /// Whether the daemon's loops run (`/health/live`); true by default.
    fn live(&self) -> bool {
        true
    }
    /// Whether the daemon is ready (`/health/ready`): false before catch-up and while stopping.
    fn ready(&self) -> bool;
    /// The body of `/state`.
    fn state(&self) -> StateView;
    /// The body of `/accounts/{account_id}`, or `None` when the account is unknown.
    fn account(&self, account_id: &str) -> Option<AccountView>;
    /// The JSON of `/state`: [`AdminSource::state`] by default; a daemon whose `/state` has
    /// other fields (the snapshotter's) gives its own.
    fn state_body(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self.state())
    }
}

/// What `/metrics` encodes: the authorizer's [`Metrics`], or another daemon's registry.
pub trait MetricsText: Send + Sync + 'static {
    /// The OpenMetrics text ([`metrics::CONTENT_TYPE`]).
    fn encode(&self) -> String;
}

impl MetricsText for Metrics {
    fn encode(&self) -> String {
        Metrics::encode(self)
    }
}

#[derive(Clone)]
struct Shared {
    source: Arc<dyn AdminSource>,
    metrics: Arc<dyn MetricsText>,
}

/// The routes of the admin server, over `source` and `metrics`. Any other path answers 404, any
/// other method 405.
pub fn router(source: Arc<dyn AdminSource>, metrics: Arc<dyn MetricsText>) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/state", get(state))
        .route("/accounts/{account_id}", get(account))
        .route("/metrics", get(metrics_text))
        .with_state(Shared { source, metrics })
}

/// Serves [`router`] on `listener` until `shutdown` turns true (or its sender is dropped), then
/// finishes the requests in flight and returns.
pub async fn serve(
    listener: TcpListener,
    source: Arc<dyn AdminSource>,
    metrics: Arc<dyn MetricsText>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    axum::serve(listener, router(source, metrics))
        .with_graceful_shutdown(async move {
            // An Err means the sender is gone: stop as well.
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

fn status_only(ok: bool) -> Response {
    if ok {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Runs a call of the source on the blocking pool (it may wait on the ledger thread).
async fn ask<T, F>(shared: &Shared, call: F) -> Result<T, Response>
where
    T: Send + 'static,
    F: FnOnce(&dyn AdminSource) -> T + Send + 'static,
{
    let source = Arc::clone(&shared.source);
    tokio::task::spawn_blocking(move || call(source.as_ref()))
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn live(State(shared): State<Shared>) -> Response {
    status_only(shared.source.live())
}

async fn ready(State(shared): State<Shared>) -> Response {
    status_only(shared.source.ready())
}

async fn state(State(shared): State<Shared>) -> Response {
    match ask(&shared, |source| source.state_body()).await {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(Err(_)) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(response) => response,
    }
}

async fn account(State(shared): State<Shared>, Path(account_id): Path<String>) -> Response {
    match ask(&shared, move |source| source.account(&account_id)).await {
        Ok(Some(view)) => json(&view),
        Ok(None) => (StatusCode::NOT_FOUND, "unknown account\n").into_response(),
        Err(response) => response,
    }
}

async fn metrics_text(State(shared): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        shared.metrics.encode(),
    )
        .into_response()
}
