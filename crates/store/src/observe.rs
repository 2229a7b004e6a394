//! The one place every store operation is timed and traced.
//!
//! Each public operation of [`crate::RegionStore`] and [`crate::IndexStore`]
//! runs through [`Instrument::run`]: a `store.<op>` span (DEBUG: exported by
//! trace layers, not formatted by INFO logs), the elapsed time and outcome
//! handed to the [`StoreObserver`] if one is plugged in, and the operation's
//! name written into its error. Only operation names reach telemetry: never
//! keys, ids or records. This module does not collect metrics itself.

use crate::Result;
use std::{future::Future, sync::Arc, time::Duration, time::Instant};
use tracing::Instrument as _;

/// Told about every store operation once it finishes (metrics, in the node).
pub trait StoreObserver: Send + Sync + 'static {
    /// `op` is the operation's name (`get_user`, `claim`, …); `ok` is false
    /// when it returned an error (a conditional write that did not apply is ok).
    fn observe(&self, op: &'static str, elapsed: Duration, ok: bool);
}

/// The span and observer of one store handle.
#[derive(Clone)]
pub(crate) struct Instrument {
    /// `eu`, or `index`: the span's `region` field.
    pub(crate) label: Arc<str>,
    pub(crate) observer: Option<Arc<dyn StoreObserver>>,
}

impl Instrument {
    pub(crate) fn new(label: impl Into<Arc<str>>) -> Self {
        Self {
            label: label.into(),
            observer: None,
        }
    }

    /// Runs one operation inside its span, reports it, names it in errors.
    pub(crate) async fn run<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = tracing::debug_span!(
            "store",
            otel.name = %format_args!("store.{op}"),
            otel.kind = "client",
            db.operation = op,
            region = %self.label,
        );
        let started = Instant::now();
        let result = call.instrument(span).await.map_err(|e| e.during(op));
        if let Some(o) = &self.observer {
            o.observe(op, started.elapsed(), result.is_ok());
        }
        result
    }
}
