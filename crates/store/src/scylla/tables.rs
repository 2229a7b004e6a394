//! The storage primitive on ScyllaDB: every `Table` prepared once from its
//! generated CQL (`cql`), conditional writes as LWT (LOCAL_SERIAL for region
//! tables, SERIAL for the global index, from the table's scope), plain reads
//! and writes at LOCAL_QUORUM, expiry as `USING TTL`.
//!
//! Every conditional answer comes from the cluster: the `[applied]` row
//! (decoded by `lwt`), or, when it did not report the stored value or the
//! write timed out with an unknown outcome, a re-read at serial consistency.
//! No domain logic here: the aggregates decide.

use super::{
    cql::TableCql,
    lwt::{Lwt, Outcome, settle},
    session::{Failure, classify, ttl},
};
use crate::{
    Applied, Backend, Condition, Expiry, Key, Read, Result, Row, Scope, Shape, StoreError, Table,
};
use async_trait::async_trait;
use domicile_core::UnixSeconds;
use futures::StreamExt;
use scylla::{
    client::{execution_profile::ExecutionProfile, session::Session},
    errors::ExecutionError,
    statement::{Consistency, prepared::PreparedStatement},
    value::{CqlValue, Row as CqlRow},
};
use std::sync::Arc;

struct Prepared {
    table: Table,
    get: PreparedStatement,
    get_serial: PreparedStatement,
    put_absent: PreparedStatement,
    put_equals: PreparedStatement,
    put_any: PreparedStatement,
    delete_equals: PreparedStatement,
    delete_any: PreparedStatement,
    rows: Option<PreparedStatement>,
    delete_partition: Option<PreparedStatement>,
    scan: PreparedStatement,
    count: PreparedStatement,
}

/// One keyspace's tables on a Scylla session.
pub struct ScyllaBackend {
    session: Arc<Session>,
    keyspace: String,
    name: String,
    describe: String,
    tables: Vec<Prepared>,
}

fn key_values(t: &Table, key: &Key) -> Vec<CqlValue> {
    match t.shape {
        Shape::Row => vec![CqlValue::Blob(key.partition.clone())],
        Shape::Partitioned => vec![
            CqlValue::Blob(key.partition.clone()),
            CqlValue::Blob(key.clustering.clone()),
        ],
    }
}

fn ttl_of(expiry: Expiry) -> CqlValue {
    CqlValue::Int(match expiry {
        // TTL 0 rewrites the cell without expiry.
        Expiry::Never => 0,
        Expiry::At { at, now } => ttl(at, now),
    })
}

/// A keyspace's `replication` map as `system_schema.keyspaces` holds it.
fn placement_of(
    mut map: std::collections::HashMap<String, String>,
) -> std::result::Result<crate::Placement, String> {
    let class = map
        .remove("class")
        .ok_or("the replication map has no class")?;
    let mut datacenters = Vec::new();
    for (dc, n) in map {
        // SimpleStrategy's count is not a datacenter (the class says enough).
        if dc == "replication_factor" {
            continue;
        }
        let n = n
            .parse::<u32>()
            .map_err(|_| format!("replicas of {dc} is not a number: {n:?}"))?;
        datacenters.push((dc, n));
    }
    datacenters.sort();
    Ok(crate::Placement::Replicated { class, datacenters })
}

