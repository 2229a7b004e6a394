//! The region's audit trail: what happened to each user's account
//! (registration, logins and failed logins, refresh-token reuse, logout,
//! profile changes), appended to the home region's store.
//!
//! Recording never blocks a request: events go into a bounded queue and a
//! writer task appends them in batches. When the queue is full an event is
//! dropped and counted (`domicile_node_audit_events_total{result="dropped"}`);
//! a failed write is counted as `failed` and logged without its contents.
//! Events hold ids, kinds and changed field names: never a password, a
//! token or a field's value.

use crate::{Clock, Entropy, env::random_u128, metrics::NodeMetrics};
use domicile_core::topology::AuditSettings;
use domicile_store::{AuditKind, AuditRecord, RegionStore};
use std::sync::{Arc, Mutex};
use tokio::{sync::mpsc, task::JoinHandle};

/// Most events one append carries.
const BATCH: usize = 256;

#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<AuditRecord>,
    retention_seconds: i64,
    metrics: Arc<NodeMetrics>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    /// The last event id handed out: ids of one node only ever grow, so a
    /// trail reads in the order things happened even within a millisecond.
    last_id: Arc<Mutex<u128>>,
}

impl AuditLog {
    /// Starts the writer; it ends once every `AuditLog` handle is gone and
    /// the queue is written out.
    pub fn start(
        store: Arc<dyn RegionStore>,
        settings: AuditSettings,
        metrics: Arc<NodeMetrics>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> (Self, JoinHandle<()>) {
        let (log, rx) = Self::queue(settings, metrics.clone(), clock, entropy);
        (log, tokio::spawn(write_loop(store, rx, metrics)))
    }

    /// The handle and the queue's receiving end, with no writer yet.
    fn queue(
        settings: AuditSettings,
        metrics: Arc<NodeMetrics>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> (Self, mpsc::Receiver<AuditRecord>) {
        let (queue, rx) = mpsc::channel(settings.queue);
        let log = Self {
            queue,
            retention_seconds: settings.retention_seconds,
            metrics,
            clock,
            entropy,
            last_id: Arc::new(Mutex::new(0)),
        };
        (log, rx)
    }

    /// Queues an event for `user_id`; never waits.
    pub fn record(&self, user_id: &str, kind: AuditKind, session_id: Option<&str>, detail: String) {
        let ms = self.clock.now_ms();
        let at = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
        let fresh = ulid::Ulid::from_parts(ms, random_u128(self.entropy.as_ref())).0;
        let event_id = match self.last_id.lock() {
            Ok(mut last) => {
                *last = fresh.max(last.saturating_add(1));
                ulid::Ulid(*last)
            }
            Err(_) => ulid::Ulid(fresh),
        };
        let event = AuditRecord {
            event_id: event_id.to_string(),
            user_id: user_id.to_owned(),
            at,
            kind,
            session_id: session_id.map(str::to_owned),
            detail,
            expires_at: at.saturating_add(self.retention_seconds),
        };
        if self.queue.try_send(event).is_err() {
            let m = &self.metrics;
            m.audit.with_label_values(&[m.region(), "dropped"]).inc();
            tracing::warn!(kind = kind.as_str(), "audit queue full: event dropped");
        }
    }
}

async fn write_loop(
    store: Arc<dyn RegionStore>,
    mut rx: mpsc::Receiver<AuditRecord>,
    metrics: Arc<NodeMetrics>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let n = batch.len() as u64;
        let result = match store.append_audit(&batch).await {
            Ok(()) => "written",
            Err(e) => {
                tracing::error!(error = %e, events = n, "audit events could not be written");
                "failed"
            }
        };
        metrics
            .audit
            .with_label_values(&[metrics.region(), result])
            .inc_by(n);
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, OsEntropy};
    use domicile_core::RegionCode;
    use domicile_store::EmbeddedRegion;

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let metrics = Arc::new(NodeMetrics::new("eu").unwrap());
        let settings = AuditSettings {
            queue: 2,
            retention_seconds: 86_400,
        };
        let clock = ManualClock::at(1_800_000_000);
        let (log, rx) = AuditLog::queue(
            settings,
            metrics.clone(),
            Arc::new(clock),
            Arc::new(OsEntropy),
        );
        let user = "usr_eu_01JD0000000000000000000001";
        // No writer yet: two fit, three are dropped, and none of it waits.
        for _ in 0..5 {
            log.record(user, AuditKind::LoginFailed, None, String::new());
        }
        let count = |r: &str| metrics.audit.with_label_values(&["eu", r]).get();
        assert_eq!(count("dropped"), 3);
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn RegionStore> =
            Arc::new(EmbeddedRegion::open(dir.path(), &RegionCode::parse("eu").unwrap()).unwrap());
        let writer = tokio::spawn(write_loop(store.clone(), rx, metrics.clone()));
        drop(log);
        writer.await.unwrap();
        assert_eq!(count("written"), 2);
        let trail = store.audit_for_user(user, 10).await.unwrap();
        assert_eq!(trail.len(), 2);
        assert!(trail[0].event_id > trail[1].event_id, "newest first");
        assert_eq!(trail[0].expires_at, 1_800_000_000 + 86_400);
    }
}
