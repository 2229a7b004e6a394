//! The first vertical slice: register, login, refresh, logout, profile.

use crate::harness::*;
use domicile_core::token::Expectations;
use domicile_proto::v1 as pb;
use tonic::Code;

#[tokio::test]
async fn register_profile_login_refresh_logout() {
    let fed = Fed::start().await;
    let mut eu = fed.client("eu").await;
    let req = pb::RegisterRequest {
        email: "  Ada.Lovelace@Bücher.de ".into(),
        password: "analytical engine".into(),
        profile: Some(pb::ProfileFields {
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            display_name: String::new(),
            locale: "en-GB".into(),
        }),
        region_preference: String::new(),
    };
    let reg = eu.register(req).await.unwrap().into_inner();
    assert!(reg.user_id.starts_with("usr_eu_"), "{}", reg.user_id);
    assert!(reg.refresh_token.starts_with("rt_eu_"));
    assert!(reg.session_id.starts_with("ses_eu_"));
    assert_eq!(
        (reg.region.as_str(), reg.token_type.as_str(), reg.expires_in),
        ("eu", "Bearer", 600)
    );

    // The access token verifies offline against the region's published JWKS.
    let keys = jwks(&fed, "eu").await;
    let want = Expectations {
        issuer: "https://id.test",
        audience: "https://id.test",
        region: None,
    };
    let claims = keys.verify(&reg.access_token, &want, START).unwrap();
    assert_eq!(
        (
            claims.sub.as_str(),
            claims.rgn.as_str(),
            claims.sid.as_str()
        ),
        (reg.user_id.as_str(), "eu", reg.session_id.as_str())
    );
    assert_eq!(claims.exp, START + 600);
    let header = jsonwebtoken_header(&reg.access_token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], "eu-1");

    let profile = eu
        .get_profile(bearer(pb::GetProfileRequest {}, &reg.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        profile.email, "ada.lovelace@xn--bcher-kva.de",
        "normalized: trimmed, lower-case, IDNA domain"
    );
    assert_eq!(
        (
            profile.given_name.as_str(),
            profile.family_name.as_str(),
            profile.locale.as_str()
        ),
        ("Ada", "Lovelace", "en-GB")
    );

    fed.clock.advance(5);
    let change = pb::UpdateProfileRequest {
        display_name: Some("Countess".into()),
        family_name: Some(String::new()),
        ..Default::default()
    };
    let updated = eu
        .update_profile(bearer(change, &reg.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            updated.display_name.as_str(),
            updated.family_name.as_str(),
            updated.given_name.as_str()
        ),
        ("Countess", "", "Ada")
    );
    assert_eq!(updated.updated_at, START + 5);

    // Login with the email in another spelling.
    let login = eu
        .login(login_req("ADA.LOVELACE@bücher.DE", "analytical engine"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(login.user_id, reg.user_id);
    assert_ne!(login.session_id, reg.session_id);

    // Refresh rotates the token.
    let r1 = eu
        .refresh(pb::RefreshRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r1.session_id, login.session_id);
    assert_ne!(r1.refresh_token, login.refresh_token);
    let r2 = eu
        .refresh(pb::RefreshRequest {
            refresh_token: r1.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    // Logout by refresh token ends the session: its tokens stop working.
    let out = eu
        .logout(pb::LogoutRequest {
            refresh_token: r2.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.session_id, login.session_id);
    expect_status(
        eu.refresh(pb::RefreshRequest {
            refresh_token: r2.refresh_token,
        })
        .await,
        Code::Unauthenticated,
        "invalid or expired",
    );
    expect_status(
        eu.get_profile(bearer(pb::GetProfileRequest {}, &r2.access_token))
            .await,
        Code::Unauthenticated,
        "session",
    );

    // Logout by bearer token; the registration's session was untouched so far.
    eu.get_profile(bearer(pb::GetProfileRequest {}, &reg.access_token))
        .await
        .unwrap();
    let out = eu
        .logout(bearer(pb::LogoutRequest::default(), &reg.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.session_id, reg.session_id);
    expect_status(
        eu.get_profile(bearer(pb::GetProfileRequest {}, &reg.access_token))
            .await,
        Code::Unauthenticated,
        "session",
    );
}

fn jsonwebtoken_header(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_family() {
    let fed = Fed::start().await;
    let mut eu = fed.client("eu").await;
    let reg = eu
        .register(register_req("reuse@example.org"))
        .await
        .unwrap()
        .into_inner();
    let stolen = reg.refresh_token.clone();
    let legit = eu
        .refresh(pb::RefreshRequest {
            refresh_token: reg.refresh_token,
        })
        .await
        .unwrap()
        .into_inner();
    // The thief replays the rotated token.
    expect_status(
        eu.refresh(pb::RefreshRequest {
            refresh_token: stolen,
        })
        .await,
        Code::Unauthenticated,
        "already used",
    );
    // The whole family is gone, including the legitimate newest token and the session's access.
    expect_status(
        eu.refresh(pb::RefreshRequest {
            refresh_token: legit.refresh_token,
        })
        .await,
        Code::Unauthenticated,
        "invalid or expired",
    );
    expect_status(
        eu.get_profile(bearer(pb::GetProfileRequest {}, &legit.access_token))
            .await,
        Code::Unauthenticated,
        "session",
    );
    // Other sessions of the user are untouched.
    let again = eu
        .login(login_req("reuse@example.org", "correct horse battery"))
        .await
        .unwrap()
        .into_inner();
    eu.refresh(pb::RefreshRequest {
        refresh_token: again.refresh_token,
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tokens_expire_on_the_clock() {
    let fed = Fed::start().await;
    let mut eu = fed.client("eu").await;
    let reg = eu
        .register(register_req("clock@example.org"))
        .await
        .unwrap()
        .into_inner();
    fed.clock.advance(600 + 31);
    expect_status(
        eu.get_profile(bearer(pb::GetProfileRequest {}, &reg.access_token))
            .await,
        Code::Unauthenticated,
        "expired",
    );
    // The refresh token outlives the access token...
    let fresh = eu
        .refresh(pb::RefreshRequest {
            refresh_token: reg.refresh_token,
        })
        .await
        .unwrap()
        .into_inner();
    eu.get_profile(bearer(pb::GetProfileRequest {}, &fresh.access_token))
        .await
        .unwrap();
    // ...until its idle lifetime (14 days) runs out.
    fed.clock.advance(14 * 86_400);
    expect_status(
        eu.refresh(pb::RefreshRequest {
            refresh_token: fresh.refresh_token,
        })
        .await,
        Code::Unauthenticated,
        "invalid or expired",
    );
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_the_same() {
    // Real OWASP cost, so the dummy hash on the unknown-user path matters.
    let fed = Fed::with_passwords(OWASP_PASSWORDS).await;
    let mut eu = fed.client("eu").await;
    eu.register(register_req("known@example.org"))
        .await
        .unwrap();
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..5 {
        let t = std::time::Instant::now();
        let a = expect_status(
            eu.login(login_req("known@example.org", "not the password"))
                .await,
            Code::Unauthenticated,
            "",
        );
        wrong.push(t.elapsed());
        let t = std::time::Instant::now();
        let b = expect_status(
            eu.login(login_req(
                &format!("nobody{i}@example.org"),
                "not the password",
            ))
            .await,
            Code::Unauthenticated,
            "",
        );
        unknown.push(t.elapsed());
        assert_eq!(a.message(), b.message(), "one generic message");
        assert_eq!(a.message(), "invalid email or password");
    }
    wrong.sort();
    unknown.sort();
    let (w, u) = (wrong[2].as_secs_f64(), unknown[2].as_secs_f64());
    // Not a speed assertion: a missing dummy hash makes the unknown path
    // ~50x cheaper; within 3x means both paths paid for a hash.
    assert!(
        u > w / 3.0 && u < w * 3.0,
        "median wrong {w:.4}s vs unknown {u:.4}s"
    );
}

#[tokio::test]
async fn weaker_stored_hashes_are_upgraded_at_login() {
    let mut fed = Fed::start().await;
    let reg = fed
        .client("eu")
        .await
        .register(register_req("rehash@example.org"))
        .await
        .unwrap()
        .into_inner();
    let before = fed.nodes["eu"]
        .store
        .get_user(&reg.user_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        before
            .password_hash
            .starts_with("$argon2id$v=19$m=256,t=1,p=1$"),
        "{}",
        before.password_hash
    );
    fed.restart(
        "eu",
        Some("memory_kib = 512\niterations = 2\nparallelism = 1\n"),
    )
    .await;
    fed.client("eu")
        .await
        .login(login_req("rehash@example.org", "correct horse battery"))
        .await
        .unwrap();
    let after = fed.nodes["eu"]
        .store
        .get_user(&reg.user_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        after
            .password_hash
            .starts_with("$argon2id$v=19$m=512,t=2,p=1$"),
        "{}",
        after.password_hash
    );
    assert_eq!(after.version, before.version + 1);
    // And the new hash still logs in.
    fed.client("eu")
        .await
        .login(login_req("rehash@example.org", "correct horse battery"))
        .await
        .unwrap();
}

#[tokio::test]
async fn signing_keys_persist_across_restarts() {
    let mut fed = Fed::start().await;
    let reg = fed
        .client("us")
        .await
        .register(register_req("keys@example.com"))
        .await
        .unwrap()
        .into_inner();
    let (_, before) = http_get(fed.nodes["us"].addr, "/.well-known/jwks.json").await;
    fed.restart("us", None).await;
    let (_, after) = http_get(fed.nodes["us"].addr, "/.well-known/jwks.json").await;
    assert_eq!(before, after, "same keys after restart");
    assert!(after.contains("\"kid\":\"us-1\""), "{after}");
    // A token issued before the restart still works.
    fed.client("us")
        .await
        .get_profile(bearer(pb::GetProfileRequest {}, &reg.access_token))
        .await
        .unwrap();
    // Each region has its own key.
    let (_, eu) = http_get(fed.nodes["eu"].addr, "/.well-known/jwks.json").await;
    assert!(
        eu.contains("\"kid\":\"eu-1\"") && !eu.contains("us-1"),
        "{eu}"
    );
}

#[tokio::test]
async fn a_full_hash_pool_answers_resource_exhausted() {
    let fed = Fed::with_passwords(&format!(
        "{OWASP_PASSWORDS}hash_workers = 1\nhash_queue = 0\n"
    ))
    .await;
    let clients: Vec<_> = futures::future::join_all((0..8).map(|_| fed.client("eu"))).await;
    let calls = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| async move {
            c.register(register_req(&format!("burst{i}@example.org")))
                .await
        });
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::ResourceExhausted))
        .count();
    assert_eq!(ok + busy, 8, "{results:?}");
    assert!(ok >= 1 && busy >= 1, "ok {ok}, busy {busy}");
    // Refused registrations wrote nothing and left the email free.
    assert_eq!(fed.users("eu").await, ok as u64);
    for (i, r) in results.iter().enumerate() {
        if r.is_err() {
            fed.client("eu")
                .await
                .register(register_req(&format!("burst{i}@example.org")))
                .await
                .unwrap();
        }
    }
}
