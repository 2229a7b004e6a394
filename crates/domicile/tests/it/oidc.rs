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
    let code = code_for(sign_in(&http, &url, "198.51.100.7", "ada@example.de", PASSWORD).await);
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
    let code = code_for(sign_in(&http, &url, "198.51.100.7", "ada@example.de", PASSWORD).await);
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
    let code = code_for(sign_in(&http, &url, "198.51.100.7", "ada@example.de", PASSWORD).await);
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
    let again = http
        .post(format!("{edge}/signup"))
        .form(&[
            ("req", hidden(&page, "req").as_str()),
            ("csrf", hidden(&page, "csrf").as_str()),
            ("email", "eve@example.org"),
            ("password", PASSWORD),
            ("region_preference", "us"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    // The eu node, which rendered the page, never saw the email.
    let log = std::fs::read_to_string(fed.dir.path().join("node-eu.log")).unwrap();
    assert_no_leak(
        "node eu",
        &log,
        &["eve@example.org".into(), PASSWORD.into()],
    );
}
