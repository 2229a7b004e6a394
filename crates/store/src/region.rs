//! The concrete region store: the handle every aggregate module adds its
//! operations to, its residency guard, and the whole-user compliance
//! operations (`export_user`, `erase_user`) that call each aggregate.
//!
//! It holds a backend (`Arc<dyn Backend>`), the region it serves and the
//! instrumentation; it holds no domain logic of its own beyond the
//! residency check every write goes through.

use crate::{
    AuditRecord, RefreshRecord, Result, SessionRecord, StoreError, StoreObserver, Table,
    UserRecord,
    backend::{self, Backend, Change},
    codec,
    observe::Instrument,
};
use domicile_core::{
    RegionCode, UnixSeconds,
    ids::{ArtifactKind, parse_artifact},
    index::IdentifierKey,
};
use serde::{Serialize, de::DeserializeOwned};
use std::{path::Path, sync::Arc};

/// One region's data: users, identifiers, sessions and refresh tokens,
/// signing keys, audit log. Cheap to clone (one backend shared).
#[derive(Clone)]
pub struct RegionStore {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) region: RegionCode,
    pub(crate) instrument: Instrument,
}

/// Every table of a region's store (each aggregate owns its own).
pub const REGION_TABLES: &[&Table] = &[
    &crate::users::USERS,
    &crate::identifiers::IDENTIFIERS,
    &crate::identifiers::IDENTIFIERS_BY_USER,
    &crate::sessions::SESSIONS,
    &crate::sessions::REFRESH,
    &crate::sessions::SESSIONS_BY_USER,
    &crate::keys::SIGNING_KEYS,
    &crate::audit::AUDIT,
    &crate::codes::AUTHORIZATION_CODES,
    &crate::one_time::ONE_TIME_CODES,
    &crate::factors::FACTORS,
    &crate::factors::PENDING_SIGN_INS,
    &crate::history::HISTORY,
    &crate::operations::OPERATIONS,
    &crate::admin_log::ADMIN_LOG,
    &crate::identifiers::FORWARDS,
];

impl RegionStore {
    /// The store of `region` over any backend.
    pub fn new(backend: Arc<dyn Backend>, region: RegionCode) -> Self {
        Self {
            backend,
            instrument: Instrument::new(region.as_str()),
            region,
        }
    }

    /// Opens (creating if needed) the embedded store of `region` in `dir`.
    pub fn open_embedded(dir: &Path, region: &RegionCode) -> Result<Self> {
        let backend = crate::embedded::EmbeddedBackend::open_region(dir, region)?;
        Ok(Self::new(Arc::new(backend), region.clone()))
    }

    /// Reports every operation to `observer` (the node's metrics).
    pub fn with_observer(mut self, observer: Arc<dyn StoreObserver>) -> Self {
        self.instrument.observer = Some(observer);
        self
    }

    /// Where this store's data is kept, as the backend reports it.
    pub async fn placement(&self) -> Result<crate::Placement> {
        self.instrument
            .run("placement", self.backend.placement())
            .await
    }

    /// Which region and backend this is, for errors and logs.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// The region this store serves.
    pub fn region(&self) -> &RegionCode {
        &self.region
    }

    /// Deletes what has expired at `now` (Scylla's TTL does this by itself).
    pub async fn purge_expired(&self, now: UnixSeconds) -> Result<u64> {
        self.instrument
            .run("purge_expired", self.backend.purge_expired(now))
            .await
    }

    /// Everything this region stores about one user.
    pub async fn export_user(&self, user_id: &str) -> Result<UserExport> {
        self.instrument
            .run("export_user", async {
                let (sessions, refresh_tokens) = self.export_sessions(user_id).await?;
                let (factors, pending_sign_ins) = self.export_factors(user_id).await?;
                Ok(UserExport {
                    history: self
                        .read(
                            &crate::history::HISTORY,
                            &crate::Key::row(user_id.as_bytes()),
                        )
                        .await?,
                    factors,
                    pending_sign_ins,
                    user: self.export_user_record(user_id).await?,
                    identifiers: self.export_identifiers(user_id).await?,
                    sessions,
                    refresh_tokens,
                    audit: self.export_audit(user_id).await?,
                })
            })
            .await
    }

    /// Erases one user from every aggregate: sessions and refresh tokens
    /// first (nothing can act as them), one-time codes, second factors and
    /// pending sign-ins, then identifiers, audit trail, and
    /// the user row last. Idempotent: an interrupted erase is finished by
    /// running it again. (The index entry is the caller's to release.)
    pub async fn erase_user(&self, user_id: &str) -> Result<()> {
        self.instrument
            .run("erase_user", async {
                // What could still start a session goes first (pending
                // sign-ins and codes), then the sessions.
                self.erase_factors(user_id).await?;
                self.erase_one_time(user_id).await?;
                self.erase_sessions(user_id).await?;
                self.erase_history(user_id).await?;
                self.erase_identifiers(user_id).await?;
                self.erase_audit(user_id).await?;
                self.erase_user_record(user_id).await
            })
            .await
    }

