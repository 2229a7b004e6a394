//! Phone numbers over the gRPC API of real nodes, every text message
//! received by a real HTTP server on loopback that checks its signature
//! (`domicile_testkit::sms`) and every email by a real SMTP server: adding
//! a number (a code by text message, then a login identifier in the
//! index), signing in and resetting the password by a code to it, the
//! refusals (wrong, replayed, other channel, unknown number, taken number,
//! malformed input), removing it, and where the number is stored.

use crate::harness::*;
use domicile_node::Clock;
use domicile_proto::v1 as pb;
use domicile_store::AuditKind;
use domicile_testkit::{PASSWORD, bearer, sms::SmsSink, smtp::SmtpSink};
use std::time::Duration;
use tonic::Code;

const SECRET: &str = "the test webhook's secret, over thirty-two bytes";
const WAIT: Duration = Duration::from_secs(10);
const NUMBER: &str = "+49 151 1234 5678";
const E164: &str = "+4915112345678";

/// A federation whose regions mail through a real SMTP server and text
/// through a real webhook receiver (answering `statuses` first).
async fn texting(statuses: Vec<u16>, accounts: Option<&str>) -> (SmtpSink, SmsSink, Fed) {
    let smtp = SmtpSink::start().unwrap();
    let sms = SmsSink::start(SECRET, statuses).await;
    let fed = Fed::with_mail_and_sms(smtp.addr, &sms, SECRET, accounts).await;
    (smtp, sms, fed)
}

/// `SetPhone(number)` as the bearer of `token`.
fn set_phone(number: &str, token: &str) -> tonic::Request<pb::SetPhoneRequest> {
    bearer(
        pb::SetPhoneRequest {
            phone: number.into(),
        },
        token,
    )
}

fn ask(purpose: pb::CodePurpose, phone: &str) -> pb::RequestCodeRequest {
    pb::RequestCodeRequest {
        phone: phone.into(),
        purpose: purpose as i32,
        ..Default::default()
    }
}

fn sign_in(phone: &str, code: &str) -> pb::SignInWithCodeRequest {
    pb::SignInWithCodeRequest {
        phone: phone.into(),
        code: code.into(),
        ..Default::default()
    }
}