impl ScyllaBackend {
    /// Prepares every statement of `tables` in `keyspace`.
    pub async fn prepare(
        session: Arc<Session>,
        keyspace: &str,
        describe: String,
        tables: &[&Table],
        profile: &ExecutionProfile,
    ) -> Result<Self> {
        let name = format!("scylla:{keyspace}");
        // Statements name the keyspace in their text: only a plain name goes in.
        if !super::config::valid_cql_name(keyspace) {
            return Err(StoreError::Open {
                store: name,
                reason: format!("{keyspace:?} is not a keyspace name"),
            });
        }
        let mut prepared = Vec::new();
        for t in tables {
            let c = TableCql::new(keyspace, t);
            let serial = match t.scope {
                Scope::Region => Consistency::LocalSerial,
                Scope::Global => Consistency::Serial,
            };
            let prep = |text: String, idempotent: bool| {
                let session = session.clone();
                let name = name.clone();
                let profile = profile.clone();
                async move {
                    let mut ps =
                        session
                            .prepare(text.as_str())
                            .await
                            .map_err(|e| StoreError::Open {
                                store: name,
                                reason: format!("{e} (in {text})"),
                            })?;
                    ps.set_execution_profile_handle(Some(profile.into_handle()));
                    ps.set_is_idempotent(idempotent);
                    Ok::<_, StoreError>(ps)
                }
            };
            let mut get_serial = prep(c.get.clone(), true).await?;
            get_serial.set_consistency(serial);
            let rows = match &c.rows {
                Some(s) => Some(prep(s.clone(), true).await?),
                None => None,
            };
            let delete_partition = match &c.delete_partition {
                Some(s) => Some(prep(s.clone(), true).await?),
                None => None,
            };
            prepared.push(Prepared {
                table: **t,
                get: prep(c.get.clone(), true).await?,
                get_serial,
                put_absent: prep(c.put_absent.clone(), false).await?,
                put_equals: prep(c.put_equals.clone(), false).await?,
                // Same row, same value: a retried plain write is harmless.
                put_any: prep(c.put_any.clone(), true).await?,
                delete_equals: prep(c.delete_equals.clone(), false).await?,
                delete_any: prep(c.delete_any.clone(), true).await?,
                rows,
                delete_partition,
                scan: prep(c.scan.clone(), true).await?,
                count: prep(c.count.clone(), true).await?,
            });
        }
        Ok(Self {
            session,
            keyspace: keyspace.to_owned(),
            name,
            describe,
            tables: prepared,
        })
    }

    /// A failed request: `Unavailable` when the cluster could not be
    /// reached or could not answer (no live replica, a timeout, a broken
    /// connection), else `Backend`.
    fn failed(&self, table: &Table, op: &'static str, e: ExecutionError) -> StoreError {
        if super::session::unreachable(&e) {
            StoreError::Unavailable {
                store: self.name.clone(),
                table: table.name,
                op,
                reason: e.to_string(),
            }
        } else {
            self.error(table, op, e)
        }
    }

    fn error(&self, table: &Table, op: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            store: self.name.clone(),
            table: table.name,
            op,
            reason: e.to_string(),
        }
    }

    fn st(&self, table: &Table, op: &'static str) -> Result<&Prepared> {
        self.tables
            .iter()
            .find(|p| p.table.name == table.name)
            .ok_or_else(|| self.error(table, op, "no such table in this keyspace"))
    }

    fn partition_only<'a>(
        &self,
        ps: &'a Option<PreparedStatement>,
        table: &Table,
        op: &'static str,
    ) -> Result<&'a PreparedStatement> {
        ps.as_ref()
            .ok_or_else(|| self.error(table, op, "not a partitioned table"))
    }

    async fn read_one(
        &self,
        table: &Table,
        ps: &PreparedStatement,
        key: &Key,
    ) -> Result<Option<Vec<u8>>> {
        let rows = self
            .session
            .execute_unpaged(ps, key_values(table, key))
            .await
            .map_err(|e| self.failed(table, "get", e))?
            .into_rows_result()
            .map_err(|e| self.error(table, "get", e))?;
        let row: Option<(Option<Vec<u8>>,)> = rows
            .maybe_first_row()
            .map_err(|e| self.error(table, "get", e))?;
        Ok(row.and_then(|(v,)| v))
    }

    /// Runs one LWT; `wanted` is the value the write leaves (`None` for a
    /// delete), used to learn the outcome of a write that timed out.
    async fn conditional(
        &self,
        table: &Table,
        op: &'static str,
        ps: &PreparedStatement,
        values: Vec<CqlValue>,
        key: &Key,
        wanted: Option<&[u8]>,
    ) -> Result<Applied<Option<Vec<u8>>>> {
        let p = self.st(table, op)?;
        match self.session.execute_unpaged(ps, values).await {
            Ok(result) => {
                let rows = result
                    .into_rows_result()
                    .map_err(|e| self.error(table, op, format!("unreadable LWT result: {e}")))?;
                let names: Vec<String> = rows
                    .column_specs()
                    .iter()
                    .map(|c| c.name().to_owned())
                    .collect();
                let row: CqlRow = rows
                    .first_row::<CqlRow>()
                    .map_err(|e| self.error(table, op, format!("unreadable LWT result: {e}")))?;
                let lwt = Lwt::from_row(&names, row.columns)
                    .map_err(|e| self.error(table, op, format!("unreadable LWT result: {e}")))?;
                match lwt.outcome() {
                    Outcome::Known(answer) => Ok(answer),
                    // Not applied, and the stored row was not reported: ask.
                    Outcome::Unreported => {
                        Ok(Applied::No(self.read_one(table, &p.get_serial, key).await?))
                    }
                }
            }
            Err(e) if classify(&e) == Failure::Uncertain => {
                tracing::warn!(store = %self.name, table = table.name, error = %e, "conditional write outcome unknown; reading at serial consistency");
                Ok(settle(
                    self.read_one(table, &p.get_serial, key).await?,
                    wanted,
                ))
            }
            Err(e) => Err(self.failed(table, op, e)),
        }
    }
}