    /// Reads every row of every table of this region (a compliance scan,
    /// never on a request path): how many rows, which partitions name
    /// another region (an artifact id of another region, or a holder in
    /// `users_by_identifier` of another region), and the partitions that
    /// are 32-byte keys (identifier keys and code hashes), for the caller
    /// to judge whether any reads as an identifier in the clear.
    pub async fn residency_scan(&self) -> Result<RegionScan> {
        self.instrument
            .run("residency_scan", async {
                let mut scan = RegionScan::default();
                for table in REGION_TABLES {
                    for (key, value) in self.backend.scan(table).await? {
                        scan.rows += 1;
                        let text = std::str::from_utf8(&key.partition).ok();
                        let id = text.map(|t| t.split('/').next().unwrap_or(t));
                        match id.and_then(|i| parse_artifact(i).map(|p| (i, p))) {
                            Some((_, (_, region, _))) if region == self.region => {}
                            // An id of another region: listed (ids are
                            // pseudonymous).
                            Some((i, _)) => scan.foreign.push(format!("{}: {i}", table.name)),
                            None if id == Some(self.region.as_str()) => {}
                            None if key.partition.len() == crate::KEY_BYTES => {}
                            // Anything else is not listed as it is (it might
                            // be an identifier in the clear): its size only.
                            None => scan.foreign.push(format!(
                                "{}: a key of {} bytes that names no region",
                                table.name,
                                key.partition.len()
                            )),
                        }
                        if let Ok(k) = <[u8; 32]>::try_from(key.partition.as_slice()) {
                            scan.keys.push((table.name, k));
                            if table.name == crate::identifiers::IDENTIFIERS.name {
                                let holder: String = self.decode(table, &value)?;
                                match parse_artifact(&holder) {
                                    Some((_, r, _)) if r == self.region => {}
                                    Some(_) => {
                                        scan.foreign.push(format!("{}: {holder}", table.name))
                                    }
                                    None => scan.foreign.push(format!(
                                        "{}: a holder that names no region",
                                        table.name
                                    )),
                                }
                            }
                        }
                    }
                }
                Ok(scan)
            })
            .await
    }

    // ---- shared by the aggregate modules ----

    /// Refuses an id that does not name this region as an artifact of `kind`.
    pub(crate) fn check_id(&self, table: &Table, kind: ArtifactKind, id: &str) -> Result<()> {
        match parse_artifact(id) {
            Some((k, region, _)) if k == kind && region == self.region => Ok(()),
            _ => Err(self.foreign(table, id)),
        }
    }

    pub(crate) fn foreign(&self, table: &Table, id: &str) -> StoreError {
        StoreError::ForeignRecord {
            store: self.backend.name().to_owned(),
            region: self.region.to_string(),
            table: table.name,
            op: "write",
            id: id.to_owned(),
        }
    }

    pub(crate) fn encode<T: Serialize>(&self, table: &Table, v: &T) -> Result<Vec<u8>> {
        codec::encode(v).map_err(|reason| self.corrupt(table, reason))
    }

    pub(crate) fn decode<T: DeserializeOwned>(&self, table: &Table, bytes: &[u8]) -> Result<T> {
        codec::decode(bytes).map_err(|reason| self.corrupt(table, reason))
    }

    pub(crate) fn corrupt(&self, table: &Table, reason: String) -> StoreError {
        StoreError::Corrupt {
            store: self.backend.name().to_owned(),
            table: table.name,
            op: "decode",
            reason,
        }
    }

    /// Reads one record.
    pub(crate) async fn read<T: DeserializeOwned>(
        &self,
        table: &Table,
        key: &crate::Key,
    ) -> Result<Option<T>> {
        match self.backend.get(table, key, crate::Read::Quorum).await? {
            Some(b) => self.decode(table, &b).map(Some),
            None => Ok(None),
        }
    }

    /// Read → decide → conditional write on one record (see `backend::modify`).
    pub(crate) async fn modify<T, R>(
        &self,
        table: &Table,
        key: &crate::Key,
        mut decide: impl FnMut(Option<T>) -> Result<(Change, R)> + Send,
    ) -> Result<R>
    where
        T: DeserializeOwned,
        R: Send,
    {
        backend::modify(self.backend.as_ref(), table, key, |bytes| {
            decide(bytes.map(|b| self.decode(table, b)).transpose()?)
        })
        .await
    }

    /// `modify` from a record the caller read just before (see
    /// `backend::modify_known`).
    pub(crate) async fn modify_known<T, R>(
        &self,
        table: &Table,
        key: &crate::Key,
        known: &T,
        mut decide: impl FnMut(Option<T>) -> Result<(Change, R)> + Send,
    ) -> Result<R>
    where
        T: Serialize + DeserializeOwned,
        R: Send,
    {
        let bytes = self.encode(table, known)?;
        backend::modify_known(self.backend.as_ref(), table, key, bytes, |bytes| {
            decide(bytes.map(|b| self.decode(table, b)).transpose()?)
        })
        .await
    }

