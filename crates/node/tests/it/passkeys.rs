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
use domicile_proto::v1::{self as pb, identity_client::IdentityClient};
use domicile_testkit::hidden_field;
use tonic::transport::Channel;
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

/// The creation options the page's script would get, as JSON: without
/// the password or with a wrong one refused first.
async fn options(fed: &Fed, http: &reqwest::Client, csrf: &str) -> serde_json::Value {
    let ask = |password: &'static str| async move {
        post(
            fed,
            http,
            "/account/passkeys/options",
            &[("csrf", csrf), ("name", "Soft key"), ("password", password)],
        )
        .await
    };
    for (password, status) in [("", 400), ("not the password", 401)] {
        let r = ask(password).await;
        assert_eq!(r.status(), status, "{password:?}");
        assert!(r.text().await.unwrap().contains("\"error\""));
    }
    let r = ask(domicile_testkit::PASSWORD).await;
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
        &[
            ("csrf", &csrf),
            ("name", "Thief's key"),
            ("password", domicile_testkit::PASSWORD),
        ],
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
            pb::StartPasskeyRegistrationRequest {
                name: name.into(),
                password: domicile_testkit::PASSWORD.into(),
            },
            &token,
        )
    };
    let s = eu.start_passkey_registration(start("")).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    assert!(s.message().starts_with("name"), "{s:?}");
    // The password is asked again: a stolen token alone adds no passkey.
    for (password, code) in [
        ("", tonic::Code::InvalidArgument),
        ("not the password", tonic::Code::Unauthenticated),
    ] {
        let s = eu
            .start_passkey_registration(bearer(
                pb::StartPasskeyRegistrationRequest {
                    name: "Thief".into(),
                    password: password.into(),
                },
                &token,
            ))
            .await
            .unwrap_err();
        assert_eq!(s.code(), code, "{password:?}: {s:?}");
    }
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

/// A user registered in eu with one passkey of `key` (over the API): the
/// user id, the credential's id and the user handle (both base64url, as
/// the options and the authenticator have them).
async fn with_passkey(fed: &Fed, email: &str, key: &mut SoftPasskey) -> (String, String, String) {
    let mut eu = fed.client("eu").await;
    let reg = eu.register(register_req(email)).await.unwrap().into_inner();
    let (cred, handle) = register_passkey(&mut eu.clone(), &mut eu, &reg.access_token, key).await;
    (reg.user_id, cred, handle)
}

