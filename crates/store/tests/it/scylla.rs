//! The conformance suite against a real ScyllaDB, when one is configured:
//! `DOMICILE_SCYLLA_NODES="<datacenter>=<host:port>[,<host:port>…]"`.
//! Each run uses fresh keyspaces and drops them afterwards.

use domicile_core::{RegionCode, topology::ScyllaConfig};
use domicile_store::{ScyllaRegion, conformance, scylla};
use std::time::Duration;

const VAR: &str = "DOMICILE_SCYLLA_NODES";

fn configured() -> Option<(String, Vec<String>)> {
    let v = std::env::var(VAR).ok()?;
    let (dc, nodes) = v.split_once('=')?;
    Some((dc.to_owned(), nodes.split(',').map(str::to_owned).collect()))
}

#[tokio::test]
async fn scylla_backend_conforms() {
    let Some((dc, nodes)) = configured() else {
        eprintln!(
            "SKIPPED: the Scylla conformance run needs {VAR}=<datacenter>=<host:port>,… (no cluster configured)"
        );
        return;
    };
    let suffix: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_000;
    let base = ScyllaConfig {
        nodes,
        datacenter: dc.clone(),
        keyspace: format!("domicile_test_{suffix}"),
        replication: vec![(dc.clone(), 1)],
        request_timeout: Duration::from_secs(10),
        username: None,
        password_env: None,
    };
    let index = ScyllaConfig {
        keyspace: format!("domicile_test_ix_{suffix}"),
        nodes: vec![],
        ..base.clone()
    };
    let session = scylla::connect(&base).await.unwrap();
    for (template, cfg) in [
        (scylla::schema::REGION_V1, &base),
        (scylla::schema::INDEX_V1, &index),
    ] {
        for s in scylla::schema::render(template, cfg) {
            session.query_unpaged(s, ()).await.unwrap();
        }
    }
    let region =
        ScyllaRegion::with_session(session.clone(), &base, &RegionCode::parse("eu").unwrap())
            .await
            .unwrap();
    conformance::region_store(&region.store()).await;
    conformance::index_store(&region.index(&index).await.unwrap()).await;
    for ks in [&base.keyspace, &index.keyspace] {
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
            .await
            .unwrap();
    }
}
