//! The OpenID Connect provider through the edge, as an app meets it: a
//! third-party relying party (the `openidconnect` crate) discovers the
//! provider from its issuer alone, runs the authorization code flow with
//! PKCE, and verifies the EdDSA ID token (signature from the federation
//! JWKS, `iss`, `aud`, `exp`, `nonce`, `at_hash`); the user's part (the
//! hosted sign-in form) is played by an HTTP client with a cookie jar. The
//! refusals are named after the OpenID conformance suite's modules.

use crate::procs::*;
use domicile_testkit::{PASSWORD, hidden_field as hidden};
use openidconnect::{
    AccessTokenHash, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
    core::{
        CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
        CoreResponseType,
    },
};
use std::collections::BTreeMap;

const REDIRECT: &str = "http://127.0.0.1:49152/callback";

/// An HTTP client that keeps cookies and never follows redirects (the
/// test reads each `Location`).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The query parameters of a `Location`.
fn query(location: &str) -> BTreeMap<String, String> {
    let url = reqwest::Url::parse(location).unwrap();
    url.query_pairs().into_owned().collect()
}

/// The provider's metadata, discovered from the issuer alone.
async fn discover(fed: &Federation, http: &reqwest::Client) -> CoreProviderMetadata {
    let issuer = IssuerUrl::new(format!("http://{}", fed.edge_addr)).unwrap();
    CoreProviderMetadata::discover_async(issuer, http)
        .await
        .unwrap_or_else(|e| panic!("discovery: {e:?}"))
}

/// The user's part: opens the authorization URL from `ip`, signs in on the
/// hosted page; the redirect's query.
async fn sign_in(
    browser: &reqwest::Client,
    url: &str,
    ip: &str,
    email: &str,
    password: &str,
) -> BTreeMap<String, String> {
    let page = browser
        .get(url)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "{:?}", page.text().await);
    let html = page.text().await.unwrap();
    let (req, csrf) = (hidden(&html, "req"), hidden(&html, "csrf"));
    let edge = url.split("/authorize").next().unwrap();
    let answer = browser
        .post(format!("{edge}/authorize"))
        .header("x-forwarded-for", ip)
        .form(&[
            ("req", req.as_str()),
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303, "{:?}", answer.text().await);
    // The browser session cookie: never for scripts, sent on the apps'
    // top-level navigations only, and (the issuer is http here) not Secure.
    let session_cookie = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("domicile_session=bs_"))
        .expect("a sign-in sets the browser session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            session_cookie.contains(attribute),
            "{attribute}: {session_cookie}"
        );
    }
    assert!(!session_cookie.contains("Secure"), "{session_cookie}");
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    query(&location)
}

