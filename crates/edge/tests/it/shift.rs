//! Rolling a region from one node to another under load (canary weights
//! through SIGHUP-style reloads, then a drain), and reloads that are refused.

use crate::harness::*;
use domicile_core::{RegionCode, topology::Topology};
use domicile_node::{Node, NodeOptions, OsEntropy, SystemClock};
use domicile_proto::v1 as pb;
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

/// `fed`'s configuration with region us (first served by `first`) served by
/// `nodes` (`(name, addr, weight)`).
fn with_us_nodes(
    fed: &Fed,
    first: std::net::SocketAddr,
    nodes: &[(&str, std::net::SocketAddr, u32)],
) -> String {
    let stable = format!("nodes = [{{ address = \"{first}\" }}]");
    assert!(fed.config_text.contains(&stable));
    let list: Vec<String> = nodes
        .iter()
        .map(|(name, addr, w)| {
            format!("{{ name = \"{name}\", address = \"{addr}\", weight = {w} }}")
        })
        .collect();
    fed.config_text
        .replace(&stable, &format!("nodes = [{}]", list.join(", ")))
}

async fn metric(addr: std::net::SocketAddr, line_start: &str) -> u64 {
    let (_, text) = http_get(addr, "/metrics").await;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_moves_to_a_new_node_under_load_without_one_failed_request() {
    let mut fed = Fed::start().await;
    let edge = fed.edge.as_ref().unwrap();
    let a = fed.nodes["us"].addr;
    let b_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = b_listener.local_addr().unwrap();

    // Users of us, each with a live session.
    let mut sessions = Vec::new();
    for i in 0..4 {
        let r = fed
            .client()
            .await
            .register(from(
                "198.51.100.7",
                register(&format!("load{i}@example.org")),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.region, "us");
        sessions.push(r);
    }

    // Continuous load through the edge: profile reads and token rotations.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for s in sessions {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        let mut client = fed.client().await;
        workers.push(tokio::spawn(async move {
            let (mut access, mut refresh) = (s.access_token, s.refresh_token);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let result = if n.is_multiple_of(4) {
                    client
                        .refresh(pb::RefreshRequest {
                            refresh_token: refresh.clone(),
                        })
                        .await
                        .map(|r| {
                            let r = r.into_inner();
                            (access, refresh) = (r.access_token, r.refresh_token);
                        })
                } else {
                    client
                        .get_profile(bearer(pb::GetProfileRequest {}, &access))
                        .await
                        .map(|_| ())
                };
                match result {
                    Ok(()) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        failures.lock().unwrap().push(format!("{e:?}"));
                        0
                    }
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. A canary beside the stable node: 95/5.
    let canary = with_us_nodes(&fed, a, &[("stable", a, 95), ("canary", b, 5)]);
    std::fs::write(&fed.config_path, &canary).unwrap();
    let topology = Arc::new(Topology::parse(&fed.config_path, &canary).unwrap());
    let node_b = Node::start(
        NodeOptions {
            topology,
            region: RegionCode::parse("us").unwrap(),
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
        },
        b_listener,
    )
    .await
    .unwrap();
    let applied = edge.reload_from(&fed.config_path).await.unwrap();
    assert_eq!(
        applied.changed_pools,
        [format!("us: {a}=95, {b}=5")],
        "only us changed"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;

    // 2. Half and half.
    std::fs::write(
        &fed.config_path,
        with_us_nodes(&fed, a, &[("stable", a, 50), ("canary", b, 50)]),
    )
    .unwrap();
    edge.reload_from(&fed.config_path).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;

    // 3. The old node is stopped (SIGTERM): it drains while still at weight
    //    50; the edge's health checks take it out before it exits.
    let node_a = fed.nodes.remove("us").unwrap();
    node_a.drain(Duration::from_millis(2500)).await.unwrap();

    // 4. The configuration catches up: 0/100, then the old node removed.
    std::fs::write(
        &fed.config_path,
        with_us_nodes(&fed, a, &[("stable", a, 0), ("canary", b, 100)]),
    )
    .unwrap();
    edge.reload_from(&fed.config_path).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }

    let failures = failures.lock().unwrap().clone();
    let served = ok.load(Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} of {} failed: {failures:?}",
        failures.len(),
        served + failures.len()
    );
    assert!(served > 200, "the load kept going: {served} calls");
    eprintln!("shift under load: {served} calls, none failed");
    // Both nodes took traffic, and the new one took the rest after the drain.
    let b_calls = node_b.metrics_text();
    assert!(
        b_calls.contains(
            r#"domicile_node_rpc_total{region="us",rpc="Identity/GetProfile",status="grpc_0"}"#
        ),
        "{b_calls}"
    );
    assert_eq!(
        metric(
            fed.admin_addr(),
            r#"domicile_edge_config_reloads_total{result="applied"}"#
        )
        .await,
        3
    );
    node_b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_keeps_the_running_configuration() {
    let fed = Fed::start().await;
    let edge = fed.edge.as_ref().unwrap();
    let user = fed
        .client()
        .await
        .register(from("203.0.113.5", register("steady@example.org")))
        .await
        .unwrap()
        .into_inner();
    let without_ap = {
        let start = fed.config_text.find("[regions.ap]").unwrap();
        fed.config_text[..start].to_owned()
    };
    let other_issuer = fed
        .config_text
        .replace("https://id.test", "https://elsewhere.test");
    let bad_weight = fed.config_text.replacen(
        &format!("nodes = [{{ address = \"{}\" }}]", fed.nodes["ap"].addr),
        &format!(
            "nodes = [{{ address = \"{}\", weight = -1 }}]",
            fed.nodes["ap"].addr
        ),
        1,
    );
    for (text, why) in [
        ("[federation\nname = ", "unclosed table"),
        (without_ap.as_str(), "set of regions changed"),
        (other_issuer.as_str(), "issuer"),
        (bad_weight.as_str(), "weight"),
    ] {
        std::fs::write(&fed.config_path, text).unwrap();
        let err = edge.reload_from(&fed.config_path).await.unwrap_err();
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    std::fs::remove_file(&fed.config_path).unwrap();
    assert!(
        edge.reload_from(&fed.config_path).await.is_err(),
        "missing file"
    );
    assert_eq!(
        metric(
            fed.admin_addr(),
            r#"domicile_edge_config_reloads_total{result="refused"}"#
        )
        .await,
        5
    );
    // The running configuration still routes ap's users home.
    let r = fed
        .client()
        .await
        .get_profile(bearer(pb::GetProfileRequest {}, &user.access_token))
        .await
        .unwrap();
    assert_eq!(route_of(r.metadata()).0, "ap");
    assert_eq!(edge.state.topology().regions.len(), 3);
}
