//! The region store as the node sees it: every call timed into
//! `domicile_node_store_seconds{region, op}`, failures counted, and each one
//! a child span (`store.<op>`) of the RPC that made it. Only operation names
//! reach telemetry: never keys, ids or records.

use crate::metrics::NodeMetrics;
use async_trait::async_trait;
use domicile_core::{UnixSeconds, index::IdentifierKey};
use domicile_store::{
    Applied, AuditRecord, RefreshRecord, RegionStore, Result, RevokeReason, SessionRecord,
    SigningKeyRecord, UserRecord,
};
use std::{future::Future, sync::Arc, time::Instant};
use tracing::Instrument;

pub struct MeteredStore {
    inner: Arc<dyn RegionStore>,
    metrics: Arc<NodeMetrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn RegionStore>, metrics: Arc<NodeMetrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(&self, op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let m = &self.metrics;
        // DEBUG: exported (the trace layer takes our crates' DEBUG spans) but
        // not formatted for the INFO log, which would cost more than the call.
        let span = tracing::debug_span!(
            "store",
            otel.name = %format_args!("store.{op}"),
            otel.kind = "client",
            db.operation = op,
            region = m.region(),
        );
        let started = Instant::now();
        let r = call.instrument(span).await;
        m.store_seconds
            .with_label_values(&[m.region(), op])
            .observe(started.elapsed().as_secs_f64());
        if r.is_err() {
            m.store_errors.with_label_values(&[m.region(), op]).inc();
        }
        r
    }
}

#[async_trait]
impl RegionStore for MeteredStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn insert_identifier(
        &self,
        key: &IdentifierKey,
        user_id: &str,
    ) -> Result<Applied<String>> {
        self.timed(
            "insert_identifier",
            self.inner.insert_identifier(key, user_id),
        )
        .await
    }
    async fn get_identifier(&self, key: &IdentifierKey) -> Result<Option<String>> {
        self.timed("get_identifier", self.inner.get_identifier(key))
            .await
    }
    async fn replace_identifier(
        &self,
        key: &IdentifierKey,
        expected: &str,
        user_id: &str,
    ) -> Result<Applied> {
        self.timed(
            "replace_identifier",
            self.inner.replace_identifier(key, expected, user_id),
        )
        .await
    }
    async fn delete_identifier(&self, key: &IdentifierKey, expected: &str) -> Result<Applied> {
        self.timed(
            "delete_identifier",
            self.inner.delete_identifier(key, expected),
        )
        .await
    }
    async fn insert_user(&self, user: &UserRecord) -> Result<Applied> {
        self.timed("insert_user", self.inner.insert_user(user))
            .await
    }
    async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        self.timed("get_user", self.inner.get_user(user_id)).await
    }
    async fn update_user(&self, user: &UserRecord, expected_version: u64) -> Result<Applied> {
        self.timed(
            "update_user",
            self.inner.update_user(user, expected_version),
        )
        .await
    }
    async fn delete_user(&self, user_id: &str) -> Result<Applied> {
        self.timed("delete_user", self.inner.delete_user(user_id))
            .await
    }
    async fn count_users(&self) -> Result<u64> {
        self.timed("count_users", self.inner.count_users()).await
    }
    async fn scan_users(&self) -> Result<Vec<UserRecord>> {
        self.timed("scan_users", self.inner.scan_users()).await
    }
    async fn count_sessions(&self) -> Result<u64> {
        self.timed("count_sessions", self.inner.count_sessions())
            .await
    }
    async fn insert_session(&self, session: &SessionRecord, now: UnixSeconds) -> Result<Applied> {
        self.timed("insert_session", self.inner.insert_session(session, now))
            .await
    }
    async fn get_session(
        &self,
        session_id: &str,
        now: UnixSeconds,
    ) -> Result<Option<SessionRecord>> {
        self.timed("get_session", self.inner.get_session(session_id, now))
            .await
    }
    async fn revoke_session(
        &self,
        session_id: &str,
        now: UnixSeconds,
        reason: RevokeReason,
    ) -> Result<Applied> {
        self.timed(
            "revoke_session",
            self.inner.revoke_session(session_id, now, reason),
        )
        .await
    }
    async fn insert_refresh(&self, token: &RefreshRecord, now: UnixSeconds) -> Result<Applied> {
        self.timed("insert_refresh", self.inner.insert_refresh(token, now))
            .await
    }
    async fn get_refresh(
        &self,
        hash: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<Option<RefreshRecord>> {
        self.timed("get_refresh", self.inner.get_refresh(hash, now))
            .await
    }
    async fn mark_refresh_used(&self, hash: &[u8; 32], now: UnixSeconds) -> Result<Applied> {
        self.timed("mark_refresh_used", self.inner.mark_refresh_used(hash, now))
            .await
    }
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.timed("signing_keys", self.inner.signing_keys()).await
    }
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<Applied> {
        self.timed("insert_signing_key", self.inner.insert_signing_key(key))
            .await
    }
    async fn append_audit(&self, events: &[AuditRecord]) -> Result<()> {
        self.timed("append_audit", self.inner.append_audit(events))
            .await
    }
    async fn audit_for_user(&self, user_id: &str, limit: usize) -> Result<Vec<AuditRecord>> {
        self.timed("audit_for_user", self.inner.audit_for_user(user_id, limit))
            .await
    }
    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64> {
        self.timed("purge_expired", self.inner.purge_expired(now))
            .await
    }
}
