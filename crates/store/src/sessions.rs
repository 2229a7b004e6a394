//! The sessions aggregate: login sessions (partition: session id) and their
//! refresh tokens (partition: session id; clustering: SHA-256 of the token,
//! which names its session), both expiring with their records, plus
//! `sessions_by_user` (partition: user id; clustering: `s` + session id) so
//! a user's sessions, and through them their tokens, can be exported and
//! erased without a scan. The per-user list entry is durable no later than
//! its session (`append_then_put_if`) and expires with it; a refresh token
//! needs no list entry of its own, so a refresh writes one row, not two.
//!
//! Expiry is judged here from each record's `expires_at` against the `now`
//! passed in; the backend only drops rows (TTL, purge).

use crate::{
    Applied, Key, RefreshRecord, RegionStore, Result, RevokeReason, Row, Scope, SessionRecord,
    Table,
    backend::{Change, Expiry},
};
use domicile_core::{UnixSeconds, ids::ArtifactKind};

pub const SESSIONS: Table = Table::rows("sessions", Scope::Region);
pub const REFRESH: Table = Table::partitioned("refresh_tokens_by_session", Scope::Region);
pub const SESSIONS_BY_USER: Table = Table::partitioned("sessions_by_user", Scope::Region);

const SESSION_TAG: u8 = b's';

fn live(expires_at: UnixSeconds, now: UnixSeconds) -> bool {
    now < expires_at
}

/// A record that ends at a time of its own.
trait Expires {
    fn expires_at(&self) -> UnixSeconds;
}

impl Expires for SessionRecord {
    fn expires_at(&self) -> UnixSeconds {
        self.expires_at
    }
}

impl Expires for RefreshRecord {
    fn expires_at(&self) -> UnixSeconds {
        self.expires_at
    }
}

fn tagged(tag: u8, id: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(1 + id.len());
    c.push(tag);
    c.extend_from_slice(id);
    c
}

/// A `sessions_by_user` row: `user_id` holds the session or token named by
/// `clustering`, until `expiry`.
fn link<'t>(user_id: &str, clustering: Vec<u8>, expiry: Expiry) -> (&'t Table, Vec<Row>) {
    let row = Row {
        key: Key::cell(user_id.as_bytes(), clustering),
        value: Vec::new(),
        expiry,
    };
    (&SESSIONS_BY_USER, vec![row])
}

impl RegionStore {
    /// Inserts a session unless a live one has its id.
    pub async fn insert_session(&self, s: &SessionRecord, now: UnixSeconds) -> Result<Applied> {
        self.instrument
            .run("insert_session", async {
                self.check_id(&SESSIONS, ArtifactKind::Session, &s.session_id)?;
                self.check_id(&SESSIONS, ArtifactKind::User, &s.user_id)?;
                let listed = tagged(SESSION_TAG, s.session_id.as_bytes());
                let key = Key::row(s.session_id.as_bytes());
                self.insert_expiring(&SESSIONS, key, Some((&s.user_id, listed)), s, now)
                    .await
            })
            .await
    }

    /// The write of a changed `record`, keeping its own expiry.
    fn rewrite<T: serde::Serialize + Expires>(
        &self,
        table: &Table,
        record: &T,
        now: UnixSeconds,
    ) -> Result<Change> {
        let expiry = Expiry::At {
            at: record.expires_at(),
            now,
        };
        Ok(Change::Put(self.encode(table, record)?, expiry))
    }

    /// Inserts `record` at `key` of `table` unless a live record holds the
    /// key; when `listed` names a user and a clustering key, the record is
    /// listed under that user (`sessions_by_user`) in the same write, both
    /// expiring with the record.
    async fn insert_expiring<T>(
        &self,
        table: &Table,
        key: Key,
        listed: Option<(&str, Vec<u8>)>,
        record: &T,
        now: UnixSeconds,
    ) -> Result<Applied>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Expires,
    {
        let expiry = Expiry::At {
            at: record.expires_at(),
            now,
        };
        let value = self.encode(table, record)?;
        self.insert_or_modify(
            table,
            &key,
            listed.map(|(user_id, clustering)| link(user_id, clustering, expiry)),
            |current: Option<T>| {
                Ok(match current {
                    Some(e) if live(e.expires_at(), now) => (Change::Keep, Applied::No(())),
                    _ => (Change::Put(value.clone(), expiry), Applied::Yes),
                })
            },
        )
        .await
    }

    /// The session unless it has expired at `now`.
    pub async fn get_session(
        &self,
        session_id: &str,
        now: UnixSeconds,
    ) -> Result<Option<SessionRecord>> {
        self.instrument
            .run("get_session", async {
                let s: Option<SessionRecord> = self
                    .read(&SESSIONS, &Key::row(session_id.as_bytes()))
                    .await?;
                Ok(s.filter(|s| live(s.expires_at, now)))
            })
            .await
    }

