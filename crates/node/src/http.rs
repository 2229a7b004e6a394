//! Plain HTTP on the node's port: `/healthz`, `/readyz`,
//! `/.well-known/jwks.json` (this region's public keys), `/metrics`
//! (Prometheus; the node's address is internal).

use crate::service::IdentityCore;
use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use domicile_core::index::IdentifierKey;
use std::sync::Arc;

pub fn router(core: Arc<IdentityCore>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/metrics",
            get(|State(core): State<Arc<IdentityCore>>| async move { core.metrics.render() }),
        )
        .with_state(core)
}

async fn jwks(State(core): State<Arc<IdentityCore>>) -> impl IntoResponse {
    (
        [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
        Json(core.keys.load().jwks_json(core.clock.now())),
    )
}

/// Ready when the region's store answers and the node is not draining. The
/// index is reported but does not gate readiness: a region keeps serving its
/// own users while the index host is down, so the edge must not drain it for
/// that.
async fn readyz(State(core): State<Arc<IdentityCore>>) -> impl IntoResponse {
    let store = core
        .store
        .signing_keys()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let index = core
        .index
        .lookup(&IdentifierKey([0; 32]))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let draining = core.draining.load(std::sync::atomic::Ordering::SeqCst);
    let status = if store.is_ok() && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let show = |r: &Result<(), String>| {
        r.as_ref()
            .err()
            .map_or_else(|| "ok".to_owned(), Clone::clone)
    };
    let body = serde_json::json!({
        "region": core.region.as_str(),
        "ready": status == StatusCode::OK,
        "draining": draining,
        "checks": { "store": show(&store), "index": show(&index) },
    });
    (status, Json(body))
}
