//! The versioned CQL schema (`deploy/scylla/v<N>/`) and applying it.
//!
//! Templates name `{keyspace}` and `{replication}`; rendering fills them
//! from the topology: each region's keyspace replicated only in its own
//! datacenter, the index keyspace in every region's datacenter. Applying is
//! idempotent (`IF NOT EXISTS` everywhere) and records the version in each
//! keyspace's `schema_version` table; a keyspace at a newer version is
//! refused rather than touched.

use super::{connect, replication_cql};
use crate::{Result, StoreError};
use domicile_core::topology::{ScyllaConfig, StoreConfig, Topology};

/// The schema version this build writes.
pub const VERSION: i32 = 1;
/// The region keyspace template, version 1.
pub const REGION_V1: &str = include_str!("../../../../deploy/scylla/v1/region.cql");
/// The index keyspace template, version 1.
pub const INDEX_V1: &str = include_str!("../../../../deploy/scylla/v1/index.cql");

/// The statements of a template for one keyspace, comments removed.
pub fn render(template: &str, cfg: &ScyllaConfig) -> Vec<String> {
    let text: String = template
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.replace("{keyspace}", &cfg.keyspace)
                .replace("{replication}", &replication_cql(cfg))
        })
        .collect()
}

/// What `apply` would run, per keyspace, in order: every Scylla region, then
/// the index when it is on Scylla.
pub fn plan(t: &Topology) -> Vec<(String, ScyllaConfig, Vec<String>)> {
    let mut out = Vec::new();
    for r in t.regions.values() {
        if let StoreConfig::Scylla(c) = &r.store {
            out.push((
                format!("region {}", r.code),
                c.clone(),
                render(REGION_V1, c),
            ));
        }
    }
    if let StoreConfig::Scylla(ix) = &t.index.store {
        out.push(("index".to_owned(), ix.clone(), render(INDEX_V1, ix)));
    }
    out
}

/// Applies the schema, reporting each statement through `say`. Each region's
/// keyspace is created through a session to that region's datacenter; the
/// index through the first region's.
/// Longest a schema statement may take: DDL waits for the cluster's
/// schema agreement, far longer than a request's timeout on a busy one.
pub const DDL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `text` as a statement with [`DDL_TIMEOUT`].
pub fn ddl(text: &str) -> ::scylla::statement::unprepared::Statement {
    let mut st = ::scylla::statement::unprepared::Statement::new(text);
    st.set_request_timeout(Some(DDL_TIMEOUT));
    st
}

