//! Domicile's telemetry plumbing, shared by the edge and the nodes: log
//! set-up (text or JSON, with trace ids), OpenTelemetry trace export over
//! OTLP/gRPC (off unless configured), W3C trace-context propagation over
//! HTTP headers, and the conventions every Prometheus metric follows.
//!
//! It does not decide what is measured or traced: the edge and the node
//! name their own spans and metrics. It never sees request bodies, so it
//! cannot put personal data into telemetry; callers choose span fields and
//! must keep identifiers and secrets out of them.

#![forbid(unsafe_code)]

pub mod metrics;
pub mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider},
};
use std::time::Duration;
use tracing_subscriber::{EnvFilter, Layer, filter::Targets, layer::SubscriberExt};

/// Crates whose spans are exported (never the HTTP/2, gRPC or proxy
/// libraries underneath: their spans would include the exporter's own calls).
const TRACED: &[&str] = &[
    "domicile",
    "domicile_edge",
    "domicile_node",
    "domicile_store",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How a process reports.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// `service.name` of exported spans (`domicile-edge`, `domicile-node`).
    pub service: String,
    /// Extra resource attributes (e.g. `domicile.region`).
    pub resource: Vec<(String, String)>,
    pub log_format: LogFormat,
    /// OTLP/gRPC collector; `None` = no export (spans still carry trace ids
    /// into logs and upstream).
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("logging is already set up: {0}")]
    AlreadySet(String),
}

/// Where spans go when no endpoint is configured explicitly: the
/// traces-only variable, then the standard one (as the OTLP exporters read them).
pub fn endpoint_from_env() -> Option<String> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
}

/// Installed telemetry; `shutdown` flushes spans still queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Exports what is queued and stops the exporter. Call before the
    /// runtime ends (the exporter's connection lives on it).
    pub async fn shutdown(self) {
        if !self.exporting {
            return;
        }
        let provider = self.provider;
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("telemetry: flushing spans failed: {e}"),
            Err(e) => eprintln!("telemetry: flushing spans failed: {e}"),
        }
    }
}

/// Sets up logs and tracing for this process. Call once, inside a
/// multi-threaded tokio runtime (the OTLP exporter connects through it).
pub fn init(cfg: TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut resource = Resource::builder().with_service_name(cfg.service.clone());
    for (k, v) in &cfg.resource {
        resource = resource.with_attribute(opentelemetry::KeyValue::new(k.clone(), v.clone()));
    }
    let mut provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let exporting = cfg.otlp_endpoint.is_some();
    if let Some(endpoint) = &cfg.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TelemetryError::Exporter {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        // Runs on its own thread; the exporter's connection on this runtime.
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_millis(500))
                    .build(),
            )
            .build();
        provider = provider.with_span_processor(batch);
    }
    let provider = provider.build();
    let tracer = provider.tracer(cfg.service.clone());

    // DEBUG: child spans (store calls, hashing) are DEBUG so the INFO log
    // does not format them; traces still get them.
    let traced = TRACED.iter().fold(Targets::new(), |t, c| {
        t.with_target(*c, tracing::Level::DEBUG)
    });
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(traced);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match cfg.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    }
    .with_filter(filter);
    let subscriber = tracing_subscriber::registry().with(otel).with(fmt);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| TelemetryError::AlreadySet(e.to_string()))?;
    if exporting {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(Telemetry {
        provider,
        exporting,
    })
}
