//! Reading the outcome of a conditional write (LWT) into the primitive's
//! answer, `Applied<Option<current value>>`.
//!
//! The result row starts with `[applied]` (boolean). When the write was not
//! applied, ScyllaDB returns every column of the existing row after it (nulls
//! when there is no row), and Cassandra the existing row for `IF NOT EXISTS`
//! or only the columns the condition named (`v`) for `IF v = ?`; when it was
//! applied, Scylla returns the columns as nulls and Cassandra only
//! `[applied]`. So the row is read untyped: column 0 is the outcome, the
//! current value is the `v` column when reported and not null. Nothing here
//! invents a value: when the stored row is not reported, the caller reads it.

use crate::Applied;
use scylla::value::CqlValue;

/// What an LWT result says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Known(Applied<Option<Vec<u8>>>),
    /// Not applied, and the stored row was not reported.
    Unreported,
}

/// The outcome of a conditional write that timed out, from the row read at
/// serial consistency afterwards: applied if the row holds what the write
/// would leave (`wanted`; `None` for a delete), otherwise blocked by it.
pub fn settle(now: Option<Vec<u8>>, wanted: Option<&[u8]>) -> Applied<Option<Vec<u8>>> {
    if now.as_deref() == wanted {
        Applied::Yes
    } else {
        Applied::No(now)
    }
}

/// An LWT result: the outcome and the current values it reported.
#[derive(Clone, Debug, PartialEq)]
pub struct Lwt {
    pub applied: bool,
    columns: Vec<(String, Option<CqlValue>)>,
}

impl Lwt {
    /// From column names and values of the result's first row.
    pub fn from_row(names: &[String], values: Vec<Option<CqlValue>>) -> Result<Self, String> {
        let first = names.first().ok_or("empty LWT result")?;
        if first != "[applied]" {
            return Err(format!("LWT result starts with {first:?}, not [applied]"));
        }
        let mut values = values.into_iter();
        let applied = match values.next() {
            Some(Some(CqlValue::Boolean(b))) => b,
            other => return Err(format!("[applied] is not a boolean: {other:?}")),
        };
        let columns = names[1..].iter().cloned().zip(values).collect();
        Ok(Self { applied, columns })
    }

    /// A blob column of the existing row (when reported and not null).
    pub fn blob(&self, name: &str) -> Option<&[u8]> {
        match self.get(name) {
            Some(CqlValue::Blob(b)) => Some(b),
            _ => None,
        }
    }

    /// The primitive's answer, when the result gives it: applied, or the
    /// stored value that blocked it (`None`: the result reported `v` as null,
    /// there is no row). `Unreported` when the write was not applied and the
    /// result did not say what is stored: the caller must read it.
    pub fn outcome(&self) -> Outcome {
        if self.applied {
            Outcome::Known(Applied::Yes)
        } else if self.columns.iter().any(|(n, _)| n == "v") {
            Outcome::Known(Applied::No(self.blob("v").map(<[u8]>::to_vec)))
        } else {
            Outcome::Unreported
        }
    }

    fn get(&self, name: &str) -> Option<&CqlValue> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    fn check(cols: &[&str], values: Vec<Option<CqlValue>>, expected: Outcome) {
        let l = Lwt::from_row(&names(cols), values).unwrap();
        assert_eq!(l.outcome(), expected, "{cols:?}");
    }

    fn known(a: Applied<Option<Vec<u8>>>) -> Outcome {
        Outcome::Known(a)
    }

    fn b(v: bool) -> Option<CqlValue> {
        Some(CqlValue::Boolean(v))
    }

    fn blob(x: &[u8]) -> Option<CqlValue> {
        Some(CqlValue::Blob(x.to_vec()))
    }

    #[test]
    fn applied_shapes() {
        // Cassandra: only [applied].
        check(&["[applied]"], vec![b(true)], known(Applied::Yes));
        // Scylla: [applied] plus every column, as nulls.
        check(
            &["[applied]", "p", "v"],
            vec![b(true), None, None],
            known(Applied::Yes),
        );
        check(
            &["[applied]", "p", "c", "v"],
            vec![b(true), None, None, None],
            known(Applied::Yes),
        );
    }

    #[test]
    fn not_applied_shapes_report_the_stored_row() {
        // Scylla, row table: every column of the existing row.
        check(
            &["[applied]", "p", "v"],
            vec![b(false), blob(b"key"), blob(b"\x01\"usr_eu_1\"")],
            known(Applied::No(Some(b"\x01\"usr_eu_1\"".to_vec()))),
        );
        // Scylla, partitioned table.
        check(
            &["[applied]", "p", "c", "v"],
            vec![b(false), blob(b"eu"), blob(b"eu-1"), blob(b"rec")],
            known(Applied::No(Some(b"rec".to_vec()))),
        );
        // Cassandra under `IF v = ?`: only the condition's column.
        check(
            &["[applied]", "v"],
            vec![b(false), blob(b"old")],
            known(Applied::No(Some(b"old".to_vec()))),
        );
        // No row under `IF v = ?`: Scylla reports nulls (no holder); a bare
        // [applied] says nothing, so the caller must read the row rather
        // than answer a holder it was not told.
        check(
            &["[applied]", "p", "v"],
            vec![b(false), None, None],
            known(Applied::No(None)),
        );
        check(&["[applied]"], vec![b(false)], Outcome::Unreported);
        check(
            &["[applied]", "p"],
            vec![b(false), blob(b"key")],
            Outcome::Unreported,
        );
    }

    #[test]
    fn malformed_results() {
        assert!(Lwt::from_row(&[], vec![]).is_err());
        assert!(Lwt::from_row(&names(&["v"]), vec![Some(CqlValue::Text("u".into()))]).is_err());
        assert!(Lwt::from_row(&names(&["[applied]"]), vec![None]).is_err());
        assert!(Lwt::from_row(&names(&["[applied]"]), vec![Some(CqlValue::Int(1))]).is_err());
        // A `v` that is not a blob is not a value of ours.
        let l = Lwt::from_row(
            &names(&["[applied]", "v"]),
            vec![b(false), Some(CqlValue::Text("x".into()))],
        )
        .unwrap();
        assert_eq!(l.outcome(), known(Applied::No(None)));
    }

    #[test]
    fn timed_out_writes_settle_on_what_is_stored() {
        let mine = b"mine".to_vec();
        assert_eq!(settle(Some(mine.clone()), Some(&mine)), Applied::Yes);
        assert_eq!(
            settle(Some(b"theirs".to_vec()), Some(&mine)),
            Applied::No(Some(b"theirs".to_vec()))
        );
        assert_eq!(settle(None, Some(&mine)), Applied::No(None));
        // A delete: applied when nothing is left.
        assert_eq!(settle(None, None), Applied::Yes);
        assert_eq!(settle(Some(mine.clone()), None), Applied::No(Some(mine)));
    }
}
