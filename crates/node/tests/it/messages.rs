//! The one-time code journeys on the hosted pages of real nodes, with
//! every message received by a real SMTP server on loopback
//! (`domicile_testkit::smtp`): password reset, passwordless sign-in by
//! code and by link, email verification required before sign-in, and the
//! refusals (wrong, replayed, expired, over-limit; an unknown address
//! answered alike, with no mail).

use crate::harness::*;
use domicile_store::AuditKind;
use domicile_testkit::{PASSWORD, hidden_field, smtp::SmtpSink};
use std::{collections::BTreeMap, time::Duration};

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:5000/callback";
const NEW_PASSWORD: &str = "a brand new passphrase";
const WAIT: Duration = Duration::from_secs(10);

pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn base(fed: &Fed, region: &str) -> String {
    format!("http://{}", fed.nodes[region].addr)
}

/// eu's sign-in page for `demo`: its HTML.
pub(crate) async fn sign_in_page(fed: &Fed, http: &reqwest::Client) -> String {
    let url = format!(
        "{}/authorize?client_id=demo&redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fcallback&response_type=code&scope=openid%20email&code_challenge={CHALLENGE}&code_challenge_method=S256",
        base(fed, "eu")
    );
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// Posts `fields` with the page's sealed request and CSRF token to `path`.
pub(crate) async fn post(
    fed: &Fed,
    http: &reqwest::Client,
    path: &str,
    page: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let req = hidden_field(page, "req");
    let csrf = hidden_field(page, "csrf");
    let mut form = vec![("req", req.as_str()), ("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    http.post(format!("{}{path}", base(fed, "eu")))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// The app's callback: the code in a 303's `Location`.
fn callback_code(r: &reqwest::Response) -> String {
    assert_eq!(r.status(), 303, "{:?}", r.headers());
    let location = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(REDIRECT), "{location}");
    let q: BTreeMap<String, String> = location.query_pairs().into_owned().collect();
    q["code"].clone()
}

/// The reset journey: the sign-in page offers it; the request's page says
/// "if an account exists"; the home region's relay delivers the code; a
/// wrong code and a too-short password are refused and leave the code
/// usable; the right one replaces the password, ends the earlier session,
/// signs in for the app, is audited, and a notice follows; the code does
/// not work twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_by_code_replaces_the_password_and_ends_every_session() {
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, None).await;
    let reg = fed
        .client("eu")
        .await
        .register(register_req("ada@example.de"))
        .await
        .unwrap()
        .into_inner();
    let http = browser();
    let page = sign_in_page(&fed, &http).await;
    assert!(page.contains("Forgot your password?"), "{page}");
    let recover = http
        .get(format!(
            "{}/recover?req={}",
            base(&fed, "eu"),
            hidden_field(&page, "req")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(recover.status(), 200);
    let recover = recover.text().await.unwrap();
    let r = post(
        &fed,
        &http,
        "/recover",
        &recover,
        &[("email", "Ada@Example.de")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let code_page = r.text().await.unwrap();
    assert!(code_page.contains("If an account exists"), "{code_page}");

    let mail = smtp
        .wait_for("ada@example.de", 1, WAIT)
        .await
        .expect("the reset mail");
    assert!(
        mail.subject().starts_with("Reset your password"),
        "{}",
        mail.subject()
    );
    // Sent by eu, the user's home region, through eu's relay settings.
    assert!(mail.from.contains("eu.id.test"), "{}", mail.from);
    assert!(mail.html().contains(&mail.code().unwrap()));
    let code = mail.code().expect("a code in the mail");
    let wrong = if code == "000000" { "111111" } else { "000000" };

    let attempt = |code: String, password: &'static str| {
        let (fed, http, code_page) = (&fed, &http, &code_page);
        async move {
            post(
                fed,
                http,
                "/code",
                code_page,
                &[
                    ("purpose", "reset_password"),
                    ("email", "ada@example.de"),
                    ("code", &code),
                    ("password", password),
                ],
            )
            .await
        }
    };
    let r = attempt(wrong.into(), NEW_PASSWORD).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("The code is not right"));
    let r = attempt(code.clone(), "short").await;
    assert_eq!(r.status(), 400, "a refused password leaves the code usable");
    let r = attempt(code.clone(), NEW_PASSWORD).await;
    callback_code(&r);

    // The old password stops working, the new one works, and the session
    // of before the reset has ended.
    let mut eu = fed.client("eu").await;
    expect_status(
        eu.login(login_req("ada@example.de", PASSWORD)).await,
        tonic::Code::Unauthenticated,
        "invalid email or password",
    );
    eu.login(login_req("ada@example.de", NEW_PASSWORD))
        .await
        .unwrap();
    let refreshed = eu
        .refresh(domicile_proto::v1::RefreshRequest {
            refresh_token: reg.refresh_token.clone(),
        })
        .await;
    assert_eq!(refreshed.unwrap_err().code(), tonic::Code::Unauthenticated);
    assert!(audited(&fed, &reg.user_id, AuditKind::PasswordReset).await);

    let notice = smtp
        .wait_for("ada@example.de", 2, WAIT)
        .await
        .expect("the notice");
    assert!(
        notice.subject().starts_with("Your password was changed"),
        "{}",
        notice.subject()
    );
    assert_eq!(notice.code(), None, "a notice carries no code");

    // Spent: the same code again is refused, and changes nothing.
    let r = attempt(code, "yet another passphrase").await;
    assert_eq!(r.status(), 401);
    eu.login(login_req("ada@example.de", NEW_PASSWORD))
        .await
        .unwrap();
}

/// An address without an account gets the same page as one with, no mail
/// is sent, and a code typed for it is refused in the same words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_address_is_answered_alike_and_gets_no_mail() {
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, None).await;
    fed.client("eu")
        .await
        .register(register_req("ada@example.de"))
        .await
        .unwrap();
    let http = browser();
    let page = sign_in_page(&fed, &http).await;
    let mut answers = Vec::new();
    for email in ["ada@example.de", "nobody@example.de"] {
        let r = post(&fed, &http, "/recover", &page, &[("email", email)]).await;
        let status = r.status();
        let html = r.text().await.unwrap();
        // The page differs only in the values every page draws anew.
        let strip = |h: &str| {
            ["req", "csrf"]
                .iter()
                .fold(h.replace(email, "EMAIL"), |h, f| {
                    h.replace(&hidden_field(&h, f), "X")
                })
        };
        let nonce = |h: &str| {
            h.split("nonce=\"")
                .nth(1)
                .map(|n| n[..n.find('"').unwrap()].to_owned())
                .unwrap()
        };
        let n = nonce(&html);
        answers.push((status, strip(&html).replace(&n, "N")));
    }
    assert_eq!(answers[0], answers[1]);
    smtp.wait_for("ada@example.de", 1, WAIT)
        .await
        .expect("ada's mail");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(smtp.messages_to("nobody@example.de").is_empty());
    assert_eq!(smtp.all().len(), 1, "one mail, to the account that exists");

    let mut refusals = Vec::new();
    for email in ["ada@example.de", "nobody@example.de"] {
        let r = post(
            &fed,
            &http,
            "/code",
            &page,
            &[
                ("purpose", "reset_password"),
                ("email", email),
                ("code", "123456"),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
        let status = r.status();
        let html = r.text().await.unwrap();
        let error = html
            .split("role=\"alert\"")
            .nth(1)
            .map(|e| e[..e.find("</p>").unwrap()].to_owned());
        refusals.push((status, error));
    }
    assert_eq!(refusals[0], refusals[1]);
    assert_eq!(refusals[0].0, 401);
}

/// A passwordless sign-in by link: opening the link shows a page and
/// spends nothing; its button signs in for the app (the email is now
/// verified) and is audited; the link does not work twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_is_a_page_first_and_works_once() {
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, None).await;
    let reg = fed
        .client("eu")
        .await
        .register(register_req("ada@example.de"))
        .await
        .unwrap()
        .into_inner();
    let http = browser();
    let page = sign_in_page(&fed, &http).await;
    assert!(page.contains("formaction=\"/passwordless\""), "{page}");
    let r = post(
        &fed,
        &http,
        "/passwordless",
        &page,
        &[("email", "ada@example.de")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let mail = smtp.wait_for("ada@example.de", 1, WAIT).await.unwrap();
    assert!(
        mail.subject().starts_with("Your sign-in code"),
        "{}",
        mail.subject()
    );
    let link = mail.link().expect("a link in the mail");
    // The link names the issuer; the test's node is reached directly.
    let path = &link[link.find("/link?").unwrap()..];
    assert!(path.contains("t=ol_eu_"), "{path}");
    let opened = http
        .get(format!("{}{path}", base(&fed, "eu")))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    let opened = opened.text().await.unwrap();
    // Opening again still shows the page: nothing was spent.
    let again = http
        .get(format!("{}{path}", base(&fed, "eu")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let form = |html: &str| {
        vec![
            ("t", hidden_field(html, "t")),
            ("purpose", hidden_field(html, "purpose")),
            ("req", hidden_field(html, "req")),
            ("csrf", hidden_field(html, "csrf")),
        ]
    };
    let press = |fields: Vec<(&'static str, String)>| {
        let (http, url) = (&http, format!("{}/link", base(&fed, "eu")));
        async move { http.post(url).form(&fields).send().await.unwrap() }
    };
    let r = press(form(&opened)).await;
    callback_code(&r);
    let user = fed.nodes["eu"]
        .store
        .get_user(&reg.user_id)
        .await
        .unwrap()
        .unwrap();
    assert!(user.email_verified, "a code by email proves the address");
    assert!(audited(&fed, &reg.user_id, AuditKind::SignInByCode).await);
    let r = press(form(&opened)).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no longer valid"));
    // A forged CSRF token is refused before the link is looked at.
    let mut forged = form(&opened);
    forged[3].1 = "forged".into();
    assert_eq!(press(forged).await.status(), 403);
}

/// With verification required, a sign-up ends on the code page (no code
/// for the app yet) and the verification mail arrives; the code completes
/// the sign-in and the ID token says `email_verified`; the next sign-in
/// by password goes straight to the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_is_required_before_sign_in_completes() {
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, Some("require_verified_email = true")).await;
    let http = browser();
    let page = sign_in_page(&fed, &http).await;
    let signup = http
        .get(format!(
            "{}/signup?req={}",
            base(&fed, "eu"),
            hidden_field(&page, "req")
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = post(
        &fed,
        &http,
        "/signup",
        &signup,
        &[
            ("email", "grace@example.de"),
            ("password", PASSWORD),
            ("region_preference", ""),
        ],
    )
    .await;
    assert_eq!(r.status(), 200, "the code page, not the app");
    let code_page = r.text().await.unwrap();
    assert!(code_page.contains("We have sent a code"), "{code_page}");
    let mail = smtp.wait_for("grace@example.de", 1, WAIT).await.unwrap();
    assert!(
        mail.subject().starts_with("Confirm your email address"),
        "{}",
        mail.subject()
    );
    // A password sign-in meanwhile waits for the verification too.
    let r = post(
        &fed,
        &http,
        "/authorize",
        &page,
        &[("email", "grace@example.de"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let second = smtp.wait_for("grace@example.de", 2, WAIT).await.unwrap();
    // The newer code replaced the first.
    let r = post(
        &fed,
        &http,
        "/code",
        &code_page,
        &[
            ("purpose", "verify_email"),
            ("email", "grace@example.de"),
            ("code", &mail.code().unwrap()),
        ],
    )
    .await;
    if mail.code() != second.code() {
        assert_eq!(r.status(), 401, "the first code was replaced");
    }
    let r = post(
        &fed,
        &http,
        "/code",
        &code_page,
        &[
            ("purpose", "verify_email"),
            ("email", "grace@example.de"),
            ("code", &second.code().unwrap()),
        ],
    )
    .await;
    let code = callback_code(&r);
    let token = http
        .post(format!("{}/token", base(&fed, "eu")))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "demo"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            (
                "code_verifier",
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let token: serde_json::Value = token.json().await.unwrap();
    let id = token["id_token"].as_str().unwrap();
    let claims = id.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["email_verified"], true, "{claims}");
    let fresh = browser();
    let page = sign_in_page(&fed, &fresh).await;
    let r = post(
        &fed,
        &fresh,
        "/authorize",
        &page,
        &[("email", "grace@example.de"), ("password", PASSWORD)],
    )
    .await;
    callback_code(&r);
}

/// Requests for codes are limited per address, the same for an account
/// that exists and one that does not, with `Retry-After`; nothing more is
/// sent once limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_requests_over_the_limit_are_refused_with_retry_after() {
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, Some("requests_per_identifier = 2")).await;
    fed.client("eu")
        .await
        .register(register_req("ada@example.de"))
        .await
        .unwrap();
    let http = browser();
    let page = sign_in_page(&fed, &http).await;
    for email in ["ada@example.de", "nobody@example.de"] {
        for _ in 0..2 {
            let r = post(&fed, &http, "/recover", &page, &[("email", email)]).await;
            assert_eq!(r.status(), 200);
        }
        let r = post(&fed, &http, "/recover", &page, &[("email", email)]).await;
        assert_eq!(r.status(), 429, "{email}");
        let wait: i64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&wait), "{wait}");
        assert!(r.text().await.unwrap().contains("Too many requests"));
    }
    smtp.wait_for("ada@example.de", 2, WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages_to("ada@example.de").len(), 2);
    let metrics = fed.nodes["eu"].metrics_text();
    let count = |parts: &[&str]| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("domicile_node_messages_total") && parts.iter().all(|p| l.contains(p))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(
        count(&["kind=\"reset_password\"", "result=\"sent\""]).as_deref(),
        Some("2"),
        "{metrics}"
    );
    assert_eq!(
        count(&["kind=\"request\"", "result=\"refused\""]).as_deref(),
        Some("2"),
        "{metrics}"
    );
}

/// A region without an email sender offers neither recovery nor codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_sender_the_journeys_are_not_offered() {
    let fed = Fed::start().await;
    let http = browser();
    let page = sign_in_page(&fed, &http).await;
    assert!(!page.contains("Forgot your password?"));
    assert!(!page.contains("/passwordless"));
    let r = post(
        &fed,
        &http,
        "/recover",
        &page,
        &[("email", "ada@example.de")],
    )
    .await;
    assert_eq!(r.status(), 404);
}

/// The API drives the same journeys for apps with their own UI: a reset
/// code asked for and spent over gRPC, a sign-in by the emailed link, a
/// verification sent to the bearer's address and spent; bad input and
/// refused codes answer their own status and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_drives_the_same_journeys() {
    use domicile_proto::v1 as pb;
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, Some("requests_per_identifier = 3")).await;
    let mut eu = fed.client("eu").await;
    let reg = eu
        .register(register_req("ada@example.de"))
        .await
        .unwrap()
        .into_inner();
    let ask = |purpose: pb::CodePurpose, email: &str| pb::RequestCodeRequest {
        email: email.into(),
        purpose: purpose as i32,
        client_id: "demo".into(),
        locale: "de".into(),
        ..Default::default()
    };

    // Bad input first: nothing is sent.
    for (bad, field) in [
        (
            pb::RequestCodeRequest {
                purpose: 0,
                ..ask(pb::CodePurpose::SignIn, "ada@example.de")
            },
            "purpose",
        ),
        (ask(pb::CodePurpose::SignIn, "not an email"), "email"),
        (
            pb::RequestCodeRequest {
                locale: "de\"><".into(),
                ..ask(pb::CodePurpose::SignIn, "ada@example.de")
            },
            "locale",
        ),
    ] {
        let s = eu.request_code(bad).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        assert!(s.message().starts_with(field), "{s:?}");
    }
    let s = eu
        .reset_password(pb::ResetPasswordRequest {
            email: "ada@example.de".into(),
            link: "ol_eu_x".into(),
            code: "123456".into(),
            new_password: NEW_PASSWORD.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        s.code(),
        tonic::Code::InvalidArgument,
        "a code or a link, not both"
    );

    // Reset by code, in German with the app's branding.
    eu.request_code(ask(pb::CodePurpose::ResetPassword, "ada@example.de"))
        .await
        .unwrap();
    eu.request_code(ask(pb::CodePurpose::ResetPassword, "nobody@example.de"))
        .await
        .unwrap();
    let mail = smtp.wait_for("ada@example.de", 1, WAIT).await.unwrap();
    assert_eq!(mail.subject(), "Passwort zurücksetzen für Demo app");
    let s = eu
        .reset_password(pb::ResetPasswordRequest {
            email: "ada@example.de".into(),
            code: "000000".into(),
            new_password: NEW_PASSWORD.into(),
            ..Default::default()
        })
        .await;
    if mail.code().as_deref() != Some("000000") {
        assert_eq!(s.unwrap_err().code(), tonic::Code::PermissionDenied);
    }
    let reset = eu
        .reset_password(pb::ResetPasswordRequest {
            email: "ada@example.de".into(),
            code: mail.code().unwrap(),
            new_password: NEW_PASSWORD.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.sessions_ended, 1, "the registration's session");
    eu.login(login_req("ada@example.de", NEW_PASSWORD))
        .await
        .unwrap();

    // Sign-in by the link (after the reset's notice).
    eu.request_code(ask(pb::CodePurpose::SignIn, "ada@example.de"))
        .await
        .unwrap();
    let mail = smtp
        .wait_for_subject("ada@example.de", "Ihr Anmeldecode", 0, WAIT)
        .await
        .unwrap();
    let link = mail.link().unwrap();
    let secret = link
        .split("t=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let signed_in = eu
        .sign_in_with_code(pb::SignInWithCodeRequest {
            link: secret.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(signed_in.user_id, reg.user_id);
    let again = eu
        .sign_in_with_code(pb::SignInWithCodeRequest {
            link: secret,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        again.code(),
        tonic::Code::PermissionDenied,
        "a link works once"
    );

    // Over the limit (3 per address and window): RESOURCE_EXHAUSTED with
    // retry-after, for the account and for an address without one alike.
    for email in ["ada@example.de", "nobody@example.de"] {
        let mut last = None;
        for _ in 0..3 {
            last = Some(eu.request_code(ask(pb::CodePurpose::SignIn, email)).await);
        }
        let s = last.unwrap().unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{email}: {s:?}");
        assert!(s.metadata().get("retry-after").is_some());
    }

    // Verification for the bearer's own address.
    let mut verify = tonic::Request::new(pb::SendVerificationRequest {});
    verify.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", signed_in.access_token)
            .parse()
            .unwrap(),
    );
    let s = eu
        .send_verification(pb::SendVerificationRequest {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "no bearer");
    eu.send_verification(verify).await.unwrap();
    let mail = smtp
        .wait_for_subject("ada@example.de", "Confirm your email", 0, WAIT)
        .await
        .unwrap();
    let done = eu
        .verify_email(pb::VerifyEmailRequest {
            email: "ada@example.de".into(),
            code: mail.code().unwrap(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.user_id, reg.user_id);
}

/// An email change: the new address is claimed at once (nobody else can
/// register it meanwhile) and sent the code; the old address keeps
/// signing in until the code is spent; then the new one signs in, the old
/// one is released (someone else may register it) and told. A domain
/// pinned to another region, an address another account holds, and a
/// second use of the code are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_change_claims_the_new_address_and_releases_the_old_only_after() {
    use domicile_proto::v1 as pb;
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, None).await;
    let mut eu = fed.client("eu").await;
    let reg = eu
        .register(register_req("ada@example.de"))
        .await
        .unwrap()
        .into_inner();
    eu.register(register_req("grace@example.de")).await.unwrap();
    fn bearing<T>(token: &str, m: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(m);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    }
    let token = reg.access_token.clone();
    let change = |to: &str| pb::RequestEmailChangeRequest {
        new_email: to.into(),
    };
    let s = eu
        .request_email_change(bearing(&token, change("grace@example.de")))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::AlreadyExists);
    let s = eu
        .request_email_change(bearing(&token, change("ada@example.com")))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(s.message().contains("region us"), "{s:?}");
    let s = eu
        .request_email_change(change("ada.new@example.de"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unauthenticated);

    // A reset code sent to the old address before the change.
    eu.request_code(pb::RequestCodeRequest {
        email: "ada@example.de".into(),
        purpose: pb::CodePurpose::ResetPassword as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    let old_reset = smtp.wait_for("ada@example.de", 1, WAIT).await.unwrap();
    eu.request_email_change(bearing(&token, change("Ada.New@Example.de")))
        .await
        .unwrap();
    let mail = smtp.wait_for("ada.new@example.de", 1, WAIT).await.unwrap();
    assert!(
        mail.subject().starts_with("Confirm your new email address"),
        "{}",
        mail.subject()
    );
    assert_eq!(
        smtp.messages_to("ada@example.de").len(),
        1,
        "only the reset: the old address is told only after"
    );
    // Pending: the old address still signs in, and the new one is held.
    eu.login(login_req("ada@example.de", PASSWORD))
        .await
        .unwrap();
    let s = eu
        .register(register_req("ada.new@example.de"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::AlreadyExists, "{s:?}");

    let profile = eu
        .confirm_email_change(bearing(
            &token,
            pb::ConfirmEmailChangeRequest {
                code: mail.code().unwrap(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.email, "ada.new@example.de");
    assert!(profile.email_verified);
    let notice = smtp.wait_for("ada@example.de", 2, WAIT).await.unwrap();
    assert!(
        notice
            .subject()
            .starts_with("Your email address was changed"),
        "{}",
        notice.subject()
    );
    eu.login(login_req("ada.new@example.de", PASSWORD))
        .await
        .unwrap();
    expect_status(
        eu.login(login_req("ada@example.de", PASSWORD)).await,
        tonic::Code::Unauthenticated,
        "invalid email or password",
    );
    // Codes sent to the old address died with the change.
    let s = eu
        .reset_password(pb::ResetPasswordRequest {
            email: "ada.new@example.de".into(),
            code: old_reset.code().unwrap(),
            new_password: NEW_PASSWORD.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied);
    // Released: the old address may be someone else's now.
    eu.register(register_req("ada@example.de")).await.unwrap();
    let again = eu
        .confirm_email_change(bearing(
            &token,
            pb::ConfirmEmailChangeRequest {
                code: mail.code().unwrap(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::PermissionDenied);
    assert!(audited(&fed, &reg.user_id, AuditKind::EmailChanged).await);

    // A second change, confirmed by the link on the hosted page.
    eu.request_email_change(bearing(&token, change("ada.third@example.de")))
        .await
        .unwrap();
    let mail = smtp
        .wait_for("ada.third@example.de", 1, WAIT)
        .await
        .unwrap();
    let link = mail.link().unwrap();
    let path = &link[link.find("/link?").unwrap()..];
    let http = browser();
    let page = http
        .get(format!("{}{path}", base(&fed, "eu")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = http
        .post(format!("{}/link", base(&fed, "eu")))
        .form(&[
            ("t", hidden_field(&page, "t")),
            ("purpose", hidden_field(&page, "purpose")),
            ("req", hidden_field(&page, "req")),
            ("csrf", hidden_field(&page, "csrf")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Your email address was changed")
    );
    eu.login(login_req("ada.third@example.de", PASSWORD))
        .await
        .unwrap();
}

/// A change's code confirms only the address it was sent to: with the
/// pending address replaced behind it (as when a second request's mail
/// could not be sent), the first code is refused and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_change_code_is_bound_to_its_address() {
    use domicile_proto::v1 as pb;
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, None).await;
    let mut eu = fed.client("eu").await;
    let reg = eu
        .register(register_req("ada@example.de"))
        .await
        .unwrap()
        .into_inner();
    let mut r = tonic::Request::new(pb::RequestEmailChangeRequest {
        new_email: "mine@example.de".into(),
    });
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", reg.access_token).parse().unwrap(),
    );
    eu.request_email_change(r).await.unwrap();
    let mail = smtp.wait_for("mine@example.de", 1, WAIT).await.unwrap();
    // Planted: the pending address becomes another one, no new code sent.
    let store = &fed.nodes["eu"].store;
    let user = store.get_user(&reg.user_id).await.unwrap().unwrap();
    let mut planted = user.clone();
    planted.pending_email = Some("victim@example.de".into());
    planted.version += 1;
    assert!(
        store
            .update_user(&planted, user.version)
            .await
            .unwrap()
            .is_applied()
    );
    let link = mail.link().unwrap();
    let secret = link
        .split("t=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let s = eu
        .confirm_email_change(pb::ConfirmEmailChangeRequest {
            link: secret,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied);
    let after = store.get_user(&reg.user_id).await.unwrap().unwrap();
    assert_eq!(after.email, "ada@example.de");
    eu.login(login_req("ada@example.de", PASSWORD))
        .await
        .unwrap();
}

/// With sign-in by email code turned off, a verification code completes
/// only a sign-in that waited for it: an already verified account's code
/// does not sign it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_code_is_no_sign_in_code_when_passwordless_is_off() {
    use domicile_proto::v1 as pb;
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with_mail(smtp.addr, Some("passwordless_email = false")).await;
    let mut eu = fed.client("eu").await;
    let reg = eu
        .register(register_req("ada@example.de"))
        .await
        .unwrap()
        .into_inner();
    let send = || {
        let mut r = tonic::Request::new(pb::SendVerificationRequest {});
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", reg.access_token).parse().unwrap(),
        );
        r
    };
    eu.send_verification(send()).await.unwrap();
    let first = smtp.wait_for("ada@example.de", 1, WAIT).await.unwrap();
    eu.verify_email(pb::VerifyEmailRequest {
        email: "ada@example.de".into(),
        code: first.code().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    eu.send_verification(send()).await.unwrap();
    let second = smtp.wait_for("ada@example.de", 2, WAIT).await.unwrap();
    let http = browser();
    let page = sign_in_page(&fed, &http).await;
    assert!(!page.contains("/passwordless"), "not offered");
    let r = post(
        &fed,
        &http,
        "/code",
        &page,
        &[
            ("purpose", "verify_email"),
            ("email", "ada@example.de"),
            ("code", &second.code().unwrap()),
        ],
    )
    .await;
    assert_eq!(r.status(), 401, "no sign-in");
}
