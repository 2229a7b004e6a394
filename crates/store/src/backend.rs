//! The primitive every backend implements, once: a generic table model
//! (opaque byte keys and values, rows or partitions of ordered rows) and
//! the one conditional write, `put_if`.
//!
//! This module knows nothing of users, sessions or regions: aggregates
//! (`users`, `identifiers`, `sessions`, `keys`, `audit`, `index`) decide
//! what to write; a backend only stores bytes, compares them, and reports
//! what it holds. It does not read the clock: expiry arrives as an
//! [`Expiry`] computed by the caller from the `now` it was given.
//!
//! Every conditional answer is read from the backend: `Applied::No(current)`
//! carries the row the backend found (or `None` when it found none), never a
//! value made up to look right.

use crate::{Applied, Result, StoreError};
use async_trait::async_trait;
use domicile_core::UnixSeconds;

/// How a table is keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One value per partition key (`PRIMARY KEY (p)`).
    Row,
    /// Rows ordered by a clustering key inside a partition, read newest
    /// (greatest clustering key) first (`PRIMARY KEY ((p), c)`, `c DESC`).
    Partitioned,
}

/// Where a table's conditional writes are decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One region's data: Paxos inside the region's datacenter (LOCAL_SERIAL).
    Region,
    /// The global index: Paxos across every datacenter (SERIAL).
    Global,
}

/// A table descriptor: the aggregates own these as constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub shape: Shape,
    pub scope: Scope,
}

impl Table {
    pub const fn rows(name: &'static str, scope: Scope) -> Self {
        Self {
            name,
            shape: Shape::Row,
            scope,
        }
    }

    pub const fn partitioned(name: &'static str, scope: Scope) -> Self {
        Self {
            name,
            shape: Shape::Partitioned,
            scope,
        }
    }
}

/// A row's address: the partition key and, in partitioned tables, the
/// clustering key (empty in row tables).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub partition: Vec<u8>,
    pub clustering: Vec<u8>,
}

impl Key {
    /// The key of a row table.
    pub fn row(partition: impl Into<Vec<u8>>) -> Self {
        Self {
            partition: partition.into(),
            clustering: Vec::new(),
        }
    }

    /// A row of a partitioned table.
    pub fn cell(partition: impl Into<Vec<u8>>, clustering: impl Into<Vec<u8>>) -> Self {
        Self {
            partition: partition.into(),
            clustering: clustering.into(),
        }
    }
}

/// The condition of a conditional write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The row does not exist (`IF NOT EXISTS`).
    Absent,
    /// The row holds exactly these bytes (`IF v = ?`).
    Equals(Vec<u8>),
    /// No condition: a plain write (not Paxos on Scylla; do not mix it with
    /// conditional writes on one row).
    Any,
}

/// When a written row may be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Never,
    /// Dropped at `at`; `now` is the caller's clock (Scylla's TTL is `at - now`).
    At {
        at: UnixSeconds,
        now: UnixSeconds,
    },
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// A quorum read in the local datacenter (fast path).
    Quorum,
    /// A serial read that sees every decided conditional write: the read
    /// before a read → decide → `put_if` cycle.
    Serial,
}

/// A row to append to a partitioned table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub key: Key,
    pub value: Vec<u8>,
    pub expiry: Expiry,
}

/// Where a backend keeps its data, as the backend itself reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// One file on this machine (the embedded store).
    Local,
    /// A keyspace replicated by `class` with these replicas per
    /// datacenter (read back from the server, not from configuration).
    Replicated {
        class: String,
        datacenters: Vec<(String, u32)>,
    },
}

impl Placement {
    /// Why this placement breaks residency for a store that must live
    /// only in `own` (the region's datacenter); empty when it does not.
    pub fn violations(&self, own: &str) -> Vec<String> {
        let Placement::Replicated { class, datacenters } = self else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if !class.ends_with("NetworkTopologyStrategy") {
            out.push(format!(
                "replicated by {class}, which places replicas in every datacenter"
            ));
        }
        for (dc, n) in datacenters {
            if dc != own && *n > 0 {
                out.push(format!("{n} replica(s) in datacenter {dc}"));
            }
        }
        if !datacenters.iter().any(|(dc, n)| dc == own && *n > 0) {
            out.push(format!("no replica in its own datacenter {own}"));
        }
        out
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Local => f.write_str("a local file"),
            Placement::Replicated { class, datacenters } => {
                let short = class.rsplit('.').next().unwrap_or(class);
                let dcs: Vec<String> = datacenters
                    .iter()
                    .map(|(d, n)| format!("{d}:{n}"))
                    .collect();
                write!(f, "{short} {{{}}}", dcs.join(", "))
            }
        }
    }
}