/// oidcc-server (basic certification flow) with PKCE and offline_access:
/// discovery alone, the code flow, the ID token verified by the library
/// (EdDSA over the federation JWKS, nonce, at_hash), userinfo, a refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_relying_party_completes_code_and_pkce_from_discovery() {
    let fed = Federation::start();
    fed.client()
        .await
        .register(register("chiyo@example.jp"))
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let rp = CoreClient::from_provider_metadata(
        discover(&fed, &http).await,
        ClientId::new("demo".into()),
        None,
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    // A user homed in ap signs in from a German address.
    let back = sign_in(
        &browser(),
        url.as_str(),
        "192.0.2.50",
        "chiyo@example.jp",
        PASSWORD,
    )
    .await;
    assert_eq!(
        back.get("state"),
        Some(state.secret()),
        "state is carried through"
    );
    assert_eq!(
        back.get("iss").map(String::as_str),
        Some(format!("http://{}", fed.edge_addr).as_str())
    );
    let code = back["code"].clone();
    assert!(
        code.starts_with("ac_ap_"),
        "the code names the home region: {code}"
    );

    let tokens = rp
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("token request: {e:?}\n{}", fed.logs()));
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = rp
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EdDsa]);
    let claims = id_token
        .claims(&verifier, &nonce)
        .unwrap_or_else(|e| panic!("the ID token does not verify: {e:?}"));
    assert!(claims.subject().as_str().starts_with("usr_ap_"));
    assert_eq!(claims.email().map(|e| e.as_str()), Some("chiyo@example.jp"));
    let want_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&want_hash), "at_hash");
    assert!(claims.auth_time().is_some());

    let info: openidconnect::core::CoreUserInfoClaims = rp
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("userinfo: {e:?}"));
    assert_eq!(info.subject(), claims.subject());
    assert_eq!(info.email().map(|e| e.as_str()), Some("chiyo@example.jp"));

    let refresh = tokens
        .refresh_token()
        .expect("offline_access gives a refresh token");
    let renewed = rp
        .exchange_refresh_token(refresh)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("refresh grant: {e:?}"));
    assert_ne!(
        renewed.access_token().secret(),
        tokens.access_token().secret()
    );
    // The spent refresh token is reuse: refused, and the session ends.
    let reused = rp
        .exchange_refresh_token(refresh)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(reused.is_err(), "a rotated refresh token is refused");

    // Residency through the whole flow: eu and us saw neither the email
    // nor the password (their logs), and store nothing of the user.
    let users = fed.users().await;
    assert_eq!(
        users,
        [
            ("ap".to_owned(), 1),
            ("eu".to_owned(), 0),
            ("us".to_owned(), 0)
        ]
    );
    for region in ["eu", "us"] {
        let log =
            std::fs::read_to_string(fed.dir.path().join(format!("node-{region}.log"))).unwrap();
        assert_no_leak(
            &format!("node {region}"),
            &log,
            &["chiyo@example.jp".into(), PASSWORD.into()],
        );
    }
    let edge_log = std::fs::read_to_string(fed.dir.path().join("edge.log")).unwrap();
    assert_no_leak("edge", &edge_log, &["chiyo".into(), PASSWORD.into()]);
}

