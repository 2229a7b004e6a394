//! The embedded backend: one redb database file per region (`region.redb`)
//! and one for the index (`index.redb`), no server to install.
//!
//! This module opens databases and checks their layout version; `writer`
//! is the group-commit thread that makes every write durable before it is
//! acknowledged (`Durability::Immediate`); `tables` implements the storage
//! primitive (`Backend`) on redb tables. Conditional writes read and write
//! inside one serializable write transaction, which gives them the outcome
//! of Scylla's LWT. redb calls are blocking; they run on tokio's blocking
//! pool. This backend has no domain logic: the aggregates decide.
//!
//! A database file is opened once per process: a second `open` of the same
//! file in one process (two nodes of a region in one test, a canary beside
//! the stable node) shares the open database. Across processes the file is
//! locked: several nodes of one region in separate processes need Scylla.

mod migrate;
mod tables;
mod writer;

use crate::{Result, StoreError, Table};
use domicile_core::RegionCode;
use redb::{Database, ReadableTable, TableDefinition};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Weak, mpsc},
};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Version of the database layout (tables, keys, value envelope). Records
/// carry their own format version (see `codec`). Layout 1 (one table per
/// record kind, keyed by id, values without expiry) predates the generic
/// table model; layout 2 kept refresh tokens by hash; version 3 keeps them
/// in their session's partition. Older layouts are migrated on open
/// (`migrate`).
pub const LAYOUT_VERSION: u64 = 3;

/// Layouts this build can migrate from.
fn migratable(v: u64) -> bool {
    matches!(v, 1 | 2)
}

/// Databases open in this process, by canonical path (weak: the last
/// handle to go closes the file).
static OPEN: Mutex<Vec<(PathBuf, Weak<Database>)>> = Mutex::new(Vec::new());

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

/// A redb database implementing the storage primitive.
#[derive(Clone)]
pub struct EmbeddedBackend {
    db: Arc<Database>,
    name: Arc<str>,
    describe: Arc<str>,
    tables: &'static [&'static Table],
    writer: mpsc::Sender<writer::Job>,
}

impl EmbeddedBackend {
    /// A region's database, `<dir>/region.redb`.
    pub fn open_region(dir: &Path, region: &RegionCode) -> Result<Self> {
        Self::open(
            dir,
            "region.redb",
            format!("embedded:{region}"),
            format!("embedded store of region {region}"),
            crate::region::REGION_TABLES,
            migrate::Kind::Region(region),
        )
    }

    /// The index's database, `<dir>/index.redb`.
    pub fn open_index(dir: &Path) -> Result<Self> {
        Self::open(
            dir,
            "index.redb",
            "embedded:index".into(),
            "embedded home-region index".into(),
            crate::index::INDEX_TABLES,
            migrate::Kind::Index,
        )
    }

    fn open(
        dir: &Path,
        file: &str,
        name: String,
        describe: String,
        tables: &'static [&'static Table],
        kind: migrate::Kind<'_>,
    ) -> Result<Self> {
        let fail = |reason: String| StoreError::Open {
            store: name.clone(),
            reason,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        let db = shared_database(&dir.join(file)).map_err(fail)?;
        let writer = writer::spawn(Arc::downgrade(&db), &name)
            .map_err(|e| fail(format!("cannot start the writer thread: {e}")))?;
        let found = {
            let go = || -> Result<Option<u64>, String> {
                let tx = db.begin_write().map_err(|e| e.to_string())?;
                let found = {
                    let mut meta = tx.open_table(META).map_err(|e| e.to_string())?;
                    let found = meta
                        .get("layout_version")
                        .map_err(|e| e.to_string())?
                        .map(|v| v.value());
                    if found.is_none_or(migratable) {
                        meta.insert("layout_version", LAYOUT_VERSION)
                            .map_err(|e| e.to_string())?;
                    }
                    found
                };
                match found {
                    // Not ours to touch: refused below, the file left as it is.
                    Some(v) if !migratable(v) && v != LAYOUT_VERSION => return Ok(found),
                    // Older layouts are migrated one version at a time, in
                    // this transaction: a failed migration changes nothing.
                    Some(1) => {
                        migrate::from_v1(&tx, kind)?;
                        migrate::from_v2(&tx, kind)?;
                    }
                    Some(2) => migrate::from_v2(&tx, kind)?,
                    _ => {}
                }
                for t in tables {
                    tx.open_table(tables::def(t)).map_err(|e| e.to_string())?;
                }
                tx.commit().map_err(|e| e.to_string())?;
                Ok(found)
            };
            go().map_err(fail)?
        };
        match found {
            Some(v) if v > LAYOUT_VERSION => Err(StoreError::FutureFormat {
                store: name,
                found: u32::try_from(v).unwrap_or(u32::MAX),
                supported: LAYOUT_VERSION as u32,
            }),
            Some(v) if !migratable(v) && v != LAYOUT_VERSION => Err(fail(format!(
                "the database has layout {v}, which no build wrote"
            ))),
            _ => Ok(Self {
                db,
                name: name.into(),
                describe: describe.into(),
                tables,
                writer,
            }),
        }
    }

    fn error(&self, table: &Table, op: &'static str, reason: impl ToString) -> StoreError {
        StoreError::Backend {
            store: self.name.to_string(),
            table: table.name,
            op,
            reason: reason.to_string(),
        }
    }

    /// Runs blocking redb work on tokio's blocking pool.
    async fn blocking<R: Send + 'static>(
        &self,
        table: &Table,
        op: &'static str,
        f: impl FnOnce(&Database) -> Result<R, redb::Error> + Send + 'static,
    ) -> Result<R> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| self.error(table, op, format!("store task failed: {e}")))?
            .map_err(|e| self.error(table, op, e))
    }

    /// Queues a write for the next group commit and waits until it is durable.
    async fn write<R: Send + 'static>(
        &self,
        table: &Table,
        op: &'static str,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<R, redb::Error> + Send + 'static,
    ) -> Result<R> {
        let (done, outcome) = tokio::sync::oneshot::channel::<Result<R, String>>();
        let job: writer::Job = Box::new(move |tx: Option<&redb::WriteTransaction>| {
            let result = tx.map(|tx| f(tx).map_err(|e| e.to_string()));
            Box::new(move |committed: Result<(), String>| {
                let reply = match (committed, result) {
                    (Err(reason), _) => Err(reason),
                    (Ok(()), Some(r)) => r,
                    (Ok(()), None) => Err("no write transaction".into()),
                };
                let _ = done.send(reply);
            })
        });
        let gone = || self.error(table, op, "the store's writer has stopped");
        self.writer.send(job).map_err(|_| gone())?;
        outcome
            .await
            .map_err(|_| gone())?
            .map_err(|e| self.error(table, op, e))
    }
}
