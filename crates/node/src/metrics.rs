//! The node's Prometheus metrics, served at `/metrics` on the node's
//! internal address. Labels are the region, RPC names, store operations and
//! status codes: never identifiers. Names are listed in docs/operations.md.

use domicile_telemetry::metrics::LATENCY_BUCKETS;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct NodeMetrics {
    pub registry: Registry,
    /// `domicile_node_rpc_total{region, rpc, status}`
    pub rpc: IntCounterVec,
    /// `domicile_node_rpc_seconds{region, rpc}`
    pub rpc_seconds: HistogramVec,
    /// `domicile_node_hash_queue_depth{region}`: hash jobs admitted, not yet started.
    pub hash_queue: IntGauge,
    /// `domicile_node_hash_rejected_total{region}`: refused with RESOURCE_EXHAUSTED.
    pub hash_rejected: IntCounterVec,
    /// `domicile_node_hash_seconds{region, op = hash | verify}`
    pub hash_seconds: HistogramVec,
    /// `domicile_node_store_seconds{region, op}`
    pub store_seconds: HistogramVec,
    /// `domicile_node_store_errors_total{region, op}`
    pub store_errors: IntCounterVec,
    /// `domicile_node_audit_events_total{region, result = written | dropped | failed}`
    pub audit: IntCounterVec,
    /// `domicile_node_messages_total{region, kind, channel, result = sent | failed | refused}`
    pub messages: IntCounterVec,
    /// `domicile_node_draining{region}`: 1 while the node drains before exit.
    pub draining: IntGauge,
    region: String,
}

impl NodeMetrics {
    pub fn new(region: &str) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let hist = |name: &str, help: &str, labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
        };
        let rpc = IntCounterVec::new(
            Opts::new("domicile_node_rpc_total", "gRPC calls by method and status"),
            &["region", "rpc", "status"],
        )?;
        let rpc_seconds = hist(
            "domicile_node_rpc_seconds",
            "gRPC call latency to the response header",
            &["region", "rpc"],
        )?;
        let hash_queue = IntGaugeVec::new(
            Opts::new(
                "domicile_node_hash_queue_depth",
                "Password hash jobs waiting for a hashing thread",
            ),
            &["region"],
        )?;
        let hash_rejected = IntCounterVec::new(
            Opts::new(
                "domicile_node_hash_rejected_total",
                "Password hash jobs refused because the pool and its queue were full",
            ),
            &["region"],
        )?;
        let hash_seconds = hist(
            "domicile_node_hash_seconds",
            "Argon2id time on a hashing thread",
            &["region", "op"],
        )?;
        let store_seconds = hist(
            "domicile_node_store_seconds",
            "Region store call latency",
            &["region", "op"],
        )?;
        let store_errors = IntCounterVec::new(
            Opts::new(
                "domicile_node_store_errors_total",
                "Region store call failures",
            ),
            &["region", "op"],
        )?;
        let audit = IntCounterVec::new(
            Opts::new(
                "domicile_node_audit_events_total",
                "Audit events by outcome (dropped: the queue was full)",
            ),
            &["region", "result"],
        )?;
        let messages = IntCounterVec::new(
            Opts::new(
                "domicile_node_messages_total",
                "Messages to users by kind, channel and outcome (refused: a request limit or a full sending queue)",
            ),
            &["region", "kind", "channel", "result"],
        )?;
        let draining = IntGaugeVec::new(
            Opts::new(
                "domicile_node_draining",
                "1 while the node drains before exit",
            ),
            &["region"],
        )?;
        for c in [&rpc, &hash_rejected, &store_errors, &audit, &messages] {
            registry.register(Box::new(c.clone()))?;
        }
        for h in [&rpc_seconds, &hash_seconds, &store_seconds] {
            registry.register(Box::new(h.clone()))?;
        }
        registry.register(Box::new(hash_queue.clone()))?;
        registry.register(Box::new(draining.clone()))?;
        let hash_queue = hash_queue.with_label_values(&[region]);
        let draining = draining.with_label_values(&[region]);
        // Present from the start, so a dashboard sees zeros, not gaps.
        hash_rejected.with_label_values(&[region]);
        for result in ["written", "dropped", "failed"] {
            audit.with_label_values(&[region, result]);
        }
        Ok(Self {
            registry,
            rpc,
            rpc_seconds,
            hash_queue,
            hash_rejected,
            hash_seconds,
            store_seconds,
            store_errors,
            audit,
            messages,
            draining,
            region: region.to_owned(),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn render(&self) -> String {
        domicile_telemetry::metrics::render(&self.registry)
    }
}

impl domicile_identity::ports::Meter for NodeMetrics {
    fn audit_events(&self, result: &'static str, n: u64) {
        self.audit
            .with_label_values(&[self.region(), result])
            .inc_by(n);
    }

    fn message(&self, kind: &'static str, channel: &'static str, result: &'static str) {
        self.messages
            .with_label_values(&[self.region(), kind, channel, result])
            .inc();
    }
}
