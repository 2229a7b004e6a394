//! The edge's Prometheus metrics, served on the admin address only.
//!
//! Labels are regions, route reasons and status codes: never identifiers.

use domicile_telemetry::metrics::LATENCY_BUCKETS;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

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
    /// `domicile_edge_config_reloads_total{result = applied | refused}`
    pub reloads: IntCounterVec,
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
        let upstream_seconds = HistogramVec::new(
            HistogramOpts::new(
                "domicile_edge_upstream_seconds",
                "Time from upstream selection to the upstream's response header",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
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
        let reloads = IntCounterVec::new(
            Opts::new(
                "domicile_edge_config_reloads_total",
                "regions.toml reloads (SIGHUP) by outcome",
            ),
            &["result"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        for r in ["applied", "refused"] {
            reloads.with_label_values(&[r]);
        }
        Ok(Self {
            registry,
            requests,
            upstream_seconds,
            index_cache,
            region_nodes,
            reloads,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        domicile_telemetry::metrics::render(&self.registry)
    }
}
