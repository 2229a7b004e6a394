//! Every CQL statement the Scylla backend runs, generated from the table
//! descriptors: one generic shape per table kind (row tables `p blob
//! PRIMARY KEY, v blob`; partitioned tables `p blob, c blob, v blob,
//! PRIMARY KEY ((p), c)`). Keyspaces are named in full so statements never
//! depend on a session's current keyspace. Text only: nothing is run here.

use crate::{Shape, Table};

/// The statements of one table.
#[derive(Clone, Debug)]
pub struct TableCql {
    /// One row's value.
    pub get: String,
    /// `IF NOT EXISTS … USING TTL ?`
    pub put_absent: String,
    /// `USING TTL ? … IF v = ?`
    pub put_equals: String,
    /// A plain write `USING TTL ?`.
    pub put_any: String,
    pub delete_equals: String,
    pub delete_any: String,
    /// Partitioned tables: one partition, `LIMIT ?` (clustering order is DESC).
    pub rows: Option<String>,
    pub delete_partition: Option<String>,
    pub scan: String,
    pub count: String,
}

impl TableCql {
    pub fn new(ks: &str, t: &Table) -> Self {
        let n = format!("{ks}.{}", t.name);
        match t.shape {
            Shape::Row => Self {
                get: format!("SELECT v FROM {n} WHERE p = ?"),
                put_absent: format!(
                    "INSERT INTO {n} (p, v) VALUES (?, ?) IF NOT EXISTS USING TTL ?"
                ),
                put_equals: format!("UPDATE {n} USING TTL ? SET v = ? WHERE p = ? IF v = ?"),
                put_any: format!("INSERT INTO {n} (p, v) VALUES (?, ?) USING TTL ?"),
                delete_equals: format!("DELETE FROM {n} WHERE p = ? IF v = ?"),
                delete_any: format!("DELETE FROM {n} WHERE p = ?"),
                rows: None,
                delete_partition: None,
                scan: format!("SELECT p, v FROM {n}"),
                count: format!("SELECT p FROM {n}"),
            },
            Shape::Partitioned => Self {
                get: format!("SELECT v FROM {n} WHERE p = ? AND c = ?"),
                put_absent: format!(
                    "INSERT INTO {n} (p, c, v) VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?"
                ),
                put_equals: format!(
                    "UPDATE {n} USING TTL ? SET v = ? WHERE p = ? AND c = ? IF v = ?"
                ),
                put_any: format!("INSERT INTO {n} (p, c, v) VALUES (?, ?, ?) USING TTL ?"),
                delete_equals: format!("DELETE FROM {n} WHERE p = ? AND c = ? IF v = ?"),
                delete_any: format!("DELETE FROM {n} WHERE p = ? AND c = ?"),
                rows: Some(format!("SELECT c, v FROM {n} WHERE p = ? LIMIT ?")),
                delete_partition: Some(format!("DELETE FROM {n} WHERE p = ?")),
                scan: format!("SELECT p, c, v FROM {n}"),
                count: format!("SELECT p, c FROM {n}"),
            },
        }
    }

    /// Every statement, for preparing and for tests.
    pub fn all(&self) -> Vec<&str> {
        let mut v = vec![
            self.get.as_str(),
            &self.put_absent,
            &self.put_equals,
            &self.put_any,
            &self.delete_equals,
            &self.delete_any,
            &self.scan,
            &self.count,
        ];
        v.extend(self.rows.as_deref());
        v.extend(self.delete_partition.as_deref());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    fn check(statement: &str, must: &[&str]) {
        for m in must {
            assert!(statement.contains(m), "{statement:?} lacks {m:?}");
        }
    }

    #[test]
    fn row_tables() {
        let c = TableCql::new("domicile_eu", &Table::rows("users", Scope::Region));
        for s in c.all() {
            assert!(s.contains("domicile_eu.users"), "fully qualified: {s}");
            assert!(!s.contains("ALLOW FILTERING"), "{s}");
        }
        check(&c.get, &["WHERE p = ?"]);
        check(&c.put_absent, &["IF NOT EXISTS USING TTL ?"]);
        check(&c.put_equals, &["USING TTL ?", "IF v = ?"]);
        check(&c.delete_equals, &["DELETE", "IF v = ?"]);
        assert!(!c.put_any.contains(" IF "), "a plain write: {}", c.put_any);
        assert!(c.rows.is_none() && c.delete_partition.is_none());
        assert_eq!(markers(&c), [1, 3, 4, 3, 2, 1]);
    }

    /// Bind markers of each statement, in the order the backend binds them:
    /// get, put absent, put equals, put any, delete equals, delete any.
    fn markers(c: &TableCql) -> [usize; 6] {
        [
            &c.get,
            &c.put_absent,
            &c.put_equals,
            &c.put_any,
            &c.delete_equals,
            &c.delete_any,
        ]
        .map(|s| s.matches('?').count())
    }

    #[test]
    fn partitioned_tables() {
        let c = TableCql::new("k", &Table::partitioned("audit_log", Scope::Region));
        check(&c.get, &["WHERE p = ? AND c = ?"]);
        check(c.rows.as_deref().unwrap_or(""), &["WHERE p = ?", "LIMIT ?"]);
        check(
            c.delete_partition.as_deref().unwrap_or(""),
            &["WHERE p = ?"],
        );
        assert_eq!(markers(&c), [2, 4, 5, 4, 3, 2]);
    }
}
