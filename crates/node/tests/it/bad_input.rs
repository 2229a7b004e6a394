//! Bad input gets a clear error and changes nothing.

use crate::harness::*;
use domicile_core::token::{AccessClaims, Kid, SigningKey};
use domicile_proto::v1 as pb;
use tonic::Code;

fn reg(email: &str, password: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        email: email.into(),
        password: password.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn bad_registrations_and_logins_are_refused_and_write_nothing() {
    let fed = Fed::start().await;
    let mut eu = fed.client("eu").await;
    let before = fed.census().await;
    let long_email = format!("{}@example.org", "a".repeat(300));
    let cases: Vec<(pb::RegisterRequest, Code, &str)> = vec![
        (
            pb::RegisterRequest::default(),
            Code::InvalidArgument,
            "email: email is empty",
        ),
        (
            reg("not-an-email", "long enough pw"),
            Code::InvalidArgument,
            "email: email must contain exactly one '@'",
        ),
        (
            reg("a@localhost", "long enough pw"),
            Code::InvalidArgument,
            "email: email domain",
        ),
        (
            reg(&long_email, "long enough pw"),
            Code::InvalidArgument,
            "email: email local part is longer",
        ),
        (
            reg("ok@example.org", ""),
            Code::InvalidArgument,
            "password: password must be at least 8",
        ),
        (
            reg("ok@example.org", "1234567"),
            Code::InvalidArgument,
            "password: password must be at least 8",
        ),
        (
            reg("ok@example.org", &"p".repeat(1025)),
            Code::InvalidArgument,
            "password: password must be at most 1024 bytes",
        ),
        (
            pb::RegisterRequest {
                profile: Some(pb::ProfileFields {
                    locale: "not a locale".into(),
                    ..Default::default()
                }),
                ..reg("ok@example.org", "long enough pw")
            },
            Code::InvalidArgument,
            "locale",
        ),
        (
            pb::RegisterRequest {
                region_preference: "Europe".into(),
                ..reg("ok@example.org", "long enough pw")
            },
            Code::InvalidArgument,
            "region_preference",
        ),
    ];
    for (req, code, text) in cases {
        expect_status(eu.register(req).await, code, text);
    }
    let logins: Vec<(pb::LoginRequest, &str)> = vec![
        (pb::LoginRequest::default(), "email"),
        (
            login_req("ok@example.org", ""),
            "password: must not be empty",
        ),
        (
            login_req("ok@example.org", &"p".repeat(1025)),
            "password: password must be at most 1024 bytes",
        ),
        (login_req("bad email", "whatever1"), "email"),
    ];
    for (req, text) in logins {
        expect_status(eu.login(req).await, Code::InvalidArgument, text);
    }
    // A message over the node's 64 KiB limit is refused before it is decoded.
    let huge = reg("ok@example.org", &"p".repeat(1 << 20));
    let s = eu.register(huge).await.unwrap_err();
    assert!(
        matches!(
            s.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{s:?}"
    );
    assert_eq!(fed.census().await, before, "nothing written");
    // The email was never claimed: it can still be registered.
    eu.register(reg("ok@example.org", "long enough pw"))
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let fed = Fed::start().await;
    let mut eu = fed.client("eu").await;
    let user = eu
        .register(register_req("tokens@example.org"))
        .await
        .unwrap()
        .into_inner();
    let profile = |t: &str| bearer(pb::GetProfileRequest {}, t);

    // Refresh tokens: malformed is bad input; well-formed but unknown is unauthenticated.
    let refreshes: Vec<(&str, Code, &str)> = vec![
        (
            "",
            Code::InvalidArgument,
            "refresh_token: must not be empty",
        ),
        ("garbage", Code::InvalidArgument, "refresh_token: malformed"),
        (
            "rt_eu_short",
            Code::InvalidArgument,
            "refresh_token: malformed",
        ),
        (
            "usr_eu_01JD0000000000000000000000",
            Code::InvalidArgument,
            "expected a refresh token",
        ),
        // The shape before tokens named their session.
        (
            "rt_eu_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            Code::InvalidArgument,
            "refresh_token: malformed",
        ),
        (
            "rt_eu_01JD0000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            Code::Unauthenticated,
            "invalid or expired",
        ),
    ];
    for (t, code, text) in refreshes {
        expect_status(
            eu.refresh(pb::RefreshRequest {
                refresh_token: t.into(),
            })
            .await,
            code,
            text,
        );
    }

    // Access tokens.
    expect_status(
        eu.get_profile(pb::GetProfileRequest {}).await,
        Code::Unauthenticated,
        "missing authorization",
    );
    let mut basic = tonic::Request::new(pb::GetProfileRequest {});
    basic
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    expect_status(eu.get_profile(basic).await, Code::Unauthenticated, "Bearer");
    expect_status(
        eu.get_profile(profile("not.a.jwt")).await,
        Code::Unauthenticated,
        "malformed",
    );
    expect_status(
        eu.get_profile(profile(&"x".repeat(5000))).await,
        Code::Unauthenticated,
        "too long",
    );
    // Signed by someone else with our kid: a forgery.
    let forger = SigningKey::from_seed(Kid::parse("eu-1").unwrap(), [42; 32]).unwrap();
    let claims = AccessClaims {
        iss: "https://id.test".into(),
        sub: user.user_id.clone(),
        aud: "https://id.test".into(),
        exp: START + 600,
        iat: START,
        nbf: START,
        jti: "x".into(),
        client_id: "domicile".into(),
        scope: "openid".into(),
        rgn: "eu".into(),
        sid: user.session_id.clone(),
        amr: vec![],
        acr: String::new(),
    };
    expect_status(
        eu.get_profile(profile(&forger.sign(&claims).unwrap()))
            .await,
        Code::Unauthenticated,
        "signature is invalid",
    );
    let stranger = SigningKey::from_seed(Kid::parse("eu-7").unwrap(), [42; 32]).unwrap();
    expect_status(
        eu.get_profile(profile(&stranger.sign(&claims).unwrap()))
            .await,
        Code::Unauthenticated,
        "unknown key",
    );
    // A kid of a region outside the federation is not a routing hint.
    let alien = SigningKey::from_seed(Kid::parse("mars-1").unwrap(), [42; 32]).unwrap();
    expect_status(
        eu.get_profile(profile(
            &alien
                .sign(&AccessClaims {
                    rgn: "mars".into(),
                    ..claims.clone()
                })
                .unwrap(),
        ))
        .await,
        Code::Unauthenticated,
        "another region",
    );
    // Expired.
    fed.clock.advance(3600);
    expect_status(
        eu.get_profile(profile(&user.access_token)).await,
        Code::Unauthenticated,
        "expired",
    );

    // Empty profile updates are refused, nothing changes.
    let fresh = eu
        .refresh(pb::RefreshRequest {
            refresh_token: user.refresh_token,
        })
        .await
        .unwrap()
        .into_inner();
    expect_status(
        eu.update_profile(bearer(
            pb::UpdateProfileRequest::default(),
            &fresh.access_token,
        ))
        .await,
        Code::InvalidArgument,
        "no field",
    );
    let too_long = pb::UpdateProfileRequest {
        given_name: Some("n".repeat(300)),
        ..Default::default()
    };
    expect_status(
        eu.update_profile(bearer(too_long, &fresh.access_token))
            .await,
        Code::InvalidArgument,
        "given_name",
    );
    let p = eu
        .get_profile(profile(&fresh.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.updated_at, p.created_at, "profile unchanged");
}

#[tokio::test]
async fn the_index_service_refuses_bad_input() {
    use domicile_proto::v1::home_index_client::HomeIndexClient;
    let fed = Fed::start().await;
    let mut ix = HomeIndexClient::connect(format!("http://{}", fed.nodes["eu"].addr))
        .await
        .unwrap();
    let good_key = vec![1u8; 32];
    expect_status(
        ix.lookup(pb::IndexLookupRequest { key: vec![1; 5] }).await,
        Code::InvalidArgument,
        "32 bytes",
    );
    let claim = |key: Vec<u8>, region: &str, user: &str| pb::IndexClaimRequest {
        key,
        region: region.into(),
        user_id: user.into(),
        abandoned_user_id: String::new(),
    };
    let take_over = |abandoned: &str| pb::IndexClaimRequest {
        abandoned_user_id: abandoned.into(),
        ..claim(good_key.clone(), "us", "usr_us_01JD0000000000000000000000")
    };
    expect_status(
        ix.claim(claim(
            good_key.clone(),
            "mars",
            "usr_mars_01JD0000000000000000000000",
        ))
        .await,
        Code::InvalidArgument,
        "unknown region",
    );
    expect_status(
        ix.claim(claim(
            good_key.clone(),
            "us",
            "usr_eu_01JD0000000000000000000000",
        ))
        .await,
        Code::InvalidArgument,
        "disagree",
    );
    expect_status(
        ix.claim(claim(good_key.clone(), "us", "alice@example.org"))
            .await,
        Code::InvalidArgument,
        "user",
    );
    // A region takes over only its own region's claims, named by user id.
    expect_status(
        ix.claim(take_over("usr_eu_01JD0000000000000000000001"))
            .await,
        Code::InvalidArgument,
        "its own claims",
    );
    expect_status(
        ix.claim(take_over("bob@example.org")).await,
        Code::InvalidArgument,
        "abandoned_user_id",
    );
    assert!(
        ix.lookup(pb::IndexLookupRequest { key: good_key })
            .await
            .unwrap()
            .into_inner()
            .entry
            .is_none(),
        "nothing claimed"
    );
    // The index is served only by its host region.
    let mut us_ix = HomeIndexClient::connect(format!("http://{}", fed.nodes["us"].addr))
        .await
        .unwrap();
    expect_status(
        us_ix
            .lookup(pb::IndexLookupRequest { key: vec![1; 32] })
            .await,
        Code::Unimplemented,
        "",
    );
}
