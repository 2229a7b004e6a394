//! The audit trail: what happened to each user's account (registration,
//! logins and failed logins, refresh-token reuse, logout, profile changes),
//! appended to the home region's store, and read back from there only.
//!
//! Recording never blocks a request: events go into a bounded queue and a
//! writer task appends them in batches. When the queue is full an event is
//! dropped and counted (`dropped`); a failed write is counted as `failed`
//! and logged without its contents. Events hold ids, kinds and changed field
//! names: never a password, a token or a field's value.

use crate::{Clock, Entropy, Identity, IdentityError, env::random_u128, ports::Meter};
use domicile_core::{ids::UserId, topology::AuditSettings};
use domicile_store::{AuditKind, AuditRecord, RegionStore};
use std::sync::{Arc, Mutex};
use tokio::{sync::mpsc, task::JoinHandle};

/// Most events one append carries.
const BATCH: usize = 256;
/// Events a trail read returns when the caller names no limit.
pub const DEFAULT_TRAIL: u32 = 100;
/// Most events one trail read returns.
pub const MAX_TRAIL: u32 = 1000;

#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<AuditRecord>,
    retention_seconds: i64,
    meter: Arc<dyn Meter>,
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
        store: Arc<RegionStore>,
        settings: AuditSettings,
        meter: Arc<dyn Meter>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> (Self, JoinHandle<()>) {
        let (log, rx) = Self::queue(settings, meter.clone(), clock, entropy);
        (log, tokio::spawn(write_loop(store, rx, meter)))
    }

    /// The handle and the queue's receiving end, with no writer yet.
    fn queue(
        settings: AuditSettings,
        meter: Arc<dyn Meter>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> (Self, mpsc::Receiver<AuditRecord>) {
        let (queue, rx) = mpsc::channel(settings.queue);
        let log = Self {
            queue,
            retention_seconds: settings.retention_seconds,
            meter,
            clock,
            entropy,
            last_id: Arc::new(Mutex::new(0)),
        };
        (log, rx)
    }

    /// A new event id (a ULID of now) and its time: ids of one node only
    /// ever grow, even within a millisecond.
    pub(crate) fn next_event_id(&self) -> (String, i64) {
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
        (event_id.to_string(), at)
    }

    /// Queues an event for `user_id`; never waits.
    pub fn record(&self, user_id: &str, kind: AuditKind, session_id: Option<&str>, detail: String) {
        let (event_id, at) = self.next_event_id();
        let event = AuditRecord {
            event_id,
            user_id: user_id.to_owned(),
            at,
            kind,
            session_id: session_id.map(str::to_owned),
            detail,
            expires_at: at.saturating_add(self.retention_seconds),
        };
        if self.queue.try_send(event).is_err() {
            self.meter.audit_events("dropped", 1);
            tracing::warn!(kind = kind.as_str(), "audit queue full: event dropped");
        }
    }
}

/// A read's `limit`: 0 means [`DEFAULT_TRAIL`]; above [`MAX_TRAIL`] is
/// refused.
fn trail_limit(limit: u32) -> Result<u32, IdentityError> {
    match limit {
        0 => Ok(DEFAULT_TRAIL),
        n @ 1..=MAX_TRAIL => Ok(n),
        n => Err(IdentityError::invalid(
            "limit",
            format!("{n} is more than {MAX_TRAIL}"),
        )),
    }
}

async fn write_loop(
    store: Arc<RegionStore>,
    mut rx: mpsc::Receiver<AuditRecord>,
    meter: Arc<dyn Meter>,
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
        meter.audit_events(result, n);
        batch.clear();
    }
}

impl Identity {
    /// Records `kind` for `user_id` in the trail (never waits).
    /// Records that `operator` read `user_id`'s state through `call`.
    pub fn admin_accessed(&self, user_id: &str, operator: &str, call: &str) {
        self.audit.record(
            user_id,
            AuditKind::AdminAccess,
            None,
            format!("operator={operator} call={call}"),
        );
    }

