//! Reading the outcome of a conditional write (LWT).
//!
//! The result row starts with `[applied]` (boolean). When the write was not
//! applied, ScyllaDB returns every column of the existing row after it (and
//! Cassandra only the ones the condition named); when it was applied, Scylla
//! may return the columns as nulls. So the row is read untyped: column 0 is
//! the outcome, the rest is looked up by name.

use scylla::value::CqlValue;

/// An LWT result: the outcome and the current values it reported.
#[derive(Clone, Debug, PartialEq)]
pub struct Lwt {
    pub applied: bool,
    columns: Vec<(String, Option<CqlValue>)>,
    /// Set when the result could not be read.
    pub malformed: Option<String>,
}

impl Lwt {
    /// A result that could not be read.
    pub fn malformed(reason: String) -> Self {
        Self {
            applied: false,
            columns: Vec::new(),
            malformed: Some(reason),
        }
    }

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
        Ok(Self {
            applied,
            columns,
            malformed: None,
        })
    }

    /// A text column of the existing row (when reported and not null).
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(CqlValue::as_text)
            .map(String::as_str)
    }

    #[cfg(test)]
    pub fn bigint(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(CqlValue::as_bigint)
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

    #[test]
    fn applied_shapes() {
        // Cassandra-style: only [applied].
        let l = Lwt::from_row(&names(&["[applied]"]), vec![Some(CqlValue::Boolean(true))]).unwrap();
        assert!(l.applied);
        assert_eq!(l.text("user_id"), None);
        // Scylla-style: [applied] plus the row's columns as nulls.
        let l = Lwt::from_row(
            &names(&["[applied]", "key", "user_id"]),
            vec![Some(CqlValue::Boolean(true)), None, None],
        )
        .unwrap();
        assert!(l.applied);
        assert_eq!(l.text("user_id"), None);
    }

    #[test]
    fn not_applied_shapes() {
        // Scylla: every column of the existing row, in table order.
        let l = Lwt::from_row(
            &names(&[
                "[applied]",
                "key",
                "created_at",
                "expires_at",
                "region",
                "state",
                "user_id",
            ]),
            vec![
                Some(CqlValue::Boolean(false)),
                Some(CqlValue::Blob(vec![1; 32])),
                Some(CqlValue::BigInt(10)),
                None,
                Some(CqlValue::Text("us".into())),
                Some(CqlValue::Text("active".into())),
                Some(CqlValue::Text("usr_us_x".into())),
            ],
        )
        .unwrap();
        assert!(!l.applied);
        assert_eq!(
            (l.text("region"), l.text("state"), l.text("user_id")),
            (Some("us"), Some("active"), Some("usr_us_x"))
        );
        assert_eq!(
            (l.bigint("created_at"), l.bigint("expires_at")),
            (Some(10), None)
        );
        // Cassandra: only the columns of the condition.
        let l = Lwt::from_row(
            &names(&["[applied]", "user_id"]),
            vec![
                Some(CqlValue::Boolean(false)),
                Some(CqlValue::Text("u1".into())),
            ],
        )
        .unwrap();
        assert_eq!(l.text("user_id"), Some("u1"));
        // A non-existent row under `IF col = ?`: not applied, nothing reported.
        let l =
            Lwt::from_row(&names(&["[applied]"]), vec![Some(CqlValue::Boolean(false))]).unwrap();
        assert!(!l.applied);
    }

    #[test]
    fn malformed_results() {
        assert!(Lwt::from_row(&[], vec![]).is_err());
        assert!(
            Lwt::from_row(&names(&["user_id"]), vec![Some(CqlValue::Text("u".into()))]).is_err()
        );
        assert!(Lwt::from_row(&names(&["[applied]"]), vec![None]).is_err());
        assert!(Lwt::from_row(&names(&["[applied]"]), vec![Some(CqlValue::Int(1))]).is_err());
    }
}
