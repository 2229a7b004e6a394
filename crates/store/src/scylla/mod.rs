//! The ScyllaDB backend: a region's data in a keyspace replicated only in the
//! region's datacenter, and the global index in a keyspace replicated to
//! every datacenter.
//!
//! Sessions prefer the region's datacenter and never fail over to another
//! (`permit_dc_failover(false)`). Reads and writes are `LOCAL_QUORUM`;
//! conditional writes use `LOCAL_SERIAL` in a region and `SERIAL` for the
//! index, so two regions never both win an identifier. Sessions, refresh
//! tokens and pending claims carry TTLs. Every statement is prepared once.
//! Records are the same versioned blobs as the embedded backend's.

mod config;
mod cql;
mod lwt;
pub mod schema;

pub use config::{replication_cql, valid_cql_name, validate};

use crate::{
    Applied, AuditRecord, Claim, IndexStore, RefreshRecord, RegionStore, Result, RevokeReason,
    SessionRecord, SigningKeyRecord, StoreError, UserRecord, codec,
};
use async_trait::async_trait;
use cql::{IndexCql, RegionCql};
use domicile_core::{
    RegionCode, UnixSeconds,
    ids::UserId,
    index::{IdentifierKey, IndexEntry, IndexState},
    topology::ScyllaConfig,
};
use futures::StreamExt;
use lwt::Lwt;
use scylla::{
    client::{
        execution_profile::ExecutionProfile, session::Session, session_builder::SessionBuilder,
    },
    errors::{DbError, ExecutionError, RequestAttemptError, WriteType},
    policies::{load_balancing::DefaultPolicy, retry::DefaultRetryPolicy},
    serialize::row::SerializeRow,
    statement::{Consistency, SerialConsistency, prepared::PreparedStatement},
    value::Row,
};
use serde::{Serialize, de::DeserializeOwned};
use std::sync::Arc;

pub use cql::{IndexCql as IndexStatements, RegionCql as RegionStatements};

/// How a failed request is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A conditional write timed out: it may or may not have been applied.
    /// The caller re-reads at serial consistency to learn the outcome.
    Uncertain,
    /// Anything else: the request did not happen (reads are retried by the
    /// driver's default policy when marked idempotent).
    Failed,
}

/// Classifies a driver error.
pub fn classify(e: &ExecutionError) -> Failure {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                write_type: WriteType::Cas,
                ..
            },
            _,
        ))
        | ExecutionError::RequestTimeout(_) => Failure::Uncertain,
        _ => Failure::Failed,
    }
}

fn backend(store: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        store: store.to_owned(),
        reason: e.to_string(),
    }
}

/// Seconds to live for a record expiring at `expires_at` (at least 1).
pub fn ttl(expires_at: UnixSeconds, now: UnixSeconds) -> i32 {
    i32::try_from((expires_at - now).max(1)).unwrap_or(i32::MAX)
}

/// The execution profile of a store's statements.
pub fn profile(dc: &str, serial: SerialConsistency, cfg: &ScyllaConfig) -> ExecutionProfile {
    let policy = DefaultPolicy::builder()
        .prefer_datacenter(dc.to_owned())
        .permit_dc_failover(false)
        .token_aware(true)
        .build();
    ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .serial_consistency(Some(serial))
        .load_balancing_policy(policy)
        .request_timeout(Some(cfg.request_timeout))
        .retry_policy(Arc::new(DefaultRetryPolicy::new()))
        .build()
}

/// Opens a session to a region's datacenter.
pub async fn connect(cfg: &ScyllaConfig) -> Result<Arc<Session>> {
    let name = format!("scylla:{}", cfg.keyspace);
    if !valid_cql_name(&cfg.keyspace) {
        return Err(backend(
            &name,
            format!("{:?} is not a keyspace name", cfg.keyspace),
        ));
    }
    let mut b = SessionBuilder::new()
        .known_nodes(&cfg.nodes)
        .connection_timeout(cfg.request_timeout.max(std::time::Duration::from_secs(2)))
        .default_execution_profile_handle(
            profile(&cfg.datacenter, SerialConsistency::LocalSerial, cfg).into_handle(),
        );
    if let Some(user) = &cfg.username {
        let env = cfg.password_env.as_deref().unwrap_or("");
        let password = std::env::var(env)
            .map_err(|_| backend(&name, format!("password variable {env:?} is not set")))?;
        b = b.user(user, password);
    }
    Ok(Arc::new(b.build().await.map_err(|e| backend(&name, e))?))
}

