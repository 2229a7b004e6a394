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

async fn audited(fed: &Fed, user_id: &str, kind: AuditKind) -> bool {
    for _ in 0..100 {
        let (_, events) = fed.nodes["eu"]
            .identity()
            .user_audit(user_id, 0)
            .await
            .unwrap();
        if events.iter().any(|e| e.kind == kind) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The whole life of a number: added (a signed text with a code and no
/// link; the first webhook answer is a 503, so the text is retried under
/// one idempotency key), confirmed (a wrong code first), told to the
/// email address, used to sign in and to reset the password, refused with
/// another account and on another channel, then removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_is_verified_by_a_signed_text_then_signs_in_and_resets() {
    let smtp = SmtpSink::start().unwrap();
    let sms = SmsSink::start(SECRET, vec![503]).await;
    // The journey asks for more codes for one number than the default
    // limit allows in a window (the limits have their own tests).
    let fed = Fed::with_mail_and_sms(
        smtp.addr,
        &sms,
        SECRET,
        Some("requests_per_identifier = 20"),
    )
    .await;
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
        let s = eu
            .set_phone(bearer(pb::SetPhoneRequest { phone: bad.into() }, &token))
            .await
            .unwrap_err();
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
        .set_phone(bearer(
            pb::SetPhoneRequest {
                phone: NUMBER.into(),
            },
            &token,
        ))
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

    // Another account cannot take the number.
    let bob = eu
        .register(register_req("bob@example.de"))
        .await
        .unwrap()
        .into_inner();
    let s = eu
        .set_phone(bearer(
            pb::SetPhoneRequest { phone: E164.into() },
            &bob.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::AlreadyExists, "{s:?}");

    // Sign-in by a code to the number, in any spelling of it.
    eu.request_code(ask(pb::CodePurpose::SignIn, "0049 151 12345678"))
        .await
        .unwrap();
    let text = sms.wait_for(E164, 3, WAIT).await.unwrap();
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
    let text = sms.wait_for(E164, 4, WAIT).await.unwrap();
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
    eu.login(login_req("ada@example.de", "a new passphrase by text"))
        .await
        .unwrap();

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
    assert_eq!(sms.messages_to(E164).len(), 4, "refusals text nothing");

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
    let last = sms.wait_for(E164, 5, WAIT).await.unwrap().code().unwrap();
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
    eu.set_phone(bearer(
        pb::SetPhoneRequest { phone: E164.into() },
        &bob.access_token,
    ))
    .await
    .unwrap();
    let text = sms.wait_for(E164, 6, WAIT).await.unwrap();
    assert_eq!(
        text.kind(),
        "verify_phone",
        "only bob's verification was texted"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sms.messages_to(E164).len(), 6);
}

/// An unknown number is answered as a known one is, and nothing is
/// texted; a region without an SMS sender does not offer texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_number_is_answered_alike_and_gets_no_text() {
    let smtp = SmtpSink::start().unwrap();
    let sms = SmsSink::start(SECRET, Vec::new()).await;
    let fed = Fed::with_mail_and_sms(smtp.addr, &sms, SECRET, None).await;
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
        .set_phone(bearer(
            pb::SetPhoneRequest { phone: E164.into() },
            &reg.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented, "{s:?}");
}

/// The number is kept only in its user's home region: in eu's store, as a
/// keyed hash in the index, and in no other region's store or the index
/// in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_is_stored_only_in_its_home_region() {
    let smtp = SmtpSink::start().unwrap();
    let sms = SmsSink::start(SECRET, Vec::new()).await;
    let fed = Fed::with_mail_and_sms(smtp.addr, &sms, SECRET, None).await;
    let mut eu = fed.client("eu").await;
    let reg = eu
        .register(register_req("dora@example.de"))
        .await
        .unwrap()
        .into_inner();
    eu.set_phone(bearer(
        pb::SetPhoneRequest {
            phone: NUMBER.into(),
        },
        &reg.access_token,
    ))
    .await
    .unwrap();
    let code = sms.wait_for(E164, 1, WAIT).await.unwrap().code().unwrap();
    eu.confirm_phone(bearer(pb::ConfirmPhoneRequest { code }, &reg.access_token))
        .await
        .unwrap();
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
