//! Region outages, federation keys while a region is down, metrics.

use crate::harness::*;
use domicile_proto::v1 as pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_down_fails_its_users_only_and_never_fails_over() {
    let mut fed = Fed::start().await;
    let mut edge = fed.client().await;
    let ap_user = edge
        .register(from("203.0.113.9", register("tokyo@example.org")))
        .await
        .unwrap()
        .into_inner();
    let eu_user = edge
        .register(from("192.0.2.9", register("berlin@example.org")))
        .await
        .unwrap()
        .into_inner();
    let (_, jwks_before) = http_get(fed.edge_addr(), "/.well-known/jwks.json").await;
    assert!(jwks_before.contains("\"ap-1\""));

    fed.nodes.remove("ap").unwrap().shutdown().await.unwrap();
    let census = fed.census().await;
    eventually("the edge to see ap down", async || {
        let r = fed
            .client()
            .await
            .get_profile(bearer(pb::GetProfileRequest {}, &ap_user.access_token))
            .await;
        matches!(r, Err(s) if s.code() == Code::Unavailable)
    })
    .await;
    let s = expect_code(
        edge.login(from("203.0.113.9", login("tokyo@example.org")))
            .await,
        Code::Unavailable,
    );
    assert_eq!(
        s.metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(
        route_of(s.metadata()),
        ("ap".into(), "index".into()),
        "still routed home, not elsewhere"
    );
    // New users GeoIP-placed in ap are not re-homed either.
    expect_code(
        edge.register(from("203.0.113.9", register("newcomer@example.org")))
            .await,
        Code::Unavailable,
    );
    assert_eq!(fed.census().await, census, "nothing written anywhere else");
    // Other regions keep working.
    edge.get_profile(bearer(pb::GetProfileRequest {}, &eu_user.access_token))
        .await
        .unwrap();
    edge.register(from("198.51.100.9", register("ny@example.org")))
        .await
        .unwrap();
    // ap's keys stay published, so ap tokens still verify offline.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_, jwks_during) = http_get(fed.edge_addr(), "/.well-known/jwks.json").await;
    assert_eq!(jwks_during, jwks_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_the_admin_address() {
    let fed = Fed::start().await;
    let mut edge = fed.client().await;
    edge.register(from("198.51.100.9", register("m@example.com")))
        .await
        .unwrap();
    edge.login(from("192.0.2.1", login("m@example.com")))
        .await
        .unwrap();
    edge.login(from("192.0.2.1", login("m@example.com")))
        .await
        .unwrap();
    // Requests are counted in `logging`, after the client has its reply.
    let last = "domicile_edge_requests_total{region=\"us\",route=\"index\",status=\"grpc_0\"} 2";
    eventually("the second login to be counted", async || {
        http_get(fed.admin_addr(), "/metrics")
            .await
            .1
            .contains(last)
    })
    .await;
    let (status, body) = http_get(fed.admin_addr(), "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "domicile_edge_requests_total{region=\"us\",route=\"domain\",status=\"grpc_0\"} 1",
        "domicile_edge_requests_total{region=\"us\",route=\"index\",status=\"grpc_0\"} 2",
        // The registration's lookup misses; the logins hit the entry the
        // successful registration left.
        "domicile_edge_index_cache_total{result=\"hit\"} 2",
        "domicile_edge_index_cache_total{result=\"miss\"} 1",
        "domicile_edge_upstream_seconds_count{region=\"us\"} 3",
    ] {
        assert!(body.contains(needle), "missing {needle} in\n{body}");
    }
    assert!(!body.contains("example.com"), "no identifiers in metrics");
    // Metrics are not on the public address.
    let (status, _) = http_get(fed.edge_addr(), "/metrics").await;
    assert_eq!(status, 404);
}
