//! What every Domicile process's metrics share: latency buckets, the status
//! label, and the text exposition. Names follow
//! `domicile_<component>_<what>[_total|_seconds]`, with `region` on
//! everything regional (see docs/operations.md).

use prometheus::{Encoder, Registry, TextEncoder};

/// Latency buckets for every `_seconds` histogram, edge and node alike
/// (0.5 ms to 5 s: a routed call at one end, an Argon2 backlog at the other).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The `status` label: `grpc_<code>` for gRPC, the HTTP status otherwise.
pub fn grpc_status(code: impl std::fmt::Display) -> String {
    format!("grpc_{code}")
}

/// The registry in the text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    String::from_utf8_lossy(&out).into_owned()
}
