//! The tower layer around every gRPC call of the node: continues the
//! caller's trace (W3C `traceparent`), opens the `rpc` server span that the
//! hashing and store spans hang under, and counts and times the call
//! (`domicile_node_rpc_total`, `domicile_node_rpc_seconds`). It reads the
//! path and headers only, never the message.

use crate::metrics::NodeMetrics;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;

#[derive(Clone)]
pub struct ObserveLayer {
    pub metrics: Arc<NodeMetrics>,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<NodeMetrics>,
}

/// `(service, method)` of a Domicile gRPC path (`/domicile.v1.Identity/Login`);
/// `None` for health, reflection and plain HTTP.
fn rpc_of(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/domicile.v1.")?;
    let (service, method) = rest.split_once('/')?;
    let known = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (known(service) && known(method)).then_some((service, method))
}

impl<S, B, RB> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The clone that was made ready is the one that serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some((service, method)) = rpc_of(req.uri().path()) else {
            return Box::pin(inner.call(req));
        };
        let rpc = format!("{service}/{method}");
        let m = self.metrics.clone();
        let span = tracing::info_span!(
            "rpc",
            otel.name = %format_args!("domicile.v1.{rpc}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %format_args!("domicile.v1.{service}"),
            rpc.method = method,
            region = m.region(),
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        domicile_telemetry::propagation::continue_trace(&span, req.headers());
        let started = Instant::now();
        let call = inner.call(req);
        Box::pin(
            async move {
                let resp = call.await;
                let code = match &resp {
                    // A failing call answers trailers-only: the status is in
                    // the headers. Otherwise it succeeded (unary calls).
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map_or(Code::Ok, Code::from),
                    Err(_) => Code::Internal,
                };
                let status = code as i32;
                let span = tracing::Span::current();
                span.record("rpc.grpc.status_code", status);
                // Client-side outcomes are not the server's errors.
                let client_side = matches!(
                    code,
                    Code::Ok
                        | Code::InvalidArgument
                        | Code::NotFound
                        | Code::AlreadyExists
                        | Code::FailedPrecondition
                        | Code::Unauthenticated
                );
                if !client_side {
                    // Server-side failures (UNAVAILABLE, INTERNAL, RESOURCE_EXHAUSTED…).
                    span.record("otel.status_code", "error");
                }
                m.rpc
                    .with_label_values(&[
                        m.region(),
                        &rpc,
                        &domicile_telemetry::metrics::grpc_status(status),
                    ])
                    .inc();
                let elapsed = started.elapsed();
                m.rpc_seconds
                    .with_label_values(&[m.region(), &rpc])
                    .observe(elapsed.as_secs_f64());
                // The access log: inside the span, so it carries the trace id.
                tracing::debug!(
                    status,
                    elapsed_us = elapsed.as_micros() as u64,
                    "rpc served"
                );
                resp
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::rpc_of;

    #[test]
    fn only_domicile_rpcs_are_observed() {
        for (path, want) in [
            ("/domicile.v1.Identity/Login", Some(("Identity", "Login"))),
            ("/domicile.v1.Admin/UserAudit", Some(("Admin", "UserAudit"))),
            ("/grpc.health.v1.Health/Check", None),
            ("/readyz", None),
            ("/domicile.v1.Identity/", None),
            ("/domicile.v1.Identity/Lo%67in", None),
        ] {
            assert_eq!(rpc_of(path), want, "{path}");
        }
    }
}
