//! Second factors over the gRPC API of real nodes, with TOTP codes made by
//! a third-party generator (`pyotp`, reading the `otpauth://` URI the node
//! handed out) at the nodes' manual clock, and the notices received by a
//! real SMTP server: enrolment and its confirmation, a sign-in that waits
//! for its second factor, drift, replay, recovery codes, attempts,
//! malformed input, re-authentication, removal, and where the secret is
//! kept.

use crate::harness::*;
use domicile_core::token::Expectations;
use domicile_node::{Clock, MFA_METHODS_METADATA, MFA_TOKEN_METADATA};
use domicile_proto::v1 as pb;
use domicile_store::AuditKind;
use domicile_testkit::{PASSWORD, bearer, smtp::SmtpSink};
use std::{io::Write as _, process::Command, time::Duration};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(10);

/// Why the third-party generator cannot run here, if it cannot.
fn pyotp_unavailable() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import pyotp"])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(_) => Some("pyotp is not installed (cargo xtask test installs it)".into()),
        Err(e) => Some(format!("python3 cannot run: {e}")),
    }
}

/// The code pyotp computes at Unix time `t` for the app the URI describes.
fn pyotp_code(uri: &str, t: i64) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, pyotp; print(pyotp.parse_uri(sys.argv[1]).at(int(sys.argv[2])))",
            uri,
            &t.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn complete(token: &str, totp: &str, recovery: &str) -> pb::CompleteSignInRequest {
    pb::CompleteSignInRequest {
        mfa_token: token.into(),
        totp_code: totp.into(),
        recovery_code: recovery.into(),
        passkey_credential: String::new(),
    }
}

/// Logs in with the password and expects the wait for a second factor:
/// the pending token.
async fn pending(fed: &Fed, email: &str) -> String {
    let s = fed
        .client("eu")
        .await
        .login(login_req(email, PASSWORD))
        .await
        .expect_err("a second factor is asked for");
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("second factor"), "{s:?}");
    let md = s.metadata();
    assert_eq!(
        md.get(MFA_METHODS_METADATA).and_then(|v| v.to_str().ok()),
        Some("totp,recovery_code")
    );
    let token = md
        .get(MFA_TOKEN_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_owned();
    assert!(token.starts_with("mfa_eu_"), "{token}");
    token
}

fn amr_of(fed_keys: &domicile_core::token::KeySet, token: &str, now: i64) -> (Vec<String>, String) {
    let want = Expectations {
        issuer: "https://id.test",
        audience: "https://id.test",
        region: None,
    };
    let c = fed_keys.verify(token, &want, now).unwrap();
    (c.amr, c.acr)
}