/// The storage primitive, implemented once per backend.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The name used in errors (`embedded:eu`, `scylla:domicile_eu`).
    fn name(&self) -> &str;
    /// A sentence for logs and admin reports.
    fn describe(&self) -> String;
    /// One row's value.
    async fn get(&self, table: &Table, key: &Key, read: Read) -> Result<Option<Vec<u8>>>;
    /// The one conditional write: writes `value` if `condition` holds.
    /// `No(current)` carries what the backend holds instead.
    async fn put_if(
        &self,
        table: &Table,
        key: &Key,
        condition: Condition,
        value: Vec<u8>,
        expiry: Expiry,
    ) -> Result<Applied<Option<Vec<u8>>>>;
    /// Deletes the row if `condition` holds (`Absent`: applied when there
    /// is nothing to delete). `No(current)` carries what blocked it.
    async fn delete_if(
        &self,
        table: &Table,
        key: &Key,
        condition: Condition,
    ) -> Result<Applied<Option<Vec<u8>>>>;
    /// Plain (unconditional, idempotent) writes of rows of a partitioned table.
    async fn append(&self, table: &Table, rows: Vec<Row>) -> Result<()>;
    /// `append(rows_table, rows)`, then `put_if`: the rows are durable no
    /// later than the conditional write, and are written whether or not its
    /// condition holds (a list written before the row it lists). A backend
    /// that can commit both at once does (embedded: one transaction); the
    /// default runs them one after the other.
    #[allow(clippy::too_many_arguments)]
    async fn append_then_put_if(
        &self,
        rows_table: &Table,
        rows: Vec<Row>,
        table: &Table,
        key: &Key,
        condition: Condition,
        value: Vec<u8>,
        expiry: Expiry,
    ) -> Result<Applied<Option<Vec<u8>>>> {
        self.append(rows_table, rows).await?;
        self.put_if(table, key, condition, value, expiry).await
    }
    /// At most `limit` rows of one partition, greatest clustering key first,
    /// as (clustering key, value).
    async fn rows(
        &self,
        table: &Table,
        partition: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Deletes a whole partition (plain write).
    async fn delete_partition(&self, table: &Table, partition: &[u8]) -> Result<()>;
    /// Every row of a table (admin reports; a full, paged scan on Scylla).
    async fn scan(&self, table: &Table) -> Result<Vec<(Key, Vec<u8>)>>;
    /// Number of rows in a table (a key-only scan on Scylla).
    async fn count(&self, table: &Table) -> Result<u64>;
    /// Drops rows whose expiry is due at `now`; returns how many this call
    /// deleted (Scylla's TTL drops them by itself: 0 there).
    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64>;
    /// Where the data is kept (the residency report checks it).
    async fn placement(&self) -> Result<Placement>;
}

/// What a read → decide → write cycle wants done with the row it read.
pub(crate) enum Change {
    Keep,
    Put(Vec<u8>, Expiry),
    Delete,
}

/// How many times a decision is retried when a concurrent writer changed
/// the row between the read and the conditional write.
const ROUNDS: usize = 16;

/// Read → decide → `put_if(Equals(old))`: the optimistic cycle every
/// aggregate's conditional operation runs. `decide` sees the current bytes
/// (read at serial consistency) and returns a change and an outcome; when
/// the conditional write loses, it decides again on the row the backend
/// reported, so the outcome always matches what was actually stored.
pub(crate) async fn modify<R>(
    backend: &dyn Backend,
    table: &Table,
    key: &Key,
    decide: impl FnMut(Option<&[u8]>) -> Result<(Change, R)> + Send,
) -> Result<R>
where
    R: Send,
{
    let current = backend.get(table, key, Read::Serial).await?;
    cycle(backend, table, key, current, None, decide).await
}

