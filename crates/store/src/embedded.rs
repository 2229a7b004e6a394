//! The embedded backend: one redb database file per region (and one for the
//! index), no server to install.
//!
//! Every write is one serializable redb write transaction committed with
//! `Durability::Immediate` (fsync before the call returns), so a user or
//! credential write is acknowledged only once durable. Conditional writes
//! read and write inside that one transaction, which gives them the same
//! outcome as Scylla's LWT. Expiry is stored with each record, checked on
//! read against the `now` passed in, and swept by `purge_expired`.
//! redb calls are blocking; they run on tokio's blocking pool.

use crate::{
    Applied, Claim, IndexStore, RefreshRecord, RegionStore, Result, RevokeReason, SessionRecord,
    SigningKeyRecord, StoreError, UserRecord, codec,
};
use async_trait::async_trait;
use domicile_core::{
    RegionCode, UnixSeconds,
    ids::UserId,
    index::{IdentifierKey, IndexEntry, IndexState},
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::{path::Path, sync::Arc};

type Bytes = &'static [u8];
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const USERS: TableDefinition<&str, Bytes> = TableDefinition::new("users");
const IDENTIFIERS: TableDefinition<Bytes, Bytes> = TableDefinition::new("users_by_identifier");
const SESSIONS: TableDefinition<&str, Bytes> = TableDefinition::new("sessions");
const REFRESH: TableDefinition<Bytes, Bytes> = TableDefinition::new("refresh_tokens");
const KEYS: TableDefinition<&str, Bytes> = TableDefinition::new("signing_keys");
const INDEX: TableDefinition<Bytes, Bytes> = TableDefinition::new("home_index");

/// Version of the database layout (tables and keys). Records carry their own
/// format version (see `codec`).
const LAYOUT_VERSION: u64 = 1;

/// Errors inside a transaction closure.
enum Fail {
    Db(redb::Error),
    Corrupt(&'static str, String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Fail {
            fn from(e: $t) -> Self {
                Fail::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

fn enc<T: Serialize>(table: &'static str, v: &T) -> Result<Vec<u8>, Fail> {
    codec::encode(v).map_err(|e| Fail::Corrupt(table, e))
}

fn dec<T: for<'de> Deserialize<'de>>(table: &'static str, bytes: &[u8]) -> Result<T, Fail> {
    codec::decode(bytes).map_err(|e| Fail::Corrupt(table, e))
}

/// A redb database and the name used in errors.
#[derive(Clone)]
struct Db {
    db: Arc<Database>,
    name: Arc<str>,
}

impl Db {
    fn open(
        dir: &Path,
        file: &str,
        name: String,
        tables: fn(&redb::WriteTransaction) -> Result<(), Fail>,
    ) -> Result<Self> {
        let be = |reason: String| StoreError::Backend {
            store: name.clone(),
            reason,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| be(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(file);
        let db = Database::create(&path)
            .map_err(|e| be(format!("cannot open {}: {e}", path.display())))?;
        let this = Self {
            db: Arc::new(db),
            name: name.into(),
        };
        this.run_write(|tx| {
            let mut meta = tx.open_table(META)?;
            let found = meta.get("layout_version")?.map(|v| v.value());
            match found {
                None => {
                    meta.insert("layout_version", LAYOUT_VERSION)?;
                }
                Some(v) if v > LAYOUT_VERSION => return Ok(Some(v)),
                // Older layouts would be migrated here, one version at a time.
                Some(_) => {}
            }
            drop(meta);
            tables(tx)?;
            Ok(None)
        })
        .and_then(|future| match future {
            Some(found) => Err(StoreError::FutureFormat {
                store: this.name.to_string(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: LAYOUT_VERSION as u32,
            }),
            None => Ok(()),
        })?;
        Ok(this)
    }

    fn map_err(&self, f: Fail) -> StoreError {
        match f {
            Fail::Db(e) => StoreError::Backend {
                store: self.name.to_string(),
                reason: e.to_string(),
            },
            Fail::Corrupt(table, reason) => StoreError::Corrupt {
                store: self.name.to_string(),
                table,
                reason,
            },
        }
    }

    fn run_write<R>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<R, Fail>,
    ) -> Result<R> {
        let go = || -> Result<R, Fail> {
            let tx = self.db.begin_write()?;
            let r = f(&tx)?;
            tx.commit()?;
            Ok(r)
        };
        go().map_err(|e| self.map_err(e))
    }

    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<R, Fail> + Send + 'static,
    ) -> Result<R> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.run_write(f))
            .await
            .map_err(|e| StoreError::Backend {
                store: self.name.to_string(),
                reason: format!("store task failed: {e}"),
            })?
    }

    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<R, Fail> + Send + 'static,
    ) -> Result<R> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let go = || -> Result<R, Fail> {
                let tx = this.db.begin_read()?;
                f(&tx)
            };
            go().map_err(|e| this.map_err(e))
        })
        .await
        .map_err(|e| StoreError::Backend {
            store: self.name.to_string(),
            reason: format!("store task failed: {e}"),
        })?
    }
}

