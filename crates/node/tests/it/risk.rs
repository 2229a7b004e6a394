//! Risk signals of sign-ins over the API and the hosted pages of real
//! nodes, with the edge's GeoIP headers sent as the edge would, at the
//! nodes' manual clock, and the sign-in checks' emails received by a real
//! SMTP server: a new country, impossible travel and a new device ask a
//! user without a second factor for an emailed code; travel in plausible
//! time, and known devices, ask nothing; malformed signals are refused.

use crate::{harness::*, messages::browser};
use domicile_node::{Clock, MFA_METHODS_METADATA, MFA_TOKEN_METADATA};
use domicile_proto::v1 as pb;
use domicile_testkit::{PASSWORD, smtp::SmtpSink};
use std::time::Duration;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(10);
const BERLIN: &str = "52.52,13.40";
const NEW_YORK: &str = "40.71,-74.01";

/// A login as the edge forwards it: the GeoIP country and place, and the
/// app's device id.
fn login_from(
    email: &str,
    country: &str,
    place: &str,
    device: Option<&str>,
) -> tonic::Request<pb::LoginRequest> {
    let mut r = tonic::Request::new(login_req(email, PASSWORD));
    let md = r.metadata_mut();
    md.insert("domicile-client-country", country.parse().unwrap());
    md.insert("domicile-client-location", place.parse().unwrap());
    if let Some(d) = device {
        md.insert("domicile-device-id", d.parse().unwrap());
    }
    r
}

