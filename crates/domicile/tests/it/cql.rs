//! The federation on the CQL backend: edge and three nodes with every
//! store in the three-datacenter Apache Cassandra cluster of `cargo xtask
//! cassandra up` (one datacenter per region), schema from `domicile schema
//! apply`, fresh keyspaces per test, dropped afterwards.
//!
//! `cargo xtask test` starts the cluster and sets its variables; without
//! them each test writes SKIPPED with the reason to the runner's output
//! (`CqlStores::for_test`).

use crate::procs::*;
use domicile_core::topology::ScyllaConfig;
use domicile_proto::v1 as pb;
use domicile_testkit::config::CqlStores;
use std::time::Duration;

/// A session to the cluster through `dc`'s node.
fn cql_config(c: &CqlStores, dc: &str) -> ScyllaConfig {
    ScyllaConfig {
        nodes: vec![c.nodes[dc].clone()],
        datacenter: dc.into(),
        keyspace: c.keyspace(dc),
        replication: vec![(dc.into(), 1)],
        request_timeout: Duration::from_secs(10),
        username: None,
        password_env: None,
    }
}

/// Runs CQL statements through `dc`'s node.
async fn cql(c: &CqlStores, dc: &str, statements: &[String]) {
    let session = domicile_store::scylla::connect(&cql_config(c, dc))
        .await
        .unwrap();
    for s in statements {
        session
            .query_unpaged(s.as_str(), ())
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// Drops every keyspace of `c`.
async fn drop_keyspaces(c: &CqlStores) {
    let drops: Vec<String> = ["eu", "us", "ap", "index"]
        .iter()
        .map(|k| format!("DROP KEYSPACE IF EXISTS {}", c.keyspace(k)))
        .collect();
    cql(c, "eu", &drops).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_federation_runs_on_cassandra() {
    let Some(c) = CqlStores::for_test("cql::the_federation_runs_on_cassandra", "fed") else {
        return;
    };
    let mut fed = Federation::start_with(Options {
        cql: Some(c.clone()),
        ..Options::default()
    });
    let mut edge = fed.client().await;

    // Register, sign in, refresh and read the profile through the edge; the
    // user is homed by the domain rule (example.de → eu).
    let reg = edge
        .register(from("198.51.100.7", register("ada@example.de")))
        .await
        .unwrap();
    assert_eq!(route_of(reg.metadata()).0, "eu");
    let login = edge
        .login(from("203.0.113.9", login("ada@example.de")))
        .await
        .unwrap()
        .into_inner();
    let refreshed = edge
        .refresh(pb::RefreshRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let profile = edge
        .get_profile(bearer(pb::GetProfileRequest {}, &refreshed.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.email, "ada@example.de");
    // The spent token is reuse: the session ends.
    let reused = edge
        .refresh(pb::RefreshRequest {
            refresh_token: login.refresh_token,
        })
        .await;
    assert_eq!(
        reused.map(|_| ()).unwrap_err().code(),
        tonic::Code::Unauthenticated
    );

    // Two registrations of one email at once, preferring two regions: the
    // index's claim is SERIAL across the datacenters, so exactly one wins.
    let mut other = fed.client().await;
    let claim = |region: &str| pb::RegisterRequest {
        region_preference: region.into(),
        ..register("race@example.org")
    };
    let (a, b) = tokio::join!(
        edge.register(from("203.0.113.10", claim("us"))),
        other.register(from("203.0.113.11", claim("ap")))
    );
    assert_eq!(
        [a.is_ok(), b.is_ok()].iter().filter(|w| **w).count(),
        1,
        "exactly one registration wins: {a:?} / {b:?}"
    );
    // The loser is told the email is taken, or where its holder lives
    // (docs/api.md), as on the embedded store.
    for r in [&a, &b] {
        if let Err(s) = r {
            assert!(
                matches!(
                    s.code(),
                    tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition
                ),
                "{s:?}"
            );
        }
    }
    let users = fed.users().await;
    assert_eq!(
        users.iter().map(|(_, n)| n).sum::<u64>(),
        2,
        "ada and one race winner: {users:?}"
    );

    // The residency report passes, with each keyspace placed only in its
    // region's datacenter as the server reports it.
    let config = fed.config.to_str().unwrap().to_owned();
    let (ok, out) = fed.run(&["residency", "report", "--config", &config]);
    assert!(ok && !out.contains("FAIL"), "{out}");
    for r in ["eu", "us", "ap"] {
        assert!(
            out.contains(&format!(
                "{r}'s store is kept only in its region (NetworkTopologyStrategy {{{r}:1}})"
            )),
            "{out}"
        );
    }
    fed.stop_all();
    drop_keyspaces(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_keyspace_replicated_elsewhere_fails_the_report() {
    let Some(c) = CqlStores::for_test(
        "cql::a_region_keyspace_replicated_elsewhere_fails_the_report",
        "planted",
    ) else {
        return;
    };
    // Planted before the schema is applied (which creates keyspaces only
    // if they do not exist): eu's keyspace with a replica in us.
    cql(
        &c,
        "eu",
        &[format!(
            "CREATE KEYSPACE {} WITH replication = {{'class': 'NetworkTopologyStrategy', 'eu': 1, 'us': 1}}",
            c.keyspace("eu")
        )],
    )
    .await;
    let mut fed = Federation::start_with(Options {
        cql: Some(c.clone()),
        ..Options::default()
    });
    let config = fed.config.to_str().unwrap().to_owned();
    let (ok, out) = fed.run(&["residency", "report", "--config", &config]);
    assert!(!ok, "the report must exit non-zero:\n{out}");
    assert!(
        out.contains("FAIL eu's store is kept only in its region")
            && out.contains("1 replica(s) in datacenter us"),
        "{out}"
    );
    assert!(
        out.contains("us's store is kept only in its region (NetworkTopologyStrategy {us:1})"),
        "the other regions pass: {out}"
    );
    fed.stop_all();
    drop_keyspaces(&c).await;
}
