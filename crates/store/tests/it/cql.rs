//! The conformance suite on the CQL backend against a real server: the
//! three-datacenter Apache Cassandra cluster of `cargo xtask cassandra up`
//! (named by `DOMICILE_CQL_NODES` and `DOMICILE_CQL_DCS`), with the schema
//! `domicile schema apply` writes for `deploy/cassandra/regions.toml`, in
//! fresh keyspaces dropped afterwards.
//!
//! `cargo xtask test` starts the cluster and sets the variables; without
//! them the test writes SKIPPED with the reason to the runner's output
//! (`CqlStores::for_test`), and xtask says what the machine lacks.

use domicile_core::topology::{StoreConfig, Topology};
use domicile_store::{ScyllaRegion, conformance, scylla};
use domicile_testkit::config::CqlStores;
use std::path::Path;

/// `deploy/cassandra/regions.toml` pointed at `cluster`, every keyspace
/// renamed with its suffix so each run starts empty.
fn topology(cluster: &CqlStores) -> Topology {
    let suffix = &cluster.suffix;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/cassandra/regions.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut t = Topology::parse(&file, &text).unwrap();
    for r in t.regions.values_mut() {
        let StoreConfig::Scylla(c) = &mut r.store else {
            panic!(
                "region {} of {} is not on the CQL backend",
                r.code,
                file.display()
            );
        };
        let node = cluster
            .nodes
            .get(&c.datacenter)
            .unwrap_or_else(|| panic!("the cluster has no datacenter {}", c.datacenter));
        c.nodes = vec![node.clone()];
        c.keyspace = format!("{}_{suffix}", c.keyspace);
    }
    let StoreConfig::Scylla(ix) = &mut t.index.store else {
        panic!("the index of {} is not on the CQL backend", file.display());
    };
    ix.keyspace = format!("{}_{suffix}", ix.keyspace);
    t
}

#[tokio::test]
async fn the_cql_backend_conforms_on_cassandra() {
    let Some(cluster) = CqlStores::for_test("cql::the_cql_backend_conforms_on_cassandra", "t")
    else {
        return;
    };
    let t = topology(&cluster);
    let mut log = Vec::new();
    scylla::schema::apply(&t, 1_700_000_000, &mut |s| log.push(s.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("schema apply failed: {e}\n{}", log.join("\n")));
    // The suite's records are region eu's.
    let code = domicile_core::RegionCode::parse("eu").unwrap();
    let eu = &t.regions[&code];
    let StoreConfig::Scylla(eu_cfg) = &eu.store else {
        unreachable!("checked above")
    };
    let StoreConfig::Scylla(ix_cfg) = &t.index.store else {
        unreachable!("checked above")
    };
    let region = ScyllaRegion::connect(eu_cfg, &code).await.unwrap();
    conformance::region_store(&region.store()).await;
    conformance::index_store(&region.index(ix_cfg).await.unwrap()).await;

    // Residency at the storage level: the server reports the region's
    // keyspace replicated only in its own datacenter...
    let placed = region.store().placement().await.unwrap();
    assert_eq!(placed.to_string(), "NetworkTopologyStrategy {eu:1}");
    assert!(placed.violations("eu").is_empty(), "{placed}");
    // ...and a keyspace planted with a replica in another datacenter is
    // reported as the violation it is.
    let session = scylla::connect(eu_cfg).await.unwrap();
    let mut planted = eu_cfg.clone();
    planted.keyspace = format!("{}_planted", eu_cfg.keyspace);
    planted.replication = vec![("eu".into(), 1), ("us".into(), 1)];
    for statement in scylla::schema::render(scylla::schema::REGION_V1, &planted) {
        session
            .query_unpaged(scylla::schema::ddl(&statement), ())
            .await
            .unwrap();
    }
    let wrong = ScyllaRegion::connect(&planted, &code)
        .await
        .unwrap()
        .store()
        .placement()
        .await
        .unwrap();
    assert_eq!(
        wrong.violations("eu"),
        vec!["1 replica(s) in datacenter us".to_owned()],
        "{wrong}"
    );

    let mut keyspaces: Vec<&str> = t
        .regions
        .values()
        .filter_map(|r| match &r.store {
            StoreConfig::Scylla(c) => Some(c.keyspace.as_str()),
            StoreConfig::Embedded { .. } => None,
        })
        .collect();
    keyspaces.push(&ix_cfg.keyspace);
    keyspaces.push(&planted.keyspace);
    for ks in keyspaces {
        session
            .query_unpaged(
                scylla::schema::ddl(&format!("DROP KEYSPACE IF EXISTS {ks}")),
                (),
            )
            .await
            .unwrap();
    }
}