/// The whole life of a number: added (a signed text with a code and no
/// link; the first webhook answer is a 503, so the text is retried under
/// one idempotency key), confirmed (a wrong code first), told to the
/// email address, used to sign in and to reset the password, refused with
/// another account and on another channel, then removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_is_verified_by_a_signed_text_then_signs_in_and_resets() {
    // The first webhook answer is a 503 (the retry is seen). The journey
    // asks for more codes for one number than the default limit allows in
    // a window (the limits have their own tests).
    let (smtp, sms, fed) = texting(vec![503], Some("requests_per_identifier = 20")).await;
    let mut eu = fed.client("eu").await;
    let reg = eu
        .register(register_req("ada@example.de"))
        .await
        .unwrap()
        .into_inner();
    let token = reg.access_token.clone();

    // Malformed numbers are refused and change nothing.
    for (bad, words) in [
        ("0151 12345678", "international form"),
        ("+49 30 123456", "fixed-line"),
        ("+49 151 1234567x", "only digits"),
        ("+1 800 555 0199", "freephone"),
        (&"+4".repeat(5_000)[..], "longer than"),
    ] {
        let s = eu.set_phone(set_phone(bad, &token)).await.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{bad}: {s:?}");
        assert!(s.message().contains(words), "{bad}: {s:?}");
    }
    let s = eu
        .set_phone(tonic::Request::new(pb::SetPhoneRequest {
            phone: NUMBER.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    let profile = eu
        .get_profile(bearer(pb::GetProfileRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert!(profile.phone_number.is_empty() && profile.pending_phone.is_empty());
    assert!(sms.all().is_empty(), "nothing was texted");

    // Adding the number: a signed text from eu with the code and no link.
    let sent = eu
        .set_phone(set_phone(NUMBER, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sent.sent_to, "+49•••••••••78");
    let text = sms.wait_for(E164, 2, WAIT).await.expect("the retried text");
    let all = sms.messages_to(E164);
    assert_eq!(all.len(), 2, "one 503, one retry");
    assert_eq!(all[0].idempotency_key, all[1].idempotency_key);
    for t in &all {
        assert!(t.signature_ok, "signature checked by the receiver: {t:?}");
        assert_eq!(t.signed_at, fed.clock.now());
        assert_eq!(t.region, "eu", "texted by the home region");
    }
    assert_eq!(text.kind(), "verify_phone");
    assert!(
        !text.text().contains("http"),
        "no link in a text: {}",
        text.text()
    );
    let code = text.code().unwrap();
    let profile = eu
        .get_profile(bearer(pb::GetProfileRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.pending_phone, "+49•••••••••78");
    assert!(
        profile.phone_number.is_empty(),
        "not the account's until confirmed"
    );

    // Until it is confirmed the number signs nobody in.
    eu.request_code(ask(pb::CodePurpose::SignIn, NUMBER))
        .await
        .unwrap();

    // A wrong code is refused; the right one makes it the account's.
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let s = eu
        .confirm_phone(bearer(
            pb::ConfirmPhoneRequest { code: wrong.into() },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let profile = eu
        .confirm_phone(bearer(
            pb::ConfirmPhoneRequest { code: code.clone() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.phone_number, E164);
    assert!(profile.pending_phone.is_empty());
    assert!(audited(&fed, &reg.user_id, AuditKind::PhoneVerified).await);
    let notice = smtp
        .wait_for_subject("ada@example.de", "The phone number", 0, WAIT)
        .await
        .expect("the email address is told");
    assert!(!notice.text().contains("5678"), "{}", notice.text());
    assert_eq!(
        sms.messages_to(E164).len(),
        2,
        "no sign-in text before confirmation"
    );
    let s = eu
        .confirm_phone(bearer(pb::ConfirmPhoneRequest { code }, &token))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "a replayed code");

    // Another account cannot take the number: asking for it answers as
    // for any number (it tells nothing), and only whoever proves they
    // receive its texts learns that it is taken.
    let bob = eu
        .register(register_req("bob@example.de"))
        .await
        .unwrap()
        .into_inner();
    eu.set_phone(set_phone(E164, &bob.access_token))
        .await
        .unwrap();
    let text = sms.wait_for(E164, 3, WAIT).await.unwrap();
    let s = eu
        .confirm_phone(bearer(
            pb::ConfirmPhoneRequest {
                code: text.code().unwrap(),
            },
            &bob.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::AlreadyExists, "{s:?}");

    // Sign-in by a code to the number, in any spelling of it.
    eu.request_code(ask(pb::CodePurpose::SignIn, "0049 151 12345678"))
        .await
        .unwrap();
    let text = sms.wait_for(E164, 4, WAIT).await.unwrap();
    assert_eq!(text.kind(), "sign_in_code");
    let code = text.code().unwrap();
    // A texted code does not work with the email address.
    let s = eu
        .sign_in_with_code(pb::SignInWithCodeRequest {
            email: "ada@example.de".into(),
            code: code.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let auth = eu
        .sign_in_with_code(sign_in(NUMBER, &code))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(auth.user_id, reg.user_id);
    let s = eu
        .sign_in_with_code(sign_in(NUMBER, &code))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "a replayed code");
    assert!(audited(&fed, &reg.user_id, AuditKind::SignInByCode).await);
    // A texted code proves the number, not the email address.
    let profile = eu
        .get_profile(bearer(pb::GetProfileRequest {}, &auth.access_token))
        .await
        .unwrap()
        .into_inner();
    assert!(!profile.email_verified);

    // Another region sends the request home (the index knows the number).
    let mut us = fed.client("us").await;
    expect_wrong_region(
        us.request_code(ask(pb::CodePurpose::SignIn, E164)).await,
        "eu",
    );

    // A password reset by a code to the number.
    eu.request_code(ask(pb::CodePurpose::ResetPassword, E164))
        .await
        .unwrap();
    let text = sms.wait_for(E164, 5, WAIT).await.unwrap();
    assert_eq!(text.kind(), "reset_password");
    let reset = eu
        .reset_password(pb::ResetPasswordRequest {
            phone: E164.into(),
            code: text.code().unwrap(),
            new_password: "a new passphrase by text".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.sessions_ended, 2, "the registration's and the code's");
    expect_status(
        eu.login(login_req("ada@example.de", PASSWORD)).await,
        Code::Unauthenticated,
        "",
    );
    let after = eu
        .login(login_req("ada@example.de", "a new passphrase by text"))
        .await
        .unwrap()
        .into_inner();
    let profile = eu
        .get_profile(bearer(pb::GetProfileRequest {}, &after.access_token))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !profile.email_verified,
        "a texted reset code proves the number only"
    );

    // Asking with both identifiers, or neither, is refused.
    for bad in [
        pb::RequestCodeRequest {
            email: "ada@example.de".into(),
            ..ask(pb::CodePurpose::SignIn, E164)
        },
        ask(pb::CodePurpose::SignIn, ""),
    ] {
        let s = eu.request_code(bad).await.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    }
    assert_eq!(sms.messages_to(E164).len(), 5, "refusals text nothing");

    // Removing the number: codes by text no longer reach the account.
    let token = eu
        .login(login_req("ada@example.de", "a new passphrase by text"))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    eu.request_code(ask(pb::CodePurpose::SignIn, E164))
        .await
        .unwrap();
    let last = sms.wait_for(E164, 6, WAIT).await.unwrap().code().unwrap();
    let profile = eu
        .remove_phone(bearer(pb::RemovePhoneRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert!(profile.phone_number.is_empty());
    assert!(audited(&fed, &reg.user_id, AuditKind::PhoneRemoved).await);
    let s = eu
        .sign_in_with_code(sign_in(E164, &last))
        .await
        .unwrap_err();
    assert_eq!(
        s.code(),
        Code::PermissionDenied,
        "the number names nobody now"
    );
    eu.request_code(ask(pb::CodePurpose::SignIn, E164))
        .await
        .unwrap();
    // Now bob can have it.
    eu.set_phone(set_phone(E164, &bob.access_token))
        .await
        .unwrap();
    let text = sms.wait_for(E164, 7, WAIT).await.unwrap();
    assert_eq!(
        text.kind(),
        "verify_phone",
        "only bob's verification was texted"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sms.messages_to(E164).len(), 7);
}

/// An unknown number is answered as a known one is, and nothing is
/// texted; a region without an SMS sender does not offer texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_number_is_answered_alike_and_gets_no_text() {
    let (smtp, sms, fed) = texting(Vec::new(), None).await;
    let mut eu = fed.client("eu").await;
    for purpose in [pb::CodePurpose::SignIn, pb::CodePurpose::ResetPassword] {
        eu.request_code(ask(purpose, "+33 6 12 34 56 78"))
            .await
            .unwrap();
    }
    let s = eu
        .sign_in_with_code(sign_in("+33 6 12 34 56 78", "123456"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sms.all().is_empty(), "{:?}", sms.all());

    let mail_only = Fed::with_mail(smtp.addr, None).await;
    let mut eu = mail_only.client("eu").await;
    let reg = eu
        .register(register_req("cleo@example.de"))
        .await
        .unwrap()
        .into_inner();
    let s = eu
        .request_code(ask(pb::CodePurpose::SignIn, E164))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented, "{s:?}");
    let s = eu
        .set_phone(set_phone(E164, &reg.access_token))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented, "{s:?}");
}

async fn confirm(eu: &mut Client, sms: &SmsSink, token: &str, number: &str, n: usize) {
    let code = sms.wait_for(number, n, WAIT).await.unwrap().code().unwrap();
    eu.confirm_phone(bearer(pb::ConfirmPhoneRequest { code }, token))
        .await
        .unwrap();
}

type Client = domicile_proto::v1::identity_client::IdentityClient<tonic::transport::Channel>;

/// Registers `email` in eu and gives the account `NUMBER`, confirmed with
/// the first text to it.
async fn with_number(eu: &mut Client, sms: &SmsSink, email: &str) -> pb::AuthResponse {
    let user = eu.register(register_req(email)).await.unwrap().into_inner();
    eu.set_phone(set_phone(NUMBER, &user.access_token))
        .await
        .unwrap();
    confirm(eu, sms, &user.access_token, E164, 1).await;
    user
}

/// Replacing a number lets the old one go only once the new one is
/// proved; codes texted to the old number stop working (with either
/// number); an emailed code does not serve with a number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_number_lets_the_old_one_go() {
    const OLD: &str = "+4915112345678";
    const NEW: &str = "+61412345678";
    let (smtp, sms, fed) = texting(Vec::new(), Some("requests_per_identifier = 20")).await;
    let mut eu = fed.client("eu").await;
    let ada = eu
        .register(register_req("ada@example.de"))
        .await
        .unwrap()
        .into_inner();
    let set = |number: &str| set_phone(number, &ada.access_token);
    eu.set_phone(set(OLD)).await.unwrap();
    confirm(&mut eu, &sms, &ada.access_token, OLD, 1).await;
    // A sign-in code texted to the old number, kept for later.
    eu.request_code(ask(pb::CodePurpose::SignIn, OLD))
        .await
        .unwrap();
    let old_code = sms.wait_for(OLD, 2, WAIT).await.unwrap().code().unwrap();

    // Asking for the new number changes nothing yet: the old one still
    // signs in.
    eu.set_phone(set(NEW)).await.unwrap();
    eu.request_code(ask(pb::CodePurpose::SignIn, OLD))
        .await
        .unwrap();
    let still = sms.wait_for(OLD, 3, WAIT).await.unwrap().code().unwrap();
    assert_ne!(still, old_code);
    confirm(&mut eu, &sms, &ada.access_token, NEW, 1).await;
    let profile = eu
        .get_profile(bearer(pb::GetProfileRequest {}, &ada.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.phone_number, NEW);
    assert!(audited(&fed, &ada.user_id, AuditKind::PhoneVerified).await);

    // The code texted to the old number serves neither number now.
    for number in [OLD, NEW] {
        let s = eu
            .sign_in_with_code(sign_in(number, &still))
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::PermissionDenied, "{number}");
    }
    // The old number names nobody: asked for, it texts nothing.
    eu.request_code(ask(pb::CodePurpose::SignIn, OLD))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sms.messages_to(OLD).len(), 3);

    // An emailed sign-in code does not serve with the number.
    eu.request_code(pb::RequestCodeRequest {
        email: "ada@example.de".into(),
        purpose: pb::CodePurpose::SignIn as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    let mail = smtp
        .wait_for_subject("ada@example.de", "Your sign-in code", 0, WAIT)
        .await
        .unwrap();
    let s = eu
        .sign_in_with_code(sign_in(NEW, &mail.code().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied);

    // Another account can have the old number now.
    let bob = eu
        .register(register_req("bob@example.de"))
        .await
        .unwrap()
        .into_inner();
    eu.set_phone(set_phone(OLD, &bob.access_token))
        .await
        .unwrap();
    confirm(&mut eu, &sms, &bob.access_token, OLD, 4).await;
    eu.request_code(ask(pb::CodePurpose::SignIn, OLD))
        .await
        .unwrap();
    let code = sms.wait_for(OLD, 5, WAIT).await.unwrap().code().unwrap();
    let auth = eu
        .sign_in_with_code(sign_in(OLD, &code))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(auth.user_id, bob.user_id);
}

/// The number is kept only in its user's home region: in eu's store, as a
/// keyed hash in the index, and in no other region's store or the index
/// in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_is_stored_only_in_its_home_region() {
    let (_smtp, sms, fed) = texting(Vec::new(), None).await;
    let mut eu = fed.client("eu").await;
    with_number(&mut eu, &sms, "dora@example.de").await;
    // Asked of the other regions too: they look it up, and keep nothing.
    for region in ["us", "ap"] {
        let _ = fed
            .client(region)
            .await
            .request_code(ask(pb::CodePurpose::SignIn, E164))
            .await;
    }
    let digits = &E164[1..];
    let file = |path: &str| std::fs::read(fed.data_dir().join(path)).unwrap();
    assert!(
        contains(&file("eu/region.redb"), digits.as_bytes()),
        "the positive control"
    );
    for path in ["us/region.redb", "ap/region.redb", "index/index.redb"] {
        assert!(
            !contains(&file(path), digits.as_bytes()),
            "{E164} in {path}"
        );
    }
    let secret = std::fs::read_to_string(fed.dir.path().join("index.key")).unwrap();
    let secret = domicile_core::index::IndexSecret::new(secret.trim().as_bytes().to_vec()).unwrap();
    let key = secret.phone_key(&domicile_core::phone::Phone::parse(E164).unwrap());
    assert!(
        contains(&file("index/index.redb"), &key.0),
        "the index holds the number's keyed hash"
    );
}

/// A texted code proves the number, not the address: where a verified
/// email is required, a sign-in by a texted code on the hosted pages
/// does not complete (and says why); the number still works for the
/// account over the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_texted_code_does_not_stand_in_for_a_verified_email() {
    use crate::messages::{browser, post, sign_in_page};
    let (_smtp, sms, fed) = texting(Vec::new(), Some("require_verified_email = true")).await;
    let mut eu = fed.client("eu").await;
    with_number(&mut eu, &sms, "ada@example.de").await;

    let http = browser();
    let page = sign_in_page(&fed, &http).await;
    let r = post(&fed, &http, "/passwordless", &page, &[("email", NUMBER)]).await;
    assert_eq!(r.status(), 200);
    let code_page = r.text().await.unwrap();
    let code = sms.wait_for(E164, 2, WAIT).await.unwrap().code().unwrap();
    let r = post(
        &fed,
        &http,
        "/code",
        &code_page,
        &[("purpose", "sign_in"), ("email", NUMBER), ("code", &code)],
    )
    .await;
    assert_eq!(r.status(), 403, "no authorization code for the app");
    assert!(r.headers().get("location").is_none());
    let body = r.text().await.unwrap();
    assert!(body.contains("verified email address"), "{body}");
}

/// A federation that texts from eu only: us, without a sender, answers a
/// code request or a texted code for an unknown number as eu answers one
/// (not "not offered", which would tell it from a known number homed in
/// eu), and sends a known number home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_without_a_sender_answers_numbers_alike() {
    let smtp = SmtpSink::start().unwrap();
    let sms = SmsSink::start(SECRET, Vec::new()).await;
    let fed = Fed::with_mail_and_sms_in(smtp.addr, &sms, SECRET, None, &["eu"]).await;
    let mut eu = fed.client("eu").await;
    with_number(&mut eu, &sms, "ada@example.de").await;

    let mut us = fed.client("us").await;
    let unknown = "+33 6 12 34 56 78";
    us.request_code(ask(pb::CodePurpose::SignIn, unknown))
        .await
        .unwrap();
    let s = us
        .sign_in_with_code(sign_in(unknown, "123456"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    expect_wrong_region(
        us.request_code(ask(pb::CodePurpose::SignIn, E164)).await,
        "eu",
    );
    // A us user cannot add a number: us does not text.
    let bo = us
        .register(register_req("bo@example.com"))
        .await
        .unwrap()
        .into_inner();
    let s = us
        .set_phone(set_phone(unknown, &bo.access_token))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented, "{s:?}");
    assert_eq!(sms.all().len(), 1, "only eu's one verification text");
}