#[async_trait]
impl Backend for ScyllaBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn get(&self, table: &Table, key: &Key, read: Read) -> Result<Option<Vec<u8>>> {
        let p = self.st(table, "get")?;
        let ps = match read {
            Read::Quorum => &p.get,
            Read::Serial => &p.get_serial,
        };
        self.read_one(table, ps, key).await
    }

    async fn put_if(
        &self,
        table: &Table,
        key: &Key,
        condition: Condition,
        value: Vec<u8>,
        expiry: Expiry,
    ) -> Result<Applied<Option<Vec<u8>>>> {
        let p = self.st(table, "put_if")?;
        let mut k = key_values(table, key);
        match condition {
            Condition::Absent => {
                k.extend([CqlValue::Blob(value.clone()), ttl_of(expiry)]);
                self.conditional(table, "put_if", &p.put_absent, k, key, Some(&value))
                    .await
            }
            Condition::Equals(old) => {
                let mut values = vec![ttl_of(expiry), CqlValue::Blob(value.clone())];
                values.extend(k);
                values.push(CqlValue::Blob(old));
                self.conditional(table, "put_if", &p.put_equals, values, key, Some(&value))
                    .await
            }
            Condition::Any => {
                k.extend([CqlValue::Blob(value), ttl_of(expiry)]);
                self.session
                    .execute_unpaged(&p.put_any, k)
                    .await
                    .map_err(|e| self.failed(table, "put_if", e))?;
                Ok(Applied::Yes)
            }
        }
    }

    async fn delete_if(
        &self,
        table: &Table,
        key: &Key,
        condition: Condition,
    ) -> Result<Applied<Option<Vec<u8>>>> {
        let p = self.st(table, "delete_if")?;
        let mut k = key_values(table, key);
        match condition {
            Condition::Absent => Ok(match self.read_one(table, &p.get_serial, key).await? {
                None => Applied::Yes,
                current => Applied::No(current),
            }),
            Condition::Equals(old) => {
                k.push(CqlValue::Blob(old));
                self.conditional(table, "delete_if", &p.delete_equals, k, key, None)
                    .await
            }
            Condition::Any => {
                self.session
                    .execute_unpaged(&p.delete_any, k)
                    .await
                    .map_err(|e| self.failed(table, "delete_if", e))?;
                Ok(Applied::Yes)
            }
        }
    }

    async fn append(&self, table: &Table, rows: Vec<Row>) -> Result<()> {
        // Rows of different partitions: one write each, all in flight
        // together (no cross-partition batch).
        let p = self.st(table, "append")?;
        let writes = rows.into_iter().map(|r| {
            let mut values = key_values(table, &r.key);
            values.extend([CqlValue::Blob(r.value), ttl_of(r.expiry)]);
            async move {
                self.session
                    .execute_unpaged(&p.put_any, values)
                    .await
                    .map(|_| ())
                    .map_err(|e| self.failed(table, "append", e))
            }
        });
        futures::future::try_join_all(writes).await.map(|_| ())
    }

    async fn rows(
        &self,
        table: &Table,
        partition: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let p = self.st(table, "rows")?;
        let ps = self.partition_only(&p.rows, table, "rows")?;
        let values = vec![
            CqlValue::Blob(partition.to_vec()),
            CqlValue::Int(i32::try_from(limit).unwrap_or(i32::MAX)),
        ];
        let mut stream = self
            .session
            .execute_iter(ps.clone(), values)
            .await
            .map_err(|e| self.error(table, "rows", e))?
            .rows_stream::<(Vec<u8>, Option<Vec<u8>>)>()
            .map_err(|e| self.error(table, "rows", e))?;
        let mut out = Vec::new();
        while out.len() < limit
            && let Some(row) = stream.next().await
        {
            let (c, v) = row.map_err(|e| self.error(table, "rows", e))?;
            if let Some(v) = v {
                out.push((c, v));
            }
        }
        Ok(out)
    }

    async fn delete_partition(&self, table: &Table, partition: &[u8]) -> Result<()> {
        let p = self.st(table, "delete_partition")?;
        let ps = self.partition_only(&p.delete_partition, table, "delete_partition")?;
        self.session
            .execute_unpaged(ps, vec![CqlValue::Blob(partition.to_vec())])
            .await
            .map_err(|e| self.failed(table, "delete_partition", e))?;
        Ok(())
    }

    async fn scan(&self, table: &Table) -> Result<Vec<(Key, Vec<u8>)>> {
        let p = self.st(table, "scan")?;
        let pager = self
            .session
            .execute_iter(p.scan.clone(), ())
            .await
            .map_err(|e| self.error(table, "scan", e))?;
        let mut out = Vec::new();
        match table.shape {
            Shape::Row => {
                let mut s = pager
                    .rows_stream::<(Vec<u8>, Option<Vec<u8>>)>()
                    .map_err(|e| self.error(table, "scan", e))?;
                while let Some(row) = s.next().await {
                    let (k, v) = row.map_err(|e| self.error(table, "scan", e))?;
                    out.extend(v.map(|v| (Key::row(k), v)));
                }
            }
            Shape::Partitioned => {
                let mut s = pager
                    .rows_stream::<(Vec<u8>, Vec<u8>, Option<Vec<u8>>)>()
                    .map_err(|e| self.error(table, "scan", e))?;
                while let Some(row) = s.next().await {
                    let (pk, c, v) = row.map_err(|e| self.error(table, "scan", e))?;
                    out.extend(v.map(|v| (Key::cell(pk, c), v)));
                }
            }
        }
        Ok(out)
    }

    async fn count(&self, table: &Table) -> Result<u64> {
        let p = self.st(table, "count")?;
        let pager = self
            .session
            .execute_iter(p.count.clone(), ())
            .await
            .map_err(|e| self.error(table, "count", e))?;
        let mut n = 0u64;
        match table.shape {
            Shape::Row => {
                let mut s = pager
                    .rows_stream::<(Vec<u8>,)>()
                    .map_err(|e| self.error(table, "count", e))?;
                while let Some(row) = s.next().await {
                    row.map_err(|e| self.error(table, "count", e))?;
                    n += 1;
                }
            }
            Shape::Partitioned => {
                let mut s = pager
                    .rows_stream::<(Vec<u8>, Vec<u8>)>()
                    .map_err(|e| self.error(table, "count", e))?;
                while let Some(row) = s.next().await {
                    row.map_err(|e| self.error(table, "count", e))?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    async fn placement(&self) -> Result<crate::Placement> {
        let fail = |reason: String| StoreError::Backend {
            store: self.name.clone(),
            table: "system_schema.keyspaces",
            op: "placement",
            reason,
        };
        let rows = self
            .session
            .query_unpaged(
                "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
                (self.keyspace.as_str(),),
            )
            .await
            .map_err(|e| fail(e.to_string()))?
            .into_rows_result()
            .map_err(|e| fail(e.to_string()))?;
        let Some((map,)) = rows
            .maybe_first_row::<(std::collections::HashMap<String, String>,)>()
            .map_err(|e| fail(e.to_string()))?
        else {
            return Err(fail(format!(
                "the server has no keyspace {}",
                self.keyspace
            )));
        };
        placement_of(map).map_err(fail)
    }

    async fn purge_expired(&self, _now: UnixSeconds) -> Result<u64> {
        // TTLs remove expired rows; this call deletes none itself.
        Ok(0)
    }
}
