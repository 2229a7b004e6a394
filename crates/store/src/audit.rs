//! The audit aggregate: a user's append-only trail (partition: user id;
//! clustering: event id, a ULID, so newest first), each event expiring at
//! its `expires_at` (`audit.retention_days`).
//!
//! Appends are plain, idempotent writes (same event id, same row); every
//! event must be for a user (and session) of this region, checked before
//! anything is written. It does not decide what is audited (the node does).

use crate::{AuditRecord, Key, RegionStore, Result, Row, Scope, Table, backend::Expiry};
use domicile_core::ids::ArtifactKind;

pub const AUDIT: Table = Table::partitioned("audit_log", Scope::Region);

impl RegionStore {
    /// Appends events (idempotent by event id; not conditional). Every
    /// event's user must belong to this store's region, or nothing is written.
    pub async fn append_audit(&self, events: &[AuditRecord]) -> Result<()> {
        self.instrument
            .run("append_audit", async {
                for e in events {
                    self.check_id(&AUDIT, ArtifactKind::User, &e.user_id)?;
                    if let Some(s) = &e.session_id {
                        self.check_id(&AUDIT, ArtifactKind::Session, s)?;
                    }
                }
                let rows = events
                    .iter()
                    .map(|e| {
                        Ok(Row {
                            key: Key::cell(e.user_id.as_bytes(), e.event_id.as_bytes()),
                            value: self.encode(&AUDIT, e)?,
                            expiry: Expiry::At {
                                at: e.expires_at,
                                now: e.at,
                            },
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.backend.append(&AUDIT, rows).await
            })
            .await
    }

    /// A user's newest `limit` events at most, newest first.
    pub async fn audit_for_user(&self, user_id: &str, limit: usize) -> Result<Vec<AuditRecord>> {
        self.instrument
            .run("audit_for_user", self.trail(user_id, limit))
            .await
    }

    /// The user's whole trail, newest first.
    pub async fn export_audit(&self, user_id: &str) -> Result<Vec<AuditRecord>> {
        self.instrument
            .run("export_audit", self.trail(user_id, usize::MAX))
            .await
    }

    /// Erases the user's trail (one partition).
    pub async fn erase_audit(&self, user_id: &str) -> Result<()> {
        self.instrument
            .run(
                "erase_audit",
                self.backend.delete_partition(&AUDIT, user_id.as_bytes()),
            )
            .await
    }

    async fn trail(&self, user_id: &str, limit: usize) -> Result<Vec<AuditRecord>> {
        let rows = self.backend.rows(&AUDIT, user_id.as_bytes(), limit).await?;
        rows.iter().map(|(_, v)| self.decode(&AUDIT, v)).collect()
    }
}
