//! Every row of the routing table, end to end through the edge.

use crate::harness::*;
use domicile_proto::v1 as pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_users_are_placed_by_the_routing_table() {
    let fed = Fed::start().await;
    let mut edge = fed.client().await;
    // (email, preference, client address) → (region, reason)
    let cases = [
        ("pinned@example.com", "", "192.0.2.1", "us", "domain"),
        ("pinned@example.de", "ap", "203.0.113.9", "eu", "domain"),
        (
            "chooser@example.org",
            "ap",
            "198.51.100.4",
            "ap",
            "preference",
        ),
        ("berlin@example.org", "", "192.0.2.10", "eu", "geoip"),
        ("paris@example.org", "", "192.0.2.200", "eu", "geoip"),
        ("ny@example.org", "", "198.51.100.77", "us", "geoip"),
        ("tokyo@example.org", "", "203.0.113.20", "ap", "geoip"),
        ("rio@example.org", "", "2001:db8:a::5", "eu", "default"),
        ("nowhere@example.org", "", "100.64.0.1", "eu", "default"),
    ];
    for (email, pref, ip, region, reason) in cases {
        let req = pb::RegisterRequest {
            region_preference: pref.into(),
            ..register(email)
        };
        let resp = edge.register(from(ip, req)).await.unwrap();
        assert_eq!(
            route_of(resp.metadata()),
            (region.to_owned(), reason.to_owned()),
            "{email}"
        );
        assert!(
            resp.get_ref()
                .user_id
                .starts_with(&format!("usr_{region}_")),
            "{email}"
        );
    }
    assert_eq!(fed.census().await, vec![2, 5, 2], "ap, eu, us");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_users_are_served_at_home_wherever_they_are() {
    let fed = Fed::start().await;
    let mut edge = fed.client().await;
    let reg = edge
        .register(from("192.0.2.10", register("traveller@example.org")))
        .await
        .unwrap()
        .into_inner();
    assert!(reg.user_id.starts_with("usr_eu_"));
    // Logging in from the US and from Japan: the index sends them home.
    for ip in ["198.51.100.4", "203.0.113.9"] {
        let resp = edge
            .login(from(ip, login("traveller@example.org")))
            .await
            .unwrap();
        assert_eq!(
            route_of(resp.metadata()),
            ("eu".into(), "index".into()),
            "from {ip}"
        );
    }
    // Tokens are routed by the region they carry, with no lookup.
    let profile = edge
        .get_profile(bearer(pb::GetProfileRequest {}, &reg.access_token))
        .await
        .unwrap();
    assert_eq!(
        route_of(profile.metadata()),
        ("eu".into(), "artifact".into())
    );
    let mut r = tonic::Request::new(pb::RefreshRequest {
        refresh_token: reg.refresh_token,
    });
    r.metadata_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    let refreshed = edge.refresh(r).await.unwrap();
    assert_eq!(
        route_of(refreshed.metadata()),
        ("eu".into(), "artifact".into())
    );
    // Errors carry the headers too.
    let wrong = pb::LoginRequest {
        email: "traveller@example.org".into(),
        password: "not the password".into(),
    };
    let s = expect_code(
        edge.login(from("198.51.100.4", wrong)).await,
        Code::Unauthenticated,
    );
    assert_eq!(route_of(s.metadata()), ("eu".into(), "index".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_token_verifies_against_the_federation_jwks() {
    let fed = Fed::start().await;
    let mut edge = fed.client().await;
    let mut tokens = Vec::new();
    for (email, ip) in [
        ("a@example.org", "192.0.2.1"),
        ("b@example.org", "198.51.100.1"),
        ("c@example.org", "203.0.113.1"),
    ] {
        tokens.push(
            edge.register(from(ip, register(email)))
                .await
                .unwrap()
                .into_inner()
                .access_token,
        );
    }
    let (status, body) = http_get(fed.edge_addr(), "/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let set = key_set(&body);
    assert_eq!(set.len(), 3, "{body}");
    let want = domicile_core::token::Expectations {
        issuer: "https://id.test",
        audience: "https://id.test",
        region: None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for t in &tokens {
        set.verify(t, &want, now).unwrap();
    }
    let (status, body) = http_get(fed.edge_addr(), "/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
    let disco: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(disco["issuer"], "https://id.test");
    assert_eq!(disco["jwks_uri"], "https://id.test/.well-known/jwks.json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    // 127.0.0.1 is not trusted here: the header is a spoof and is ignored.
    let fed = Fed::with(Settings {
        trusted_proxies: "[\"10.0.0.0/8\"]",
        ..Settings::default()
    })
    .await;
    let mut edge = fed.client().await;
    let resp = edge
        .register(from("203.0.113.9", register("spoofer@example.org")))
        .await
        .unwrap();
    assert_eq!(
        route_of(resp.metadata()),
        ("eu".into(), "default".into()),
        "JP header from an untrusted peer ignored"
    );
    let mut r = tonic::Request::new(register("spoofer2@example.org"));
    r.metadata_mut()
        .insert("forwarded", "for=198.51.100.1".parse().unwrap());
    let resp = edge.register(r).await.unwrap();
    assert_eq!(route_of(resp.metadata()), ("eu".into(), "default".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_country_code_database_works_too() {
    let fed = Fed::with(Settings {
        schema: domicile_edge::Schema::CountryCode,
        ..Settings::default()
    })
    .await;
    let resp = fed
        .client()
        .await
        .register(from("203.0.113.20", register("cc@example.org")))
        .await
        .unwrap();
    assert_eq!(route_of(resp.metadata()), ("ap".into(), "geoip".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cache_is_corrected_by_the_node_once() {
    // Negative answers cached for 5 minutes: the edge will be wrong.
    let fed = Fed::with(Settings {
        negative_ttl: 300,
        ..Settings::default()
    })
    .await;
    let mut edge = fed.client().await;
    let miss = edge
        .login(from("192.0.2.1", login("late@example.org")))
        .await;
    expect_code(miss, Code::Unauthenticated);
    // The user registers in us behind the edge's back (directly at the node).
    fed.node_client("us")
        .await
        .register(register("late@example.org"))
        .await
        .unwrap();
    // The edge still believes "unknown" and sends the login to eu by GeoIP;
    // eu answers FAILED_PRECONDITION us; the edge follows once.
    let resp = edge
        .login(from("192.0.2.1", login("late@example.org")))
        .await
        .unwrap();
    assert_eq!(route_of(resp.metadata()), ("us".into(), "redirect".into()));
    assert!(resp.get_ref().user_id.starts_with("usr_us_"));
    // The entry was invalidated: the next login finds the index.
    let resp = edge
        .login(from("192.0.2.1", login("late@example.org")))
        .await
        .unwrap();
    assert_eq!(route_of(resp.metadata()), ("us".into(), "index".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_email_from_two_regions_at_once_makes_one_account() {
    let fed = Fed::start().await;
    let emails: Vec<String> = (0..8).map(|i| format!("race{i}@example.org")).collect();
    let mut tasks = Vec::new();
    for email in &emails {
        for ip in ["192.0.2.1", "198.51.100.1"] {
            let mut c = fed.client().await;
            let req = from(ip, register(email));
            tasks.push(tokio::spawn(async move { c.register(req).await }));
        }
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) => assert!(
                matches!(s.code(), Code::AlreadyExists | Code::FailedPrecondition),
                "{s:?}"
            ),
        }
    }
    assert_eq!(ok, emails.len());
    assert_eq!(
        fed.users("eu").await + fed.users("us").await,
        emails.len() as u64
    );
}

/// A two-step sign-in through the edge: the password goes home by the
/// index, the second step by the pending sign-in's region tag, and the
/// enrolment calls by the bearer's region (codes from `totp-rs` at the
/// real clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_factor_is_routed_home_by_its_pending_sign_in() {
    let fed = Fed::start().await;
    let mut edge = fed.client().await;
    let reg = edge
        .register(from("198.51.100.7", register("two@example.org")))
        .await
        .unwrap()
        .into_inner();
    assert!(reg.user_id.starts_with("usr_us_"));
    let e = edge
        .enroll_totp(bearer(pb::EnrollTotpRequest::default(), &reg.access_token))
        .await
        .unwrap()
        .into_inner();
    let totp = totp_rs::Totp::from_url(&e.otpauth_uri).unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    edge.confirm_totp(bearer(
        pb::ConfirmTotpRequest {
            code: totp.generate(now()).to_string(),
        },
        &reg.access_token,
    ))
    .await
    .unwrap();
    // From Japan: the password reaches us by the index, and waits.
    let s = edge
        .login(from("203.0.113.5", login("two@example.org")))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    let token = s
        .metadata()
        .get("domicile-mfa-token")
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_owned();
    assert!(token.starts_with("mfa_us_"), "{token}");
    // The next step's code (the confirming one is spent).
    let next = totp.generate(now() + 30).to_string();
    let resp = edge
        .complete_sign_in(from(
            "203.0.113.5",
            pb::CompleteSignInRequest {
                mfa_token: token,
                totp_code: next,
                recovery_code: String::new(),
                passkey_credential: String::new(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(route_of(resp.metadata()), ("us".into(), "artifact".into()));
    assert_eq!(resp.get_ref().user_id, reg.user_id);
}

/// A passwordless passkey sign-in: any region starts the ceremony, and the
/// answer goes where its user handle's tag says, without the index: each
/// region answers for its own tag (here: no such user, refused), and a
/// handle tagged for no region is answered by the default routing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_answer_is_routed_home_by_its_user_handle() {
    use base64::Engine as _;
    use domicile_core::{RegionCode, passkey::UserHandle};
    let fed = Fed::start().await;
    let mut edge = fed.client().await;
    let c = edge
        .start_passkey_sign_in(from("198.51.100.4", pb::StartPasskeySignInRequest {}))
        .await
        .unwrap()
        .into_inner();
    let answer = |handle: &[u8]| {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        pb::PasskeySignInRequest {
            state: c.state.clone(),
            credential_json: serde_json::json!({
                "id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
                "response": {
                    "authenticatorData": "AAAA", "clientDataJSON": "AAAA",
                    "signature": "AAAA", "userHandle": b64(handle),
                },
            })
            .to_string(),
        }
    };
    for region in ["eu", "us", "ap"] {
        let handle = UserHandle::new(&RegionCode::parse(region).unwrap(), &[3; 32]);
        let s = expect_code(
            edge.passkey_sign_in(from("198.51.100.4", answer(&handle.0)))
                .await,
            Code::Unauthenticated,
        );
        assert_eq!(route_of(s.metadata()), (region.into(), "artifact".into()));
    }
    let s = expect_code(
        edge.passkey_sign_in(from("198.51.100.4", answer(&[0xff; 16])))
            .await,
        Code::Unauthenticated,
    );
    assert_ne!(route_of(s.metadata()).1, "artifact", "{s:?}");
}