/// The refusals, as the OpenID conformance suite names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_named_after_the_conformance_modules() {
    let fed = Federation::start();
    fed.client()
        .await
        .register(register("ada@example.de"))
        .await
        .unwrap();
    let edge = format!("http://{}", fed.edge_addr);
    let http = browser();
    let authorize = |q: &str| format!("{edge}/authorize?{q}");
    let good = "client_id=demo&response_type=code&scope=openid&state=s1&nonce=n1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";

    // oidcc-ensure-registered-redirect-uri: an error page, never a redirect.
    for q in [
        format!("{good}&redirect_uri=https%3A%2F%2Fevil.example%2Fcallback"),
        good.to_owned(),
        format!(
            "{}&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback",
            good.replace("client_id=demo", "client_id=nobody")
        ),
    ] {
        let r = http.get(authorize(&q)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        assert!(r.headers().get("location").is_none(), "{q} redirected");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    let with_redirect = format!("{good}&redirect_uri=http%3A%2F%2F127.0.0.1%3A49152%2Fcallback");

    // oidcc-prompt-none-not-logged-in: login_required at the app, with state.
    let r = http
        .get(authorize(&format!("{with_redirect}&prompt=none")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let q = query(r.headers()["location"].to_str().unwrap());
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str()),
        ("login_required", "s1")
    );

    // A form without its CSRF cookie is refused (and signs nobody in).
    let page = http
        .get(authorize(&with_redirect))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let no_cookie = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = no_cookie
        .post(format!("{edge}/authorize"))
        .form(&[
            ("req", hidden(&page, "req").as_str()),
            ("csrf", hidden(&page, "csrf").as_str()),
            ("email", "ada@example.de"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // A wrong password shows the page again, with the error.
    let wrong = http
        .post(format!("{edge}/authorize"))
        .form(&[
            ("req", hidden(&page, "req").as_str()),
            ("csrf", hidden(&page, "csrf").as_str()),
            ("email", "ada@example.de"),
            ("password", "not the password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("role=\"alert\""));

    // A code, then the token endpoint's refusals.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let code_for = |q: BTreeMap<String, String>| q["code"].clone();
    let url = authorize(&with_redirect);
    let code =
        code_for(sign_in(&browser(), &url, "198.51.100.7", "ada@example.de", PASSWORD).await);
    let token = |form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let edge = edge.clone();
        async move {
            let r = http
                .post(format!("{edge}/token"))
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            (status, body)
        }
    };
    let grant = |code: &str, verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", "demo".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", "http://127.0.0.1:49152/callback".to_owned()),
            ("code_verifier", verifier.to_owned()),
        ]
    };
    // oidcc-ensure-pkce-code-verifier-required / wrong verifier: the code is spent.
    let (status, body) = token(grant(
        &code,
        "wrong-verifier-wrong-verifier-wrong-verifier-00",
    ))
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // oidcc-codereuse: after a good exchange, the code again is refused
    // and what it issued is revoked.
    let code =
        code_for(sign_in(&browser(), &url, "198.51.100.7", "ada@example.de", PASSWORD).await);
    let (status, first) = token(grant(&code, verifier)).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = token(grant(&code, verifier)).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant")),
        "{again}"
    );
    let info = http
        .get(format!("{edge}/userinfo"))
        .bearer_auth(first["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 401, "the replayed code's session has ended");
    // A missing verifier, an unknown client, another client's code.
    let code =
        code_for(sign_in(&browser(), &url, "198.51.100.7", "ada@example.de", PASSWORD).await);
    let mut no_verifier = grant(&code, verifier);
    no_verifier.pop();
    let (status, body) = token(no_verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let mut stranger = grant(&code, verifier);
    stranger[1].1 = "nobody".into();
    let (status, body) = token(stranger).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, body) = token(vec![
        ("grant_type", "password".into()),
        ("client_id", "demo".into()),
    ])
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type")),
        "{body}"
    );

    // A confidential client authenticates with its secret (Basic).
    let rp = CoreClient::from_provider_metadata(
        discover(&fed, &no_cookie).await,
        ClientId::new("web".into()),
        Some(ClientSecret::new(
            domicile_testkit::config::WEB_CLIENT_SECRET.into(),
        )),
    )
    .set_redirect_uri(RedirectUrl::new("https://web.example.com/callback".into()).unwrap());
    let (url, _, nonce) = rp
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .url();
    let page = http.get(url.as_str()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("lang=\"de\"") && html.contains("Anmelden"),
        "web's pages default to German"
    );
    let answer = http
        .post(format!("{edge}/authorize"))
        .form(&[
            ("req", hidden(&html, "req").as_str()),
            ("csrf", hidden(&html, "csrf").as_str()),
            ("email", "ada@example.de"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let tokens = rp
        .exchange_code(AuthorizationCode::new(query(&location)["code"].clone()))
        .unwrap()
        .request_async(&no_cookie)
        .await
        .unwrap_or_else(|e| panic!("confidential exchange: {e:?}"));
    let verifier = rp
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EdDsa]);
    tokens
        .id_token()
        .unwrap()
        .claims(&verifier, &nonce)
        .unwrap();
    assert!(
        tokens.refresh_token().is_none(),
        "no offline_access, no refresh token"
    );

    // Introspection (RFC 7662) by the confidential client, and revocation
    // (RFC 7009): another client's revocation changes nothing; the owner's
    // ends the session.
    let access = tokens.access_token().secret().clone();
    let web_secret = domicile_testkit::config::WEB_CLIENT_SECRET;
    let introspect = |token: String, as_public: bool| {
        let http = no_cookie.clone();
        let edge = edge.clone();
        async move {
            let req = http.post(format!("{edge}/introspect"));
            let req = if as_public {
                req.form(&[("token", token.as_str()), ("client_id", "demo")])
            } else {
                req.basic_auth("web", Some(web_secret))
                    .form(&[("token", token.as_str())])
            };
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            (status, body)
        }
    };
    let (status, about) = introspect(access.clone(), false).await;
    assert_eq!(
        (status, about["active"].as_bool()),
        (200, Some(true)),
        "{about}"
    );
    assert_eq!(about["client_id"], "web");
    assert_eq!(about["token_type"], "access_token");
    let (_, garbage) = introspect("not-a-token".into(), false).await;
    assert_eq!(garbage, serde_json::json!({ "active": false }));
    let (status, refused) = introspect(access.clone(), true).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (401, Some("invalid_client")),
        "{refused}"
    );
    let revoke = |form: Vec<(&'static str, String)>, basic: bool| {
        let http = no_cookie.clone();
        let edge = edge.clone();
        async move {
            let req = http.post(format!("{edge}/revoke"));
            let req = if basic {
                req.basic_auth("web", Some(web_secret))
            } else {
                req
            };
            req.form(&form).send().await.unwrap().status().as_u16()
        }
    };
    let by_demo = vec![("token", access.clone()), ("client_id", "demo".into())];
    assert_eq!(revoke(by_demo, false).await, 200);
    assert_eq!(
        introspect(access.clone(), false).await.1["active"],
        true,
        "another client's revocation does nothing"
    );
    assert_eq!(revoke(vec![("token", access.clone())], true).await, 200);
    assert_eq!(
        introspect(access.clone(), false).await.1["active"],
        false,
        "the owner's revocation ends the session"
    );
    assert_eq!(
        revoke(vec![("token", "unknown".into())], true).await,
        200,
        "an unknown token is not an error"
    );
}

/// Sign-up on the hosted page: the page says where the data will live and
/// offers the federation's regions; a user in Germany chooses us, and the
/// account, the code and the ID token are us's. The email then signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_signs_up_on_the_hosted_page_and_chooses_a_region() {
    let fed = Federation::start();
    let edge = format!("http://{}", fed.edge_addr);
    let http = browser();
    let url = format!(
        "{edge}/authorize?client_id=demo&response_type=code&scope=openid%20email&state=s9&nonce=n9&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&redirect_uri=http%3A%2F%2F127.0.0.1%3A49152%2Fcallback"
    );
    let signin = http
        .get(&url)
        .header("x-forwarded-for", "192.0.2.50")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sealed = hidden(&signin, "req");
    assert!(
        signin.contains(&format!("/signup?req={sealed}")),
        "a sign-up link"
    );
    let page = http
        .get(format!("{edge}/signup?req={sealed}"))
        .header("x-forwarded-for", "192.0.2.50")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["domicile-region"], "eu", "placed by GeoIP");
    let html = page.text().await.unwrap();
    for region in ["value=\"eu\" checked", "value=\"us\"", "value=\"ap\""] {
        assert!(html.contains(region), "{region} in:\n{html}");
    }
    let answer = http
        .post(format!("{edge}/signup"))
        .header("x-forwarded-for", "192.0.2.50")
        .form(&[
            ("req", hidden(&html, "req").as_str()),
            ("csrf", hidden(&html, "csrf").as_str()),
            ("email", "eve@example.org"),
            ("password", PASSWORD),
            ("region_preference", "us"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303, "{:?}", answer.text().await);
    let back = query(answer.headers()["location"].to_str().unwrap());
    assert_eq!(back["state"], "s9");
    assert!(back["code"].starts_with("ac_us_"), "{back:?}");
    let token = http
        .post(format!("{edge}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "demo"),
            ("code", back["code"].as_str()),
            ("redirect_uri", "http://127.0.0.1:49152/callback"),
            (
                "code_verifier",
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let users = fed.users().await;
    assert_eq!(
        users,
        [
            ("ap".to_owned(), 0),
            ("eu".to_owned(), 0),
            ("us".to_owned(), 1)
        ]
    );
    // Signing up again with the email is refused on the page.
    let page = http
        .get(format!("{edge}/signup?req={}", hidden(&html, "req")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sign_up = |email: &'static str, region: &'static str| {
        let (http, page, edge) = (http.clone(), page.clone(), edge.clone());
        async move {
            http.post(format!("{edge}/signup"))
                .form(&[
                    ("req", hidden(&page, "req").as_str()),
                    ("csrf", hidden(&page, "csrf").as_str()),
                    ("email", email),
                    ("password", PASSWORD),
                    ("region_preference", region),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(sign_up("eve@example.org", "us").await.status(), 409);
    // A region the federation does not have: the edge refuses the form
    // itself, as a page (the browser shows it), and no region sees it.
    let refused = sign_up("zed@example.org", "mars").await;
    assert_eq!(refused.status(), 400);
    assert!(
        refused.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        refused.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(refused.text().await.unwrap().contains("role=\"alert\""));
    for region in ["eu", "us", "ap"] {
        let log =
            std::fs::read_to_string(fed.dir.path().join(format!("node-{region}.log"))).unwrap();
        assert_no_leak(&format!("node {region}"), &log, &["zed@example.org".into()]);
    }
    // The eu node, which rendered the page, never saw the email.
    let log = std::fs::read_to_string(fed.dir.path().join("node-eu.log")).unwrap();
    assert_no_leak(
        "node eu",
        &log,
        &["eve@example.org".into(), PASSWORD.into()],
    );
}

/// The authorization URL of `client` (`demo`: PKCE and the loopback
/// redirect; `web`: its https redirect) with `extra` parameters.
fn authorize_url(edge: &str, client: &str, extra: &str) -> String {
    let base = match client {
        "demo" => {
            "client_id=demo&redirect_uri=http%3A%2F%2F127.0.0.1%3A49152%2Fcallback&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
        }
        _ => "client_id=web&redirect_uri=https%3A%2F%2Fweb.example.com%2Fcallback",
    };
    format!(
        "{edge}/authorize?{base}&response_type=code&scope=openid%20email%20offline_access&state=st&nonce=nn{extra}"
    )
}

/// The token endpoint's answer for `code`, as `client`.
async fn exchange(edge: &str, client: &str, code: &str) -> serde_json::Value {
    let http = reqwest::Client::new();
    let mut form = vec![("grant_type", "authorization_code"), ("code", code)];
    let req = match client {
        "demo" => {
            form.extend([
                ("client_id", "demo"),
                ("redirect_uri", "http://127.0.0.1:49152/callback"),
                (
                    "code_verifier",
                    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                ),
            ]);
            http.post(format!("{edge}/token"))
        }
        _ => {
            form.push(("redirect_uri", "https://web.example.com/callback"));
            http.post(format!("{edge}/token"))
                .basic_auth("web", Some(domicile_testkit::config::WEB_CLIENT_SECRET))
        }
    };
    let r = req.form(&form).send().await.unwrap();
    let status = r.status();
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// The claims of a JWT, read without verifying it (the RP test verifies).
fn claims_of(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let body = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .unwrap(),
    )
    .unwrap()
}

/// Whether `access` still opens `/userinfo`.
async fn userinfo_status(edge: &str, access: &serde_json::Value) -> u16 {
    reqwest::Client::new()
        .get(format!("{edge}/userinfo"))
        .bearer_auth(access.as_str().unwrap())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Single sign-on and RP-initiated logout: a user homed in ap signs in
/// for `demo` from a German address; `web` then gets a code without a
/// page (the edge routes the browser cookie to ap), and so does
/// `prompt=none`; `max_age`, `prompt=login` and another user's
/// `login_hint` show the page. Logout refuses unregistered and foreign
/// post-logout URIs and forged hints (an error page, nothing ends), asks
/// before ending a session when there is no hint, and with demo's ID token
/// ends the browser session and both apps' sessions, then redirects with
/// `state`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_app_signs_in_without_a_password_until_logout() {
    let fed = Federation::start();
    let mut grpc = fed.client().await;
    for email in ["chiyo@example.jp", "ada@example.de"] {
        grpc.register(register(email)).await.unwrap();
    }
    let edge = format!("http://{}", fed.edge_addr);
    let http = browser();
    let german = "192.0.2.50";
    let get = |url: String| {
        let http = http.clone();
        async move {
            http.get(url)
                .header("x-forwarded-for", german)
                .send()
                .await
                .unwrap()
        }
    };

    let back = sign_in(
        &http,
        &authorize_url(&edge, "demo", ""),
        german,
        "chiyo@example.jp",
        PASSWORD,
    )
    .await;
    let demo = exchange(&edge, "demo", &back["code"]).await;
    let demo_id = claims_of(demo["id_token"].as_str().unwrap());

    // oidcc-prompt-none-logged-in, and a second client: answered at once.
    let r = get(authorize_url(&edge, "web", "")).await;
    assert_eq!(r.status(), 303, "single sign-on answers without a page");
    assert_eq!(
        r.headers()["domicile-region"],
        "ap",
        "routed by the browser cookie"
    );
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://web.example.com/callback?"),
        "{location}"
    );
    let q = query(&location);
    assert!(q["code"].starts_with("ac_ap_"), "{q:?}");
    assert_eq!(q["state"], "st");
    let web = exchange(&edge, "web", &q["code"]).await;
    let web_id = claims_of(web["id_token"].as_str().unwrap());
    assert_eq!(web_id["sub"], demo_id["sub"]);
    assert_eq!(
        web_id["auth_time"], demo_id["auth_time"],
        "the password's time"
    );
    assert_eq!(web_id["nonce"], "nn");
    assert_ne!(
        web_id["sid"], demo_id["sid"],
        "each app has its own session"
    );
    let r = get(authorize_url(&edge, "demo", "&prompt=none")).await;
    assert_eq!(r.status(), 303);
    assert!(query(r.headers()["location"].to_str().unwrap()).contains_key("code"));

    // oidcc-max-age-1, oidcc-prompt-login, another user's login_hint: the page.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for extra in [
        "&max_age=0",
        "&prompt=login",
        "&login_hint=ada%40example.de",
    ] {
        let r = get(authorize_url(&edge, "demo", extra)).await;
        assert_eq!(r.status(), 200, "{extra} shows the sign-in page");
    }
    let r = get(authorize_url(&edge, "demo", "&prompt=none&max_age=0")).await;
    assert_eq!(
        query(r.headers()["location"].to_str().unwrap())["error"],
        "login_required"
    );
    let r = get(authorize_url(
        &edge,
        "demo",
        "&max_age=3600&login_hint=chiyo%40example.jp",
    ))
    .await;
    assert_eq!(r.status(), 303, "the hinted user's own session answers");

    // oidcc-rp-initiated-logout-bad-post-logout-redirect-uri and friends:
    // an error page, never a redirect, and nothing ends.
    let hint = demo["id_token"].as_str().unwrap();
    let mut forged = hint.to_owned();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    for (q, why) in [
        (
            format!(
                "id_token_hint={hint}&post_logout_redirect_uri={}",
                enc("https://evil.example/")
            ),
            "unregistered",
        ),
        (
            format!(
                "id_token_hint={hint}&post_logout_redirect_uri={}",
                enc("https://web.example.com/bye")
            ),
            "another client's",
        ),
        (
            format!("client_id=web&id_token_hint={hint}"),
            "client_id is not the hint's audience",
        ),
        (
            format!("post_logout_redirect_uri={}", enc("http://127.0.0.1/")),
            "no client named",
        ),
        (
            format!(
                "id_token_hint={forged}&post_logout_redirect_uri={}",
                enc("http://127.0.0.1/")
            ),
            "forged hint",
        ),
    ] {
        let r = get(format!("{edge}/logout?{q}")).await;
        assert_eq!(r.status(), 400, "{why}");
        assert!(r.headers().get("location").is_none(), "{why} redirected");
    }
    assert_eq!(userinfo_status(&edge, &demo["access_token"]).await, 200);

    // Without a hint the user is asked; a forged confirmation is refused.
    let r = get(format!("{edge}/logout?client_id=demo")).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("action=\"/logout\""), "{page}");
    // (The victim's own cookies, as if a browser sent them.)
    let cross_site = http
        .post(format!("{edge}/logout"))
        .header("origin", "https://evil.example")
        .form(&[("csrf", "attacker-guess"), ("client_id", "demo")])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    assert_eq!(
        userinfo_status(&edge, &web["access_token"]).await,
        200,
        "still signed in"
    );

    // With the hint: everything the browser session started ends.
    let r = get(format!(
        "{edge}/logout?id_token_hint={hint}&post_logout_redirect_uri={}&state=bye1",
        enc("http://127.0.0.1:49152/")
    ))
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["domicile-region"],
        "ap",
        "routed by the hint's key"
    );
    assert_eq!(
        r.headers()["location"],
        "http://127.0.0.1:49152/?state=bye1"
    );
    let cleared = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("domicile_session=;"));
    assert!(cleared, "the browser cookie is removed");
    for (app, tokens) in [("demo", &demo), ("web", &web)] {
        assert_eq!(
            userinfo_status(&edge, &tokens["access_token"]).await,
            401,
            "{app}'s session ended"
        );
    }
    let refreshed = reqwest::Client::new()
        .post(format!("{edge}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "demo"),
            ("refresh_token", demo["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        refreshed.status(),
        400,
        "demo's refresh token died with its session"
    );
    let r = get(authorize_url(&edge, "demo", "&prompt=none")).await;
    assert_eq!(
        query(r.headers()["location"].to_str().unwrap())["error"],
        "login_required"
    );

    // The browser session and both apps' sessions are rows of ap's store
    // only: eu holds ada's registration session and nothing more, us none.
    assert!(
        fed.report("ap").await.sessions >= 4,
        "chiyo's sessions are ap's"
    );
    assert_eq!(
        fed.report("eu").await.sessions,
        1,
        "only ada's registration"
    );
    assert_eq!(fed.report("us").await.sessions, 0);
    // No leak: the browser sessions' user is ap's; eu and us hold nothing.
    for region in ["eu", "us"] {
        let log =
            std::fs::read_to_string(fed.dir.path().join(format!("node-{region}.log"))).unwrap();
        assert_no_leak(
            &format!("node {region}"),
            &log,
            &["chiyo@example.jp".into(), PASSWORD.into()],
        );
    }
}

/// A hosted form the edge sends to the wrong region (its index cache still
/// says "unknown": the account was created elsewhere a moment ago) is
/// answered 421 with the home region, and the edge follows it once: the
/// user is signed in by their home region, and the page never shows the
/// error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misdirected_sign_in_form_is_followed_to_the_home_region() {
    let fed = Federation::start();
    let edge = format!("http://{}", fed.edge_addr);
    let http = browser();
    let url = authorize_url(&edge, "demo", "");
    let page = http
        .get(&url)
        .header("x-forwarded-for", "192.0.2.50")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let post = |password: &'static str| {
        let (http, page, edge) = (http.clone(), page.clone(), edge.clone());
        async move {
            http.post(format!("{edge}/authorize"))
                .header("x-forwarded-for", "192.0.2.50")
                .form(&[
                    ("req", hidden(&page, "req").as_str()),
                    ("csrf", hidden(&page, "csrf").as_str()),
                    ("email", "kenji@example.net"),
                    ("password", password),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    // Unknown yet: the edge caches "unknown" and the form goes by GeoIP.
    let r = post(PASSWORD).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["domicile-region"], "eu");
    // Registered at ap's node directly, behind the edge's back.
    let mut ap = domicile_proto::v1::identity_client::IdentityClient::connect(format!(
        "http://{}",
        fed.node_addrs["ap"]
    ))
    .await
    .unwrap();
    ap.register(register("kenji@example.net")).await.unwrap();
    let r = post(PASSWORD).await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(r.headers()["domicile-region"], "ap", "followed home");
    let back = query(r.headers()["location"].to_str().unwrap());
    assert!(back["code"].starts_with("ac_ap_"), "{back:?}");
}

/// Through the edge, a request for a code says nothing of where the address
/// lives: the edge's `domicile-region` and `domicile-route` (which would
/// say `index` for an address the index knows) are left off, for an
/// account and for no account alike, while the sign-in page keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_requests_through_the_edge_carry_no_routing_headers() {
    let smtp = domicile_testkit::smtp::SmtpSink::start().unwrap();
    let fed = Federation::start_with(Options {
        smtp: Some(smtp.addr),
        ..Options::default()
    });
    let edge = format!("http://{}", fed.edge_addr);
    let mut us = fed.client().await;
    us.register(domicile_testkit::register("kim@example.com"))
        .await
        .unwrap();
    let http = browser();
    let page = http
        .get(authorize_url(&edge, "demo", ""))
        .send()
        .await
        .unwrap();
    assert!(
        page.headers().contains_key("domicile-route"),
        "the page keeps them"
    );
    let page = page.text().await.unwrap();
    let mut seen = Vec::new();
    for email in ["kim@example.com", "nobody@example.com"] {
        for path in ["/recover", "/passwordless"] {
            let r = http
                .post(format!("{edge}{path}"))
                .form(&[
                    ("req", hidden(&page, "req").as_str()),
                    ("csrf", hidden(&page, "csrf").as_str()),
                    ("email", email),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path} {email}");
            for h in ["domicile-route", "domicile-region"] {
                assert!(!r.headers().contains_key(h), "{path} {email}: {h}");
            }
            seen.push(
                r.headers()
                    .keys()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>(),
            );
        }
    }
    assert_eq!(seen[0], seen[2], "the same headers for an account and none");
    // The account's mail came from its home region.
    let mail = smtp
        .wait_for("kim@example.com", 1, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert!(mail.from.contains("us.id.test"), "{}", mail.from);
}

/// Phone numbers through the edge: a user homed in ap adds a number (the
/// bearer routes it home), and every text comes from ap to a real webhook
/// receiver that checks its signature; a code asked for by the number,
/// over gRPC and on the hosted recovery form, is routed home by the index
/// and answered without routing headers, alike for an unknown number; the
/// texted code signs in through the edge; the number is in no log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_go_from_the_home_region_through_the_edge() {
    use domicile_proto::v1 as pb;
    use domicile_testkit::{bearer, sms::SmsSink};
    const SECRET: &str = "the e2e webhook secret, thirty-two bytes or more";
    const NUMBER: &str = "+61 412 345 678";
    const E164: &str = "+61412345678";
    let wait = std::time::Duration::from_secs(10);
    let smtp = domicile_testkit::smtp::SmtpSink::start().unwrap();
    let sms = SmsSink::start(SECRET, Vec::new()).await;
    let fed = Federation::start_with(Options {
        smtp: Some(smtp.addr),
        sms: Some((sms.url("{region}"), SECRET.into())),
        ..Options::default()
    });
    let mut edge = fed.client().await;
    let reg = edge
        .register(domicile_testkit::register("chiyo@example.jp"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reg.region, "ap");
    edge.set_phone(bearer(
        pb::SetPhoneRequest {
            phone: NUMBER.into(),
        },
        &reg.access_token,
    ))
    .await
    .unwrap();
    let text = sms.wait_for(E164, 1, wait).await.unwrap();
    assert!(text.signature_ok && text.region == "ap", "{text:?}");
    let profile = edge
        .confirm_phone(bearer(
            pb::ConfirmPhoneRequest {
                code: text.code().unwrap(),
            },
            &reg.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.phone_number, E164);

    // Over gRPC: routed home by the index, no routing headers, alike.
    let mut headers = Vec::new();
    for number in [E164, "+33 6 12 34 56 78"] {
        let r = edge
            .request_code(pb::RequestCodeRequest {
                phone: number.into(),
                purpose: pb::CodePurpose::SignIn as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        for h in ["domicile-route", "domicile-region"] {
            assert!(r.metadata().get(h).is_none(), "{number}: {h}");
        }
        headers.push(
            r.metadata()
                .keys()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        headers[0], headers[1],
        "the same headers for a number and none"
    );
    let text = sms.wait_for(E164, 2, wait).await.unwrap();
    assert_eq!((text.region.as_str(), text.kind()), ("ap", "sign_in_code"));
    let auth = edge
        .sign_in_with_code(pb::SignInWithCodeRequest {
            phone: NUMBER.into(),
            code: text.code().unwrap(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(auth.user_id, reg.user_id);

    // The hosted recovery form takes the number in its one field.
    let http = browser();
    let edge_url = format!("http://{}", fed.edge_addr);
    let page = http
        .get(authorize_url(&edge_url, "demo", ""))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let recover = http
        .get(format!("{edge_url}/recover?req={}", hidden(&page, "req")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        recover.contains("phone number"),
        "the field says it takes a number"
    );
    let r = http
        .post(format!("{edge_url}/recover"))
        .form(&[
            ("req", hidden(&page, "req").as_str()),
            ("csrf", hidden(&page, "csrf").as_str()),
            ("email", NUMBER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("domicile-route"));
    let text = sms.wait_for(E164, 3, wait).await.unwrap();
    assert_eq!(
        (text.region.as_str(), text.kind()),
        ("ap", "reset_password")
    );
    assert!(
        sms.all().iter().all(|t| t.region == "ap" && t.to() == E164),
        "only ap texted, only the account's number: {:?}",
        sms.all()
    );

    let logs = fed.logs();
    for kept_out in [E164, &E164[1..], "412 345 678"] {
        assert!(!logs.contains(kept_out), "{kept_out} is in a log");
    }
}
