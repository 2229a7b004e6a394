//! The region's admin log (`admin_log`, ONE partition per region: the
//! region code; clustering: event id, a ULID, so newest first): the admin
//! calls that concern the region rather than one user (reports, proofs,
//! key rotations), each with its operator, expiring like the audit trail.
//! Calls about one user are audited in that user's trail instead.
//!
//! Appends are plain, idempotent writes (same event id, same row). It does
//! not decide what is logged (the node's Admin service does).

use crate::{AdminEvent, Key, RegionStore, Result, Row, Scope, Table, backend::Expiry};

pub const ADMIN_LOG: Table = Table::partitioned("admin_log", Scope::Region);

impl RegionStore {
    /// Appends one event to this region's admin log.
    pub async fn append_admin_event(&self, e: &AdminEvent) -> Result<()> {
        self.instrument
            .run("append_admin_event", async {
                let row = Row {
                    key: Key::cell(self.region.as_str().as_bytes(), e.event_id.as_bytes()),
                    value: self.encode(&ADMIN_LOG, e)?,
                    expiry: Expiry::At {
                        at: e.expires_at,
                        now: e.at,
                    },
                };
                self.backend.append(&ADMIN_LOG, vec![row]).await
            })
            .await
    }

    /// The newest `limit` events at most, newest first (one partition).
    pub async fn admin_events(&self, limit: usize) -> Result<Vec<AdminEvent>> {
        self.instrument
            .run("admin_events", async {
                let rows = self
                    .backend
                    .rows(&ADMIN_LOG, self.region.as_str().as_bytes(), limit)
                    .await?;
                rows.iter()
                    .map(|(_, v)| self.decode(&ADMIN_LOG, v))
                    .collect()
            })
            .await
    }
}