/// Registers a passkey of `key` for the bearer of `token`, started on
/// `start`'s node and finished on `finish`'s: the credential's id and the
/// user handle.
async fn register_passkey(
    start: &mut IdentityClient<Channel>,
    finish: &mut IdentityClient<Channel>,
    token: &str,
    key: &mut SoftPasskey,
) -> (String, String) {
    let o: serde_json::Value = serde_json::from_str(
        &start
            .start_passkey_registration(bearer(
                pb::StartPasskeyRegistrationRequest {
                    name: "Phone".into(),
                    password: domicile_testkit::PASSWORD.into(),
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .options_json,
    )
    .unwrap();
    let handle = o["publicKey"]["user"]["id"].as_str().unwrap().to_owned();
    let done = finish
        .finish_passkey_registration(bearer(
            pb::FinishPasskeyRegistrationRequest {
                credential_json: answer(key, &o, "https://id.test", None),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    (done.passkey.unwrap().id, handle)
}

/// The soft authenticator's answer to a discoverable ceremony's `options`
/// from `origin`, as a browser would send it with a resident key. The soft
/// authenticator keeps no resident keys, so it is told which credential
/// to use, and its answer gets the user handle a resident key returns
/// (`handle`; the handle is not signed, so the signature is unchanged).
fn discoverable(
    key: &mut SoftPasskey,
    options: &str,
    credential_id: &str,
    handle: &str,
    origin: &str,
) -> String {
    let mut o: serde_json::Value = serde_json::from_str(options).unwrap();
    o["publicKey"]["allowCredentials"] =
        serde_json::json!([{ "type": "public-key", "id": credential_id }]);
    if origin != "https://id.test" {
        o["publicKey"]["rpId"] = Url::parse(origin).unwrap().host_str().unwrap().into();
    }
    let a = key
        .do_authentication(
            Url::parse(origin).unwrap(),
            serde_json::from_value(o).unwrap(),
        )
        .unwrap_or_else(|e| panic!("the soft authenticator refused {origin}: {e:?}"));
    let mut a = serde_json::to_value(&a).unwrap();
    a["response"]["userHandle"] = handle.into();
    a.to_string()
}

/// Signing in with a passkey alone, over the API: any region starts the
/// ceremony (options without credentials, user verification required);
/// the home region finishes it with a session whose tokens say
/// `pop user mfa` and two factors; another region sends the answer home.
/// Refused alike, with nothing started: the same answer again, a forged
/// or expired state, another origin, an unknown handle, a handle tagged
/// for no region; malformed input names its field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_signs_in_alone_over_the_api_once_per_ceremony() {
    use domicile_store::AuditKind;
    let fed = Fed::start().await;
    let mut key = SoftPasskey::new(true);
    let (user_id, cred, handle) = with_passkey(&fed, "rosa@example.de", &mut key).await;
    let mut eu = fed.client("eu").await;
    let mut us = fed.client("us").await;
    let start = || async {
        fed.client("us")
            .await
            .start_passkey_sign_in(pb::StartPasskeySignInRequest {})
            .await
            .unwrap()
            .into_inner()
    };
    let c = start().await;
    assert_eq!(c.expires_in, 300);
    let o: serde_json::Value = serde_json::from_str(&c.options_json).unwrap();
    assert_eq!(o["publicKey"]["rpId"], "id.test");
    assert_eq!(o["publicKey"]["userVerification"], "required");
    assert!(
        o["publicKey"]["allowCredentials"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{o}"
    );
    assert!(o.get("mediation").is_none(), "a modal prompt: {o}");
    let sign_in = |state: &str, credential: String| pb::PasskeySignInRequest {
        state: state.to_owned(),
        credential_json: credential,
    };
    let right = discoverable(&mut key, &c.options_json, &cred, &handle, "https://id.test");
    // A second answer to the same ceremony, with a higher counter: only
    // the spent challenge refuses it.
    let again = discoverable(&mut key, &c.options_json, &cred, &handle, "https://id.test");
    // The answer reaches us: sent home, nothing spent.
    expect_wrong_region(
        us.passkey_sign_in(sign_in(&c.state, right.clone())).await,
        "eu",
    );
    let ok = eu
        .passkey_sign_in(sign_in(&c.state, right.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.user_id, user_id);
    let claims = crate::mfa::jwt_claims(&ok.access_token);
    assert_eq!(claims["amr"], serde_json::json!(["pop", "user", "mfa"]));
    assert_eq!(claims["acr"], "urn:domicile:loa:2");
    assert!(audited(&fed, &user_id, AuditKind::SignInByPasskey).await);
    let refused = |r: Result<tonic::Response<pb::AuthResponse>, tonic::Status>, what: &str| {
        let s = r.expect_err(what);
        assert_eq!(s.code(), tonic::Code::Unauthenticated, "{what}: {s:?}");
        assert!(
            s.message().contains("passkey was not accepted"),
            "{what}: {s:?}"
        );
    };
    // The ceremony answered again: refused, by the spent challenge (the
    // counter moved on); the same answer again, by the counter too.
    refused(
        eu.passkey_sign_in(sign_in(&c.state, again)).await,
        "a second answer to one ceremony",
    );
    refused(
        eu.passkey_sign_in(sign_in(&c.state, right)).await,
        "replayed",
    );
    let c = start().await;
    let right = discoverable(&mut key, &c.options_json, &cred, &handle, "https://id.test");
    // A forged state: another body under the tag, or a state of our own
    // making.
    let (body, tag) = c.state.split_once('.').unwrap();
    let flipped = if body.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{flipped}.{tag}", &body[..body.len() - 1]);
    refused(
        eu.passkey_sign_in(sign_in(&forged, right.clone())).await,
        "forged state",
    );
    refused(
        eu.passkey_sign_in(sign_in("e30.AAAA", right.clone())).await,
        "made-up state",
    );
    // Another origin (a phishing site relaying the options).
    let phished = discoverable(
        &mut key,
        &c.options_json,
        &cred,
        &handle,
        "https://evil.example",
    );
    refused(
        eu.passkey_sign_in(sign_in(&c.state, phished)).await,
        "another origin",
    );
    assert!(audited(&fed, &user_id, AuditKind::LoginFailed).await);
    // Without user verification (the authenticator asked not to verify).
    let mut lax: serde_json::Value = serde_json::from_str(&c.options_json).unwrap();
    lax["publicKey"]["userVerification"] = "discouraged".into();
    let unverified = discoverable(
        &mut key,
        &lax.to_string(),
        &cred,
        &handle,
        "https://id.test",
    );
    refused(
        eu.passkey_sign_in(sign_in(&c.state, unverified)).await,
        "no user verification",
    );
    // Another user's passkey under this user's handle, and the reverse.
    let (_, cred2, handle2) = with_passkey(&fed, "tove@example.de", &mut key).await;
    for (cred, handle) in [(&cred2, &handle), (&cred, &handle2)] {
        let swapped = discoverable(&mut key, &c.options_json, cred, handle, "https://id.test");
        refused(
            eu.passkey_sign_in(sign_in(&c.state, swapped)).await,
            "a credential and a handle of two users",
        );
    }
    // Unknown handles: one tagged for eu that nobody holds, one tagged
    // for no region.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut stranger = b64.decode(&handle).unwrap();
    stranger[15] ^= 1;
    let mut nowhere = stranger.clone();
    nowhere[0] ^= 0x55;
    for (bytes, what) in [(stranger, "unknown handle"), (nowhere, "no region's tag")] {
        let answer = discoverable(
            &mut key,
            &c.options_json,
            &cred,
            &b64.encode(&bytes),
            "https://id.test",
        );
        refused(eu.passkey_sign_in(sign_in(&c.state, answer)).await, what);
    }
    // Expired: five minutes later the same ceremony is over.
    fed.clock.advance(301);
    refused(
        eu.passkey_sign_in(sign_in(&c.state, right)).await,
        "expired",
    );
    // Malformed input is refused before anything is read, naming its field.
    for (state, credential, field) in [("", "{}", "state"), ("s", "{", "credential")] {
        let s = eu
            .passkey_sign_in(sign_in(state, credential.to_owned()))
            .await
            .unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        assert!(s.message().starts_with(field), "{s:?}");
    }
    let home = fed.nodes["eu"].store.export_user(&user_id).await.unwrap();
    assert_eq!(
        home.sessions.len(),
        2,
        "registration and the one passkey sign-in"
    );
    assert_eq!(
        home.identifiers.len(),
        2,
        "the email and the passkey handle"
    );
    assert_eq!(
        home.factors.unwrap().spent_challenges.len(),
        1,
        "the one answered ceremony"
    );
    // Residency: us started both ceremonies and was sent an answer, and
    // holds nothing of the user; nor does ap.
    for region in ["us", "ap"] {
        let there = fed.nodes[region].store.export_user(&user_id).await.unwrap();
        assert!(
            there.user.is_none()
                && there.identifiers.is_empty()
                && there.sessions.is_empty()
                && there.audit.is_empty()
                && there.factors.is_none()
                && there.history.is_none(),
            "{region}: {there:?}"
        );
    }
}

/// The sign-in page's "Sign in with a passkey": the page's script asks
/// `/passkey/options` (CSRF-checked, JSON) and posts the answer to
/// `/passkey`, which hands the app its code with an ID token that says
/// `pop user mfa`; the same answer again shows the page saying the
/// passkey was not accepted, and a forged CSRF token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_signs_in_alone_on_the_sign_in_page() {
    let fed = Fed::start().await;
    let mut key = SoftPasskey::new(true);
    let (_, cred, handle) = with_passkey(&fed, "sami@example.de", &mut key).await;
    let http = browser();
    let r = http
        .get(crate::oidc::authorize_url(&fed, ""))
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(html.contains("Sign in with a passkey"), "{html}");
    let (req, csrf) = (hidden_field(&html, "req"), hidden_field(&html, "csrf"));
    let r = post(
        &fed,
        &http,
        "/passkey/options",
        &[("req", &req), ("csrf", "forged")],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("\"error\""));
    let r = post(
        &fed,
        &http,
        "/passkey/options",
        &[("req", &req), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let c: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let (options, state) = (c["options"].as_str().unwrap(), c["state"].as_str().unwrap());
    let answer = discoverable(&mut key, options, &cred, &handle, "https://id.test");
    let form = |csrf: &str| {
        vec![
            ("req", req.clone()),
            ("csrf", csrf.to_owned()),
            ("state", state.to_owned()),
            ("credential", answer.clone()),
        ]
    };
    let send = |form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = format!("http://{}/passkey", fed.nodes["eu"].addr);
        async move { http.post(url).form(&form).send().await.unwrap() }
    };
    assert_eq!(send(form("forged")).await.status(), 403, "CSRF");
    let done = send(form(&csrf)).await;
    let code = crate::mfa::code_of(&done);
    let claims = crate::mfa::id_claims(&fed, &http, &code).await;
    assert_eq!(claims["amr"], serde_json::json!(["pop", "user", "mfa"]));
    assert_eq!(claims["acr"], "urn:domicile:loa:2");
    let again = send(form(&csrf)).await;
    assert_eq!(again.status(), 401);
    let page = again.text().await.unwrap();
    assert!(page.contains("That passkey was not accepted"), "{page}");
}

/// Every passkey ceremony's halves may reach different nodes of the home
/// region: a registration started on one us node finishes on another, a
/// passkey second factor asked by one is answered on the other, and a
/// passwordless ceremony started by one signs in on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_ceremonies_span_the_nodes_of_a_region() {
    let fed = Fed::start().await;
    let (_second, mut two) = fed.second_node("us").await;
    let mut one = fed.client("us").await;
    let email = "ulla@example.com";
    let reg = one
        .register(register_req(email))
        .await
        .unwrap()
        .into_inner();
    assert!(reg.user_id.starts_with("usr_us_"), "{}", reg.user_id);
    let mut key = SoftPasskey::new(true);
    let (cred, handle) = register_passkey(&mut one, &mut two, &reg.access_token, &mut key).await;
    // The second factor: asked by one node, answered on the other.
    let s = one
        .login(login_req(email, domicile_testkit::PASSWORD))
        .await
        .unwrap_err();
    let md = |k: &str| s.metadata().get(k).unwrap().to_str().unwrap().to_owned();
    let options: serde_json::Value = serde_json::from_str(&md(MFA_PASSKEY_METADATA)).unwrap();
    let assertion = key
        .do_authentication(
            Url::parse("https://id.test").unwrap(),
            serde_json::from_value(options).unwrap(),
        )
        .unwrap();
    let ok = two
        .complete_sign_in(pb::CompleteSignInRequest {
            mfa_token: md(MFA_TOKEN_METADATA),
            passkey_credential: serde_json::to_string(&assertion).unwrap(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.user_id, reg.user_id);
    // Alone: started by one node, answered on the other.
    let c = one
        .start_passkey_sign_in(pb::StartPasskeySignInRequest {})
        .await
        .unwrap()
        .into_inner();
    let ok = two
        .passkey_sign_in(pb::PasskeySignInRequest {
            state: c.state.clone(),
            credential_json: discoverable(
                &mut key,
                &c.options_json,
                &cred,
                &handle,
                "https://id.test",
            ),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.user_id, reg.user_id);
}

/// A passkey moves with its user: after a move from eu to us, the
/// passkey's handle (tagged eu) is sent from eu to us, and us signs the
/// user in with it alone under the new id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_users_passkey_signs_in_alone_at_the_new_home() {
    let fed = Fed::start().await;
    let mut key = SoftPasskey::new(true);
    let (old_id, cred, handle) = with_passkey(&fed, "nomad@example.org", &mut key).await;
    let receipt = fed
        .admin("eu")
        .await
        .move_user(pb::MoveUserRequest {
            user_id: old_id.clone(),
            to: "us".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let c = fed
        .client("ap")
        .await
        .start_passkey_sign_in(pb::StartPasskeySignInRequest {})
        .await
        .unwrap()
        .into_inner();
    let answer = discoverable(&mut key, &c.options_json, &cred, &handle, "https://id.test");
    let req = pb::PasskeySignInRequest {
        state: c.state.clone(),
        credential_json: answer,
    };
    // The edge sends the handle to eu by its tag; eu sends it on to us.
    expect_wrong_region(
        fed.client("eu").await.passkey_sign_in(req.clone()).await,
        "us",
    );
    let ok = fed
        .client("us")
        .await
        .passkey_sign_in(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.user_id, receipt.new_user_id);
    // eu keeps only where the handle went: no user, no row of it.
    assert!(
        fed.nodes["eu"]
            .store
            .get_user(&old_id)
            .await
            .unwrap()
            .is_none()
    );
}
