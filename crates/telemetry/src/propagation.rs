//! W3C trace context (`traceparent`, `tracestate`) between HTTP headers and
//! tracing spans.

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector},
    trace::TraceContextExt as _,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct PairInjector(Vec<(String, String)>);

impl Injector for PairInjector {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// The caller's trace context, if the headers carry a valid one.
pub fn extract(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// Makes `span` continue the trace the headers carry (or start one), and
/// records its trace id in the span's `trace_id` field (for logs), and
/// returns it.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) -> String {
    let parent = extract(headers);
    if parent.span().span_context().is_valid() {
        // Fails only for a disabled span, which has nothing to continue.
        let _ = span.set_parent(parent);
    }
    let id = trace_id(span);
    span.record("trace_id", id.as_str());
    id
}

/// The headers that carry `span`'s context to the next hop.
pub fn headers_for(span: &tracing::Span) -> Vec<(String, String)> {
    let cx = span.context();
    let mut out = PairInjector(Vec::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut out));
    out.0
}

/// `span`'s trace id as 32 hex digits (all zeros for a disabled span).
pub fn trace_id(span: &tracing::Span) -> String {
    span.context().span().span_context().trace_id().to_string()
}
