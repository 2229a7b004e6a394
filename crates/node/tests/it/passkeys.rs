//! Passkey registration on the account page of real nodes, answered by a
//! software authenticator we did not write (`webauthn-authenticator-rs`'s
//! `SoftPasskey`, from the webauthn-rs project): the options the page's
//! script gets, a registration for another origin and one for another RP
//! ID refused with nothing stored, the right one added with the recovery
//! codes, a replay refused, rename, and removal refused to a one-factor
//! session; then the passkey as the second factor, on the hosted pages'
//! `/mfa` and over `CompleteSignIn`, where an assertion for another
//! origin, a replayed one and one for another sign-in are refused. (Headless Chromium with its virtual authenticator adds and
//! renames one in `crates/domicile/tests/it/browser.rs`.)

use crate::{harness::*, messages::browser, mfa::password_form};
use domicile_node::{MFA_PASSKEY_METADATA, MFA_TOKEN_METADATA};
use domicile_proto::v1 as pb;
use domicile_testkit::hidden_field;
use webauthn_authenticator_rs::{WebauthnAuthenticator, prelude::Url, softpasskey::SoftPasskey};

/// A browser signed in to `email` (registered now) on eu's hosted pages,
/// the account page's CSRF token, and the user id.
async fn signed_in(fed: &Fed, email: &str) -> (reqwest::Client, String, String) {
    let reg = fed
        .client("eu")
        .await
        .register(register_req(email))
        .await
        .unwrap()
        .into_inner();
    let http = browser();
    let signed = password_form(fed, &http, email, "").await;
    assert_eq!(signed.status(), 303);
    let page = http
        .get(format!("http://{}/account", fed.nodes["eu"].addr))
        .send()
        .await
        .unwrap();
    let csrf = hidden_field(&page.text().await.unwrap(), "csrf");
    (http, csrf, reg.user_id)
}

