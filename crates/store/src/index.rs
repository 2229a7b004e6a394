//! The home-region index aggregate: identifier key → region, user id,
//! state (partition: identifier key), decided by global conditional writes
//! (SERIAL on Scylla). Claims follow one rule, written once here: a key may
//! be taken when it is free, when its holder has expired, or when the
//! holder is the same user; a take-over also treats one named pending
//! claim as free (a registration its region saw cut off).
//!
//! It holds no personal data and knows nothing of regions' stores.

use crate::{
    Applied, Key, Result, Scope, StoreError, StoreObserver, Table,
    backend::{self, Backend, Change, Expiry},
    codec,
    observe::Instrument,
};
use domicile_core::{
    RegionCode, UnixSeconds,
    ids::UserId,
    index::{IdentifierKey, IndexEntry, IndexState},
};
use serde::{Deserialize, Serialize};
use std::{path::Path, sync::Arc};

pub const HOME_INDEX: Table = Table::rows("home_index", Scope::Global);

/// Every table of the index.
pub const INDEX_TABLES: &[&Table] = &[&HOME_INDEX];

/// Outcome of an index claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    Applied,
    /// Held by a live entry of another user, as the index reported it.
    Held(IndexEntry),
}

/// The stored shape of an index entry (no personal data).
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    region: String,
    user_id: String,
    state: IndexState,
    created_at: UnixSeconds,
    expires_at: Option<UnixSeconds>,
}

/// The global home-region index. Cheap to clone.
#[derive(Clone)]
pub struct IndexStore {
    backend: Arc<dyn Backend>,
    instrument: Instrument,
}

fn key(k: &IdentifierKey) -> Key {
    Key::row(k.0.to_vec())
}

fn expiry(e: &IndexEntry, now: UnixSeconds) -> Expiry {
    match e.expires_at {
        Some(at) => Expiry::At { at, now },
        None => Expiry::Never,
    }
}

