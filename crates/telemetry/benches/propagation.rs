//! What tracing adds to every request at the edge (and, the same way, at the
//! node): opening a span with the OpenTelemetry layer installed (export off:
//! ids are still made), continuing or starting the W3C trace, recording the
//! trace id, producing the upstream headers, and closing the span.
//! Run: `cargo bench -p domicile-telemetry --bench propagation`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use domicile_telemetry::{LogFormat, TelemetryConfig, init, propagation};
use std::hint::black_box;

fn request(headers: &http::HeaderMap) -> Vec<(String, String)> {
    // The edge's target: only Domicile's crates are traced.
    let span = tracing::info_span!(
        target: "domicile_edge",
        "edge.request",
        otel.name = "edge /domicile.v1.Identity/Login",
        otel.kind = "server",
        region = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    propagation::continue_trace(&span, headers);
    span.record("region", "eu");
    propagation::headers_for(&span)
}

fn bench(c: &mut Criterion) {
    let _telemetry = init(TelemetryConfig {
        service: "bench".into(),
        resource: Vec::new(),
        log_format: LogFormat::Text,
        otlp_endpoint: None,
    })
    .unwrap();
    let mut traced = http::HeaderMap::new();
    traced.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let plain = http::HeaderMap::new();
    assert_eq!(
        request(&traced)[0].1.len(),
        55,
        "a traceparent goes upstream"
    );
    c.bench_function(
        "request span: continue caller's trace, inject upstream",
        |b| b.iter(|| request(black_box(&traced))),
    );
    c.bench_function("request span: start a trace, inject upstream", |b| {
        b.iter(|| request(black_box(&plain)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