/// One region's store in `<dir>/region.redb`.
#[derive(Clone)]
pub struct EmbeddedRegion {
    db: Db,
    region: RegionCode,
}

impl EmbeddedRegion {
    /// Opens (creating if needed) the region's database in `dir`.
    pub fn open(dir: &Path, region: &RegionCode) -> Result<Self> {
        let db = Db::open(dir, "region.redb", format!("embedded:{region}"), |tx| {
            tx.open_table(USERS)?;
            tx.open_table(IDENTIFIERS)?;
            tx.open_table(SESSIONS)?;
            tx.open_table(REFRESH)?;
            tx.open_table(KEYS)?;
            Ok(())
        })?;
        Ok(Self {
            db,
            region: region.clone(),
        })
    }
}

fn live(expires_at: UnixSeconds, now: UnixSeconds) -> bool {
    now < expires_at
}

#[async_trait]
impl RegionStore for EmbeddedRegion {
    fn describe(&self) -> String {
        format!("embedded store of region {}", self.region)
    }

    async fn insert_identifier(
        &self,
        key: &IdentifierKey,
        user_id: &str,
    ) -> Result<Applied<String>> {
        let (key, user_id) = (key.0, user_id.to_owned());
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(IDENTIFIERS)?;
                if let Some(v) = t.get(key.as_slice())? {
                    return Ok(Applied::No(dec::<String>(
                        "users_by_identifier",
                        v.value(),
                    )?));
                }
                t.insert(
                    key.as_slice(),
                    enc("users_by_identifier", &user_id)?.as_slice(),
                )?;
                Ok(Applied::Yes)
            })
            .await
    }

    async fn get_identifier(&self, key: &IdentifierKey) -> Result<Option<String>> {
        let key = key.0;
        self.db
            .read(move |tx| {
                let t = tx.open_table(IDENTIFIERS)?;
                t.get(key.as_slice())?
                    .map(|v| dec("users_by_identifier", v.value()))
                    .transpose()
            })
            .await
    }

    async fn replace_identifier(
        &self,
        key: &IdentifierKey,
        expected: &str,
        user_id: &str,
    ) -> Result<Applied> {
        let (key, expected, user_id) = (key.0, expected.to_owned(), user_id.to_owned());
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(IDENTIFIERS)?;
                let holder: Option<String> = t
                    .get(key.as_slice())?
                    .map(|v| dec("users_by_identifier", v.value()))
                    .transpose()?;
                if holder.as_deref() != Some(expected.as_str()) {
                    return Ok(Applied::No(()));
                }
                t.insert(
                    key.as_slice(),
                    enc("users_by_identifier", &user_id)?.as_slice(),
                )?;
                Ok(Applied::Yes)
            })
            .await
    }

    async fn delete_identifier(&self, key: &IdentifierKey, expected: &str) -> Result<Applied> {
        let (key, expected) = (key.0, expected.to_owned());
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(IDENTIFIERS)?;
                let holder: Option<String> = t
                    .get(key.as_slice())?
                    .map(|v| dec("users_by_identifier", v.value()))
                    .transpose()?;
                if holder.as_deref() != Some(expected.as_str()) {
                    return Ok(Applied::No(()));
                }
                t.remove(key.as_slice())?;
                Ok(Applied::Yes)
            })
            .await
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<Applied> {
        let user = user.clone();
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(USERS)?;
                if t.get(user.user_id.as_str())?.is_some() {
                    return Ok(Applied::No(()));
                }
                t.insert(user.user_id.as_str(), enc("users", &user)?.as_slice())?;
                Ok(Applied::Yes)
            })
            .await
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        let id = user_id.to_owned();
        self.db
            .read(move |tx| {
                let t = tx.open_table(USERS)?;
                t.get(id.as_str())?
                    .map(|v| dec("users", v.value()))
                    .transpose()
            })
            .await
    }

    async fn update_user(&self, user: &UserRecord, expected_version: u64) -> Result<Applied> {
        let user = user.clone();
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(USERS)?;
                let current: Option<UserRecord> = t
                    .get(user.user_id.as_str())?
                    .map(|v| dec("users", v.value()))
                    .transpose()?;
                match current {
                    Some(c) if c.version == expected_version => {
                        t.insert(user.user_id.as_str(), enc("users", &user)?.as_slice())?;
                        Ok(Applied::Yes)
                    }
                    _ => Ok(Applied::No(())),
                }
            })
            .await
    }

    async fn delete_user(&self, user_id: &str) -> Result<Applied> {
        let id = user_id.to_owned();
        self.db
            .write(move |tx| {
                let removed = tx.open_table(USERS)?.remove(id.as_str())?.is_some();
                Ok(if removed {
                    Applied::Yes
                } else {
                    Applied::No(())
                })
            })
            .await
    }

    async fn count_users(&self) -> Result<u64> {
        self.db.read(|tx| Ok(tx.open_table(USERS)?.len()?)).await
    }

    async fn insert_session(&self, s: &SessionRecord, now: UnixSeconds) -> Result<Applied> {
        let s = s.clone();
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(SESSIONS)?;
                let existing: Option<SessionRecord> = t
                    .get(s.session_id.as_str())?
                    .map(|v| dec("sessions", v.value()))
                    .transpose()?;
                if existing.is_some_and(|e| live(e.expires_at, now)) {
                    return Ok(Applied::No(()));
                }
                t.insert(s.session_id.as_str(), enc("sessions", &s)?.as_slice())?;
                Ok(Applied::Yes)
            })
            .await
    }

    async fn get_session(
        &self,
        session_id: &str,
        now: UnixSeconds,
    ) -> Result<Option<SessionRecord>> {
        let id = session_id.to_owned();
        self.db
            .read(move |tx| {
                let t = tx.open_table(SESSIONS)?;
                let s: Option<SessionRecord> = t
                    .get(id.as_str())?
                    .map(|v| dec("sessions", v.value()))
                    .transpose()?;
                Ok(s.filter(|s| live(s.expires_at, now)))
            })
            .await
    }

    async fn revoke_session(
        &self,
        session_id: &str,
        now: UnixSeconds,
        reason: RevokeReason,
    ) -> Result<Applied> {
        let id = session_id.to_owned();
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(SESSIONS)?;
                let s: Option<SessionRecord> = t
                    .get(id.as_str())?
                    .map(|v| dec("sessions", v.value()))
                    .transpose()?;
                match s {
                    Some(mut s) => {
                        if s.revoked_at.is_none() {
                            s.revoked_at = Some(now);
                            s.revoked_reason = Some(reason);
                            t.insert(id.as_str(), enc("sessions", &s)?.as_slice())?;
                        }
                        Ok(Applied::Yes)
                    }
                    None => Ok(Applied::No(())),
                }
            })
            .await
    }

    async fn insert_refresh(&self, r: &RefreshRecord, now: UnixSeconds) -> Result<Applied> {
        let r = r.clone();
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(REFRESH)?;
                let existing: Option<RefreshRecord> = t
                    .get(r.token_hash.as_slice())?
                    .map(|v| dec("refresh_tokens", v.value()))
                    .transpose()?;
                if existing.is_some_and(|e| live(e.expires_at, now)) {
                    return Ok(Applied::No(()));
                }
                t.insert(
                    r.token_hash.as_slice(),
                    enc("refresh_tokens", &r)?.as_slice(),
                )?;
                Ok(Applied::Yes)
            })
            .await
    }

    async fn get_refresh(
        &self,
        hash: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<Option<RefreshRecord>> {
        let hash = *hash;
        self.db
            .read(move |tx| {
                let t = tx.open_table(REFRESH)?;
                let r: Option<RefreshRecord> = t
                    .get(hash.as_slice())?
                    .map(|v| dec("refresh_tokens", v.value()))
                    .transpose()?;
                Ok(r.filter(|r| live(r.expires_at, now)))
            })
            .await
    }

    async fn mark_refresh_used(&self, hash: &[u8; 32], now: UnixSeconds) -> Result<Applied> {
        let hash = *hash;
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(REFRESH)?;
                let r: Option<RefreshRecord> = t
                    .get(hash.as_slice())?
                    .map(|v| dec("refresh_tokens", v.value()))
                    .transpose()?;
                match r {
                    Some(mut r) if r.used_at.is_none() && live(r.expires_at, now) => {
                        r.used_at = Some(now);
                        t.insert(hash.as_slice(), enc("refresh_tokens", &r)?.as_slice())?;
                        Ok(Applied::Yes)
                    }
                    _ => Ok(Applied::No(())),
                }
            })
            .await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.db
            .read(|tx| {
                let t = tx.open_table(KEYS)?;
                let mut out = Vec::new();
                for row in t.iter()? {
                    let (_, v) = row?;
                    out.push(dec("signing_keys", v.value())?);
                }
                Ok(out)
            })
            .await
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<Applied> {
        let key = key.clone();
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(KEYS)?;
                if t.get(key.kid.as_str())?.is_some() {
                    return Ok(Applied::No(()));
                }
                t.insert(key.kid.as_str(), enc("signing_keys", &key)?.as_slice())?;
                Ok(Applied::Yes)
            })
            .await
    }

    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64> {
        self.db
            .write(move |tx| {
                let mut removed = 0;
                {
                    let mut t = tx.open_table(SESSIONS)?;
                    let mut dead = Vec::new();
                    for row in t.iter()? {
                        let (k, v) = row?;
                        let s: SessionRecord = dec("sessions", v.value())?;
                        if !live(s.expires_at, now) {
                            dead.push(k.value().to_owned());
                        }
                    }
                    for k in &dead {
                        t.remove(k.as_str())?;
                    }
                    removed += dead.len() as u64;
                }
                let mut t = tx.open_table(REFRESH)?;
                let mut dead = Vec::new();
                for row in t.iter()? {
                    let (k, v) = row?;
                    let r: RefreshRecord = dec("refresh_tokens", v.value())?;
                    if !live(r.expires_at, now) {
                        dead.push(k.value().to_vec());
                    }
                }
                for k in &dead {
                    t.remove(k.as_slice())?;
                }
                Ok(removed + dead.len() as u64)
            })
            .await
    }
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