/// `modify` starting from a row the caller has just read (`known`, its
/// stored bytes): the conditional write is attempted at once, saving the
/// read (on Scylla a SERIAL round trip); if the row has changed since, or
/// its stored bytes differ, the write reports what is there and the cycle
/// decides again on that, exactly as in `modify`.
pub(crate) async fn modify_known<R>(
    backend: &dyn Backend,
    table: &Table,
    key: &Key,
    known: Vec<u8>,
    decide: impl FnMut(Option<&[u8]>) -> Result<(Change, R)> + Send,
) -> Result<R>
where
    R: Send,
{
    cycle(backend, table, key, Some(known), None, decide).await
}

/// `modify` for writes that usually find no row (inserts, claims): it
/// decides first as if the row were absent and writes `IF NOT EXISTS`,
/// saving the read; a lost write reports the row, and the cycle goes on
/// from there exactly as in `modify`. `listed`, when given, are rows of a
/// per-owner list (`Backend::append_then_put_if`) written with the first
/// write the cycle attempts; when it decides to write nothing, they are not
/// written.
pub(crate) async fn modify_expecting_absent<R>(
    backend: &dyn Backend,
    table: &Table,
    key: &Key,
    listed: Option<(&Table, Vec<Row>)>,
    decide: impl FnMut(Option<&[u8]>) -> Result<(Change, R)> + Send,
) -> Result<R>
where
    R: Send,
{
    cycle(backend, table, key, None, listed, decide).await
}

async fn cycle<R>(
    backend: &dyn Backend,
    table: &Table,
    key: &Key,
    mut current: Option<Vec<u8>>,
    mut listed: Option<(&Table, Vec<Row>)>,
    mut decide: impl FnMut(Option<&[u8]>) -> Result<(Change, R)> + Send,
) -> Result<R>
where
    R: Send,
{
    for _ in 0..ROUNDS {
        let (change, out) = decide(current.as_deref())?;
        let condition = match &current {
            None => Condition::Absent,
            Some(c) => Condition::Equals(c.clone()),
        };
        let applied = match change {
            Change::Keep => return Ok(out),
            Change::Put(value, expiry) => match listed.take() {
                Some((list, rows)) => {
                    backend
                        .append_then_put_if(list, rows, table, key, condition, value, expiry)
                        .await?
                }
                None => backend.put_if(table, key, condition, value, expiry).await?,
            },
            Change::Delete => {
                if let Some((list, rows)) = listed.take() {
                    backend.append(list, rows).await?;
                }
                backend.delete_if(table, key, condition).await?
            }
        };
        match applied {
            Applied::Yes => return Ok(out),
            Applied::No(now_there) => current = now_there,
        }
    }
    Err(StoreError::Contended {
        store: backend.name().to_owned(),
        table: table.name,
        op: "modify",
    })
}

#[cfg(test)]
mod tests {
    use super::Placement;

    fn nts(dcs: &[(&str, u32)]) -> Placement {
        Placement::Replicated {
            class: "org.apache.cassandra.locator.NetworkTopologyStrategy".into(),
            datacenters: dcs.iter().map(|(d, n)| ((*d).to_owned(), *n)).collect(),
        }
    }

    #[test]
    fn only_the_own_datacenter_is_residency() {
        let cases: Vec<(Placement, usize)> = vec![
            (Placement::Local, 0),
            (nts(&[("eu", 3)]), 0),
            (nts(&[("eu", 3), ("us", 0)]), 0),
            (nts(&[("eu", 1), ("us", 1)]), 1),
            (nts(&[("us", 3)]), 2),
            (nts(&[]), 1),
            (
                Placement::Replicated {
                    class: "org.apache.cassandra.locator.SimpleStrategy".into(),
                    datacenters: vec![],
                },
                2,
            ),
        ];
        for (p, n) in cases {
            let v = p.violations("eu");
            assert_eq!(v.len(), n, "{p}: {v:?}");
        }
        assert_eq!(
            nts(&[("eu", 1)]).to_string(),
            "NetworkTopologyStrategy {eu:1}"
        );
    }
}
