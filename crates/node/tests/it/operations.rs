//! Operations: the audit trail, metrics, and draining before exit.

use crate::harness::*;
use domicile_proto::v1 as pb;
use std::time::Duration;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

async fn admin(fed: &Fed, region: &str) -> domicile_testkit::admin::Client {
    fed.admin(region).await
}

/// The trail's kinds, newest first, once `want` events have been written
/// (recording is asynchronous).
async fn trail(fed: &Fed, region: &str, user_id: &str, want: usize) -> Vec<pb::AuditEvent> {
    let mut client = admin(fed, region).await;
    for _ in 0..100 {
        let events = client
            .user_audit(pb::UserAuditRequest {
                user_id: user_id.into(),
                limit: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        // (Each read of the trail is audited in it: those are left out.)
        let events: Vec<pb::AuditEvent> = events
            .into_iter()
            .filter(|e| e.kind != "admin_access")
            .collect();
        if events.len() >= want {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the audit trail of {user_id} never reached {want} events");
}

#[tokio::test]
async fn the_audit_trail_records_an_accounts_history_in_its_home_region() {
    let fed = Fed::start().await;
    let mut us = fed.client("us").await;
    let email = "audited@example.com";
    let reg = us.register(register_req(email)).await.unwrap().into_inner();
    let wrong = pb::LoginRequest {
        email: email.into(),
        password: "not the password".into(),
    };
    expect_status(us.login(wrong).await, Code::Unauthenticated, "invalid");
    let login = us
        .login(domicile_testkit::login(email))
        .await
        .unwrap()
        .into_inner();
    let change = pb::UpdateProfileRequest {
        given_name: Some("Grace".into()),
        locale: Some("en-US".into()),
        ..Default::default()
    };
    us.update_profile(bearer(change, &login.access_token))
        .await
        .unwrap();
    // Rotate once, then present the old token again: reuse.
    let old = pb::RefreshRequest {
        refresh_token: reg.refresh_token.clone(),
    };
    us.refresh(old.clone()).await.unwrap();
    expect_status(us.refresh(old).await, Code::Unauthenticated, "already used");
    us.logout(pb::LogoutRequest {
        refresh_token: login.refresh_token.clone(),
    })
    .await
    .unwrap();

    let events = trail(&fed, "us", &reg.user_id, 6).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "logout",
            "refresh_reuse",
            "profile_updated",
            "login_succeeded",
            "login_failed",
            "registered"
        ]
    );
    let by_kind = |k: &str| events.iter().find(|e| e.kind == k).unwrap();
    assert_eq!(by_kind("registered").session_id, reg.session_id);
    assert_eq!(by_kind("refresh_reuse").session_id, reg.session_id);
    assert_eq!(by_kind("logout").session_id, login.session_id);
    assert_eq!(by_kind("login_failed").session_id, "");
    assert_eq!(
        by_kind("profile_updated").detail,
        "changed: given_name, locale",
        "field names, never values"
    );
    let text = format!("{events:?}");
    for secret in [
        email,
        domicile_testkit::PASSWORD,
        "not the password",
        "Grace",
        reg.refresh_token.as_str(),
        login.access_token.as_str(),
    ] {
        assert!(!text.contains(secret), "audit trail holds {secret:?}");
    }
    // Limits.
    let mut client = admin(&fed, "us").await;
    let two = client
        .user_audit(pb::UserAuditRequest {
            user_id: reg.user_id.clone(),
            limit: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(two.events.len(), 2);
    assert_eq!(two.region, "us");
    // Nothing was written in the other regions.
    for other in ["eu", "ap"] {
        let report = admin(&fed, other)
            .await
            .region_report(pb::RegionReportRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(report.users, 0, "{other}");
    }
    // Every event is written: the six, and one per read of the trail.
    let mut metrics = String::new();
    let mut settled = false;
    for _ in 0..100 {
        let (_, events) = fed.nodes["us"]
            .identity()
            .user_audit(&reg.user_id, 1000)
            .await
            .unwrap();
        let reads = events
            .iter()
            .filter(|e| e.kind == domicile_store::AuditKind::AdminAccess)
            .count();
        metrics = fed.nodes["us"].metrics_text();
        let written = format!(
            r#"domicile_node_audit_events_total{{region="us",result="written"}} {}"#,
            6 + reads
        );
        if reads > 0 && metrics.contains(&written) {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(settled, "{metrics}");
    assert!(
        metrics.contains(r#"domicile_node_audit_events_total{region="us",result="dropped"} 0"#)
    );
}

#[tokio::test]
async fn only_the_home_region_serves_a_users_audit_trail() {
    let fed = Fed::start().await;
    let reg = fed
        .client("ap")
        .await
        .register(register_req("trail@example.jp"))
        .await
        .unwrap()
        .into_inner();
    trail(&fed, "ap", &reg.user_id, 1).await;
    let ask = |user_id: &str, limit: u32| pb::UserAuditRequest {
        user_id: user_id.into(),
        limit,
    };
    // Another region refuses and names the home region.
    let mut eu = admin(&fed, "eu").await;
    expect_wrong_region(eu.user_audit(ask(&reg.user_id, 0)).await, "ap");
    for (request, code, text) in [
        (
            ask("someone@example.jp", 0),
            Code::InvalidArgument,
            "user_id",
        ),
        (ask("", 0), Code::InvalidArgument, "user_id"),
        (
            ask("usr_zz_01JD0000000000000000000000", 0),
            Code::InvalidArgument,
            "unknown region",
        ),
        (ask(&reg.user_id, 1001), Code::InvalidArgument, "limit"),
    ] {
        let mut ap = admin(&fed, "ap").await;
        expect_status(ap.user_audit(request).await, code, text);
    }
}

#[tokio::test]
async fn node_metrics_count_rpcs_hashes_and_store_calls() {
    let fed = Fed::start().await;
    let mut eu = fed.client("eu").await;
    eu.register(register_req("metered@example.de"))
        .await
        .unwrap();
    expect_status(
        eu.login(pb::LoginRequest {
            email: "metered@example.de".into(),
            password: "wrong password".into(),
        })
        .await,
        Code::Unauthenticated,
        "invalid",
    );
    let (status, text) = http_get(fed.nodes["eu"].addr, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        r#"domicile_node_rpc_total{region="eu",rpc="Identity/Register",status="grpc_0"} 1"#,
        r#"domicile_node_rpc_total{region="eu",rpc="Identity/Login",status="grpc_16"} 1"#,
        r#"domicile_node_rpc_seconds_count{region="eu",rpc="Identity/Login"} 1"#,
        r#"domicile_node_hash_seconds_count{op="hash",region="eu"}"#,
        r#"domicile_node_hash_seconds_count{op="verify",region="eu"} 1"#,
        r#"domicile_node_hash_queue_depth{region="eu"} 0"#,
        r#"domicile_node_hash_rejected_total{region="eu"} 0"#,
        r#"domicile_node_store_seconds_count{op="insert_user",region="eu"} 1"#,
        r#"domicile_node_draining{region="eu"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    assert!(!text.contains("metered@"), "no identifiers in metrics");
}

#[tokio::test]
async fn a_draining_node_is_not_ready_but_serves_until_it_exits() {
    let mut fed = Fed::start().await;
    let addr = fed.nodes["us"].addr;
    let mut us = fed.client("us").await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    assert_eq!(
        health.check(check("")).await.unwrap().into_inner().status,
        ServingStatus::Serving as i32
    );
    let node = fed.nodes.remove("us").unwrap();
    let drained = tokio::spawn(node.drain(Duration::from_millis(1500)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Not ready for new traffic...
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""draining":true"#), "{body}");
    for service in ["", "domicile.v1.Identity"] {
        assert_eq!(
            health
                .check(check(service))
                .await
                .unwrap()
                .into_inner()
                .status,
            ServingStatus::NotServing as i32,
            "{service:?}"
        );
    }
    // ...but calls still succeed while the edge moves traffic away.
    us.register(register_req("late@example.com")).await.unwrap();
    drained.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the node has exited"
    );
}

#[tokio::test]
async fn a_rotated_key_is_published_first_signs_later_and_the_old_one_leaves() {
    let fed = Fed::start().await;
    let addr = fed.nodes["eu"].addr;
    let kids = async || -> Vec<String> {
        let (_, body) = http_get(addr, "/.well-known/jwks.json").await;
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let mut eu = fed.client("eu").await;
    let before = eu
        .register(register_req("rotate@example.de"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kid_of(&before.access_token), "eu-1");
    let mut admin = admin(&fed, "eu").await;
    expect_status(
        admin
            .rotate_signing_key(pb::RotateSigningKeyRequest {
                activate_in_seconds: 700_000,
            })
            .await,
        Code::InvalidArgument,
        "activate_in_seconds",
    );
    assert_eq!(kids().await, ["eu-1"], "a refused rotation changes nothing");
    let done = admin
        .rotate_signing_key(pb::RotateSigningKeyRequest {
            activate_in_seconds: 300,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (done.kid.as_str(), done.previous_kid.as_str()),
        ("eu-2", "eu-1")
    );
    assert_eq!(done.activates_at, START + 300);
    // Published at once, not signing yet.
    assert_eq!(kids().await, ["eu-1", "eu-2"]);
    let login = || domicile_testkit::login("rotate@example.de");
    let early = eu.login(login()).await.unwrap().into_inner();
    assert_eq!(kid_of(&early.access_token), "eu-1");
    // From activation on, the new key signs; tokens of the old one still work.
    fed.clock.advance(300);
    let late = eu.login(login()).await.unwrap().into_inner();
    assert_eq!(kid_of(&late.access_token), "eu-2");
    eu.get_profile(bearer(pb::GetProfileRequest {}, &early.access_token))
        .await
        .unwrap();
    // Once every eu-1 token has expired, eu-1 leaves the JWKS.
    let ttl = fed.topology.tokens.access_ttl_seconds;
    fed.clock.advance(ttl + 121);
    assert_eq!(kids().await, ["eu-2"]);
}

/// Every Admin call is authenticated by an operator's token and needs its
/// role: without a token, with a malformed, forged (another key under the
/// operator's name), expired or future one, with a role the operator is not
/// granted, or with the wrong role, each RPC is refused and does nothing;
/// the right role passes, and a user's trail read is audited in it with
/// the operator's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_call_needs_an_operators_token_with_its_role() {
    use domicile_core::admin::{OperatorKey, Role};
    use domicile_identity::Clock as _;
    use domicile_testkit::admin::{self, listed};
    let fed = Fed::start().await;
    let reg = fed
        .client("eu")
        .await
        .register(register_req("watched@example.de"))
        .await
        .unwrap()
        .into_inner();
    let now = fed.clock.now();
    let local = admin::local(&fed.topology);
    let token = |key: &OperatorKey, roles: &[Role], at: i64| admin::token(key, roles, at);
    let forged = OperatorKey::from_seed("local", [0x99; 32]);
    let unauthenticated: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("malformed", Some("not-a-token".into())),
        ("forged", Some(token(&forged, &Role::ALL, now))),
        ("expired", Some(token(&local, &Role::ALL, now - 200))),
        ("not yet valid", Some(token(&local, &Role::ALL, now + 100))),
    ];
    let denied: Vec<(&str, String)> = vec![
        (
            "a role not granted",
            token(&listed("help"), &[Role::Compliance], now),
        ),
        (
            "the wrong role: operator",
            token(&listed("sre"), &[Role::Operator], now),
        ),
        (
            "the wrong role: support",
            token(&listed("help"), &[Role::Support], now),
        ),
    ];
    let kids = || async {
        let (_, body) = http_get(fed.nodes["eu"].addr, "/.well-known/jwks.json").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["keys"].as_array().unwrap().len()
    };
    let addr = fed.nodes["eu"].addr;
    let refused = |r: Result<(), tonic::Status>, code: tonic::Code, what: &str| {
        let s = r.expect_err(what);
        assert_eq!(s.code(), code, "{what}: {s:?}");
    };
    for (rpc, roles) in [
        ("region_report", vec![Role::Compliance]),
        ("index_report", vec![Role::Compliance]),
        ("user_audit", vec![Role::Compliance, Role::Support]),
        ("rotate_signing_key", vec![Role::Operator]),
    ] {
        let run = |t: Option<String>| {
            let user_id = reg.user_id.clone();
            async move {
                let mut c = domicile_proto::v1::admin_client::AdminClient::connect(format!(
                    "http://{addr}"
                ))
                .await
                .unwrap();
                macro_rules! with {
                    ($m:expr) => {
                        match &t {
                            Some(t) => bearer($m, t),
                            None => tonic::Request::new($m),
                        }
                    };
                }
                match rpc {
                    "region_report" => c
                        .region_report(with!(pb::RegionReportRequest::default()))
                        .await
                        .map(|_| ()),
                    "index_report" => c
                        .index_report(with!(pb::IndexReportRequest {}))
                        .await
                        .map(|_| ()),
                    "user_audit" => c
                        .user_audit(with!(pb::UserAuditRequest { user_id, limit: 0 }))
                        .await
                        .map(|_| ()),
                    _ => c
                        .rotate_signing_key(with!(pb::RotateSigningKeyRequest {
                            activate_in_seconds: 300
                        }))
                        .await
                        .map(|_| ()),
                }
            }
        };
        for (what, t) in &unauthenticated {
            refused(
                run(t.clone()).await,
                tonic::Code::Unauthenticated,
                &format!("{rpc}: {what}"),
            );
        }
        for (what, t) in &denied {
            let holds =
                |name: &str| what.ends_with(name) && roles.iter().any(|r| r.as_str() == name);
            if holds("operator") || holds("support") {
                continue;
            }
            refused(
                run(Some(t.clone())).await,
                tonic::Code::PermissionDenied,
                &format!("{rpc}: {what}"),
            );
        }
        assert_eq!(kids().await, 1, "{rpc}: no refused call rotated a key");
        // The right role passes.
        let right = match roles[0] {
            Role::Support => token(&listed("help"), &[Role::Support], now),
            Role::Operator => token(&listed("sre"), &[Role::Operator], now),
            Role::Compliance => token(&local, &[Role::Compliance], now),
        };
        run(Some(right))
            .await
            .unwrap_or_else(|s| panic!("{rpc}: {s:?}"));
        if rpc == "user_audit" {
            // Support may read a trail too.
            run(Some(token(&listed("help"), &[Role::Support], now)))
                .await
                .unwrap();
        }
    }
    assert_eq!(kids().await, 2, "the one allowed rotation");
    // The trail reads are in the trail, with who read it.
    let mut seen = Vec::new();
    for _ in 0..100 {
        let (_, events) = fed.nodes["eu"]
            .identity()
            .user_audit(&reg.user_id, 0)
            .await
            .unwrap();
        seen = events
            .iter()
            .filter(|e| e.kind == domicile_store::AuditKind::AdminAccess)
            .map(|e| e.detail.clone())
            .collect();
        if seen.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "operator=help call=user_audit",
            "operator=local call=user_audit"
        ]
    );
}
