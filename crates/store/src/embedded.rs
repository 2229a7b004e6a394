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
//!
//! A database file is opened once per process: a second `open` of the same
//! file in one process (two nodes of a region in one test, a canary beside
//! the stable node) shares the open database. Across processes the file is
//! locked: several nodes of one region in separate processes need Scylla.

use crate::{
    Applied, AuditRecord, Claim, IndexStore, RefreshRecord, RegionStore, Result, RevokeReason,
    SessionRecord, SigningKeyRecord, StoreError, UserRecord, codec,
};
use async_trait::async_trait;
use domicile_core::{
    RegionCode, UnixSeconds,
    ids::UserId,
    index::{IdentifierKey, IndexEntry, IndexState},
};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::{path::Path, sync::Arc};

/// Every table maps bytes to a versioned record (see `codec`).
type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const USERS: Def = TableDefinition::new("users");
const IDENTIFIERS: Def = TableDefinition::new("users_by_identifier");
const SESSIONS: Def = TableDefinition::new("sessions");
const REFRESH: Def = TableDefinition::new("refresh_tokens");
const KEYS: Def = TableDefinition::new("signing_keys");
/// Keyed by `user id, 0x00, event id`: a user's events are one key range.
const AUDIT: Def = TableDefinition::new("audit_log");
const INDEX: Def = TableDefinition::new("home_index");

/// Version of the database layout (tables and keys). Records carry their own
/// format version (see `codec`).
const LAYOUT_VERSION: u64 = 1;

/// Errors inside a transaction closure.
enum Fail {
    Db(redb::Error),
    Corrupt(String, String),
}

/// Most conditional writes one group commit carries.
const MAX_BATCH: usize = 512;

/// A conditional write waiting for a group commit. Given the shared write
/// transaction (or `None` when it could not begin) it does its read-decide-
/// write and returns how to report its outcome once the commit is known.
type Job = Box<
    dyn FnOnce(Option<&redb::WriteTransaction>) -> Box<dyn FnOnce(Result<(), String>) + Send>
        + Send,
>;

/// The group-commit writer: takes every write waiting, runs them in arrival
/// order in one transaction (each sees the ones before it, so conditional
/// writes decide exactly as if alone), commits once with fsync, then
/// acknowledges each. Durable acknowledgements, one fsync per batch.
fn writer_loop(db: std::sync::Weak<Database>, rx: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let Some(db) = db.upgrade() else {
            let done: Vec<_> = batch.into_iter().map(|job| job(None)).collect();
            done.into_iter()
                .for_each(|d| d(Err("the store was closed".into())));
            return;
        };
        let (done, committed): (Vec<_>, Result<(), String>) = match db
            .begin_write()
            .map_err(|e| e.to_string())
            .and_then(|mut tx| {
                tx.set_durability(Durability::Immediate)
                    .map_err(|e| e.to_string())?;
                Ok(tx)
            }) {
            Ok(tx) => {
                let done = batch.into_iter().map(|job| job(Some(&tx))).collect();
                (done, tx.commit().map_err(|e| e.to_string()))
            }
            Err(e) => (batch.into_iter().map(|job| job(None)).collect(), Err(e)),
        };
        // Let go of the database before anyone hears back: a caller that
        // closes the store right after its last write can reopen it at once.
        drop(db);
        done.into_iter().for_each(|d| d(committed.clone()));
    }
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

fn load<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    def: Def,
    key: &[u8],
) -> Result<Option<T>, Fail> {
    match t.get(key)? {
        Some(v) => codec::decode(v.value())
            .map(Some)
            .map_err(|e| Fail::Corrupt(def.name().to_owned(), e)),
        None => Ok(None),
    }
}

/// What a conditional write decides after reading the current record.
enum Change<T> {
    Keep,
    Put(T),
    Delete,
}

/// Databases open in this process, by canonical path (weak: the last
/// handle to go closes the file).
static OPEN: std::sync::Mutex<Vec<(std::path::PathBuf, std::sync::Weak<Database>)>> =
    std::sync::Mutex::new(Vec::new());

