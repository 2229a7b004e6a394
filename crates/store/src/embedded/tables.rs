//! The storage primitive on redb: one redb table per `Table`, keys and
//! values as bytes.
//!
//! Row tables are keyed by the partition key. Partitioned tables are keyed
//! by `u32 length of the partition key (big-endian) ‖ partition ‖
//! clustering`, so a partition is one contiguous key range, read backwards
//! for newest-first. Every value is `expires_at (i64, big-endian; i64::MAX:
//! never) ‖ the record bytes`; expiry is used only by `purge_expired`
//! (aggregates judge liveness from their records).

use super::EmbeddedBackend;
use crate::{Applied, Backend, Condition, Expiry, Key, Read, Result, Row, Shape, Table};
use async_trait::async_trait;
use domicile_core::UnixSeconds;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

pub(super) fn def(t: &Table) -> Def {
    TableDefinition::new(t.name)
}

fn prefix(partition: &[u8]) -> Vec<u8> {
    let len = u32::try_from(partition.len()).unwrap_or(u32::MAX);
    let mut k = Vec::with_capacity(4 + partition.len());
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(partition);
    k
}

pub(super) fn encode_key(t: &Table, key: &Key) -> Vec<u8> {
    match t.shape {
        Shape::Row => key.partition.clone(),
        Shape::Partitioned => {
            let mut k = prefix(&key.partition);
            k.extend_from_slice(&key.clustering);
            k
        }
    }
}

pub(super) fn decode_key(t: &Table, raw: &[u8]) -> Key {
    match t.shape {
        Shape::Row => Key::row(raw),
        Shape::Partitioned => {
            let len = raw
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, |b| u32::from_be_bytes(b) as usize);
            let rest = raw.get(4..).unwrap_or_default();
            let (p, c) = rest.split_at(len.min(rest.len()));
            Key::cell(p, c)
        }
    }
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

const NEVER: i64 = i64::MAX;

pub(super) fn envelope(value: &[u8], expiry: Expiry) -> Vec<u8> {
    let at = match expiry {
        Expiry::Never => NEVER,
        Expiry::At { at, .. } => at,
    };
    let mut v = Vec::with_capacity(8 + value.len());
    v.extend_from_slice(&at.to_be_bytes());
    v.extend_from_slice(value);
    v
}

fn expires_at(stored: &[u8]) -> i64 {
    stored
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(NEVER, i64::from_be_bytes)
}

fn payload(stored: &[u8]) -> Vec<u8> {
    stored.get(8..).unwrap_or_default().to_vec()
}

/// The conditional write inside a write transaction.
fn put_in(
    tx: &redb::WriteTransaction,
    d: Def,
    k: &[u8],
    condition: &Condition,
    value: &[u8],
    expiry: Expiry,
) -> Result<Applied<Option<Vec<u8>>>, redb::Error> {
    let mut t = tx.open_table(d)?;
    let current = t.get(k)?.map(|v| payload(v.value()));
    let holds = match (condition, &current) {
        (Condition::Any, _) | (Condition::Absent, None) => true,
        (Condition::Equals(old), Some(c)) => old == c,
        _ => false,
    };
    if !holds {
        return Ok(Applied::No(current));
    }
    t.insert(k, envelope(value, expiry).as_slice())?;
    Ok(Applied::Yes)
}

/// Plain writes of rows inside a write transaction.
fn append_in(
    tx: &redb::WriteTransaction,
    table: &Table,
    rows: Vec<Row>,
) -> Result<(), redb::Error> {
    let mut t = tx.open_table(def(table))?;
    for r in rows {
        t.insert(
            encode_key(table, &r.key).as_slice(),
            envelope(&r.value, r.expiry).as_slice(),
        )?;
    }
    Ok(())
}

