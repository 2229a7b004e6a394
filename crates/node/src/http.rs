//! Plain HTTP on the node's port: `/healthz`, `/readyz`,
//! `/.well-known/jwks.json` (this region's public keys), `/metrics`
//! (Prometheus; the node's address is internal). Each route calls one use
//! case; `/readyz` shows `ok` or `unavailable` per check and logs the
//! reason, never returning internal error text.

use crate::metrics::NodeMetrics;
use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use domicile_core::index::IdentifierKey;
use domicile_identity::{Identity, ports::HomeIndex};
use std::sync::{Arc, atomic::AtomicBool};

/// What the HTTP routes read.
pub struct HttpState {
    pub identity: Arc<Identity>,
    pub index: Arc<dyn HomeIndex>,
    /// Set when the node drains before exit: `/readyz` fails so the edge
    /// moves traffic away, while calls are still served.
    pub draining: Arc<AtomicBool>,
    pub metrics: Arc<NodeMetrics>,
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/metrics",
            get(|State(s): State<Arc<HttpState>>| async move { s.metrics.render() }),
        )
        .with_state(state)
}

async fn jwks(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    (
        [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
        Json(s.identity.jwks_json()),
    )
}

/// `ok`, or `unavailable` with the reason logged.
fn check<E: std::fmt::Display>(what: &str, r: Result<(), E>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(check = what, error = %e, "readiness check failed");
            "unavailable"
        }
    }
}

/// Ready when the region's store answers and the node is not draining. The
/// index is reported but does not gate readiness: a region keeps serving its
/// own users while the index host is down, so the edge must not drain it for
/// that.
async fn readyz(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    let store = check("store", s.identity.store_answers().await);
    let index = check(
        "index",
        s.index.lookup(&IdentifierKey([0; 32])).await.map(|_| ()),
    );
    let draining = s.draining.load(std::sync::atomic::Ordering::SeqCst);
    let status = if store == "ok" && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "region": s.identity.region().as_str(),
        "ready": status == StatusCode::OK,
        "draining": draining,
        "checks": { "store": store, "index": index },
    });
    (status, Json(body))
}