pub async fn apply(t: &Topology, now: i64, say: &mut (dyn FnMut(&str) + Send)) -> Result<()> {
    // Keyspace names go into the statements' text: check them all first.
    super::validate(t).map_err(|e| StoreError::Open {
        store: "scylla schema".into(),
        reason: e.to_string(),
    })?;
    let plan = plan(t);
    if plan.is_empty() {
        say("no store in this topology is on scylla: nothing to do");
        return Ok(());
    }
    let first_region = t.regions.values().find_map(|r| match &r.store {
        StoreConfig::Scylla(c) => Some(c.clone()),
        StoreConfig::Embedded { .. } => None,
    });
    for (what, cfg, statements) in plan {
        let via = if cfg.nodes.is_empty() {
            first_region.clone().unwrap_or_else(|| cfg.clone())
        } else {
            cfg.clone()
        };
        say(&format!(
            "-- {what}: keyspace {} via datacenter {} ({})",
            cfg.keyspace,
            via.datacenter,
            via.nodes.join(", ")
        ));
        let session = connect(&via).await?;
        let name = format!("scylla:{}", cfg.keyspace);
        let err = |e: &dyn std::fmt::Display| StoreError::Backend {
            store: name.clone(),
            table: "schema",
            op: "schema apply",
            reason: e.to_string(),
        };
        // Refuse to touch a keyspace a newer build has migrated.
        let probe = format!(
            "SELECT version FROM {}.schema_version WHERE component = 'schema'",
            cfg.keyspace
        );
        if let Ok(r) = session.query_unpaged(probe, ()).await
            && let Ok(rows) = r.into_rows_result()
            && let Ok(Some((Some(v),))) = rows.maybe_first_row::<(Option<i32>,)>()
            && v > VERSION
        {
            return Err(StoreError::FutureFormat {
                store: name.clone(),
                found: v.unsigned_abs(),
                supported: VERSION.unsigned_abs(),
            });
        }
        for s in &statements {
            say(&format!("{s};"));
            session
                .query_unpaged(ddl(s), ())
                .await
                .map_err(|e| err(&e))?;
        }
        let record = format!(
            "INSERT INTO {}.schema_version (component, version, applied_at) VALUES ('schema', {VERSION}, {now})",
            cfg.keyspace
        );
        say(&format!("{record};"));
        session
            .query_unpaged(record, ())
            .await
            .map_err(|e| err(&e))?;
    }
    say(&format!("schema version {VERSION} applied"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(ks: &str, dcs: &[&str]) -> ScyllaConfig {
        ScyllaConfig {
            nodes: vec!["10.0.0.1:9042".into()],
            datacenter: dcs[0].into(),
            keyspace: ks.into(),
            replication: dcs.iter().map(|d| ((*d).to_owned(), 3)).collect(),
            request_timeout: Duration::from_secs(2),
            username: None,
            password_env: None,
        }
    }

    #[test]
    fn region_keyspaces_name_only_their_datacenter() {
        let s = render(REGION_V1, &cfg("domicile_eu", &["eu-dc"]));
        assert_eq!(
            s[0],
            "CREATE KEYSPACE IF NOT EXISTS domicile_eu WITH replication = {'class': 'NetworkTopologyStrategy', 'eu-dc': 3} AND durable_writes = true"
        );
        assert!(
            !s[0].contains("replication_factor"),
            "a bare replication_factor would expand to every DC"
        );
        let tables: Vec<&String> = s.iter().filter(|x| x.starts_with("CREATE TABLE")).collect();
        assert_eq!(tables.len(), 17, "{s:#?}");
        for t in tables {
            assert!(
                t.starts_with("CREATE TABLE IF NOT EXISTS domicile_eu."),
                "{t}"
            );
        }
        assert!(
            s.iter()
                .all(|x| !x.contains('{') || x.starts_with("CREATE KEYSPACE")),
            "placeholders filled: {s:#?}"
        );
        assert!(s.iter().all(|x| !x.contains("--")), "comments removed");
    }

    /// The schema creates every table the store's aggregates use, in the
    /// shape the primitive's statements expect.
    fn check_shapes(template: &str, tables: &[&crate::Table]) {
        let s = render(template, &cfg("ks", &["dc"]));
        for t in tables {
            let create = s
                .iter()
                .find(|x| x.starts_with(&format!("CREATE TABLE IF NOT EXISTS ks.{} (", t.name)))
                .unwrap_or_else(|| panic!("no table {} in {s:#?}", t.name));
            let shape = match t.shape {
                crate::Shape::Row => "( p blob PRIMARY KEY, v blob )",
                crate::Shape::Partitioned => {
                    "( p blob, c blob, v blob, PRIMARY KEY ((p), c) ) WITH CLUSTERING ORDER BY (c DESC)"
                }
            };
            assert!(create.contains(shape), "{create}");
        }
    }

    #[test]
    fn the_schema_has_every_table_in_the_primitive_shape() {
        check_shapes(REGION_V1, crate::region::REGION_TABLES);
        check_shapes(INDEX_V1, crate::index::INDEX_TABLES);
    }

    #[test]
    fn the_index_keyspace_names_every_datacenter() {
        let s = render(
            INDEX_V1,
            &cfg("domicile_index", &["eu-dc", "us-dc", "ap-dc"]),
        );
        assert!(
            s[0].contains(
                "{'class': 'NetworkTopologyStrategy', 'eu-dc': 3, 'us-dc': 3, 'ap-dc': 3}"
            ),
            "{}",
            s[0]
        );
        assert!(
            s.iter()
                .any(|x| x.starts_with("CREATE TABLE IF NOT EXISTS domicile_index.home_index"))
        );
        // No personal data columns in the index.
        let table = s.iter().find(|x| x.contains("home_index")).unwrap();
        for banned in ["email", "name", "phone", "password"] {
            assert!(!table.contains(banned), "{table}");
        }
    }

    #[test]
    fn plans_follow_the_topology() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../regions.toml"))
                .unwrap();
        let t = Topology::parse(std::path::Path::new("regions.toml"), &text).unwrap();
        assert!(plan(&t).is_empty(), "the local federation is embedded");
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/regions.production.toml"
        ))
        .unwrap();
        let t = Topology::parse(std::path::Path::new("regions.production.toml"), &text).unwrap();
        let p = plan(&t);
        let keyspaces: Vec<(&str, String)> = p
            .iter()
            .map(|(_, c, st)| (c.keyspace.as_str(), st[0].clone()))
            .collect();
        assert_eq!(keyspaces.len(), 4);
        for (ks, dc) in [
            ("domicile_ap", "ap"),
            ("domicile_eu", "eu"),
            ("domicile_us", "us"),
        ] {
            let create = &keyspaces.iter().find(|(k, _)| *k == ks).unwrap().1;
            assert!(
                create.contains(&format!(
                    "{{'class': 'NetworkTopologyStrategy', '{dc}': 3}}"
                )),
                "{create}"
            );
        }
        let index = &keyspaces
            .iter()
            .find(|(k, _)| *k == "domicile_index")
            .unwrap()
            .1;
        assert!(index.contains("'ap': 3, 'eu': 3, 'us': 3"), "{index}");
    }
}
