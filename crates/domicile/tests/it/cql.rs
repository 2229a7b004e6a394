//! The federation on the CQL backend: edge and three nodes with every
//! store in the three-datacenter Apache Cassandra cluster of `cargo xtask
//! cassandra up` (one datacenter per region), schema from `domicile schema
//! apply`, fresh keyspaces per test, dropped afterwards.
//!
//! `cargo xtask test` starts the cluster and sets its variables; without
//! them each test writes SKIPPED with the reason to the runner's output
//! (`CqlStores::for_test`).
//!
//! The tests share the cluster, except the one that takes a Cassandra node
//! down: it holds [`CLUSTER`] exclusively, the others share it. (Test
//! binaries run one at a time under `cargo test`; `.config/nextest.toml`
//! keeps the CQL tests of every binary in one group of one at a time.)

use crate::procs::*;
use domicile_core::topology::ScyllaConfig;
use domicile_proto::v1 as pb;
use domicile_testkit::config::CqlStores;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

/// Held shared by the tests that use the cluster as it is, exclusively by
/// the one that takes a node down.
static CLUSTER: RwLock<()> = RwLock::const_new(());

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
            .query_unpaged(domicile_store::scylla::schema::ddl(s), ())
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// Flushes the cluster and gives, per datacenter, the keyspaces of `c` its
/// node holds SSTables of; `None` (having written SKIPPED for `name`) when
/// the cluster was not started by `cargo xtask`.
fn keyspaces_on_disk(
    c: &CqlStores,
    name: &str,
) -> Option<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>> {
    let Some(control) = &c.control else {
        eprintln!(
            "SKIPPED: {name}: the SSTable check: DOMICILE_CQL_DIR / DOMICILE_CQL_XTASK are not set"
        );
        return None;
    };
    control.flush().unwrap_or_else(|e| panic!("flush: {e}"));
    Some(
        ["eu", "us", "ap"]
            .iter()
            .map(|dc| {
                let ks = control.keyspaces_on_disk(dc, &c.suffix).unwrap();
                ((*dc).to_owned(), ks)
            })
            .collect(),
    )
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
    let _shared = CLUSTER.read().await;
    let mut fed = Federation::start_with(Options {
        cql: Some(c.clone()),
        ..Options::default()
    });
    fed.wait_until_routable().await;
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
    // On disk: each Cassandra node holds SSTables of its own region's
    // keyspace and of the index, and of no other region's.
    if let Some(on_disk) = keyspaces_on_disk(&c, "cql::the_federation_runs_on_cassandra") {
        for (dc, keyspaces) in &on_disk {
            let want: std::collections::BTreeSet<String> =
                [c.keyspace(dc), c.keyspace("index")].into();
            assert_eq!(keyspaces, &want, "{dc}'s node's data directory");
        }
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
    let _shared = CLUSTER.read().await;
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
    // The violation shows on disk too: an eu user's data lands in the us
    // node's data directory, which the SSTable check reports.
    fed.client()
        .await
        .register(register("ada@example.de"))
        .await
        .unwrap();
    if let Some(on_disk) = keyspaces_on_disk(
        &c,
        "cql::a_region_keyspace_replicated_elsewhere_fails_the_report",
    ) {
        assert!(
            on_disk["us"].contains(&c.keyspace("eu")),
            "the us node holds eu's keyspace: {on_disk:?}"
        );
        assert!(!on_disk["ap"].contains(&c.keyspace("eu")), "{on_disk:?}");
    }
    fed.stop_all();
    drop_keyspaces(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_under_registration_load_loses_nothing_on_cassandra() {
    let Some(c) = CqlStores::for_test(
        "cql::kill_9_of_a_node_under_registration_load_loses_nothing_on_cassandra",
        "crash",
    ) else {
        return;
    };
    let _shared = CLUSTER.read().await;
    let mut fed = Federation::start_with(Options {
        cql: Some(c.clone()),
        passwords: Some(OWASP_PASSWORDS),
        ..Options::default()
    });
    fed.wait_until_routable().await;
    crate::crash::kill_under_registration_load(&mut fed, "eu", "cqlcrash").await;
    fed.stop_all();
    drop_keyspaces(&c).await;
}

/// Starts the cluster's nodes that are down when dropped (or at `now`).
struct Revive(Option<domicile_testkit::config::ClusterControl>);

impl Revive {
    fn now(mut self) {
        if let Some(c) = self.0.take() {
            let out = c
                .bring_up()
                .unwrap_or_else(|e| panic!("cannot restart the node: {e}"));
            eprintln!("{out}");
        }
    }
}

impl Drop for Revive {
    fn drop(&mut self) {
        if let Some(c) = self.0.take()
            && let Err(e) = c.bring_up()
        {
            eprintln!("cannot restart the cluster's nodes: {e}");
        }
    }
}

/// Polls `f` until it gives `Some`, at most `bound`; how long it took.
async fn within<T, F: std::future::Future<Output = Option<T>>>(
    bound: Duration,
    what: &str,
    mut f: impl FnMut() -> F,
) -> (T, Duration) {
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return (v, started.elapsed());
        }
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One region's Cassandra node killed (SIGKILL): that region answers
/// UNAVAILABLE, the other two keep serving sign-in, refresh, profile and
/// registration (the index's SERIAL claims have two of three replicas; the
/// edge asks another region's nodes for index lookups), including a user
/// found only through the index; the node brought back, the region serves
/// again with its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_whose_cassandra_node_is_down_is_the_only_one_unavailable() {
    let name = "cql::a_region_whose_cassandra_node_is_down_is_the_only_one_unavailable";
    let Some(c) = CqlStores::for_test(name, "down") else {
        return;
    };
    let Some(control) = c.control.clone() else {
        eprintln!(
            "SKIPPED: {name}: DOMICILE_CQL_DIR / DOMICILE_CQL_XTASK are not set (the cluster was not started by `cargo xtask`, which can restart its nodes)"
        );
        return;
    };
    let _exclusive = CLUSTER.write().await;
    let mut fed = Federation::start_with(Options {
        cql: Some(c.clone()),
        ..Options::default()
    });
    fed.wait_until_routable().await;
    let mut edge = fed.client().await;
    // eu, us and ap users by domain.
    for email in ["ada@example.de", "bob@example.com", "chiyo@example.jp"] {
        edge.register(register(email))
            .await
            .unwrap_or_else(|s| panic!("{email}: {s:?}"));
    }
    // And one homed in us by preference whose email no rule places,
    // registered at the us node itself so that the edge has not cached
    // where she lives: later found only through the index.
    let mut us = domicile_proto::v1::identity_client::IdentityClient::connect(format!(
        "http://{}",
        fed.node_addrs["us"]
    ))
    .await
    .unwrap();
    us.register(pb::RegisterRequest {
        region_preference: "us".into(),
        ..register("dana@example.org")
    })
    .await
    .unwrap();
    let mut tokens = std::collections::BTreeMap::new();
    for email in ["bob@example.com", "chiyo@example.jp"] {
        let r = edge.login(login(email)).await.unwrap().into_inner();
        tokens.insert(email, r.refresh_token);
    }

    let pid = control.kill("eu").unwrap();
    eprintln!("killed eu's Cassandra node (pid {pid})");
    // Brought back even if an assertion below fails: the other tests
    // need the whole cluster.
    let revive = Revive(Some(control.clone()));
    // eu answers UNAVAILABLE (its node's store fails, then its readiness).
    let (_, took) = within(Duration::from_secs(60), "eu becomes UNAVAILABLE", || {
        let mut edge = edge.clone();
        async move {
            let r = edge.login(login("ada@example.de")).await;
            matches!(&r, Err(s) if s.code() == tonic::Code::Unavailable).then_some(())
        }
    })
    .await;
    eprintln!("eu answered UNAVAILABLE {took:?} after the kill");

    // us and ap keep answering, every request.
    let started = Instant::now();
    for email in ["bob@example.com", "chiyo@example.jp", "dana@example.org"] {
        let r = edge
            .login(from("192.0.2.50", login(email)))
            .await
            .unwrap_or_else(|s| panic!("{email} with eu down: {s:?}\n{}", fed.logs()));
        assert!(!r.get_ref().user_id.starts_with("usr_eu_"), "{email}");
        let profile = edge
            .get_profile(bearer(pb::GetProfileRequest {}, &r.get_ref().access_token))
            .await
            .unwrap_or_else(|s| panic!("{email}'s profile with eu down: {s:?}"));
        assert_eq!(profile.get_ref().email, email);
    }
    for (email, token) in &tokens {
        edge.refresh(pb::RefreshRequest {
            refresh_token: token.clone(),
        })
        .await
        .unwrap_or_else(|s| panic!("{email}'s refresh with eu down: {s:?}"));
    }
    eprintln!(
        "us and ap served 3 sign-ins, 3 profiles and 2 refreshes in {:?} with eu down",
        started.elapsed()
    );
    // Registration claims the email in the index with SERIAL across the
    // three datacenters: two of three replicas answer. Until the cluster's
    // failure detector marks eu down, a claim's Paxos round may wait on it
    // and time out (UNAVAILABLE, "retry shortly", nothing registered), and
    // one claim succeeding does not mean the detector has caught up (a CI
    // run saw the second time out after the first succeeded): each
    // registration is retried as a client would, within 30 s, and the wait
    // is reported.
    for email in ["eve@example.com", "fumi@example.jp", "gwen@example.com"] {
        let (_, took) = within(Duration::from_secs(30), "registering with eu down", || {
            let mut edge = edge.clone();
            async move {
                match edge.register(register(email)).await {
                    Ok(_) => Some(()),
                    Err(s) if s.code() == tonic::Code::Unavailable => None,
                    Err(s) => panic!("registering {email} with eu down: {s:?}"),
                }
            }
        })
        .await;
        eprintln!("registering {email} with eu down succeeded {took:?} after its first try");
    }
    // A new eu user cannot register while eu is down, and is not sent
    // elsewhere.
    let refused = edge.register(register("gus@example.de")).await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().code(),
        tonic::Code::Unavailable
    );

    // Back up: eu serves again, with its data.
    revive.now();
    let (_, took) = within(Duration::from_secs(60), "eu serves again", || {
        let mut edge = edge.clone();
        async move { edge.login(login("ada@example.de")).await.ok() }
    })
    .await;
    eprintln!("eu signed ada in {took:?} after its node was back");
    fed.stop_all();
    drop_keyspaces(&c).await;
}