    /// Marks the session revoked for `reason` (idempotent: the first reason
    /// stays); `No` when the store holds no such session.
    pub async fn revoke_session(
        &self,
        session_id: &str,
        now: UnixSeconds,
        reason: RevokeReason,
    ) -> Result<Applied> {
        self.instrument
            .run("revoke_session", async {
                self.modify(
                    &SESSIONS,
                    &Key::row(session_id.as_bytes()),
                    |current: Option<SessionRecord>| {
                        Ok(match current {
                            Some(s) if s.revoked_at.is_some() => (Change::Keep, Applied::Yes),
                            Some(mut s) => {
                                s.revoked_at = Some(now);
                                s.revoked_reason = Some(reason);
                                (self.rewrite(&SESSIONS, &s, now)?, Applied::Yes)
                            }
                            None => (Change::Keep, Applied::No(())),
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Inserts a refresh token into its session's partition unless a live
    /// one there has its hash.
    pub async fn insert_refresh(&self, r: &RefreshRecord, now: UnixSeconds) -> Result<Applied> {
        self.instrument
            .run("insert_refresh", async {
                self.check_id(&REFRESH, ArtifactKind::Session, &r.session_id)?;
                self.check_id(&REFRESH, ArtifactKind::User, &r.user_id)?;
                self.insert_expiring(
                    &REFRESH,
                    refresh_key(&r.session_id, &r.token_hash),
                    None,
                    r,
                    now,
                )
                .await
            })
            .await
    }

    /// The token of `session_id` with this hash, unless it has expired at `now`.
    pub async fn get_refresh(
        &self,
        session_id: &str,
        hash: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<Option<RefreshRecord>> {
        self.instrument
            .run("get_refresh", async {
                let r: Option<RefreshRecord> =
                    self.read(&REFRESH, &refresh_key(session_id, hash)).await?;
                Ok(r.filter(|r| live(r.expires_at, now)))
            })
            .await
    }

    /// Sets `used_at` if the token is live and unused: exactly one caller
    /// wins. `read` is the token as the caller just read it (`get_refresh`):
    /// the conditional write starts from it (`IF v = <read>`), so a refresh
    /// costs no second read; if the row changed since, the decision is made
    /// again on what is stored.
    pub async fn mark_refresh_used(
        &self,
        read: &RefreshRecord,
        now: UnixSeconds,
    ) -> Result<Applied> {
        self.instrument
            .run("mark_refresh_used", async {
                self.modify_known(
                    &REFRESH,
                    &refresh_key(&read.session_id, &read.token_hash),
                    read,
                    |current: Option<RefreshRecord>| {
                        Ok(match current {
                            Some(mut r) if r.used_at.is_none() && live(r.expires_at, now) => {
                                r.used_at = Some(now);
                                (self.rewrite(&REFRESH, &r, now)?, Applied::Yes)
                            }
                            _ => (Change::Keep, Applied::No(())),
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Number of sessions stored, live or not yet purged.
    pub async fn count_sessions(&self) -> Result<u64> {
        self.instrument
            .run("count_sessions", self.backend.count(&SESSIONS))
            .await
    }

    /// The user's sessions and refresh tokens still stored (expired ones
    /// included until they are purged: they are still held).
    pub async fn export_sessions(
        &self,
        user_id: &str,
    ) -> Result<(Vec<SessionRecord>, Vec<RefreshRecord>)> {
        self.instrument
            .run("export_sessions", async {
                let (mut sessions, mut tokens) = (Vec::new(), Vec::new());
                for id in self.listed_sessions(user_id).await? {
                    let s: Option<SessionRecord> =
                        self.read(&SESSIONS, &Key::row(id.as_slice())).await?;
                    sessions.extend(s.filter(|s| s.user_id == user_id));
                    for (_, v) in self.backend.rows(&REFRESH, &id, usize::MAX).await? {
                        let r: RefreshRecord = self.decode(&REFRESH, &v)?;
                        tokens.extend((r.user_id == user_id).then_some(r));
                    }
                }
                Ok((sessions, tokens))
            })
            .await
    }

    /// Erases the user's sessions, their refresh tokens, and the list.
    pub async fn erase_sessions(&self, user_id: &str) -> Result<()> {
        self.instrument
            .run("erase_sessions", async {
                for id in self.listed_sessions(user_id).await? {
                    let ours = self
                        .modify(
                            &SESSIONS,
                            &Key::row(id.as_slice()),
                            |s: Option<SessionRecord>| {
                                Ok(match s {
                                    Some(s) if s.user_id == user_id => (Change::Delete, true),
                                    Some(_) => (Change::Keep, false),
                                    // Gone (expired): its tokens expired no later.
                                    None => (Change::Keep, true),
                                })
                            },
                        )
                        .await?;
                    if ours {
                        self.backend.delete_partition(&REFRESH, &id).await?;
                    }
                }
                self.backend
                    .delete_partition(&SESSIONS_BY_USER, user_id.as_bytes())
                    .await
            })
            .await
    }

    /// The user's sessions that are live at `now` (not expired, not
    /// revoked).
    pub async fn live_sessions(
        &self,
        user_id: &str,
        now: UnixSeconds,
    ) -> Result<Vec<SessionRecord>> {
        self.instrument
            .run("live_sessions", async {
                let mut live_ones = Vec::new();
                for id in self.listed_sessions(user_id).await? {
                    let s: Option<SessionRecord> =
                        self.read(&SESSIONS, &Key::row(id.as_slice())).await?;
                    live_ones.extend(s.filter(|s| {
                        s.user_id == user_id && s.revoked_at.is_none() && live(s.expires_at, now)
                    }));
                }
                Ok(live_ones)
            })
            .await
    }

    /// The session ids listed under `user_id`.
    async fn listed_sessions(&self, user_id: &str) -> Result<Vec<Vec<u8>>> {
        let mut ids = Vec::new();
        for (c, _) in self
            .backend
            .rows(&SESSIONS_BY_USER, user_id.as_bytes(), usize::MAX)
            .await?
        {
            match c.split_first() {
                Some((&SESSION_TAG, id)) => ids.push(id.to_vec()),
                _ => {
                    return Err(
                        self.corrupt(&SESSIONS_BY_USER, "an entry does not name a session".into())
                    );
                }
            }
        }
        Ok(ids)
    }
}

/// Where a refresh token lives: its session's partition, by hash.
fn refresh_key(session_id: &str, hash: &[u8; 32]) -> Key {
    Key::cell(session_id.as_bytes(), hash.to_vec())
}