/// Opens `path`, or shares the database this process already has open there.
fn shared_database(path: &Path) -> Result<Arc<Database>, String> {
    let mut open = OPEN
        .lock()
        .map_err(|_| "the open-database registry is poisoned".to_owned())?;
    open.retain(|(_, db)| db.strong_count() > 0);
    let create = || {
        // A handle dropped by another thread may still be closing the file.
        let mut tries = 0;
        loop {
            match Database::create(path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => break r.map_err(|e| format!("cannot open {}: {e}", path.display())),
            }
        }
    };
    let canonical = match path.canonicalize() {
        Ok(c) => c,
        // Not there yet: nobody here has it open.
        Err(_) => {
            let db = Arc::new(create()?);
            if let Ok(c) = path.canonicalize() {
                open.push((c, Arc::downgrade(&db)));
            }
            return Ok(db);
        }
    };
    if let Some(db) = open
        .iter()
        .find(|(p, _)| p == &canonical)
        .and_then(|(_, db)| db.upgrade())
    {
        return Ok(db);
    }
    let db = Arc::new(create()?);
    open.push((canonical, Arc::downgrade(&db)));
    Ok(db)
}

/// A redb database and the name used in errors.
#[derive(Clone)]
struct Db {
    db: Arc<Database>,
    name: Arc<str>,
    writer: std::sync::mpsc::Sender<Job>,
}

