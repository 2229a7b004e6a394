//! Store metrics: every store operation's time into
//! `domicile_node_store_seconds{region, op}` and its failures into
//! `domicile_node_store_errors_total{region, op}`, as the store reports them
//! to its observer (the store itself opens the `store.<op>` child span of
//! the RPC). Only operation names reach telemetry: never keys, ids or
//! records.

use crate::metrics::NodeMetrics;
use domicile_store::StoreObserver;
use std::{sync::Arc, time::Duration};

/// The node's `StoreObserver`.
pub struct StoreMetrics(pub Arc<NodeMetrics>);

impl StoreObserver for StoreMetrics {
    fn observe(&self, op: &'static str, elapsed: Duration, ok: bool) {
        let m = &self.0;
        m.store_seconds
            .with_label_values(&[m.region(), op])
            .observe(elapsed.as_secs_f64());
        if !ok {
            m.store_errors.with_label_values(&[m.region(), op]).inc();
        }
    }
}