impl IndexStore {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            instrument: Instrument::new("index"),
        }
    }

    /// Opens (creating if needed) the embedded index in `dir`.
    pub fn open_embedded(dir: &Path) -> Result<Self> {
        let backend = crate::embedded::EmbeddedBackend::open_index(dir)?;
        Ok(Self::new(Arc::new(backend)))
    }

    /// Reports every operation to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn StoreObserver>) -> Self {
        self.instrument.observer = Some(observer);
        self
    }

    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    fn corrupt(&self, reason: impl ToString) -> StoreError {
        StoreError::Corrupt {
            store: self.backend.name().to_owned(),
            table: HOME_INDEX.name,
            op: "decode",
            reason: reason.to_string(),
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<IndexEntry> {
        let s: StoredEntry = codec::decode(bytes).map_err(|e| self.corrupt(e))?;
        Ok(IndexEntry {
            region: RegionCode::parse(&s.region).map_err(|e| self.corrupt(e))?,
            user_id: UserId::parse(&s.user_id).map_err(|e| self.corrupt(e))?,
            state: s.state,
            created_at: s.created_at,
            expires_at: s.expires_at,
        })
    }

    fn encode(&self, e: &IndexEntry) -> Result<Vec<u8>> {
        codec::encode(&StoredEntry {
            region: e.region.to_string(),
            user_id: e.user_id.to_string(),
            state: e.state,
            created_at: e.created_at,
            expires_at: e.expires_at,
        })
        .map_err(|e| self.corrupt(e))
    }

    async fn modify<R: Send>(
        &self,
        k: &IdentifierKey,
        mut decide: impl FnMut(Option<IndexEntry>) -> Result<(Change, R)> + Send,
    ) -> Result<R> {
        backend::modify(self.backend.as_ref(), &HOME_INDEX, &key(k), |bytes| {
            decide(bytes.map(|b| self.decode(b)).transpose()?)
        })
        .await
    }

    /// `modify` deciding first as if the key were free (a claim usually is).
    async fn modify_expecting_free<R: Send>(
        &self,
        k: &IdentifierKey,
        mut decide: impl FnMut(Option<IndexEntry>) -> Result<(Change, R)> + Send,
    ) -> Result<R> {
        backend::modify_expecting_absent(
            self.backend.as_ref(),
            &HOME_INDEX,
            &key(k),
            None,
            |bytes| decide(bytes.map(|b| self.decode(b)).transpose()?),
        )
        .await
    }

    /// The live entry for a key at `now` (expired pending claims are absent).
    pub async fn lookup(&self, k: &IdentifierKey, now: UnixSeconds) -> Result<Option<IndexEntry>> {
        self.instrument
            .run("lookup", async {
                let bytes = self
                    .backend
                    .get(&HOME_INDEX, &key(k), crate::Read::Quorum)
                    .await?;
                Ok(bytes
                    .map(|b| self.decode(&b))
                    .transpose()?
                    .filter(|e| e.is_live(now)))
            })
            .await
    }

    /// Writes `entry` (a pending claim with an expiry) if the key is free,
    /// its holder has expired, or the holder is the same user. Claiming your
    /// own active entry again changes nothing. An entry whose user id names
    /// another region than its own is refused.
    pub async fn claim(
        &self,
        k: &IdentifierKey,
        entry: &IndexEntry,
        now: UnixSeconds,
    ) -> Result<Claim> {
        self.instrument
            .run("claim", self.claim_unless_held(k, entry, None, now))
            .await
    }

    /// [`claim`](Self::claim), treating a live *pending* claim of
    /// `abandoned` as free: the caller (a node of `abandoned`'s region) has
    /// seen that the registration holding it created no user, because it
    /// was cut off. An active entry is never taken over, nor a claim of
    /// another user than `abandoned`, nor one of another region.
    pub async fn take_over(
        &self,
        k: &IdentifierKey,
        entry: &IndexEntry,
        abandoned: &UserId,
        now: UnixSeconds,
    ) -> Result<Claim> {
        self.instrument
            .run(
                "take_over",
                self.claim_unless_held(k, entry, Some(abandoned), now),
            )
            .await
    }

    /// The one claim rule of both operations.
    async fn claim_unless_held(
        &self,
        k: &IdentifierKey,
        entry: &IndexEntry,
        abandoned: Option<&UserId>,
        now: UnixSeconds,
    ) -> Result<Claim> {
        // Neither the claimant nor the user it takes over from may name
        // another region than the entry's.
        for (op, id) in
            std::iter::once(("claim", &entry.user_id)).chain(abandoned.map(|a| ("take_over", a)))
        {
            if id.region() != &entry.region {
                return Err(StoreError::ForeignRecord {
                    store: self.backend.name().to_owned(),
                    region: entry.region.to_string(),
                    table: HOME_INDEX.name,
                    op,
                    id: id.to_string(),
                });
            }
        }
        let value = self.encode(entry)?;
        let takeable = |h: &IndexEntry| {
            abandoned.is_some_and(|a| h.user_id == *a && h.state == IndexState::Pending)
        };
        self.modify_expecting_free(k, |holder| {
            Ok(match holder {
                Some(h) if h.is_live(now) && h.user_id != entry.user_id && !takeable(&h) => {
                    (Change::Keep, Claim::Held(h))
                }
                Some(h) if h.user_id == entry.user_id && h.state == IndexState::Active => {
                    (Change::Keep, Claim::Applied)
                }
                _ => (
                    Change::Put(value.clone(), expiry(entry, now)),
                    Claim::Applied,
                ),
            })
        })
        .await
    }

    /// Makes this user's live claim active and non-expiring.
    pub async fn confirm(
        &self,
        k: &IdentifierKey,
        user_id: &str,
        now: UnixSeconds,
    ) -> Result<Applied> {
        self.instrument
            .run("confirm", async {
                self.modify(k, |current| {
                    Ok(match current {
                        Some(mut e)
                            if e.user_id.as_str() == user_id
                                && e.expires_at.is_none_or(|t| now < t) =>
                        {
                            e.state = IndexState::Active;
                            e.expires_at = None;
                            (Change::Put(self.encode(&e)?, Expiry::Never), Applied::Yes)
                        }
                        _ => (Change::Keep, Applied::No(())),
                    })
                })
                .await
            })
            .await
    }

    /// Deletes the entry if it belongs to this user.
    pub async fn release(&self, k: &IdentifierKey, user_id: &str) -> Result<Applied> {
        self.instrument
            .run("release", async {
                self.modify(k, |current| {
                    Ok(match current {
                        Some(e) if e.user_id.as_str() == user_id => (Change::Delete, Applied::Yes),
                        _ => (Change::Keep, Applied::No(())),
                    })
                })
                .await
            })
            .await
    }

    /// Moves the key from `from`'s user to `to` (an active entry of another
    /// region: a compliance move): applied when `from` holds it, or when
    /// `to`'s user holds it already (a re-run). Anyone else holding it, or
    /// nobody, is `No`. An entry whose user id names another region than
    /// its own is refused.
    pub async fn switch(&self, k: &IdentifierKey, from: &str, to: &IndexEntry) -> Result<Applied> {
        self.instrument
            .run("switch", async {
                if to.user_id.region() != &to.region || to.state != IndexState::Active {
                    return Err(StoreError::ForeignRecord {
                        store: self.backend.name().to_owned(),
                        region: to.region.to_string(),
                        table: HOME_INDEX.name,
                        op: "switch",
                        id: to.user_id.to_string(),
                    });
                }
                let value = self.encode(to)?;
                self.modify(k, |current| {
                    Ok(match current {
                        Some(e) if e.user_id == to.user_id => (Change::Keep, Applied::Yes),
                        Some(e) if e.user_id.as_str() == from => {
                            (Change::Put(value.clone(), Expiry::Never), Applied::Yes)
                        }
                        _ => (Change::Keep, Applied::No(())),
                    })
                })
                .await
            })
            .await
    }

    /// Every live entry, for residency audits (no personal data in it).
    pub async fn scan(&self, now: UnixSeconds) -> Result<Vec<(IdentifierKey, IndexEntry)>> {
        self.instrument
            .run("scan", async {
                let mut out = Vec::new();
                for (k, v) in self.backend.scan(&HOME_INDEX).await? {
                    let ik = IdentifierKey::from_slice(&k.partition)
                        .ok_or_else(|| self.corrupt("key is not 32 bytes"))?;
                    let e = self.decode(&v)?;
                    if e.is_live(now) {
                        out.push((ik, e));
                    }
                }
                Ok(out)
            })
            .await
    }
}