impl Db {
    fn open(dir: &Path, file: &str, name: String, tables: &[Def]) -> Result<Self> {
        let be = |reason: String| StoreError::Backend {
            store: name.clone(),
            reason,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| be(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(file);
        let db = shared_database(&path).map_err(be)?;
        let (writer, jobs) = std::sync::mpsc::channel::<Job>();
        let weak = Arc::downgrade(&db);
        std::thread::Builder::new()
            .name(format!("redb-writer {name}"))
            .spawn(move || writer_loop(weak, jobs))
            .map_err(|e| be(format!("cannot start the writer thread: {e}")))?;
        let this = Self {
            db,
            name: name.into(),
            writer,
        };
        let tables = tables.to_vec();
        let found = this.run_write(move |tx| {
            let mut meta = tx.open_table(META)?;
            let found = meta.get("layout_version")?.map(|v| v.value());
            if found.is_none() {
                meta.insert("layout_version", LAYOUT_VERSION)?;
            }
            // Older layouts would be migrated here, one version at a time.
            drop(meta);
            for def in tables {
                tx.open_table(def)?;
            }
            Ok(found)
        })?;
        match found {
            Some(v) if v > LAYOUT_VERSION => Err(StoreError::FutureFormat {
                store: this.name.to_string(),
                found: u32::try_from(v).unwrap_or(u32::MAX),
                supported: LAYOUT_VERSION as u32,
            }),
            _ => Ok(this),
        }
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
            let mut tx = self.db.begin_write()?;
            // Explicit, not the library default: acknowledged means fsynced.
            tx.set_durability(Durability::Immediate)
                .map_err(|e| Fail::Db(redb::Error::from(e)))?;
            let r = f(&tx)?;
            tx.commit()?;
            Ok(r)
        };
        go().map_err(|e| self.map_err(e))
    }

    /// Runs blocking redb work on tokio's blocking pool.
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| StoreError::Backend {
                store: self.name.to_string(),
                reason: format!("store task failed: {e}"),
            })?
    }

    /// Reads one record.
    async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        def: Def,
        key: Vec<u8>,
    ) -> Result<Option<T>> {
        self.blocking(move |db| {
            let go = || -> Result<Option<T>, Fail> {
                load(&db.db.begin_read()?.open_table(def)?, def, &key)
            };
            go().map_err(|e| db.map_err(e))
        })
        .await
    }

    /// Number of records in a table.
    async fn count(&self, def: Def) -> Result<u64> {
        self.blocking(move |db| {
            let go = || -> Result<u64, Fail> { Ok(db.db.begin_read()?.open_table(def)?.len()?) };
            go().map_err(|e| db.map_err(e))
        })
        .await
    }

    /// Reads every record of a table.
    async fn scan<T: DeserializeOwned + Send + 'static>(
        &self,
        def: Def,
    ) -> Result<Vec<(Vec<u8>, T)>> {
        self.blocking(move |db| {
            let go = || -> Result<Vec<(Vec<u8>, T)>, Fail> {
                let t = db.db.begin_read()?.open_table(def)?;
                let mut out = Vec::new();
                for row in t.iter()? {
                    let (k, v) = row?;
                    let rec = codec::decode(v.value())
                        .map_err(|e| Fail::Corrupt(def.name().to_owned(), e))?;
                    out.push((k.value().to_vec(), rec));
                }
                Ok(out)
            };
            go().map_err(|e| db.map_err(e))
        })
        .await
    }

    /// A conditional write (Scylla's LWT): reads the record, lets `decide`
    /// choose a change and an outcome, applies the change and commits
    /// durably, all in one serializable write transaction.
    async fn modify<T, R>(
        &self,
        def: Def,
        key: Vec<u8>,
        decide: impl FnOnce(Option<T>) -> (Change<T>, R) + Send + 'static,
    ) -> Result<R>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        R: Send + 'static,
    {
        let (done, outcome) = tokio::sync::oneshot::channel::<Result<R>>();
        let name = self.name.clone();
        let job: Job = Box::new(move |tx: Option<&redb::WriteTransaction>| {
            let result: Option<Result<R, Fail>> = tx.map(|tx| {
                let mut t = tx.open_table(def)?;
                let (change, out) = decide(load(&t, def, &key)?);
                match change {
                    Change::Keep => {}
                    Change::Put(v) => {
                        let bytes = codec::encode(&v)
                            .map_err(|e| Fail::Corrupt(def.name().to_owned(), e))?;
                        t.insert(key.as_slice(), bytes.as_slice())?;
                    }
                    Change::Delete => {
                        t.remove(key.as_slice())?;
                    }
                }
                Ok(out)
            });
            Box::new(move |committed: Result<(), String>| {
                let store = name.to_string();
                let reply = match (committed, result) {
                    (Err(reason), _) => Err(StoreError::Backend { store, reason }),
                    (Ok(()), Some(Ok(out))) => Ok(out),
                    (Ok(()), Some(Err(Fail::Db(e)))) => Err(StoreError::Backend {
                        store,
                        reason: e.to_string(),
                    }),
                    (Ok(()), Some(Err(Fail::Corrupt(table, reason)))) => Err(StoreError::Corrupt {
                        store,
                        table,
                        reason,
                    }),
                    (Ok(()), None) => Err(StoreError::Backend {
                        store,
                        reason: "no write transaction".into(),
                    }),
                };
                let _ = done.send(reply);
            })
        });
        let gone = || StoreError::Backend {
            store: self.name.to_string(),
            reason: "the store's writer has stopped".into(),
        };
        self.writer.send(job).map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }

    /// Deletes the records of `def` for which `dead` holds; returns how many.
    fn purge<T: DeserializeOwned>(
        &self,
        tx: &redb::WriteTransaction,
        def: Def,
        dead: impl Fn(&T) -> bool,
    ) -> Result<u64, Fail> {
        let mut t = tx.open_table(def)?;
        let mut doomed = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let rec: T =
                codec::decode(v.value()).map_err(|e| Fail::Corrupt(def.name().to_owned(), e))?;
            if dead(&rec) {
                doomed.push(k.value().to_vec());
            }
        }
        for k in &doomed {
            t.remove(k.as_slice())?;
        }
        Ok(doomed.len() as u64)
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
        let db = Db::open(
            dir,
            "region.redb",
            format!("embedded:{region}"),
            &[USERS, IDENTIFIERS, SESSIONS, REFRESH, KEYS, AUDIT],
        )?;
        Ok(Self {
            db,
            region: region.clone(),
        })
    }
}

fn live(expires_at: UnixSeconds, now: UnixSeconds) -> bool {
    now < expires_at
}