    /// Writes an admin call about the region as a whole (a report, a
    /// proof, a key rotation) to the region's admin log, durably: `detail`
    /// holds ids and counts only.
    pub async fn record_admin(
        &self,
        operator: &str,
        call: &str,
        detail: String,
    ) -> Result<(), IdentityError> {
        let (event_id, at) = self.audit.next_event_id();
        let event = domicile_store::AdminEvent {
            event_id,
            at,
            operator: operator.to_owned(),
            call: call.to_owned(),
            detail,
            expires_at: at.saturating_add(self.topology.audit.retention_seconds),
        };
        Ok(self.store.append_admin_event(&event).await?)
    }

    /// The region's admin log, newest first (`limit` as for a trail).
    pub async fn admin_log(
        &self,
        limit: u32,
    ) -> Result<Vec<domicile_store::AdminEvent>, IdentityError> {
        let limit = trail_limit(limit)?;
        Ok(self.store.admin_events(limit as usize).await?)
    }

    pub(crate) fn audit_event(&self, user_id: &str, kind: AuditKind, session_id: &str) {
        self.audit
            .record(user_id, kind, Some(session_id), String::new());
    }

    /// A user's newest events, newest first: read only in the user's home
    /// region (another region's trail is never read, or cached, here).
    /// `limit` 0 means [`DEFAULT_TRAIL`]; above [`MAX_TRAIL`] is refused.
    pub async fn user_audit(
        &self,
        user_id: &str,
        limit: u32,
    ) -> Result<(UserId, Vec<AuditRecord>), IdentityError> {
        let id = UserId::parse(user_id).map_err(|e| IdentityError::invalid("user_id", e))?;
        self.check_home(id.region(), "user_id")?;
        let limit = trail_limit(limit)?;
        let events = self
            .store
            .audit_for_user(id.as_str(), limit as usize)
            .await?;
        tracing::info!(region = %self.region, "audit trail served");
        Ok((id, events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, OsEntropy};
    use domicile_core::RegionCode;
    use std::{collections::HashMap, sync::Mutex};

    #[derive(Default)]
    struct Counts(Mutex<HashMap<&'static str, u64>>);

    impl Meter for Counts {
        fn audit_events(&self, result: &'static str, n: u64) {
            if let Ok(mut m) = self.0.lock() {
                *m.entry(result).or_default() += n;
            }
        }

        fn message(&self, _: &'static str, _: &'static str, _: &'static str) {}
    }

    impl Counts {
        fn get(&self, result: &str) -> u64 {
            self.0.lock().unwrap().get(result).copied().unwrap_or(0)
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let counts = Arc::new(Counts::default());
        let settings = AuditSettings {
            queue: 2,
            retention_seconds: 86_400,
        };
        let clock = ManualClock::at(1_800_000_000);
        let (log, rx) = AuditLog::queue(
            settings,
            counts.clone(),
            Arc::new(clock),
            Arc::new(OsEntropy),
        );
        let user = "usr_eu_01JD0000000000000000000001";
        // No writer yet: two fit, three are dropped, and none of it waits.
        for _ in 0..5 {
            log.record(user, AuditKind::LoginFailed, None, String::new());
        }
        assert_eq!(counts.get("dropped"), 3);
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<RegionStore> = Arc::new(
            RegionStore::open_embedded(dir.path(), &RegionCode::parse("eu").unwrap()).unwrap(),
        );
        let writer = tokio::spawn(write_loop(store.clone(), rx, counts.clone()));
        drop(log);
        writer.await.unwrap();
        assert_eq!(counts.get("written"), 2);
        let trail = store.audit_for_user(user, 10).await.unwrap();
        assert_eq!(trail.len(), 2);
        assert!(trail[0].event_id > trail[1].event_id, "newest first");
        assert_eq!(trail[0].expires_at, 1_800_000_000 + 86_400);
    }
}