/// What a login that waits answers: the pending token and its methods.
fn waiting(s: &tonic::Status) -> (String, String) {
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    let md = |k| {
        s.metadata()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    (md(MFA_TOKEN_METADATA), md(MFA_METHODS_METADATA))
}

fn with_code(token: &str, code: &str) -> pb::CompleteSignInRequest {
    pb::CompleteSignInRequest {
        mfa_token: token.into(),
        totp_code: code.into(),
        recovery_code: String::new(),
        passkey_credential: String::new(),
    }
}

/// The details of the `sign_in_risk` audit events, oldest first, once
/// there are `n` (audit events are written off the request path).
async fn risk_events(fed: &Fed, user_id: &str, n: usize) -> Vec<String> {
    let mut v = Vec::new();
    for _ in 0..100 {
        let (_, events) = fed.nodes["eu"]
            .identity()
            .user_audit(user_id, 0)
            .await
            .unwrap();
        v = events
            .iter()
            .filter(|e| e.kind == domicile_store::AuditKind::SignInRisk)
            .map(|e| e.detail.clone())
            .collect();
        v.reverse();
        if v.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfamiliar_sign_ins_ask_for_an_emailed_code_over_the_api() {
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, None).await;
    let email = "wanda@example.de";
    let mut eu = fed.client("eu").await;
    let reg = eu.register(register_req(email)).await.unwrap().into_inner();
    let phone = Some("phone-install-0000000001");
    // The first sign-in teaches Germany, Berlin and the phone.
    eu.login(login_from(email, "DE", BERLIN, phone))
        .await
        .unwrap();
    // New York an hour later: a new country, and faster than a plane.
    fed.clock.advance(3600);
    let s = eu
        .login(login_from(email, "US", NEW_YORK, phone))
        .await
        .unwrap_err();
    let (token, methods) = waiting(&s);
    assert_eq!(methods, "email_code");
    let mail = smtp.wait_for(email, 1, WAIT).await.unwrap();
    let code = mail.code().unwrap();
    // The code finishes this sign-in only.
    let ok = eu
        .complete_sign_in(with_code(&token, &code))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.user_id, reg.user_id);
    // Back in Berlin twelve hours later (6,400 km at 530 km/h): Germany is
    // known and the trip possible; nothing is asked.
    fed.clock.advance(12 * 3600);
    eu.login(login_from(email, "DE", BERLIN, phone))
        .await
        .unwrap();
    // A new device, from a known place: an emailed code again.
    let s = eu
        .login(login_from(
            email,
            "DE",
            BERLIN,
            Some("laptop-install-000000002"),
        ))
        .await
        .unwrap_err();
    let (token, methods) = waiting(&s);
    assert_eq!(methods, "email_code");
    let second = smtp.wait_for(email, 2, WAIT).await.unwrap().code().unwrap();
    // A code of another sign-in, a recovery code, or a wrong code does not
    // finish it; the right one does, once.
    let s = eu
        .complete_sign_in(pb::CompleteSignInRequest {
            mfa_token: token.clone(),
            totp_code: String::new(),
            recovery_code: "abcd-efgh-jkmn".into(),
            passkey_credential: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    eu.complete_sign_in(with_code(&token, &second))
        .await
        .unwrap();
    let s = eu
        .complete_sign_in(with_code(&token, &second))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "spent: {s:?}");
    assert_eq!(
        risk_events(&fed, &reg.user_id, 2).await,
        [
            "signals=new_country,impossible_travel step=email_code",
            "signals=new_device step=email_code",
        ]
    );
    // Malformed signals are refused naming the header, before the password
    // is looked at.
    for (header, value) in [
        ("domicile-client-country", "Germany"),
        ("domicile-client-location", "91,0"),
        ("domicile-device-id", "short"),
    ] {
        let mut r = tonic::Request::new(login_req(email, "wrong password"));
        r.metadata_mut().insert(header, value.parse().unwrap());
        let s = eu.login(r).await.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{header}: {s:?}");
        assert!(s.message().starts_with(header), "{s:?}");
    }
    assert!(
        !audited(&fed, &reg.user_id, domicile_store::AuditKind::LoginFailed).await,
        "nothing was tried"
    );
}

/// A user with an authenticator app is asked for it whatever the risk
/// (the signals are audited beside it); a sign-in by emailed code from a
/// new country is not checked by email again, only audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_beside_a_factor_and_after_a_code_is_audited() {
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, None).await;
    let email = "otto@example.de";
    let mut eu = fed.client("eu").await;
    let reg = eu.register(register_req(email)).await.unwrap().into_inner();
    eu.login(login_from(email, "DE", BERLIN, None))
        .await
        .unwrap();
    // A sign-in code from New York a day later: a new country, finished.
    fed.clock.advance(24 * 3600);
    eu.request_code(pb::RequestCodeRequest {
        email: email.into(),
        purpose: pb::CodePurpose::SignIn as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    let code = smtp.wait_for(email, 1, WAIT).await.unwrap().code().unwrap();
    let mut r = tonic::Request::new(pb::SignInWithCodeRequest {
        email: email.into(),
        code,
        ..Default::default()
    });
    r.metadata_mut()
        .insert("domicile-client-country", "US".parse().unwrap());
    let by_code = eu.sign_in_with_code(r).await.unwrap().into_inner();
    assert_eq!(
        risk_events(&fed, &reg.user_id, 1).await,
        ["signals=new_country step=none_code_sign_in"]
    );
    // With an app: the app is asked, from Japan too.
    let e = eu
        .enroll_totp(bearer(
            pb::EnrollTotpRequest::default(),
            &by_code.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let totp = totp_rs::Totp::from_url(&e.otpauth_uri).unwrap();
    let now = fed.clock.now() as u64;
    eu.confirm_totp(bearer(
        pb::ConfirmTotpRequest {
            code: totp.generate(now).to_string(),
        },
        &by_code.access_token,
    ))
    .await
    .unwrap();
    let s = eu
        .login(login_from(email, "JP", "35.68,139.69", None))
        .await
        .unwrap_err();
    let (_, methods) = waiting(&s);
    assert_eq!(methods, "totp,recovery_code");
    assert_eq!(
        risk_events(&fed, &reg.user_id, 2).await.last().unwrap(),
        // Tokyo a day after Berlin (the code sign-in had no place): a
        // plane could.
        "signals=new_country step=second_factor"
    );
}

/// A password sign-in on the hosted pages in `http` (prompt=login: a
/// password sign-in even where a browser session would answer).
async fn hosted_sign_in(
    fed: &Fed,
    http: reqwest::Client,
    email: &str,
) -> (reqwest::Client, reqwest::Response) {
    let r = http
        .get(crate::oidc::authorize_url(fed, "&prompt=login"))
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    let r = http
        .post(format!("http://{}/authorize", fed.nodes["eu"].addr))
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
        .unwrap();
    (http, r)
}

/// On the hosted pages the browser's device cookie is the device: a new
/// browser is asked for the emailed code on the same page a second factor
/// uses, and then signs in; the browser it was seen in before is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_browser_confirms_a_sign_in_by_emailed_code_on_the_hosted_pages() {
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, None).await;
    let email = "greta@example.de";
    let mut eu = fed.client("eu").await;
    eu.register(register_req(email)).await.unwrap();
    let node = fed.nodes["eu"].addr;
    let (home, first) = hosted_sign_in(&fed, browser(), email).await;
    assert_eq!(first.status(), 303, "the first sign-in teaches the device");
    let set = first
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-domicile_device="))
        .expect("a device cookie (the issuer is https)")
        .to_owned();
    for attribute in [
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Path=/",
        "Max-Age=34560000",
    ] {
        assert!(set.contains(attribute), "{set}");
    }
    // The same browser again, after its session ended: nothing asked.
    let (_, again) = hosted_sign_in(&fed, home.clone(), email).await;
    assert_eq!(again.status(), 303);
    // Another browser: the page asks for the emailed code.
    let (other, asked) = hosted_sign_in(&fed, browser(), email).await;
    assert_eq!(asked.status(), 200);
    let html = asked.text().await.unwrap();
    assert!(
        html.contains("Confirm it is you") && !html.contains("recovery codes"),
        "{html}"
    );
    let code = smtp.wait_for(email, 1, WAIT).await.unwrap().code().unwrap();
    let done = other
        .post(format!("http://{node}/mfa"))
        .form(&[
            ("req", domicile_testkit::hidden_field(&html, "req").as_str()),
            (
                "csrf",
                domicile_testkit::hidden_field(&html, "csrf").as_str(),
            ),
            (
                "mfa_token",
                domicile_testkit::hidden_field(&html, "mfa_token").as_str(),
            ),
            ("by_email", "1"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303, "{:?}", done.text().await);
    // That browser is known now.
    let (_, known) = hosted_sign_in(&fed, other, email).await;
    assert_eq!(known.status(), 303);
}
