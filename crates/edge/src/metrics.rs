//! The edge's Prometheus metrics, served on the admin address only.
//!
//! Labels are regions, route reasons and status codes: never identifiers.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    /// `domicile_edge_requests_total{region, route, status}`
    pub requests: IntCounterVec,
    /// `domicile_edge_upstream_seconds{region}`: time to the upstream's response header.
    pub upstream_seconds: HistogramVec,
    /// `domicile_edge_index_cache_total{result = hit | miss | error}`
    pub index_cache: IntCounterVec,
    /// `domicile_edge_region_nodes{region, state = healthy | configured}`
    pub region_nodes: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "domicile_edge_requests_total",
                "Requests by home region, route reason and status",
            ),
            &["region", "route", "status"],
        )?;
        let buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        let upstream_seconds = HistogramVec::new(
            HistogramOpts::new(
                "domicile_edge_upstream_seconds",
                "Time from upstream selection to the upstream's response header",
            )
            .buckets(buckets),
            &["region"],
        )?;
        let index_cache = IntCounterVec::new(
            Opts::new(
                "domicile_edge_index_cache_total",
                "Home-region index cache lookups",
            ),
            &["result"],
        )?;
        let region_nodes = IntGaugeVec::new(
            Opts::new("domicile_edge_region_nodes", "Nodes per region by state"),
            &["region", "state"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(upstream_seconds.clone()))?;
        registry.register(Box::new(index_cache.clone()))?;
        registry.register(Box::new(region_nodes.clone()))?;
        Ok(Self {
            registry,
            requests,
            upstream_seconds,
            index_cache,
            region_nodes,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