/// The whole life of an authenticator app, with codes from pyotp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticator_app_guards_sign_in_with_codes_from_a_third_party_generator() {
    if let Some(reason) = pyotp_unavailable() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: mfa::an_authenticator_app_guards_sign_in_with_codes_from_a_third_party_generator: {reason}"
        );
        return;
    }
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, None).await;
    let email = "ada@example.de";
    let mut eu = fed.client("eu").await;
    let reg = eu.register(register_req(email)).await.unwrap().into_inner();
    let token = reg.access_token.clone();
    let keys = jwks(&fed, "eu").await;
    assert_eq!(
        amr_of(&keys, &token, fed.clock.now()),
        (vec!["pwd".to_owned()], "urn:domicile:loa:1".to_owned())
    );
    let none = eu
        .get_factors(bearer(pb::GetFactorsRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert!(!none.totp && none.recovery_codes_left == 0);

    // Enrolment: a secret shown once, as base32 and as an otpauth URI.
    let e = eu
        .enroll_totp(bearer(pb::EnrollTotpRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(
        e.otpauth_uri.starts_with("otpauth://totp/"),
        "{}",
        e.otpauth_uri
    );
    assert!(e.otpauth_uri.contains(&format!("secret={}", e.secret)));
    assert_eq!((e.secret.len(), e.expires_in), (32, 600));
    let waiting = eu
        .get_factors(bearer(pb::GetFactorsRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert!(waiting.totp_pending && !waiting.totp);
    // An unconfirmed app does not guard sign-in yet.
    eu.login(login_req(email, PASSWORD)).await.unwrap();
    // A wrong code does not confirm it; malformed ones are refused.
    let now = fed.clock.now();
    let right = pyotp_code(&e.otpauth_uri, now);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    for (code, words) in [
        (wrong.as_str(), "not the app's"),
        ("12345", "6 digits"),
        ("abcdef", "6 digits"),
    ] {
        expect_status(
            eu.confirm_totp(bearer(pb::ConfirmTotpRequest { code: code.into() }, &token))
                .await,
            Code::InvalidArgument,
            words,
        );
    }
    let confirmed = eu
        .confirm_totp(bearer(
            pb::ConfirmTotpRequest {
                code: right.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let codes = confirmed.recovery_codes;
    assert_eq!(codes.len(), 10);
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 14 && c.matches('-').count() == 2)
    );
    let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), 10);
    assert!(audited(&fed, &reg.user_id, AuditKind::TotpEnrolled).await);
    assert!(audited(&fed, &reg.user_id, AuditKind::RecoveryCodesGenerated).await);
    let notice = smtp
        .wait_for_subject(email, "Two-step sign-in", 0, WAIT)
        .await
        .expect("the enrolment notice");
    assert!(!notice.text().contains(&e.secret));
    // The app cannot be swapped by the registration's one-factor token:
    // another enrolment is refused while it is set up, and so is its
    // removal (the password alone is not enough).
    expect_status(
        eu.enroll_totp(bearer(pb::EnrollTotpRequest::default(), &token))
            .await,
        Code::InvalidArgument,
        "set up already",
    );
    expect_status(
        eu.remove_totp(bearer(
            pb::RemoveTotpRequest {
                password: PASSWORD.into(),
            },
            &token,
        ))
        .await,
        Code::PermissionDenied,
        "needs a sign-in with your second factor",
    );

    // A password alone no longer signs in: nothing is issued.
    let sessions_before = fed.nodes["eu"].store.count_sessions().await.unwrap();
    let t1 = pending(&fed, email).await;
    assert_eq!(
        fed.nodes["eu"].store.count_sessions().await.unwrap(),
        sessions_before,
        "no session before the second factor"
    );
    assert!(audited(&fed, &reg.user_id, AuditKind::SecondFactorAsked).await);
    // The confirming code is spent: presenting it again is a replay.
    expect_status(
        eu.complete_sign_in(complete(&t1, &right, "")).await,
        Code::PermissionDenied,
        "4 attempt(s) left",
    );
    // The next step's code finishes the sign-in, with two factors.
    fed.clock.advance(30);
    let now = fed.clock.now();
    let next = pyotp_code(&e.otpauth_uri, now);
    let done = eu
        .complete_sign_in(complete(&t1, &next, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.user_id, reg.user_id);
    assert_eq!(
        amr_of(&keys, &done.access_token, now),
        (
            vec!["pwd".to_owned(), "otp".into(), "mfa".into()],
            "urn:domicile:loa:2".to_owned()
        )
    );
    // The amr lasts the session: a refreshed token carries it too.
    let refreshed = eu
        .refresh(pb::RefreshRequest {
            refresh_token: done.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        amr_of(&keys, &refreshed.access_token, now).1,
        "urn:domicile:loa:2"
    );
    // A pending sign-in finishes once.
    fed.clock.advance(30);
    let later = pyotp_code(&e.otpauth_uri, fed.clock.now());
    expect_status(
        eu.complete_sign_in(complete(&t1, &later, "")).await,
        Code::PermissionDenied,
        "expired or ended",
    );

    // One step of drift either way: last step's code is accepted (it is
    // newer than the last one used), then refused as a replay.
    fed.clock.advance(60);
    let now = fed.clock.now();
    let drifted = pyotp_code(&e.otpauth_uri, now - 30);
    let t2 = pending(&fed, email).await;
    eu.complete_sign_in(complete(&t2, &drifted, ""))
        .await
        .unwrap();
    let t3 = pending(&fed, email).await;
    expect_status(
        eu.complete_sign_in(complete(&t3, &drifted, "")).await,
        Code::PermissionDenied,
        "already used",
    );
    // Two steps off is outside the window.
    let stale = pyotp_code(&e.otpauth_uri, now - 90);
    expect_status(
        eu.complete_sign_in(complete(&t3, &stale, "")).await,
        Code::PermissionDenied,
        "3 attempt(s) left",
    );

    // A recovery code stands in once; the user is told; reuse is refused.
    let t4 = pending(&fed, email).await;
    let by_recovery = eu
        .complete_sign_in(complete(&t4, "", &codes[0].to_uppercase()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        amr_of(&keys, &by_recovery.access_token, now).0,
        ["pwd", "rec", "mfa"]
    );
    assert!(audited(&fed, &reg.user_id, AuditKind::RecoveryCodeUsed).await);
    let told = smtp
        .wait_for_subject(email, "A recovery code was used", 0, WAIT)
        .await
        .expect("the recovery notice");
    assert!(!told.text().contains(&codes[0]));
    let t5 = pending(&fed, email).await;
    expect_status(
        eu.complete_sign_in(complete(&t5, "", &codes[0])).await,
        Code::PermissionDenied,
        "4 attempt(s) left",
    );
    let left = eu
        .get_factors(bearer(pb::GetFactorsRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert!(left.totp && left.recovery_codes_left == 9);

    // Five wrong factors end the pending sign-in, even for the right code.
    for n in (0..4).rev() {
        expect_status(
            eu.complete_sign_in(complete(&t5, "000000", "")).await,
            Code::PermissionDenied,
            &format!("{n} attempt(s) left"),
        );
    }
    fed.clock.advance(30);
    let fresh = pyotp_code(&e.otpauth_uri, fed.clock.now());
    expect_status(
        eu.complete_sign_in(complete(&t5, &fresh, "")).await,
        Code::PermissionDenied,
        "expired or ended",
    );
    assert!(audited(&fed, &reg.user_id, AuditKind::SecondFactorFailed).await);
    // …and a pending sign-in lives five minutes.
    let t6 = pending(&fed, email).await;
    fed.clock.advance(301);
    let fresh = pyotp_code(&e.otpauth_uri, fed.clock.now());
    expect_status(
        eu.complete_sign_in(complete(&t6, &fresh, "")).await,
        Code::PermissionDenied,
        "expired or ended",
    );

    // Regenerating the recovery codes needs the password and kills the
    // old set.
    expect_status(
        eu.regenerate_recovery_codes(bearer(
            pb::RegenerateRecoveryCodesRequest {
                password: "not the password".into(),
            },
            &done.access_token,
        ))
        .await,
        Code::Unauthenticated,
        "invalid email or password",
    );
    let new_codes = eu
        .regenerate_recovery_codes(bearer(
            pb::RegenerateRecoveryCodesRequest {
                password: PASSWORD.into(),
            },
            &done.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .recovery_codes;
    assert_eq!(new_codes.len(), 10);
    let t7 = pending(&fed, email).await;
    expect_status(
        eu.complete_sign_in(complete(&t7, "", &codes[1])).await,
        Code::PermissionDenied,
        "attempt(s) left",
    );
    eu.complete_sign_in(complete(&t7, "", &new_codes[1]))
        .await
        .unwrap();

    // Removal needs the password; afterwards the password alone signs in.
    for (password, code) in [("", Code::InvalidArgument), ("nope", Code::Unauthenticated)] {
        let r = eu
            .remove_totp(bearer(
                pb::RemoveTotpRequest {
                    password: password.into(),
                },
                &done.access_token,
            ))
            .await;
        assert_eq!(r.unwrap_err().code(), code);
    }
    let after = eu
        .remove_totp(bearer(
            pb::RemoveTotpRequest {
                password: PASSWORD.into(),
            },
            &done.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!after.totp && after.recovery_codes_left == 0);
    assert!(audited(&fed, &reg.user_id, AuditKind::TotpRemoved).await);
    let plain = eu
        .login(login_req(email, PASSWORD))
        .await
        .unwrap()
        .into_inner();
    assert!(!plain.access_token.is_empty());
}

/// Malformed and misdirected second factors are refused before anything
/// is read, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_second_factors_are_refused_with_their_field() {
    let fed = Fed::start().await;
    let mut eu = fed.client("eu").await;
    let mut us = fed.client("us").await;
    let reg = eu
        .register(register_req("bob@example.de"))
        .await
        .unwrap()
        .into_inner();
    let owner = domicile_core::ids::UserId::parse(&reg.user_id).unwrap();
    let forged = domicile_core::ids::PendingSignIn::new(&owner, [7; 32]);
    let long = "1".repeat(40);
    let cases: Vec<(pb::CompleteSignInRequest, Code, &str)> = vec![
        (
            complete("", "123456", ""),
            Code::InvalidArgument,
            "mfa_token",
        ),
        (
            complete("mfa_eu_nope", "123456", ""),
            Code::InvalidArgument,
            "mfa_token",
        ),
        (
            complete(&reg.refresh_token, "123456", ""),
            Code::InvalidArgument,
            "mfa_token",
        ),
        (
            complete(forged.expose(), "", ""),
            Code::InvalidArgument,
            "exactly one",
        ),
        (
            complete(forged.expose(), "123456", "abcd-efgh-jkmn"),
            Code::InvalidArgument,
            "exactly one",
        ),
        (
            complete(forged.expose(), "12345", ""),
            Code::InvalidArgument,
            "totp_code",
        ),
        (
            complete(forged.expose(), &long, ""),
            Code::InvalidArgument,
            "longer than",
        ),
        (
            complete(forged.expose(), "", "not-a-code"),
            Code::InvalidArgument,
            "recovery_code",
        ),
        // Well formed, but no such pending sign-in.
        (
            complete(forged.expose(), "123456", ""),
            Code::PermissionDenied,
            "expired or ended",
        ),
    ];
    for (req, code, words) in cases {
        expect_status(eu.complete_sign_in(req).await, code, words);
    }
    // An eu pending sign-in presented to us is sent home.
    expect_wrong_region(
        us.complete_sign_in(complete(forged.expose(), "123456", ""))
            .await,
        "eu",
    );
    // Enrolment calls need a bearer; an unknown client is refused.
    expect_status(
        eu.enroll_totp(pb::EnrollTotpRequest::default()).await,
        Code::Unauthenticated,
        "Bearer",
    );
    expect_status(
        eu.enroll_totp(bearer(
            pb::EnrollTotpRequest {
                client_id: "nope".into(),
            },
            &reg.access_token,
        ))
        .await,
        Code::InvalidArgument,
        "client_id",
    );
    expect_status(
        eu.confirm_totp(bearer(
            pb::ConfirmTotpRequest {
                code: "123456".into(),
            },
            &reg.access_token,
        ))
        .await,
        Code::InvalidArgument,
        "no authenticator app is waiting",
    );
    expect_status(
        eu.regenerate_recovery_codes(bearer(
            pb::RegenerateRecoveryCodesRequest {
                password: PASSWORD.into(),
            },
            &reg.access_token,
        ))
        .await,
        Code::InvalidArgument,
        "set up an authenticator app first",
    );
    assert_eq!(
        fed.nodes["eu"]
            .store
            .get_factors(&reg.user_id)
            .await
            .unwrap(),
        None
    );
}

/// The secret lives only in the home region's store, sealed: neither its
/// base32 nor its bytes are in any store file, and no other region holds
/// a factors row of the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_is_sealed_in_the_home_region_only() {
    let fed = Fed::start().await;
    let mut eu = fed.client("eu").await;
    let reg = eu
        .register(register_req("cy@example.de"))
        .await
        .unwrap()
        .into_inner();
    let e = eu
        .enroll_totp(bearer(pb::EnrollTotpRequest::default(), &reg.access_token))
        .await
        .unwrap()
        .into_inner();
    let secret = data_encoding_base32(&e.secret);
    let stored = fed.nodes["eu"]
        .store
        .get_factors(&reg.user_id)
        .await
        .unwrap()
        .expect("a factors row in eu (positive control)");
    assert!(stored.pending_totp.is_some());
    for region in ["us", "ap"] {
        assert_eq!(
            fed.nodes[region]
                .store
                .get_factors(&reg.user_id)
                .await
                .ok()
                .flatten(),
            None,
            "{region}"
        );
    }
    for entry in walk(&fed.data_dir()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !contains(&bytes, e.secret.as_bytes()),
            "{entry:?} holds the base32 secret"
        );
        assert!(
            !contains(&bytes, &secret),
            "{entry:?} holds the secret's bytes"
        );
    }
}

/// RFC 4648 base32 without padding, decoded (the test's own reading of the
/// secret it was shown).
fn data_encoding_base32(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u64;
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

use crate::{
    messages::browser,
    oidc::{CHALLENGE, REDIRECT, VERIFIER, authorize_url},
};

/// The sign-in page, then its form with the password: the response.
pub(crate) async fn password_form(
    fed: &Fed,
    http: &reqwest::Client,
    email: &str,
    extra: &str,
) -> reqwest::Response {
    let r = http.get(authorize_url(fed, extra)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    http.post(format!("http://{}/authorize", fed.nodes["eu"].addr))
        .form(&[
            ("req", domicile_testkit::hidden_field(&html, "req").as_str()),
            (
                "csrf",
                domicile_testkit::hidden_field(&html, "csrf").as_str(),
            ),
            ("email", email),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap()
}

pub(crate) fn code_of(r: &reqwest::Response) -> String {
    assert_eq!(r.status(), 303, "{r:?}");
    let location = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// The ID token's claims of a redeemed code (its payload, read as JSON;
/// the signature has its own tests).
pub(crate) async fn id_claims(fed: &Fed, http: &reqwest::Client, code: &str) -> serde_json::Value {
    let r = http
        .post(format!("http://{}/token", fed.nodes["eu"].addr))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "demo"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    jwt_claims(body["id_token"].as_str().unwrap())
}

/// A JWT's claims, read without checking its signature (which has its own
/// tests).
pub(crate) fn jwt_claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// The hosted pages drive the same pending sign-in: after the password, a
/// page asks for the app's code (CSRF-checked, a wrong code shows it
/// again), then the app gets a code whose ID token says two factors. A
/// browser session of one factor does not answer a request that asks for
/// two (`acr_values`); one of two does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosted_pages_ask_for_the_second_factor_and_step_up_single_sign_on() {
    if let Some(reason) = pyotp_unavailable() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: mfa::the_hosted_pages_ask_for_the_second_factor_and_step_up_single_sign_on: {reason}"
        );
        return;
    }
    let fed = Fed::start().await;
    let mut eu = fed.client("eu").await;
    let ada = eu
        .register(register_req("ada@example.de"))
        .await
        .unwrap()
        .into_inner();
    eu.register(register_req("bob@example.de")).await.unwrap();
    let e = eu
        .enroll_totp(bearer(pb::EnrollTotpRequest::default(), &ada.access_token))
        .await
        .unwrap()
        .into_inner();
    let first = pyotp_code(&e.otpauth_uri, fed.clock.now());
    eu.confirm_totp(bearer(
        pb::ConfirmTotpRequest { code: first },
        &ada.access_token,
    ))
    .await
    .unwrap();
    fed.clock.advance(30);

    let http = browser();
    let r = password_form(&fed, &http, "ada@example.de", "").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("One more step") || html.contains("Noch ein Schritt"),
        "{html}"
    );
    let token = domicile_testkit::hidden_field(&html, "mfa_token");
    assert!(token.starts_with("mfa_eu_"), "{token}");
    let post = |code: String, csrf: String| {
        let http = http.clone();
        let (req, token) = (domicile_testkit::hidden_field(&html, "req"), token.clone());
        let url = format!("http://{}/mfa", fed.nodes["eu"].addr);
        async move {
            http.post(url)
                .form(&[
                    ("req", req.as_str()),
                    ("csrf", csrf.as_str()),
                    ("mfa_token", token.as_str()),
                    ("code", code.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let csrf = domicile_testkit::hidden_field(&html, "csrf");
    let right = pyotp_code(&e.otpauth_uri, fed.clock.now());
    // A forged CSRF token is refused before the code is looked at.
    assert_eq!(post(right.clone(), "forged".into()).await.status(), 403);
    let wrong = post("000000".into(), csrf.clone()).await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("mfa_token"));
    let done = post(right, csrf.clone()).await;
    let claims = id_claims(&fed, &http, &code_of(&done)).await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    assert_eq!(claims["acr"], "urn:domicile:loa:2");
    // Her browser session has two factors: a request asking for them is
    // answered by single sign-on.
    let sso = http
        .get(authorize_url(&fed, "&acr_values=urn%3Adomicile%3Aloa%3A2"))
        .send()
        .await
        .unwrap();
    let claims = id_claims(&fed, &http, &code_of(&sso)).await;
    assert_eq!(claims["acr"], "urn:domicile:loa:2");

    // Bob has one factor: his browser session answers plain requests, not
    // one asking for two; and his password cannot give two.
    let bob = browser();
    let signed = password_form(&fed, &bob, "bob@example.de", "").await;
    let claims = id_claims(&fed, &bob, &code_of(&signed)).await;
    assert_eq!(
        (claims["amr"].clone(), claims["acr"].clone()),
        (
            serde_json::json!(["pwd"]),
            serde_json::json!("urn:domicile:loa:1")
        )
    );
    let plain = bob.get(authorize_url(&fed, "")).send().await.unwrap();
    assert_eq!(plain.status(), 303, "single sign-on");
    let refused = password_form(
        &fed,
        &bob,
        "bob@example.de",
        "&acr_values=urn%3Adomicile%3Aloa%3A2",
    )
    .await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("authenticator app"));
}

/// The text of the QR code in `svg`, read by zxing-cpp (`qr_decode.py`);
/// `None` when zxing-cpp is not installed.
fn qr_text(svg: &str) -> Option<String> {
    use std::io::Write;
    let ok = Command::new("python3")
        .args(["-c", "import zxingcpp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/qr_decode.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(svg.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

/// The value of the `attribute` of the element with `id` in `html`, with
/// the entities askama escapes undone.
fn attribute(html: &str, id: &str, attribute: &str) -> String {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let rest = &html[at..];
    let marker = format!("{attribute}=\"");
    let start = rest.find(&marker).unwrap() + marker.len();
    let value = &rest[start..];
    value[..value.find('"').unwrap()]
        .replace("&#38;", "&")
        .replace("&amp;", "&")
        .replace("&#x3d;", "=")
        .replace("&#61;", "=")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x3a;", ":")
        .replace("&#58;", ":")
}

/// The account page of a signed-in browser: off, then a QR code and key to
/// scan (the URI read back by pyotp), confirmed by its code, ten recovery
/// codes shown once; the next sign-in asks for the app. Its forms refuse a
/// forged CSRF token and a wrong password, and without a browser session
/// it only says to sign in first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_page_sets_up_an_app_with_a_qr_code() {
    if let Some(reason) = pyotp_unavailable() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: mfa::the_account_page_sets_up_an_app_with_a_qr_code: {reason}"
        );
        return;
    }
    let fed = Fed::start().await;
    let base = format!("http://{}", fed.nodes["eu"].addr);
    fed.client("eu")
        .await
        .register(register_req("dora@example.de"))
        .await
        .unwrap();
    let nobody = browser();
    let r = nobody.get(format!("{base}/account")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Sign in"));

    let http = browser();
    let signed = password_form(&fed, &http, "dora@example.de", "").await;
    assert_eq!(signed.status(), 303);
    let page = http.get(format!("{base}/account")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Two-step sign-in is off") || html.contains("ist aus"),
        "{html}"
    );
    let csrf = domicile_testkit::hidden_field(&html, "csrf");
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move { http.post(url).form(&fields).send().await.unwrap() }
    };
    assert_eq!(
        post("/account/totp", vec![("csrf", "forged".into())])
            .await
            .status(),
        403
    );
    let r = post("/account/totp", vec![("csrf", csrf.clone())]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "a QR code"
    );
    let uri = attribute(&html, "otpauth", "href");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    // A third-party decoder reads the QR code as the same URI.
    let svg = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap() + 6];
    match qr_text(svg) {
        Some(text) => assert_eq!(text, uri, "the QR code says the linked URI"),
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (part): mfa::the_account_page_sets_up_an_app_with_a_qr_code: reading the QR code back needs zxing-cpp (cargo xtask test installs it)"
            );
        }
    }
    let code = pyotp_code(&uri, fed.clock.now());
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let r = post(
        "/account/totp/confirm",
        vec![("csrf", csrf.clone()), ("code", wrong)],
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post(
        "/account/totp/confirm",
        vec![("csrf", csrf.clone()), ("code", code)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let shown = html.matches("<li><code>").count();
    assert_eq!(shown, 10, "{html}");
    // Shown once: the page again lists none.
    let again = http.get(format!("{base}/account")).send().await.unwrap();
    assert_eq!(again.text().await.unwrap().matches("<li><code>").count(), 0);

    // The session of one factor cannot take the app away, even with the
    // password.
    let r = post(
        "/account/totp/remove",
        vec![("csrf", csrf.clone()), ("password", PASSWORD.into())],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("needs a sign-in with your authenticator app")
    );

    // A new sign-in asks for the app, and passes it.
    fed.clock.advance(30);
    let other = browser();
    let r = password_form(&fed, &other, "dora@example.de", "").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let done = other
        .post(format!("{base}/mfa"))
        .form(&[
            ("req", domicile_testkit::hidden_field(&html, "req")),
            ("csrf", domicile_testkit::hidden_field(&html, "csrf")),
            (
                "mfa_token",
                domicile_testkit::hidden_field(&html, "mfa_token"),
            ),
            ("code", pyotp_code(&uri, fed.clock.now())),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    let page = other.get(format!("{base}/account")).send().await.unwrap();
    let csrf = domicile_testkit::hidden_field(&page.text().await.unwrap(), "csrf");
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let http = other.clone();
        let url = format!("{base}{path}");
        async move { http.post(url).form(&fields).send().await.unwrap() }
    };

    // Removal from the two-step session: a wrong password changes nothing;
    // the right one removes it.
    let r = post(
        "/account/totp/remove",
        vec![("csrf", csrf.clone()), ("password", "wrong".into())],
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = post(
        "/account/totp/remove",
        vec![("csrf", csrf.clone()), ("password", PASSWORD.into())],
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = password_form(&fed, &browser(), "dora@example.de", "").await;
    assert_eq!(r.status(), 303, "the password alone signs in again");
}

/// Someone who knows the password can start any number of sign-ins; the
/// account bounds the guessing of its second factor: ten wrong factors in
/// a quarter hour, across sign-ins, and every factor is refused (even the
/// right one) with `retry-after` until the window ends; audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_the_second_factor_across_sign_ins_locks_it_for_a_while() {
    if let Some(reason) = pyotp_unavailable() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: mfa::guessing_the_second_factor_across_sign_ins_locks_it_for_a_while: {reason}"
        );
        return;
    }
    let fed = Fed::start().await;
    let mut eu = fed.client("eu").await;
    let email = "eve.target@example.de";
    let reg = eu.register(register_req(email)).await.unwrap().into_inner();
    let e = eu
        .enroll_totp(bearer(pb::EnrollTotpRequest::default(), &reg.access_token))
        .await
        .unwrap()
        .into_inner();
    let first = pyotp_code(&e.otpauth_uri, fed.clock.now());
    eu.confirm_totp(bearer(
        pb::ConfirmTotpRequest { code: first },
        &reg.access_token,
    ))
    .await
    .unwrap();
    fed.clock.advance(30);
    let right = pyotp_code(&e.otpauth_uri, fed.clock.now());
    let wrong = format!(
        "{:06}",
        (right.parse::<u32>().unwrap() + 500_000) % 1_000_000
    );
    // Three sign-ins of four, four and two guesses: ten in all.
    for guesses in [4, 4, 2] {
        let t = pending(&fed, email).await;
        for _ in 0..guesses {
            let s = eu
                .complete_sign_in(complete(&t, &wrong, ""))
                .await
                .unwrap_err();
            assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
        }
    }
    assert!(audited(&fed, &reg.user_id, AuditKind::SecondFactorLocked).await);
    let t = pending(&fed, email).await;
    let s = expect_status(
        eu.complete_sign_in(complete(&t, &right, "")).await,
        Code::ResourceExhausted,
        "too many requests",
    );
    let retry: i64 = s
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // After the window the right code signs in (a fresh sign-in: the last
    // one lives five minutes).
    fed.clock.advance(retry);
    let t = pending(&fed, email).await;
    let now_code = pyotp_code(&e.otpauth_uri, fed.clock.now());
    eu.complete_sign_in(complete(&t, &now_code, ""))
        .await
        .unwrap();
}

/// An app that requires two-step sign-in, and a user without a second
/// factor: the password is right, the app gets nothing, and the page leads
/// to the account page (with a browser session of that one factor) to set
/// an app up, then back to signing in, which now asks for the app and
/// ends at the app with two factors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_requires_two_steps_leads_a_new_user_through_setting_one_up() {
    if let Some(reason) = pyotp_unavailable() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: mfa::an_app_that_requires_two_steps_leads_a_new_user_through_setting_one_up: {reason}"
        );
        return;
    }
    let fed = Fed::start().await;
    let base = format!("http://{}", fed.nodes["eu"].addr);
    fed.client("eu")
        .await
        .register(register_req("finn@example.de"))
        .await
        .unwrap();
    let http = browser();
    let vault = format!(
        "{base}/authorize?client_id=vault&redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fcallback&response_type=code&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256"
    );
    let page = http.get(&vault).send().await.unwrap().text().await.unwrap();
    let form = |html: &str| {
        vec![
            ("req", domicile_testkit::hidden_field(html, "req")),
            ("csrf", domicile_testkit::hidden_field(html, "csrf")),
            ("email", "finn@example.de".to_owned()),
            ("password", PASSWORD.to_owned()),
        ]
    };
    let r = http
        .post(format!("{base}/authorize"))
        .form(&form(&page))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("location").is_none(), "nothing for the app");
    let html = r.text().await.unwrap();
    assert!(html.contains("requires two-step sign-in"), "{html}");
    let setup = attribute(&html, "set-up", "href");
    assert!(setup.starts_with("/account?req="), "{setup}");

    // The account page, with the one-factor browser session.
    let html = http
        .get(format!("{base}{setup}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = domicile_testkit::hidden_field(&html, "csrf");
    let req = domicile_testkit::hidden_field(&html, "req");
    let html = http
        .post(format!("{base}/account/totp"))
        .form(&[("csrf", csrf.as_str()), ("req", req.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let uri = attribute(&html, "otpauth", "href");
    let code = pyotp_code(&uri, fed.clock.now());
    let html = http
        .post(format!("{base}/account/totp/confirm"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("req", domicile_testkit::hidden_field(&html, "req").as_str()),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(html.matches("<li><code>").count(), 10);
    let again = attribute(&html, "continue", "href");
    assert!(again.starts_with("/signin?req="), "{again}");

    // Back to signing in: the password, then the app, then the app's code.
    let page = http
        .get(format!("{base}{again}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = http
        .post(format!("{base}/authorize"))
        .form(&form(&page))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    fed.clock.advance(30);
    let done = http
        .post(format!("{base}/mfa"))
        .form(&[
            ("req", domicile_testkit::hidden_field(&html, "req")),
            ("csrf", domicile_testkit::hidden_field(&html, "csrf")),
            (
                "mfa_token",
                domicile_testkit::hidden_field(&html, "mfa_token"),
            ),
            ("code", pyotp_code(&uri, fed.clock.now())),
        ])
        .send()
        .await
        .unwrap();
    let location = reqwest::Url::parse(done.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.path(), "/callback");
    assert!(
        location
            .query_pairs()
            .any(|(k, v)| k == "code" && v.starts_with("ac_eu_"))
    );
}