    /// `modify` for inserts: decides first as if the row were absent, and
    /// writes `listed` (per-user list rows) with the first write (see
    /// `backend::modify_expecting_absent`).
    pub(crate) async fn insert_or_modify<T, R>(
        &self,
        table: &Table,
        key: &crate::Key,
        listed: Option<(&Table, Vec<crate::Row>)>,
        mut decide: impl FnMut(Option<T>) -> Result<(Change, R)> + Send,
    ) -> Result<R>
    where
        T: DeserializeOwned,
        R: Send,
    {
        backend::modify_expecting_absent(self.backend.as_ref(), table, key, listed, |bytes| {
            decide(bytes.map(|b| self.decode(table, b)).transpose()?)
        })
        .await
    }
}

/// What a residency scan of a region's store found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionScan {
    /// Rows read, every table.
    pub rows: u64,
    /// `table: id` of each record naming another region (or no region).
    pub foreign: Vec<String>,
    /// The 32-byte partition keys, by table.
    pub keys: Vec<(&'static str, [u8; 32])>,
}

/// Everything one region stores about one user (compliance export). It is
/// personal data: `Debug` shows ids and counts only.
#[derive(Clone, PartialEq, Serialize)]
pub struct UserExport {
    pub user: Option<UserRecord>,
    /// The identifier keys (keyed hashes) the user holds in this region.
    #[serde(serialize_with = "hex_keys")]
    pub identifiers: Vec<IdentifierKey>,
    pub sessions: Vec<SessionRecord>,
    pub refresh_tokens: Vec<RefreshRecord>,
    /// Newest first.
    pub audit: Vec<AuditRecord>,
    /// Second factors (sealed secrets and keyed hashes only).
    pub factors: Option<crate::FactorsRecord>,
    pub pending_sign_ins: Vec<crate::PendingSignInRecord>,
    /// Countries and devices signed in from.
    pub history: Option<crate::SignInHistory>,
}

fn hex_keys<S: serde::Serializer>(keys: &[IdentifierKey], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(keys.iter().map(IdentifierKey::to_hex))
}

impl std::fmt::Debug for UserExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserExport")
            .field("user", &self.user)
            .field("identifiers", &self.identifiers.len())
            .field("sessions", &self.sessions.len())
            .field("refresh_tokens", &self.refresh_tokens.len())
            .field("audit", &self.audit.len())
            .field("factors", &self.factors.is_some())
            .field("pending_sign_ins", &self.pending_sign_ins.len())
            .field("history", &self.history.is_some())
            .finish()
    }
}

/// How each table of a region takes part in a user's export, erasure and
/// move. A new table must be listed here (the test below fails until it
/// is), so no aggregate is forgotten by the compliance operations.
pub const TABLE_ROLES: &[(&str, TableRole)] = &[
    ("users", TableRole::User),
    ("users_by_identifier", TableRole::User),
    ("identifiers_by_user", TableRole::User),
    ("sessions", TableRole::User),
    ("refresh_tokens_by_session", TableRole::User),
    ("sessions_by_user", TableRole::User),
    ("audit_log", TableRole::User),
    ("mfa_factors", TableRole::User),
    ("pending_sign_ins", TableRole::User),
    ("sign_in_history", TableRole::User),
    ("one_time_codes", TableRole::Ephemeral),
    ("authorization_codes", TableRole::Ephemeral),
    ("signing_keys", TableRole::Region),
    ("admin_log", TableRole::Region),
    ("compliance_operations", TableRole::Record),
    ("identifier_forwards", TableRole::Record),
];

/// A table's part in the compliance operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableRole {
    /// The user's data: in `export_user`, erased by `erase_user`, carried
    /// by a move.
    User,
    /// The user's short-lived codes: erased (one-time codes) or expiring
    /// within minutes (authorization codes); never carried.
    Ephemeral,
    /// The region's own (keys, its admin log): no user's.
    Region,
    /// What an operation leaves on purpose (its journal and receipt, a
    /// passkey's forwarding row): ids, regions, counts; nothing personal.
    Record,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_a_part_in_the_compliance_operations() {
        let tables: Vec<&str> = REGION_TABLES.iter().map(|t| t.name).collect();
        let listed: Vec<&str> = TABLE_ROLES.iter().map(|(t, _)| *t).collect();
        for t in &tables {
            assert!(
                listed.contains(t),
                "table {t} has no role in TABLE_ROLES: decide how export, erase and move treat it"
            );
        }
        for t in &listed {
            assert!(
                tables.contains(t),
                "TABLE_ROLES lists {t}, which is no table"
            );
        }
    }
}
