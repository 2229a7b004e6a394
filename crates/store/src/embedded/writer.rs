//! The group-commit writer: one thread per database that takes every write
//! waiting (up to `MAX_BATCH`), runs them in arrival order in one redb write
//! transaction (each sees the ones before it, so conditional writes decide
//! exactly as if alone), commits once with `Durability::Immediate` (fsync),
//! then acknowledges each. Durable acknowledgements, one fsync per batch.
//!
//! It knows nothing of tables or conditions: a job is a closure over the
//! shared transaction. It holds only a weak reference to the database, so
//! closing a store releases its file at once.

use redb::{Database, Durability};
use std::sync::{Weak, mpsc};

/// Most writes one group commit carries.
const MAX_BATCH: usize = 512;

/// How a job learns whether its batch committed.
pub(super) type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A write waiting for a group commit. Given the shared write transaction
/// (or `None` when none could begin) it does its read-decide-write and
/// returns how to report its outcome once the commit is known.
pub(super) type Job = Box<dyn FnOnce(Option<&redb::WriteTransaction>) -> Reply + Send>;

/// Starts the writer thread of `db`.
pub(super) fn spawn(db: Weak<Database>, name: &str) -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name(format!("redb-writer {name}"))
        .spawn(move || writer_loop(db, rx))?;
    Ok(tx)
}

fn writer_loop(db: Weak<Database>, rx: mpsc::Receiver<Job>) {
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
