//! Domicile's per-region persistence: the store traits every backend
//! implements, the embedded backend, and the conformance suite.
//!
//! The traits are shaped for ScyllaDB: every operation addresses one
//! partition by its key, uniqueness comes from conditional inserts (LWT
//! semantics: `IF NOT EXISTS`, `IF col = ?`), and sessions, refresh tokens and
//! pending index claims expire (TTL). The embedded backend honours the same
//! semantics so code written against it behaves the same on Scylla.
//!
//! This crate knows nothing of gRPC, tokens or routing; it never reads the
//! clock (`now` is passed in). A `RegionStore` belongs to exactly one region:
//! opening one names the region, and it never holds another region's data.

#![forbid(unsafe_code)]

mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
mod embedded;
mod records;
pub mod scylla;

pub use embedded::{EmbeddedIndex, EmbeddedRegion};
pub use records::*;
pub use scylla::{ScyllaIndex, ScyllaRegion};

use async_trait::async_trait;
use domicile_core::{
    UnixSeconds,
    index::{IdentifierKey, IndexEntry},
};

/// A store error, with the store it came from.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {store}: backend error: {reason}")]
    Backend { store: String, reason: String },
    #[error("store {store}: corrupt record in {table}: {reason}")]
    Corrupt {
        store: String,
        table: String,
        reason: String,
    },
    #[error(
        "store {store}: stored format version {found} is newer than this build understands ({supported})"
    )]
    FutureFormat {
        store: String,
        found: u32,
        supported: u32,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Outcome of a conditional write, like Scylla's `[applied]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied<T = ()> {
    Yes,
    /// Not applied; carries what blocked it where that is useful.
    No(T),
}

impl<T> Applied<T> {
    pub fn is_applied(&self) -> bool {
        matches!(self, Applied::Yes)
    }
}

/// One region's data: users, identifiers, sessions, refresh tokens, signing keys.
#[async_trait]
pub trait RegionStore: Send + Sync + 'static {
    /// Which region and backend this is, for errors and logs.
    fn describe(&self) -> String;

    // --- users_by_identifier (partition: identifier key) ---

    /// `INSERT … IF NOT EXISTS`; when taken, returns the holder's user id.
    async fn insert_identifier(
        &self,
        key: &IdentifierKey,
        user_id: &str,
    ) -> Result<Applied<String>>;
    async fn get_identifier(&self, key: &IdentifierKey) -> Result<Option<String>>;
    /// `UPDATE … IF user_id = expected` (takes over an orphaned identifier).
    async fn replace_identifier(
        &self,
        key: &IdentifierKey,
        expected: &str,
        user_id: &str,
    ) -> Result<Applied>;
    /// `DELETE … IF user_id = expected`.
    async fn delete_identifier(&self, key: &IdentifierKey, expected: &str) -> Result<Applied>;

    // --- users (partition: user id) ---

    /// `INSERT … IF NOT EXISTS`. Acknowledged only once durable.
    async fn insert_user(&self, user: &UserRecord) -> Result<Applied>;
    async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>>;
    /// `UPDATE … IF version = expected_version`; the record carries the new version.
    async fn update_user(&self, user: &UserRecord, expected_version: u64) -> Result<Applied>;
    /// Deletes a user row (undoing a failed registration; erasure later).
    async fn delete_user(&self, user_id: &str) -> Result<Applied>;
    /// Number of users (compliance reports; a full scan on Scylla).
    async fn count_users(&self) -> Result<u64>;
    /// Every user (compliance reports and audits; a full scan, paged on Scylla).
    async fn scan_users(&self) -> Result<Vec<UserRecord>>;
    /// Number of sessions stored, live or not yet purged.
    async fn count_sessions(&self) -> Result<u64>;

    // --- sessions (partition: session id; TTL to expires_at) ---

    async fn insert_session(&self, session: &SessionRecord, now: UnixSeconds) -> Result<Applied>;
    /// The session unless it has expired at `now`.
    async fn get_session(
        &self,
        session_id: &str,
        now: UnixSeconds,
    ) -> Result<Option<SessionRecord>>;
    /// Marks the session revoked for `reason` (idempotent: the first reason
    /// stays); `No` when it does not exist.
    async fn revoke_session(
        &self,
        session_id: &str,
        now: UnixSeconds,
        reason: RevokeReason,
    ) -> Result<Applied>;

    // --- refresh tokens (partition: SHA-256 of the token; TTL to expires_at) ---

    async fn insert_refresh(&self, token: &RefreshRecord, now: UnixSeconds) -> Result<Applied>;
    /// The record unless it has expired at `now`.
    async fn get_refresh(&self, hash: &[u8; 32], now: UnixSeconds)
    -> Result<Option<RefreshRecord>>;
    /// `UPDATE … SET state = rotated IF state = active`: exactly one caller wins.
    async fn mark_refresh_used(&self, hash: &[u8; 32], now: UnixSeconds) -> Result<Applied>;

    // --- signing keys (one partition per region) ---

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;
    /// `INSERT … IF NOT EXISTS` by kid.
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<Applied>;

    // --- audit log (partition: user id; clustering: event id, newest first; TTL to expires_at) ---

    /// Appends events (idempotent by event id; not conditional). Every
    /// event's user must belong to this store's region.
    async fn append_audit(&self, events: &[AuditRecord]) -> Result<()>;
    /// A user's newest `limit` events at most, newest first.
    async fn audit_for_user(&self, user_id: &str, limit: usize) -> Result<Vec<AuditRecord>>;

    /// Deletes what has expired at `now` (Scylla's TTL does this by itself).
    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64>;
}

/// Residency of an audit append, checked before anything is written: every
/// event's user must be homed in `region`.
fn check_audit_region(
    events: &[AuditRecord],
    region: &domicile_core::RegionCode,
) -> std::result::Result<(), String> {
    match events.iter().find(|e| {
        domicile_core::ids::UserId::parse(&e.user_id).map_or(true, |id| id.region() != region)
    }) {
        Some(e) => Err(format!(
            "audit event {} is not for a user of region {region}",
            e.event_id
        )),
        None => Ok(()),
    }
}

/// Outcome of an index claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    Applied,
    /// Held by a live entry of another user.
    Held(IndexEntry),
}

/// The global home-region index: identifier key → region, user id, state.
#[async_trait]
pub trait IndexStore: Send + Sync + 'static {
    fn describe(&self) -> String;
    /// The live entry for a key at `now` (expired pending claims are absent).
    async fn lookup(&self, key: &IdentifierKey, now: UnixSeconds) -> Result<Option<IndexEntry>>;
    /// Writes `entry` (a pending claim with an expiry) if the key is free, its
    /// holder has expired, or the holder is the same user. SERIAL on Scylla.
    async fn claim(
        &self,
        key: &IdentifierKey,
        entry: &IndexEntry,
        now: UnixSeconds,
    ) -> Result<Claim>;
    /// Makes this user's claim active and non-expiring.
    async fn confirm(
        &self,
        key: &IdentifierKey,
        user_id: &str,
        now: UnixSeconds,
    ) -> Result<Applied>;
    /// Deletes the entry if it belongs to this user.
    async fn release(&self, key: &IdentifierKey, user_id: &str) -> Result<Applied>;
    /// Every entry, for residency audits (no personal data in it).
    async fn scan(&self, now: UnixSeconds) -> Result<Vec<(IdentifierKey, IndexEntry)>>;
}