fn audit_key(user_id: &str, event_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(user_id.len() + 1 + event_id.len());
    k.extend_from_slice(user_id.as_bytes());
    k.push(0);
    k.extend_from_slice(event_id.as_bytes());
    k
}

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// `INSERT … IF NOT EXISTS` as a decision.
fn if_absent<T>(value: T) -> impl FnOnce(Option<T>) -> (Change<T>, Applied) {
    move |current| match current {
        Some(_) => (Change::Keep, Applied::No(())),
        None => (Change::Put(value), Applied::Yes),
    }
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
        let user_id = user_id.to_owned();
        self.db
            .modify(
                IDENTIFIERS,
                key.0.to_vec(),
                move |holder: Option<String>| match holder {
                    Some(h) => (Change::Keep, Applied::No(h)),
                    None => (Change::Put(user_id), Applied::Yes),
                },
            )
            .await
    }

    async fn get_identifier(&self, key: &IdentifierKey) -> Result<Option<String>> {
        self.db.get(IDENTIFIERS, key.0.to_vec()).await
    }

    async fn replace_identifier(
        &self,
        key: &IdentifierKey,
        expected: &str,
        user_id: &str,
    ) -> Result<Applied> {
        let (expected, user_id) = (expected.to_owned(), user_id.to_owned());
        self.db
            .modify(
                IDENTIFIERS,
                key.0.to_vec(),
                move |holder: Option<String>| match holder {
                    Some(h) if h == expected => (Change::Put(user_id), Applied::Yes),
                    _ => (Change::Keep, Applied::No(())),
                },
            )
            .await
    }

    async fn delete_identifier(&self, key: &IdentifierKey, expected: &str) -> Result<Applied> {
        let expected = expected.to_owned();
        self.db
            .modify(
                IDENTIFIERS,
                key.0.to_vec(),
                move |holder: Option<String>| match holder {
                    Some(h) if h == expected => (Change::Delete, Applied::Yes),
                    _ => (Change::Keep, Applied::No(())),
                },
            )
            .await
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<Applied> {
        self.db
            .modify(USERS, bytes(&user.user_id), if_absent(user.clone()))
            .await
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        self.db.get(USERS, bytes(user_id)).await
    }

    async fn update_user(&self, user: &UserRecord, expected_version: u64) -> Result<Applied> {
        let user = user.clone();
        self.db
            .modify(
                USERS,
                bytes(&user.user_id),
                move |current: Option<UserRecord>| match current {
                    Some(c) if c.version == expected_version => (Change::Put(user), Applied::Yes),
                    _ => (Change::Keep, Applied::No(())),
                },
            )
            .await
    }

    async fn delete_user(&self, user_id: &str) -> Result<Applied> {
        self.db
            .modify(
                USERS,
                bytes(user_id),
                |current: Option<UserRecord>| match current {
                    Some(_) => (Change::Delete, Applied::Yes),
                    None => (Change::Keep, Applied::No(())),
                },
            )
            .await
    }

    async fn count_users(&self) -> Result<u64> {
        self.db.count(USERS).await
    }

    async fn scan_users(&self) -> Result<Vec<UserRecord>> {
        Ok(self
            .db
            .scan(USERS)
            .await?
            .into_iter()
            .map(|(_, u)| u)
            .collect())
    }

    async fn count_sessions(&self) -> Result<u64> {
        self.db.count(SESSIONS).await
    }

    async fn insert_session(&self, s: &SessionRecord, now: UnixSeconds) -> Result<Applied> {
        let s = s.clone();
        self.db
            .modify(
                SESSIONS,
                bytes(&s.session_id),
                move |current: Option<SessionRecord>| match current {
                    Some(e) if live(e.expires_at, now) => (Change::Keep, Applied::No(())),
                    _ => (Change::Put(s), Applied::Yes),
                },
            )
            .await
    }

    async fn get_session(
        &self,
        session_id: &str,
        now: UnixSeconds,
    ) -> Result<Option<SessionRecord>> {
        let s: Option<SessionRecord> = self.db.get(SESSIONS, bytes(session_id)).await?;
        Ok(s.filter(|s| live(s.expires_at, now)))
    }

    async fn revoke_session(
        &self,
        session_id: &str,
        now: UnixSeconds,
        reason: RevokeReason,
    ) -> Result<Applied> {
        self.db
            .modify(
                SESSIONS,
                bytes(session_id),
                move |current: Option<SessionRecord>| match current {
                    Some(s) if s.revoked_at.is_some() => (Change::Keep, Applied::Yes),
                    Some(mut s) => {
                        s.revoked_at = Some(now);
                        s.revoked_reason = Some(reason);
                        (Change::Put(s), Applied::Yes)
                    }
                    None => (Change::Keep, Applied::No(())),
                },
            )
            .await
    }

    async fn insert_refresh(&self, r: &RefreshRecord, now: UnixSeconds) -> Result<Applied> {
        let r = r.clone();
        self.db
            .modify(
                REFRESH,
                r.token_hash.to_vec(),
                move |current: Option<RefreshRecord>| match current {
                    Some(e) if live(e.expires_at, now) => (Change::Keep, Applied::No(())),
                    _ => (Change::Put(r), Applied::Yes),
                },
            )
            .await
    }

    async fn get_refresh(
        &self,
        hash: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<Option<RefreshRecord>> {
        let r: Option<RefreshRecord> = self.db.get(REFRESH, hash.to_vec()).await?;
        Ok(r.filter(|r| live(r.expires_at, now)))
    }

    async fn mark_refresh_used(&self, hash: &[u8; 32], now: UnixSeconds) -> Result<Applied> {
        self.db
            .modify(
                REFRESH,
                hash.to_vec(),
                move |current: Option<RefreshRecord>| match current {
                    Some(mut r) if r.used_at.is_none() && live(r.expires_at, now) => {
                        r.used_at = Some(now);
                        (Change::Put(r), Applied::Yes)
                    }
                    _ => (Change::Keep, Applied::No(())),
                },
            )
            .await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        Ok(self
            .db
            .scan(KEYS)
            .await?
            .into_iter()
            .map(|(_, k)| k)
            .collect())
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<Applied> {
        self.db
            .modify(KEYS, bytes(&key.kid), if_absent(key.clone()))
            .await
    }

    async fn append_audit(&self, events: &[AuditRecord]) -> Result<()> {
        crate::check_audit_region(events, &self.region).map_err(|reason| StoreError::Backend {
            store: self.describe(),
            reason,
        })?;
        // All queued at once: the writer commits them together.
        let writes = events.iter().map(|e| {
            let e = e.clone();
            self.db.modify(
                AUDIT,
                audit_key(&e.user_id, &e.event_id),
                move |_: Option<AuditRecord>| (Change::Put(e), ()),
            )
        });
        futures::future::try_join_all(writes).await.map(|_| ())
    }

    async fn audit_for_user(&self, user_id: &str, limit: usize) -> Result<Vec<AuditRecord>> {
        let start = audit_key(user_id, "");
        let mut end = start.clone();
        if let Some(last) = end.last_mut() {
            *last = 1;
        }
        self.db
            .blocking(move |db| {
                let go = || -> Result<Vec<AuditRecord>, Fail> {
                    let t = db.db.begin_read()?.open_table(AUDIT)?;
                    let mut out = Vec::new();
                    for row in t.range(start.as_slice()..end.as_slice())?.rev().take(limit) {
                        let (_, v) = row?;
                        out.push(
                            codec::decode(v.value())
                                .map_err(|e| Fail::Corrupt(AUDIT.name().to_owned(), e))?,
                        );
                    }
                    Ok(out)
                };
                go().map_err(|e| db.map_err(e))
            })
            .await
    }

    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64> {
        self.db
            .blocking(move |db| {
                db.run_write(|tx| {
                    let sessions =
                        db.purge(tx, SESSIONS, |s: &SessionRecord| !live(s.expires_at, now))?;
                    let tokens =
                        db.purge(tx, REFRESH, |r: &RefreshRecord| !live(r.expires_at, now))?;
                    let audit = db.purge(tx, AUDIT, |a: &AuditRecord| !live(a.expires_at, now))?;
                    Ok(sessions + tokens + audit)
                })
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

    fn into_entry(self) -> Result<IndexEntry, StoreError> {
        let region = RegionCode::parse(&self.region).map_err(corrupt_index)?;
        let user_id = UserId::parse(&self.user_id).map_err(corrupt_index)?;
        Ok(IndexEntry {
            region,
            user_id,
            state: self.state,
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

/// The home-region index in `<dir>/index.redb`.
#[derive(Clone)]
pub struct EmbeddedIndex {
    db: Db,
}

impl EmbeddedIndex {
    pub fn open(dir: &Path) -> Result<Self> {
        let db = Db::open(dir, "index.redb", "embedded:index".into(), &[INDEX])?;
        Ok(Self { db })
    }
}

fn corrupt_index(e: impl ToString) -> StoreError {
    StoreError::Corrupt {
        store: "embedded:index".into(),
        table: INDEX.name().to_owned(),
        reason: e.to_string(),
    }
}

#[async_trait]
impl IndexStore for EmbeddedIndex {
    fn describe(&self) -> String {
        "embedded home-region index".into()
    }

    async fn lookup(&self, key: &IdentifierKey, now: UnixSeconds) -> Result<Option<IndexEntry>> {
        let stored: Option<StoredEntry> = self.db.get(INDEX, key.0.to_vec()).await?;
        Ok(stored
            .map(StoredEntry::into_entry)
            .transpose()?
            .filter(|e| e.is_live(now)))
    }

    async fn claim(
        &self,
        key: &IdentifierKey,
        entry: &IndexEntry,
        now: UnixSeconds,
    ) -> Result<Claim> {
        let entry = entry.clone();
        self.db
            .modify(
                INDEX,
                key.0.to_vec(),
                move |current: Option<StoredEntry>| {
                    let holder = match current.map(StoredEntry::into_entry).transpose() {
                        Ok(h) => h,
                        Err(e) => return (Change::Keep, Err(e)),
                    };
                    match holder {
                        Some(h) if h.is_live(now) && h.user_id != entry.user_id => {
                            (Change::Keep, Ok(Claim::Held(h)))
                        }
                        // Claiming again what is already yours and active changes nothing.
                        Some(h) if h.user_id == entry.user_id && h.state == IndexState::Active => {
                            (Change::Keep, Ok(Claim::Applied))
                        }
                        _ => (
                            Change::Put(StoredEntry::from_entry(&entry)),
                            Ok(Claim::Applied),
                        ),
                    }
                },
            )
            .await?
    }

    async fn confirm(
        &self,
        key: &IdentifierKey,
        user_id: &str,
        now: UnixSeconds,
    ) -> Result<Applied> {
        let user_id = user_id.to_owned();
        self.db
            .modify(
                INDEX,
                key.0.to_vec(),
                move |current: Option<StoredEntry>| match current {
                    Some(mut e) if e.user_id == user_id && e.expires_at.is_none_or(|t| now < t) => {
                        e.state = IndexState::Active;
                        e.expires_at = None;
                        (Change::Put(e), Applied::Yes)
                    }
                    _ => (Change::Keep, Applied::No(())),
                },
            )
            .await
    }

    async fn release(&self, key: &IdentifierKey, user_id: &str) -> Result<Applied> {
        let user_id = user_id.to_owned();
        self.db
            .modify(
                INDEX,
                key.0.to_vec(),
                move |current: Option<StoredEntry>| match current {
                    Some(e) if e.user_id == user_id => (Change::Delete, Applied::Yes),
                    _ => (Change::Keep, Applied::No(())),
                },
            )
            .await
    }

    async fn scan(&self, now: UnixSeconds) -> Result<Vec<(IdentifierKey, IndexEntry)>> {
        let mut out = Vec::new();
        for (k, stored) in self.db.scan::<StoredEntry>(INDEX).await? {
            let key = IdentifierKey::from_slice(&k)
                .ok_or_else(|| corrupt_index("key is not 32 bytes"))?;
            let entry = stored.into_entry()?;
            if entry.is_live(now) {
                out.push((key, entry));
            }
        }
        Ok(out)
    }
}