#[async_trait]
impl Backend for EmbeddedBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        self.describe.to_string()
    }

    async fn get(&self, table: &Table, key: &Key, _read: Read) -> Result<Option<Vec<u8>>> {
        // One serializable writer: every read sees every acknowledged write.
        let (d, k) = (def(table), encode_key(table, key));
        self.blocking(table, "get", move |db| {
            Ok(db
                .begin_read()?
                .open_table(d)?
                .get(k.as_slice())?
                .map(|v| payload(v.value())))
        })
        .await
    }

    async fn put_if(
        &self,
        table: &Table,
        key: &Key,
        condition: Condition,
        value: Vec<u8>,
        expiry: Expiry,
    ) -> Result<Applied<Option<Vec<u8>>>> {
        let (d, k) = (def(table), encode_key(table, key));
        self.write(table, "put_if", move |tx| {
            put_in(tx, d, &k, &condition, &value, expiry)
        })
        .await
    }

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
        // One transaction: the list rows and the row they list commit together.
        let (list, d, k) = (*rows_table, def(table), encode_key(table, key));
        self.write(table, "append_then_put_if", move |tx| {
            append_in(tx, &list, rows)?;
            put_in(tx, d, &k, &condition, &value, expiry)
        })
        .await
    }

    async fn delete_if(
        &self,
        table: &Table,
        key: &Key,
        condition: Condition,
    ) -> Result<Applied<Option<Vec<u8>>>> {
        let (d, k) = (def(table), encode_key(table, key));
        self.write(table, "delete_if", move |tx| {
            let mut t = tx.open_table(d)?;
            let current = t.get(k.as_slice())?.map(|v| payload(v.value()));
            let holds = match (&condition, &current) {
                (Condition::Any, _) | (Condition::Absent, None) => true,
                (Condition::Equals(old), Some(c)) => old == c,
                _ => false,
            };
            if !holds {
                return Ok(Applied::No(current));
            }
            t.remove(k.as_slice())?;
            Ok(Applied::Yes)
        })
        .await
    }

    async fn append(&self, table: &Table, rows: Vec<Row>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let t0 = *table;
        self.write(table, "append", move |tx| append_in(tx, &t0, rows))
            .await
    }

    async fn rows(
        &self,
        table: &Table,
        partition: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (d, start) = (def(table), prefix(partition));
        self.blocking(table, "rows", move |db| {
            let t = db.begin_read()?.open_table(d)?;
            let range = match prefix_end(&start) {
                Some(end) => t.range::<&[u8]>(start.as_slice()..end.as_slice())?,
                None => t.range::<&[u8]>(start.as_slice()..)?,
            };
            let mut out = Vec::new();
            for row in range.rev().take(limit) {
                let (k, v) = row?;
                let clustering = k.value().get(start.len()..).unwrap_or_default().to_vec();
                out.push((clustering, payload(v.value())));
            }
            Ok(out)
        })
        .await
    }

    async fn delete_partition(&self, table: &Table, partition: &[u8]) -> Result<()> {
        let (d, start) = (def(table), prefix(partition));
        self.write(table, "delete_partition", move |tx| {
            let mut t = tx.open_table(d)?;
            let mut doomed = Vec::new();
            {
                let range = match prefix_end(&start) {
                    Some(end) => t.range::<&[u8]>(start.as_slice()..end.as_slice())?,
                    None => t.range::<&[u8]>(start.as_slice()..)?,
                };
                for row in range {
                    doomed.push(row?.0.value().to_vec());
                }
            }
            for k in doomed {
                t.remove(k.as_slice())?;
            }
            Ok(())
        })
        .await
    }

    async fn scan(&self, table: &Table) -> Result<Vec<(Key, Vec<u8>)>> {
        let (d, t0) = (def(table), *table);
        self.blocking(table, "scan", move |db| {
            let t = db.begin_read()?.open_table(d)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((decode_key(&t0, k.value()), payload(v.value())));
            }
            Ok(out)
        })
        .await
    }

    async fn count(&self, table: &Table) -> Result<u64> {
        let d = def(table);
        self.blocking(table, "count", move |db| {
            Ok(db.begin_read()?.open_table(d)?.len()?)
        })
        .await
    }

    async fn placement(&self) -> Result<crate::Placement> {
        Ok(crate::Placement::Local)
    }

    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64> {
        let tables = self.tables;
        let Some(first) = tables.first() else {
            return Ok(0);
        };
        self.write(first, "purge_expired", move |tx| {
            let mut purged = 0;
            for table in tables {
                let mut t = tx.open_table(def(table))?;
                let mut doomed = Vec::new();
                for row in t.iter()? {
                    let (k, v) = row?;
                    if expires_at(v.value()) <= now {
                        doomed.push(k.value().to_vec());
                    }
                }
                for k in &doomed {
                    t.remove(k.as_slice())?;
                }
                purged += doomed.len() as u64;
            }
            Ok(purged)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    const P: Table = Table::partitioned("p", Scope::Region);
    const R: Table = Table::rows("r", Scope::Region);

    #[test]
    fn partition_keys_are_prefix_free_and_round_trip() {
        for (p, c) in [(&b""[..], &b"x"[..]), (b"ab", b""), (b"\xff\xff", b"\x00")] {
            let k = Key::cell(p, c);
            assert_eq!(decode_key(&P, &encode_key(&P, &k)), k);
        }
        // Partition "a" never captures a row of partition "ab".
        let a = prefix(b"a");
        assert!(!encode_key(&P, &Key::cell(&b"ab"[..], &b""[..])).starts_with(&a));
        assert_eq!(decode_key(&R, b"k"), Key::row(&b"k"[..]));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[test]
    fn envelopes_keep_the_expiry() {
        let v = envelope(b"rec", Expiry::At { at: 7, now: 1 });
        assert_eq!((expires_at(&v), payload(&v)), (7, b"rec".to_vec()));
        let v = envelope(b"", Expiry::Never);
        assert_eq!((expires_at(&v), payload(&v)), (NEVER, Vec::new()));
    }
}