impl StoredEntry {
    fn from_entry(e: &IndexEntry) -> Self {
        Self {
            region: e.region.to_string(),
            user_id: e.user_id.to_string(),
            state: e.state,
            created_at: e.created_at,
            expires_at: e.expires_at,
        }
    }

    fn into_entry(self) -> Result<IndexEntry, Fail> {
        let region = RegionCode::parse(&self.region)
            .map_err(|e| Fail::Corrupt("home_index", e.to_string()))?;
        let user_id =
            UserId::parse(&self.user_id).map_err(|e| Fail::Corrupt("home_index", e.to_string()))?;
        Ok(IndexEntry {
            region,
            user_id,
            state: self.state,
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

fn get_entry(t: &impl ReadableTable<Bytes, Bytes>, key: &[u8]) -> Result<Option<IndexEntry>, Fail> {
    match t.get(key)? {
        Some(v) => Ok(Some(
            dec::<StoredEntry>("home_index", v.value())?.into_entry()?,
        )),
        None => Ok(None),
    }
}

/// The home-region index in `<dir>/index.redb`.
#[derive(Clone)]
pub struct EmbeddedIndex {
    db: Db,
}

impl EmbeddedIndex {
    pub fn open(dir: &Path) -> Result<Self> {
        let db = Db::open(dir, "index.redb", "embedded:index".into(), |tx| {
            tx.open_table(INDEX)?;
            Ok(())
        })?;
        Ok(Self { db })
    }
}

#[async_trait]
impl IndexStore for EmbeddedIndex {
    fn describe(&self) -> String {
        "embedded home-region index".into()
    }

    async fn lookup(&self, key: &IdentifierKey, now: UnixSeconds) -> Result<Option<IndexEntry>> {
        let key = key.0;
        self.db
            .read(move |tx| Ok(get_entry(&tx.open_table(INDEX)?, &key)?.filter(|e| e.is_live(now))))
            .await
    }

    async fn claim(
        &self,
        key: &IdentifierKey,
        entry: &IndexEntry,
        now: UnixSeconds,
    ) -> Result<Claim> {
        let (key, entry) = (key.0, entry.clone());
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(INDEX)?;
                if let Some(holder) = get_entry(&t, &key)? {
                    if holder.is_live(now) && holder.user_id != entry.user_id {
                        return Ok(Claim::Held(holder));
                    }
                    if holder.user_id == entry.user_id && holder.state == IndexState::Active {
                        // Claiming again what is already yours changes nothing.
                        return Ok(Claim::Applied);
                    }
                }
                t.insert(
                    key.as_slice(),
                    enc("home_index", &StoredEntry::from_entry(&entry))?.as_slice(),
                )?;
                Ok(Claim::Applied)
            })
            .await
    }

    async fn confirm(
        &self,
        key: &IdentifierKey,
        user_id: &str,
        now: UnixSeconds,
    ) -> Result<Applied> {
        let (key, user_id) = (key.0, user_id.to_owned());
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(INDEX)?;
                match get_entry(&t, &key)? {
                    Some(mut e) if e.user_id.as_str() == user_id && e.is_live(now) => {
                        e.state = IndexState::Active;
                        e.expires_at = None;
                        t.insert(
                            key.as_slice(),
                            enc("home_index", &StoredEntry::from_entry(&e))?.as_slice(),
                        )?;
                        Ok(Applied::Yes)
                    }
                    _ => Ok(Applied::No(())),
                }
            })
            .await
    }

    async fn release(&self, key: &IdentifierKey, user_id: &str) -> Result<Applied> {
        let (key, user_id) = (key.0, user_id.to_owned());
        self.db
            .write(move |tx| {
                let mut t = tx.open_table(INDEX)?;
                match get_entry(&t, &key)? {
                    Some(e) if e.user_id.as_str() == user_id => {
                        t.remove(key.as_slice())?;
                        Ok(Applied::Yes)
                    }
                    _ => Ok(Applied::No(())),
                }
            })
            .await
    }

    async fn scan(&self, now: UnixSeconds) -> Result<Vec<(IdentifierKey, IndexEntry)>> {
        self.db
            .read(move |tx| {
                let t = tx.open_table(INDEX)?;
                let mut out = Vec::new();
                for row in t.iter()? {
                    let (k, v) = row?;
                    let e = dec::<StoredEntry>("home_index", v.value())?.into_entry()?;
                    let key = IdentifierKey::from_slice(k.value())
                        .ok_or(Fail::Corrupt("home_index", "key is not 32 bytes".into()))?;
                    if e.is_live(now) {
                        out.push((key, e));
                    }
                }
                Ok(out)
            })
            .await
    }
}
