//! Health, reflection and the HTTP endpoints.

use crate::harness::*;

#[tokio::test]
async fn health_reflection_and_http_endpoints() {
    let fed = Fed::start().await;
    let addr = format!("http://{}", fed.nodes["us"].addr);

    let channel = tonic::transport::Channel::from_shared(addr)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "domicile.v1.Identity"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(futures::stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("{msg:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == "domicile.v1.Identity"),
        "{names:?}"
    );

    assert_eq!(
        http_get(fed.nodes["us"].addr, "/healthz").await,
        (200, "ok\n".into())
    );
    let (status, body) = http_get(fed.nodes["us"].addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ready\":true"), "{body}");
    let (status, body) = http_get(fed.nodes["ap"].addr, "/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\"kid\":\"ap-1\"") && body.contains("\"use\":\"sig\""),
        "{body}"
    );
}

#[tokio::test]
async fn an_index_outage_blocks_registration_but_not_home_users() {
    let mut fed = Fed::start().await;
    let homed = fed
        .client("us")
        .await
        .register(register_req("homed@example.com"))
        .await
        .unwrap()
        .into_inner();
    let eu = fed.nodes.remove("eu").unwrap();
    eu.shutdown().await.unwrap();
    // The region stays ready (it serves its own users); the index is reported.
    let (status, body) = http_get(fed.nodes["us"].addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"index\":\"unavailable\""), "{body}");
    // Without the index, registration fails cleanly and writes nothing.
    let before = fed.users("us").await;
    let s = fed
        .client("us")
        .await
        .register(register_req("noindex@example.com"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
    assert_eq!(fed.users("us").await, before);
    // Users already homed in us keep working: login, refresh and profile
    // need only the region's own store.
    let mut us = fed.client("us").await;
    let login = us
        .login(login_req("homed@example.com", "correct horse battery"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(login.user_id, homed.user_id);
    us.refresh(domicile_proto::v1::RefreshRequest {
        refresh_token: login.refresh_token,
    })
    .await
    .unwrap();
    us.get_profile(bearer(
        domicile_proto::v1::GetProfileRequest {},
        &login.access_token,
    ))
    .await
    .unwrap();
}