async fn post(
    fed: &Fed,
    http: &reqwest::Client,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    http.post(format!("http://{}{path}", fed.nodes["eu"].addr))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The creation options the page's script would get, as JSON.
async fn options(fed: &Fed, http: &reqwest::Client, csrf: &str) -> serde_json::Value {
    let r = post(
        fed,
        http,
        "/account/passkeys/options",
        &[("csrf", csrf), ("name", "Soft key")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

/// The soft authenticator's answer to `options` from `origin` (with the
/// options' RP ID replaced by `rp_id`, when given).
fn answer(
    key: &mut SoftPasskey,
    options: &serde_json::Value,
    origin: &str,
    rp_id: Option<&str>,
) -> String {
    let mut options = options.clone();
    // The soft authenticator keeps no resident keys: it is asked for a
    // plain one (the server cannot see the difference; Chromium's virtual
    // authenticator makes resident ones in the browser test).
    options["publicKey"]["authenticatorSelection"]["residentKey"] = "discouraged".into();
    options["publicKey"]["authenticatorSelection"]["requireResidentKey"] = false.into();
    if let Some(id) = rp_id {
        options["publicKey"]["rp"]["id"] = id.into();
    }
    let options = serde_json::from_value(options).unwrap();
    let credential = key
        .do_registration(Url::parse(origin).unwrap(), options)
        .unwrap_or_else(|e| panic!("the soft authenticator refused {origin}: {e:?}"));
    serde_json::to_string(&credential).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_is_registered_on_the_account_page_and_forgeries_are_refused() {
    let fed = Fed::start().await;
    let email = "pia@example.de";
    let (http, csrf, user_id) = signed_in(&fed, email).await;
    let o = options(&fed, &http, &csrf).await;
    let pk = &o["publicKey"];
    // The RP ID is the issuer's host; discoverable, with user verification;
    // the user handle is not the user id.
    assert_eq!(pk["rp"]["id"], "id.test");
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
    let handle = pk["user"]["id"].as_str().unwrap();
    assert!(!handle.is_empty() && !user_id.contains(handle));

    let mut key = SoftPasskey::new(true);
    let passkeys_of = || async {
        fed.nodes["eu"]
            .store
            .get_factors(&user_id)
            .await
            .unwrap()
            .map(|f| f.passkeys.len())
            .unwrap_or(0)
    };
    // Another origin (a phishing site relaying the options), and another
    // RP ID from the right origin: refused, nothing stored.
    for (origin, rp_id) in [
        ("https://evil.example", Some("evil.example")),
        ("https://login.id.test", Some("login.id.test")),
    ] {
        let forged = answer(&mut key, &o, origin, rp_id);
        let r = post(
            &fed,
            &http,
            "/account/passkeys",
            &[("csrf", &csrf), ("credential", &forged)],
        )
        .await;
        assert_eq!(r.status(), 400, "{origin}");
        assert!(r.text().await.unwrap().contains("could not be added"));
        assert_eq!(passkeys_of().await, 0, "{origin}");
    }
    // Malformed answers are refused, an oversized body before it is read.
    let big = "x".repeat(20_000);
    for (bad, status) in [("not json", 400), (big.as_str(), 413), ("{}", 400)] {
        let r = post(
            &fed,
            &http,
            "/account/passkeys",
            &[("csrf", &csrf), ("credential", bad)],
        )
        .await;
        assert_eq!(r.status(), status);
    }
    // A forged CSRF token: refused before anything is read.
    let right = answer(&mut key, &o, "https://id.test", None);
    let r = post(
        &fed,
        &http,
        "/account/passkeys",
        &[("csrf", "forged"), ("credential", &right)],
    )
    .await;
    assert_eq!(r.status(), 403);
    // The right answer: added, with the first factor's recovery codes.
    let r = post(
        &fed,
        &http,
        "/account/passkeys",
        &[("csrf", &csrf), ("credential", &right)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("The passkey was added."), "{html}");
    assert_eq!(html.matches("<li><code>").count(), 10, "recovery codes");
    assert!(html.contains("Soft key"));
    assert_eq!(passkeys_of().await, 1);
    assert!(audited(&fed, &user_id, domicile_store::AuditKind::PasskeyAdded).await);
    // The same answer again: the registration it answered is over.
    let r = post(
        &fed,
        &http,
        "/account/passkeys",
        &[("csrf", &csrf), ("credential", &right)],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(passkeys_of().await, 1);
    // Rename; removal needs a sign-in that passed a second factor.
    let id = fed.nodes["eu"]
        .store
        .get_factors(&user_id)
        .await
        .unwrap()
        .unwrap()
        .passkeys[0]
        .id
        .clone();
    let r = post(
        &fed,
        &http,
        "/account/passkeys/rename",
        &[("csrf", &csrf), ("id", &id), ("name", "Work key")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Work key"));
    let r = post(
        &fed,
        &http,
        "/account/passkeys/rename",
        &[("csrf", &csrf), ("id", &id), ("name", "")],
    )
    .await;
    assert_eq!(r.status(), 400, "an empty name");
    let r = post(
        &fed,
        &http,
        "/account/passkeys/remove",
        &[
            ("csrf", &csrf),
            ("id", &id),
            ("password", domicile_testkit::PASSWORD),
        ],
    )
    .await;
    assert_eq!(r.status(), 403, "a one-factor session");
    assert_eq!(passkeys_of().await, 1);
    // And a one-factor session cannot add a second passkey beside it.
    let r = post(
        &fed,
        &http,
        "/account/passkeys/options",
        &[("csrf", &csrf), ("name", "Thief's key")],
    )
    .await;
    assert_eq!(r.status(), 403);

    // The passkey as the second factor on the hosted pages.
    let other = browser();
    let r = password_form(&fed, &other, email, "").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    // A user without an app: the page speaks of the passkey and recovery
    // codes only.
    assert!(html.contains("Use your passkey to continue"), "{html}");
    assert!(!html.contains("authenticator app"), "{html}");
    let options = html_unescape(&hidden_field(&html, "passkey_options"));
    let options: serde_json::Value = serde_json::from_str(&options).unwrap();
    assert_eq!(options["publicKey"]["rpId"], "id.test");
    let assert_from = |key: &mut SoftPasskey, origin: &str, o: &serde_json::Value| {
        let o = serde_json::from_value(o.clone()).unwrap();
        let a = key
            .do_authentication(Url::parse(origin).unwrap(), o)
            .unwrap_or_else(|e| panic!("the soft authenticator refused {origin}: {e:?}"));
        serde_json::to_string(&a).unwrap()
    };
    let mfa = |assertion: String| {
        let (other, html) = (other.clone(), html.clone());
        let url = format!("http://{}/mfa", fed.nodes["eu"].addr);
        async move {
            other
                .post(url)
                .form(&[
                    ("req", hidden_field(&html, "req")),
                    ("csrf", hidden_field(&html, "csrf")),
                    ("mfa_token", hidden_field(&html, "mfa_token")),
                    ("code", String::new()),
                    ("passkey", assertion),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let mut phished = options.clone();
    phished["publicKey"]["rpId"] = "evil.example".into();
    let wrong = mfa(assert_from(&mut key, "https://evil.example", &phished)).await;
    assert_eq!(wrong.status(), 401, "another origin and RP ID");
    let right = assert_from(&mut key, "https://id.test", &options);
    let done = mfa(right.clone()).await;
    assert_eq!(done.status(), 303);
    assert!(
        done.headers()["location"]
            .to_str()
            .unwrap()
            .contains("code=")
    );
    // The same assertion again: that sign-in is over, and the counter.
    assert_eq!(mfa(right.clone()).await.status(), 401);

    // Over the API: the options in the error's metadata; an assertion made
    // for another sign-in's challenge is refused, this one's finishes.
    let mut eu = fed.client("eu").await;
    let s = eu
        .login(login_req(email, domicile_testkit::PASSWORD))
        .await
        .unwrap_err();
    let md = |k: &str| s.metadata().get(k).unwrap().to_str().unwrap().to_owned();
    let (token, options) = (md(MFA_TOKEN_METADATA), md(MFA_PASSKEY_METADATA));
    assert_eq!(md("domicile-mfa-methods"), "passkey,recovery_code");
    let options: serde_json::Value = serde_json::from_str(&options).unwrap();
    let complete = |credential: String| pb::CompleteSignInRequest {
        mfa_token: token.clone(),
        passkey_credential: credential,
        ..Default::default()
    };
    let s = eu.complete_sign_in(complete(right)).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    let ok = eu
        .complete_sign_in(complete(assert_from(&mut key, "https://id.test", &options)))
        .await
        .unwrap()
        .into_inner();
    assert!(!ok.access_token.is_empty());
    let s = eu
        .complete_sign_in(pb::CompleteSignInRequest {
            mfa_token: "mfa_eu_x".into(),
            passkey_credential: "{".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    assert!(s.message().starts_with("passkey_credential"), "{s:?}");
}

/// The same use cases over the API, with a bearer token: register with
/// the soft passkey (another origin refused), list, rename, and removal
/// refused to the registration's one-factor token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_are_managed_over_the_api() {
    let fed = Fed::start().await;
    let mut eu = fed.client("eu").await;
    let reg = eu
        .register(register_req("quinn@example.de"))
        .await
        .unwrap()
        .into_inner();
    let token = reg.access_token.clone();
    let start = |name: &str| {
        bearer(
            pb::StartPasskeyRegistrationRequest { name: name.into() },
            &token,
        )
    };
    let s = eu.start_passkey_registration(start("")).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    assert!(s.message().starts_with("name"), "{s:?}");
    let o: serde_json::Value = serde_json::from_str(
        &eu.start_passkey_registration(start("Phone"))
            .await
            .unwrap()
            .into_inner()
            .options_json,
    )
    .unwrap();
    let mut key = SoftPasskey::new(true);
    let finish = |credential_json: String| {
        bearer(
            pb::FinishPasskeyRegistrationRequest { credential_json },
            &token,
        )
    };
    let forged = answer(&mut key, &o, "https://evil.example", Some("evil.example"));
    let s = eu
        .finish_passkey_registration(finish(forged))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    assert!(s.message().starts_with("credential"), "{s:?}");
    let done = eu
        .finish_passkey_registration(finish(answer(&mut key, &o, "https://id.test", None)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.recovery_codes.len(), 10);
    let id = done.passkey.unwrap().id;
    let list = eu
        .rename_passkey(bearer(
            pb::RenamePasskeyRequest {
                id: id.clone(),
                name: "Work phone".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.passkeys.len(), 1);
    assert_eq!(list.passkeys[0].name, "Work phone");
    let s = eu
        .remove_passkey(bearer(
            pb::RemovePasskeyRequest {
                id,
                password: domicile_testkit::PASSWORD.into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    let listed = eu
        .list_passkeys(bearer(pb::ListPasskeysRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.passkeys.len(), 1, "nothing removed");
}

/// A hidden field's value as the page wrote it, unescaped (askama escapes
/// `"` and `&`).
fn html_unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}