/// A prepared statement set and the session that runs it.
struct Runner {
    session: Arc<Session>,
    name: String,
}

impl Runner {
    async fn prepare(
        &self,
        text: &str,
        profile: &ExecutionProfile,
        idempotent: bool,
    ) -> Result<PreparedStatement> {
        let mut ps = self
            .session
            .prepare(text)
            .await
            .map_err(|e| backend(&self.name, format!("{e} (in {text})")))?;
        ps.set_execution_profile_handle(Some(profile.clone().into_handle()));
        ps.set_is_idempotent(idempotent);
        Ok(ps)
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        backend(&self.name, e)
    }

    fn corrupt(&self, table: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            store: self.name.clone(),
            table: table.to_owned(),
            reason: e.to_string(),
        }
    }

    /// Runs a conditional write and reads `[applied]` and the reported row.
    async fn lwt(
        &self,
        ps: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Lwt, ExecutionError> {
        let result = self.session.execute_unpaged(ps, values).await?;
        let rows = match result.into_rows_result() {
            Ok(r) => r,
            Err(e) => return Ok(Lwt::malformed(e.to_string())),
        };
        let names: Vec<String> = rows
            .column_specs()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let row: Row = match rows.first_row::<Row>() {
            Ok(r) => r,
            Err(e) => return Ok(Lwt::malformed(e.to_string())),
        };
        Ok(Lwt::from_row(&names, row.columns).unwrap_or_else(Lwt::malformed))
    }

    async fn lwt_checked(&self, ps: &PreparedStatement, values: impl SerializeRow) -> Result<Lwt> {
        let l = self.lwt(ps, values).await.map_err(|e| self.err(e))?;
        if l.malformed.is_some() {
            return Err(self.err(format!(
                "unreadable conditional-write result: {}",
                l.malformed.as_deref().unwrap_or("")
            )));
        }
        Ok(l)
    }

    /// A conditional write whose outcome is all the caller needs.
    async fn applied(&self, ps: &PreparedStatement, values: impl SerializeRow) -> Result<Applied> {
        let l = self.lwt_checked(ps, values).await?;
        Ok(if l.applied {
            Applied::Yes
        } else {
            Applied::No(())
        })
    }

    /// One versioned blob (the `record` column), or none.
    async fn record<T: DeserializeOwned>(
        &self,
        table: &str,
        ps: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<T>> {
        let rows = self
            .session
            .execute_unpaged(ps, values)
            .await
            .map_err(|e| self.err(e))?
            .into_rows_result()
            .map_err(|e| self.err(e))?;
        let row: Option<(Option<Vec<u8>>,)> = rows.maybe_first_row().map_err(|e| self.err(e))?;
        match row.and_then(|(b,)| b) {
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| self.corrupt(table, e)),
            None => Ok(None),
        }
    }

    /// Every row of a paged scan.
    async fn scan<R>(&self, ps: &PreparedStatement) -> Result<Vec<R>>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + Send + 'static,
    {
        let mut stream = self
            .session
            .execute_iter(ps.clone(), ())
            .await
            .map_err(|e| self.err(e))?
            .rows_stream::<R>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = stream.next().await {
            out.push(row.map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    fn encode<T: Serialize>(&self, table: &str, v: &T) -> Result<Vec<u8>> {
        codec::encode(v).map_err(|e| self.corrupt(table, e))
    }
}

struct RegionPrepared {
    insert_identifier: PreparedStatement,
    get_identifier: PreparedStatement,
    replace_identifier: PreparedStatement,
    delete_identifier: PreparedStatement,
    insert_user: PreparedStatement,
    get_user: PreparedStatement,
    update_user: PreparedStatement,
    delete_user: PreparedStatement,
    scan_users: PreparedStatement,
    count_users: PreparedStatement,
    scan_sessions: PreparedStatement,
    insert_session: PreparedStatement,
    get_session: PreparedStatement,
    revoke_session: PreparedStatement,
    insert_refresh: PreparedStatement,
    get_refresh: PreparedStatement,
    mark_refresh_used: PreparedStatement,
    signing_keys: PreparedStatement,
    insert_signing_key: PreparedStatement,
    append_audit: PreparedStatement,
    audit_for_user: PreparedStatement,
}

/// One region's store in its keyspace.
pub struct ScyllaRegion {
    run: Runner,
    st: RegionPrepared,
    region: RegionCode,
    cfg: ScyllaConfig,
}

impl ScyllaRegion {
    /// Connects to the region's datacenter and prepares every statement.
    pub async fn connect(cfg: &ScyllaConfig, region: &RegionCode) -> Result<Self> {
        let session = connect(cfg).await?;
        Self::with_session(session, cfg, region).await
    }

    pub async fn with_session(
        session: Arc<Session>,
        cfg: &ScyllaConfig,
        region: &RegionCode,
    ) -> Result<Self> {
        let run = Runner {
            session,
            name: format!("scylla:{}", cfg.keyspace),
        };
        let c = RegionCql::new(&cfg.keyspace);
        let p = profile(&cfg.datacenter, SerialConsistency::LocalSerial, cfg);
        let st = RegionPrepared {
            insert_identifier: run.prepare(&c.insert_identifier, &p, false).await?,
            get_identifier: run.prepare(&c.get_identifier, &p, true).await?,
            replace_identifier: run.prepare(&c.replace_identifier, &p, false).await?,
            delete_identifier: run.prepare(&c.delete_identifier, &p, false).await?,
            insert_user: run.prepare(&c.insert_user, &p, false).await?,
            get_user: run.prepare(&c.get_user, &p, true).await?,
            update_user: run.prepare(&c.update_user, &p, false).await?,
            delete_user: run.prepare(&c.delete_user, &p, false).await?,
            scan_users: run.prepare(&c.scan_users, &p, true).await?,
            count_users: run.prepare(&c.count_users, &p, true).await?,
            scan_sessions: run.prepare(&c.scan_sessions, &p, true).await?,
            insert_session: run.prepare(&c.insert_session, &p, false).await?,
            get_session: run.prepare(&c.get_session, &p, true).await?,
            revoke_session: run.prepare(&c.revoke_session, &p, false).await?,
            insert_refresh: run.prepare(&c.insert_refresh, &p, false).await?,
            get_refresh: run.prepare(&c.get_refresh, &p, true).await?,
            mark_refresh_used: run.prepare(&c.mark_refresh_used, &p, false).await?,
            signing_keys: run.prepare(&c.signing_keys, &p, true).await?,
            insert_signing_key: run.prepare(&c.insert_signing_key, &p, false).await?,
            // Same event id, same row: a retried append is harmless.
            append_audit: run.prepare(&c.append_audit, &p, true).await?,
            audit_for_user: run.prepare(&c.audit_for_user, &p, true).await?,
        };
        Ok(Self {
            run,
            st,
            region: region.clone(),
            cfg: cfg.clone(),
        })
    }

    /// The index, reached through this region's session (its datacenter).
    pub async fn index(&self, index: &ScyllaConfig) -> Result<ScyllaIndex> {
        ScyllaIndex::with_session(self.run.session.clone(), index, &self.cfg).await
    }
}

#[async_trait]
impl RegionStore for ScyllaRegion {
    fn describe(&self) -> String {
        format!(
            "scylla keyspace {} of region {} (datacenter {})",
            self.cfg.keyspace, self.region, self.cfg.datacenter
        )
    }

    async fn insert_identifier(
        &self,
        key: &IdentifierKey,
        user_id: &str,
    ) -> Result<Applied<String>> {
        let l = self
            .run
            .lwt_checked(&self.st.insert_identifier, (key.0.as_slice(), user_id))
            .await?;
        if l.applied {
            return Ok(Applied::Yes);
        }
        match l.text("user_id") {
            Some(holder) => Ok(Applied::No(holder.to_owned())),
            None => Ok(Applied::No(
                self.get_identifier(key).await?.unwrap_or_default(),
            )),
        }
    }

    async fn get_identifier(&self, key: &IdentifierKey) -> Result<Option<String>> {
        let rows = self
            .run
            .session
            .execute_unpaged(&self.st.get_identifier, (key.0.as_slice(),))
            .await
            .map_err(|e| self.run.err(e))?
            .into_rows_result()
            .map_err(|e| self.run.err(e))?;
        let row: Option<(Option<String>,)> = rows.maybe_first_row().map_err(|e| self.run.err(e))?;
        Ok(row.and_then(|(u,)| u))
    }

    async fn replace_identifier(
        &self,
        key: &IdentifierKey,
        expected: &str,
        user_id: &str,
    ) -> Result<Applied> {
        self.run
            .applied(
                &self.st.replace_identifier,
                (user_id, key.0.as_slice(), expected),
            )
            .await
    }

    async fn delete_identifier(&self, key: &IdentifierKey, expected: &str) -> Result<Applied> {
        self.run
            .applied(&self.st.delete_identifier, (key.0.as_slice(), expected))
            .await
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<Applied> {
        let record = self.run.encode("users", user)?;
        let version = i64::try_from(user.version).unwrap_or(i64::MAX);
        self.run
            .applied(
                &self.st.insert_user,
                (user.user_id.as_str(), version, record),
            )
            .await
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        self.run
            .record("users", &self.st.get_user, (user_id,))
            .await
    }

    async fn update_user(&self, user: &UserRecord, expected_version: u64) -> Result<Applied> {
        let record = self.run.encode("users", user)?;
        let v = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        self.run
            .applied(
                &self.st.update_user,
                (
                    v(user.version),
                    record,
                    user.user_id.as_str(),
                    v(expected_version),
                ),
            )
            .await
    }

    async fn delete_user(&self, user_id: &str) -> Result<Applied> {
        self.run.applied(&self.st.delete_user, (user_id,)).await
    }

    async fn count_users(&self) -> Result<u64> {
        Ok(self
            .run
            .scan::<(String,)>(&self.st.count_users)
            .await?
            .len() as u64)
    }

    async fn scan_users(&self) -> Result<Vec<UserRecord>> {
        let rows = self.run.scan::<(Vec<u8>,)>(&self.st.scan_users).await?;
        rows.into_iter()
            .map(|(b,)| codec::decode(&b).map_err(|e| self.run.corrupt("users", e)))
            .collect()
    }

    async fn count_sessions(&self) -> Result<u64> {
        Ok(self
            .run
            .scan::<(String,)>(&self.st.scan_sessions)
            .await?
            .len() as u64)
    }

    async fn insert_session(&self, s: &SessionRecord, now: UnixSeconds) -> Result<Applied> {
        let record = self.run.encode("sessions", s)?;
        let values = (
            s.session_id.as_str(),
            s.user_id.as_str(),
            s.expires_at,
            s.revoked_at,
            record,
            ttl(s.expires_at, now),
        );
        self.run.applied(&self.st.insert_session, values).await
    }

    async fn get_session(
        &self,
        session_id: &str,
        now: UnixSeconds,
    ) -> Result<Option<SessionRecord>> {
        let s: Option<SessionRecord> = self
            .run
            .record("sessions", &self.st.get_session, (session_id,))
            .await?;
        Ok(s.filter(|s| now < s.expires_at))
    }

    async fn revoke_session(
        &self,
        session_id: &str,
        now: UnixSeconds,
        reason: RevokeReason,
    ) -> Result<Applied> {
        let current: Option<SessionRecord> = self
            .run
            .record("sessions", &self.st.get_session, (session_id,))
            .await?;
        let Some(mut s) = current else {
            return Ok(Applied::No(()));
        };
        if s.revoked_at.is_some() {
            return Ok(Applied::Yes);
        }
        s.revoked_at = Some(now);
        s.revoked_reason = Some(reason);
        let record = self.run.encode("sessions", &s)?;
        let values = (
            ttl(s.expires_at, now),
            now,
            record,
            session_id,
            s.user_id.as_str(),
        );
        // Not applied means another revocation came first: its reason stays.
        self.run
            .lwt_checked(&self.st.revoke_session, values)
            .await?;
        Ok(Applied::Yes)
    }

    async fn insert_refresh(&self, r: &RefreshRecord, now: UnixSeconds) -> Result<Applied> {
        let record = self.run.encode("refresh_tokens", r)?;
        let values = (
            r.token_hash.as_slice(),
            r.session_id.as_str(),
            r.expires_at,
            r.used_at,
            record,
            ttl(r.expires_at, now),
        );
        self.run.applied(&self.st.insert_refresh, values).await
    }

    async fn get_refresh(
        &self,
        hash: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<Option<RefreshRecord>> {
        let r: Option<RefreshRecord> = self
            .run
            .record("refresh_tokens", &self.st.get_refresh, (hash.as_slice(),))
            .await?;
        Ok(r.filter(|r| now < r.expires_at))
    }

    async fn mark_refresh_used(&self, hash: &[u8; 32], now: UnixSeconds) -> Result<Applied> {
        let Some(mut r) = self.get_refresh(hash, now).await? else {
            return Ok(Applied::No(()));
        };
        if r.used_at.is_some() {
            return Ok(Applied::No(()));
        }
        r.used_at = Some(now);
        let record = self.run.encode("refresh_tokens", &r)?;
        let values = (
            ttl(r.expires_at, now),
            now,
            record,
            hash.as_slice(),
            r.session_id.as_str(),
        );
        self.run.applied(&self.st.mark_refresh_used, values).await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows = self.run.scan::<(Vec<u8>,)>(&self.st.signing_keys).await?;
        rows.into_iter()
            .map(|(b,)| codec::decode(&b).map_err(|e| self.run.corrupt("signing_keys", e)))
            .collect()
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<Applied> {
        let record = self.run.encode("signing_keys", key)?;
        self.run
            .applied(&self.st.insert_signing_key, (key.kid.as_str(), record))
            .await
    }

    async fn append_audit(&self, events: &[AuditRecord]) -> Result<()> {
        // Events are small and belong to different partitions: one write each,
        // all in flight together (no cross-partition batch).
        crate::check_audit_region(events, &self.region).map_err(|e| self.run.err(e))?;
        let writes = events.iter().map(|e| async move {
            let record = self.run.encode("audit_log", e)?;
            let ttl = i32::try_from((e.expires_at - e.at).max(1)).unwrap_or(i32::MAX);
            self.run
                .session
                .execute_unpaged(
                    &self.st.append_audit,
                    (e.user_id.as_str(), e.event_id.as_str(), record, ttl),
                )
                .await
                .map_err(|err| self.run.err(err))
                .map(|_| ())
        });
        futures::future::try_join_all(writes).await.map(|_| ())
    }

    async fn audit_for_user(&self, user_id: &str, limit: usize) -> Result<Vec<AuditRecord>> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let rows = self
            .run
            .session
            .execute_unpaged(&self.st.audit_for_user, (user_id, limit))
            .await
            .map_err(|e| self.run.err(e))?
            .into_rows_result()
            .map_err(|e| self.run.err(e))?;
        let mut out = Vec::new();
        for row in rows.rows::<(Vec<u8>,)>().map_err(|e| self.run.err(e))? {
            let (bytes,) = row.map_err(|e| self.run.err(e))?;
            out.push(codec::decode(&bytes).map_err(|e| self.run.corrupt("audit_log", e))?);
        }
        Ok(out)
    }

    async fn purge_expired(&self, _now: UnixSeconds) -> Result<u64> {
        // TTLs remove expired sessions, refresh tokens and claims.
        Ok(0)
    }
}

struct IndexPrepared {
    lookup: PreparedStatement,
    lookup_serial: PreparedStatement,
    claim_new: PreparedStatement,
    claim_over: PreparedStatement,
    confirm: PreparedStatement,
    release: PreparedStatement,
    scan: PreparedStatement,
}

/// The home-region index keyspace, replicated to every region's datacenter.
pub struct ScyllaIndex {
    run: Runner,
    st: IndexPrepared,
    keyspace: String,
}

type IndexRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

fn entry_of(row: IndexRow) -> std::result::Result<IndexEntry, String> {
    let (region, user_id, state, created_at, expires_at) = row;
    Ok(IndexEntry {
        region: RegionCode::parse(&region.unwrap_or_default()).map_err(|e| e.to_string())?,
        user_id: UserId::parse(&user_id.unwrap_or_default()).map_err(|e| e.to_string())?,
        state: match state.as_deref() {
            Some("pending") => IndexState::Pending,
            Some("active") => IndexState::Active,
            other => return Err(format!("unknown state {other:?}")),
        },
        created_at: created_at.unwrap_or(0),
        expires_at,
    })
}

impl ScyllaIndex {
    /// The index through a region's session; `local` is that region's store
    /// (its datacenter is preferred for reads).
    pub async fn with_session(
        session: Arc<Session>,
        index: &ScyllaConfig,
        local: &ScyllaConfig,
    ) -> Result<Self> {
        let run = Runner {
            session,
            name: format!("scylla:{}", index.keyspace),
        };
        let c = IndexCql::new(&index.keyspace);
        let timeouts = ScyllaConfig {
            request_timeout: index.request_timeout,
            ..local.clone()
        };
        // Claims, confirms and releases are decided by Paxos across every datacenter.
        let global = profile(&local.datacenter, SerialConsistency::Serial, &timeouts);
        let mut lookup_serial = run.prepare(&c.lookup, &global, true).await?;
        lookup_serial.set_consistency(Consistency::Serial);
        let st = IndexPrepared {
            lookup: run.prepare(&c.lookup, &global, true).await?,
            lookup_serial,
            claim_new: run.prepare(&c.claim_new, &global, false).await?,
            claim_over: run.prepare(&c.claim_over, &global, false).await?,
            confirm: run.prepare(&c.confirm, &global, false).await?,
            release: run.prepare(&c.release, &global, false).await?,
            scan: run.prepare(&c.scan, &global, true).await?,
        };
        Ok(Self {
            run,
            st,
            keyspace: index.keyspace.clone(),
        })
    }

    async fn read(
        &self,
        ps: &PreparedStatement,
        key: &IdentifierKey,
    ) -> Result<Option<IndexEntry>> {
        let rows = self
            .run
            .session
            .execute_unpaged(ps, (key.0.as_slice(),))
            .await
            .map_err(|e| self.run.err(e))?
            .into_rows_result()
            .map_err(|e| self.run.err(e))?;
        let row: Option<IndexRow> = rows.maybe_first_row().map_err(|e| self.run.err(e))?;
        row.map(entry_of)
            .transpose()
            .map_err(|e| self.run.corrupt("home_index", e))
    }

    /// A conditional write whose timeout leaves its outcome unknown: re-read
    /// at SERIAL and report whether `user_id` holds the key in `state`.
    async fn decided(
        &self,
        ps: &PreparedStatement,
        values: impl SerializeRow,
        key: &IdentifierKey,
        user_id: &str,
        state: Option<IndexState>,
    ) -> Result<bool> {
        match self.run.lwt(ps, values).await {
            Ok(l) if l.malformed.is_none() => Ok(l.applied),
            Ok(l) => Err(self.run.err(format!(
                "unreadable conditional-write result: {:?}",
                l.malformed
            ))),
            Err(e) if classify(&e) == Failure::Uncertain => {
                tracing::warn!(keyspace = %self.keyspace, error = %e, "index write outcome unknown; reading at SERIAL");
                let now = self.read(&self.st.lookup_serial, key).await?;
                Ok(match (now, state) {
                    (Some(e), Some(s)) => e.user_id.as_str() == user_id && e.state == s,
                    (None, None) => true,
                    _ => false,
                })
            }
            Err(e) => Err(self.run.err(e)),
        }
    }
}

#[async_trait]
impl IndexStore for ScyllaIndex {
    fn describe(&self) -> String {
        format!("scylla home-region index {}", self.keyspace)
    }

    async fn lookup(&self, key: &IdentifierKey, now: UnixSeconds) -> Result<Option<IndexEntry>> {
        Ok(self
            .read(&self.st.lookup, key)
            .await?
            .filter(|e| e.is_live(now)))
    }

    async fn claim(
        &self,
        key: &IdentifierKey,
        entry: &IndexEntry,
        now: UnixSeconds,
    ) -> Result<Claim> {
        let expires = entry.expires_at.unwrap_or(now + 1);
        let (region, user) = (entry.region.as_str(), entry.user_id.as_str());
        let values = (
            key.0.as_slice(),
            region,
            user,
            entry.created_at,
            expires,
            ttl(expires, now),
        );
        if self
            .decided(
                &self.st.claim_new,
                values,
                key,
                user,
                Some(IndexState::Pending),
            )
            .await?
        {
            return Ok(Claim::Applied);
        }
        let Some(holder) = self.read(&self.st.lookup_serial, key).await? else {
            // It expired or was released between the two statements: try once more.
            let values = (
                key.0.as_slice(),
                region,
                user,
                entry.created_at,
                expires,
                ttl(expires, now),
            );
            return Ok(
                if self
                    .decided(
                        &self.st.claim_new,
                        values,
                        key,
                        user,
                        Some(IndexState::Pending),
                    )
                    .await?
                {
                    Claim::Applied
                } else {
                    Claim::Held(
                        self.read(&self.st.lookup_serial, key)
                            .await?
                            .unwrap_or_else(|| entry.clone()),
                    )
                },
            );
        };
        let same_user = holder.user_id == entry.user_id;
        if same_user && holder.state == IndexState::Active {
            return Ok(Claim::Applied);
        }
        if holder.is_live(now) && !same_user {
            return Ok(Claim::Held(holder));
        }
        // An expired claim, or our own pending one: compare-and-set on the holder.
        let old_expiry = holder.expires_at;
        let values = (
            ttl(expires, now),
            region,
            user,
            entry.created_at,
            expires,
            key.0.as_slice(),
            holder.user_id.as_str(),
            old_expiry,
        );
        if self
            .decided(
                &self.st.claim_over,
                values,
                key,
                user,
                Some(IndexState::Pending),
            )
            .await?
        {
            Ok(Claim::Applied)
        } else {
            Ok(Claim::Held(
                self.read(&self.st.lookup_serial, key)
                    .await?
                    .unwrap_or(holder),
            ))
        }
    }

    async fn confirm(
        &self,
        key: &IdentifierKey,
        user_id: &str,
        now: UnixSeconds,
    ) -> Result<Applied> {
        let Some(holder) = self.read(&self.st.lookup_serial, key).await? else {
            return Ok(Applied::No(()));
        };
        if holder.user_id.as_str() != user_id {
            return Ok(Applied::No(()));
        }
        let values = (
            holder.region.as_str(),
            user_id,
            holder.created_at,
            key.0.as_slice(),
            user_id,
            now,
        );
        let ok = self
            .decided(
                &self.st.confirm,
                values,
                key,
                user_id,
                Some(IndexState::Active),
            )
            .await?;
        Ok(if ok { Applied::Yes } else { Applied::No(()) })
    }

    async fn release(&self, key: &IdentifierKey, user_id: &str) -> Result<Applied> {
        let ok = self
            .decided(
                &self.st.release,
                (key.0.as_slice(), user_id),
                key,
                user_id,
                None,
            )
            .await?;
        Ok(if ok { Applied::Yes } else { Applied::No(()) })
    }

    async fn scan(&self, now: UnixSeconds) -> Result<Vec<(IdentifierKey, IndexEntry)>> {
        type ScanRow = (
            Vec<u8>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
        );
        let rows = self.run.scan::<ScanRow>(&self.st.scan).await?;
        let mut out = Vec::new();
        for (k, region, user, state, created, expires) in rows {
            let key = IdentifierKey::from_slice(&k)
                .ok_or_else(|| self.run.corrupt("home_index", "key is not 32 bytes"))?;
            let e = entry_of((region, user, state, created, expires))
                .map_err(|e| self.run.corrupt("home_index", e))?;
            if e.is_live(now) {
                out.push((key, e));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_relative_and_never_zero() {
        assert_eq!(ttl(1_000, 900), 100);
        assert_eq!(
            ttl(900, 900),
            1,
            "already due: expire at once, never 'no TTL'"
        );
        assert_eq!(ttl(0, 900), 1);
        assert_eq!(ttl(i64::MAX, 0), i32::MAX);
    }

    #[test]
    fn failures_are_classified() {
        use scylla::statement::Consistency as C;
        let cas = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                consistency: C::Serial,
                received: 1,
                required: 2,
                write_type: WriteType::Cas,
            },
            "timeout".into(),
        ));
        assert_eq!(classify(&cas), Failure::Uncertain);
        let simple = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                consistency: C::LocalQuorum,
                received: 1,
                required: 2,
                write_type: WriteType::Simple,
            },
            "timeout".into(),
        ));
        assert_eq!(classify(&simple), Failure::Failed);
        assert_eq!(
            classify(&ExecutionError::RequestTimeout(
                std::time::Duration::from_secs(2)
            )),
            Failure::Uncertain
        );
        assert_eq!(classify(&ExecutionError::EmptyPlan), Failure::Failed);
    }

    #[test]
    fn index_rows_decode() {
        let row: IndexRow = (
            Some("us".into()),
            Some("usr_us_01JD0000000000000000000000".into()),
            Some("active".into()),
            Some(5),
            None,
        );
        let e = entry_of(row).unwrap();
        assert_eq!(
            (e.region.as_str(), e.state, e.expires_at),
            ("us", IndexState::Active, None)
        );
        assert!(
            entry_of((
                Some("us".into()),
                Some("alice@example.org".into()),
                Some("active".into()),
                None,
                None
            ))
            .is_err()
        );
        assert!(
            entry_of((
                Some("us".into()),
                Some("usr_us_01JD0000000000000000000000".into()),
                Some("gone".into()),
                None,
                None
            ))
            .is_err()
        );
    }

    #[test]
    fn profiles_follow_the_config() {
        let cfg = ScyllaConfig {
            nodes: vec!["10.0.0.1:9042".into()],
            datacenter: "eu-dc".into(),
            keyspace: "domicile_eu".into(),
            replication: vec![("eu-dc".into(), 3)],
            request_timeout: std::time::Duration::from_millis(750),
            username: None,
            password_env: None,
        };
        let p = profile("eu-dc", SerialConsistency::LocalSerial, &cfg);
        assert_eq!(p.get_consistency(), Consistency::LocalQuorum);
        assert_eq!(
            p.get_serial_consistency(),
            Some(SerialConsistency::LocalSerial)
        );
        assert_eq!(
            p.get_request_timeout(),
            Some(std::time::Duration::from_millis(750))
        );
        let g = profile("eu-dc", SerialConsistency::Serial, &cfg);
        assert_eq!(g.get_serial_consistency(), Some(SerialConsistency::Serial));
    }
}
