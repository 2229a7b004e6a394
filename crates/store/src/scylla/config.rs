//! What CQL makes of the parsed Scylla settings: keyspace-name validation
//! and the keyspace replication map. `domicile-core` keeps the settings as
//! plain data and knows no CQL; `validate` is what `domicile check-config`
//! and node start call on a parsed topology, answering with the same
//! file/key/reason `ConfigError` as the rest of the configuration.

use domicile_core::topology::{ConfigError, ScyllaConfig, StoreConfig, Topology};

/// A keyspace (or table) name we are willing to interpolate into CQL:
/// `[a-z][a-z0-9_]*`, at most 48 characters.
pub fn valid_cql_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=48).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// The `replication` map of `CREATE KEYSPACE`: NetworkTopologyStrategy
/// naming each datacenter (never a bare `replication_factor`, which would
/// expand to every datacenter). Datacenter names are validated by the
/// configuration parser (no quotes can reach here).
pub fn replication_cql(cfg: &ScyllaConfig) -> String {
    let dcs: Vec<String> = cfg
        .replication
        .iter()
        .map(|(dc, rf)| format!("'{dc}': {rf}"))
        .collect();
    format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
}

/// Checks every Scylla keyspace name of the topology.
pub fn validate(t: &Topology) -> Result<(), ConfigError> {
    let stores = t
        .regions
        .values()
        .map(|r| (format!("regions.{}.store", r.code), &r.store))
        .chain(std::iter::once(("index.store".to_owned(), &t.index.store)));
    for (key, store) in stores {
        if let StoreConfig::Scylla(c) = store
            && !valid_cql_name(&c.keyspace)
        {
            return Err(ConfigError {
                file: t.source.clone(),
                key: format!("{key}.keyspace"),
                reason: format!(
                    "{:?} is not a keyspace name ([a-z][a-z0-9_]*, at most 48)",
                    c.keyspace
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{path::Path, time::Duration};

    const PRODUCTION: &str = include_str!("../../../../deploy/regions.production.toml");

    fn parse(text: &str) -> Topology {
        Topology::parse(Path::new("regions.production.toml"), text).unwrap()
    }

    /// A keyspace setting (`from` replaced by `to`) and the key and reason
    /// `validate` must answer, or `None` when it must accept it.
    fn check(from: &str, to: &str, expected: Option<(&str, &str)>) {
        assert!(PRODUCTION.contains(from), "fixture lacks {from:?}");
        let t = parse(&PRODUCTION.replacen(from, to, 1));
        match (validate(&t), expected) {
            (Ok(()), None) => {}
            (Err(e), Some((key, reason))) => {
                assert_eq!(e.key, key, "{e}");
                assert!(e.reason.contains(reason), "{e}");
                assert_eq!(e.file, Path::new("regions.production.toml"));
            }
            (got, want) => panic!("{to}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn keyspace_names_are_checked_with_file_key_and_reason() {
        let eu = "datacenter = \"eu\"";
        check(eu, eu, None);
        check(
            eu,
            "datacenter = \"eu\", keyspace = \"Bad-Name\"",
            Some(("regions.eu.store.keyspace", "not a keyspace name")),
        );
        check(
            eu,
            "datacenter = \"eu\", keyspace = \"eu; DROP KEYSPACE x\"",
            Some(("regions.eu.store.keyspace", "not a keyspace name")),
        );
        check(
            eu,
            &format!("datacenter = \"eu\", keyspace = \"{}\"", "k".repeat(49)),
            Some(("regions.eu.store.keyspace", "at most 48")),
        );
        check(
            "keyspace = \"domicile_index\"",
            "keyspace = \"1index\"",
            Some(("index.store.keyspace", "not a keyspace name")),
        );
        check(
            "keyspace = \"domicile_index\"",
            "keyspace = \"index_2\"",
            None,
        );
    }

    #[test]
    fn names() {
        for (name, ok) in [
            ("domicile_eu", true),
            ("a", true),
            ("", false),
            ("_x", false),
            ("9x", false),
            ("Eu", false),
            ("e-u", false),
            ("e\"u", false),
        ] {
            assert_eq!(valid_cql_name(name), ok, "{name:?}");
        }
    }

    #[test]
    fn replication_names_each_datacenter() {
        let cfg = |replication: Vec<(String, u32)>| ScyllaConfig {
            nodes: vec![],
            datacenter: "eu-dc".into(),
            keyspace: "k".into(),
            replication,
            request_timeout: Duration::from_secs(2),
            username: None,
            password_env: None,
        };
        assert_eq!(
            replication_cql(&cfg(vec![("eu-dc".into(), 3)])),
            "{'class': 'NetworkTopologyStrategy', 'eu-dc': 3}"
        );
        assert_eq!(
            replication_cql(&cfg(vec![("eu-dc".into(), 3), ("us-dc".into(), 5)])),
            "{'class': 'NetworkTopologyStrategy', 'eu-dc': 3, 'us-dc': 5}"
        );
        // The production topology, as parsed by core.
        let t = parse(PRODUCTION);
        let StoreConfig::Scylla(ix) = &t.index.store else {
            panic!("the production index is on scylla")
        };
        assert_eq!(
            replication_cql(ix),
            "{'class': 'NetworkTopologyStrategy', 'ap': 3, 'eu': 3, 'us': 3}"
        );
    }
}
