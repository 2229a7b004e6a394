//! The OpenID Connect endpoints of one node, with the federation's clock
//! in the test's hand: codes and sealed sign-in requests expire.

use crate::harness::*;
use domicile_testkit::{PASSWORD, hidden_field};
use std::collections::BTreeMap;

pub(crate) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub(crate) const REDIRECT: &str = "http://127.0.0.1:5000/callback";

use crate::messages::browser;

/// The authorization URL of eu's node for the `demo` client, with `extra`
/// parameters.
pub(crate) fn authorize_url(fed: &Fed, extra: &str) -> String {
    format!(
        "http://{}/authorize?client_id=demo&redirect_uri={}&response_type=code&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        fed.nodes["eu"].addr,
        url_escape(REDIRECT)
    )
}

/// The sign-in page of eu's node for the `demo` client: (page, its URL base).
async fn page(fed: &Fed, http: &reqwest::Client) -> (String, String) {
    let base = format!("http://{}", fed.nodes["eu"].addr);
    let r = http.get(authorize_url(fed, "")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    (r.text().await.unwrap(), base)
}

fn url_escape(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

/// Posts the page's form; the response.
async fn submit(http: &reqwest::Client, base: &str, html: &str, email: &str) -> reqwest::Response {
    http.post(format!("{base}/authorize"))
        .form(&[
            ("req", hidden_field(html, "req").as_str()),
            ("csrf", hidden_field(html, "csrf").as_str()),
            ("email", email),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap()
}

async fn code(fed: &Fed, http: &reqwest::Client) -> (String, String) {
    let (html, base) = page(fed, http).await;
    let r = submit(http, &base, &html, "ada@example.de").await;
    assert_eq!(r.status(), 303);
    let location = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: BTreeMap<String, String> = location.query_pairs().into_owned().collect();
    (q["code"].clone(), base)
}

async fn redeem(http: &reqwest::Client, base: &str, code: &str) -> (u16, serde_json::Value) {
    let r = http
        .post(format!("{base}/token"))
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
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

/// A federation where ada@example.de is registered (homed in eu).
async fn with_ada() -> Fed {
    let fed = Fed::start().await;
    fed.client("eu")
        .await
        .register(register_req("ada@example.de"))
        .await
        .unwrap();
    fed
}

/// A code lives 60 seconds: at 59 it is redeemed, at 61 refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_is_refused() {
    let fed = with_ada().await;
    let http = browser();
    let (fresh, base) = code(&fed, &http).await;
    let (late, _) = code(&fed, &browser()).await;
    fed.clock.advance(59);
    let (status, body) = redeem(&http, &base, &fresh).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id_token"].is_string());
    fed.clock.advance(2);
    let (status, body) = redeem(&http, &base, &late).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

/// The sealed request lives 30 minutes: a form sent later is refused on a
/// page, and signs nobody in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_sign_in_form_is_refused() {
    let fed = with_ada().await;
    let http = browser();
    let (html, base) = page(&fed, &http).await;
    fed.clock.advance(1801);
    let r = submit(&http, &base, &html, "ada@example.de").await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("expired"));
    // A form whose sealed request was altered is refused the same way.
    let (html, base) = page(&fed, &http).await;
    let tampered = html.replace(
        &hidden_field(&html, "req"),
        &format!("{}A", hidden_field(&html, "req")),
    );
    let r = submit(&http, &base, &tampered, "ada@example.de").await;
    assert_eq!(r.status(), 400);
}

/// A browser session answers `/authorize` without a page while it lives
/// and `max_age` allows, measured from the password; once it has expired,
/// or its cookie is forged, the page is shown again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_session_answers_until_max_age_or_its_end() {
    let fed = with_ada().await;
    let http = browser();
    code(&fed, &http).await;
    let status = |extra: &'static str, http: reqwest::Client| {
        let url = authorize_url(&fed, extra);
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    fed.clock.advance(100);
    for (extra, want) in [("", 303), ("&max_age=200", 303), ("&max_age=60", 200)] {
        assert_eq!(
            status(extra, http.clone()).await,
            want,
            "{extra:?} after 100 s"
        );
    }
    // A cookie of the right shape that the region did not issue.
    let forged = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(
            [(
                reqwest::header::COOKIE,
                "domicile_session=bs_eu_01JD0000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                    .parse()
                    .unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    assert_eq!(
        status("", forged).await,
        200,
        "a forged cookie signs nobody in"
    );
    fed.clock.advance(fed.topology.tokens.session_ttl_seconds);
    assert_eq!(
        status("", http.clone()).await,
        200,
        "after the session's end"
    );
}
