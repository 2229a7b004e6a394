//! Risk signals through the edge: the GeoIP country and place of the
//! client's address (after trusted proxies, never what the client claims)
//! reach the home region, which compares them with the user's history.

use crate::harness::*;
use domicile_proto::v1 as pb;
use domicile_testkit::smtp::SmtpSink;
use std::time::Duration;
use tonic::Code;

/// The `amr` of an access token (its payload, unverified: the node
/// verified it).
fn amr_of(token: &str) -> Vec<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    serde_json::from_value(claims["amr"].clone()).unwrap_or_default()
}

fn complete(token: &str, code: &str) -> pb::CompleteSignInRequest {
    pb::CompleteSignInRequest {
        mfa_token: token.to_owned(),
        totp_code: code.to_owned(),
        recovery_code: String::new(),
        passkey_credential: String::new(),
    }
}

#[tokio::test]
async fn a_sign_in_from_another_country_through_a_trusted_proxy_asks_for_an_emailed_code() {
    let smtp = SmtpSink::start().unwrap();
    let fed = Fed::with(Settings {
        smtp: Some(smtp.addr),
        ..Settings::default()
    })
    .await;
    let mut edge = fed.client().await;
    let email = "traveller@example.org";
    let reg = edge
        .register(from("192.0.2.10", register(email)))
        .await
        .unwrap()
        .into_inner();
    assert!(reg.user_id.starts_with("usr_eu_"), "{}", reg.user_id);
    // Sign-ins from Germany teach the history; nothing is asked.
    for ip in ["192.0.2.11", "192.0.2.12"] {
        let ok = edge
            .login(from(ip, login(email)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(amr_of(&ok.access_token), ["pwd"]);
    }
    // A country the client claims is not believed: from 127.0.0.1 (no
    // GeoIP country), claiming France, nothing is asked.
    let mut req = tonic::Request::new(login(email));
    req.metadata_mut()
        .insert("domicile-client-country", "FR".parse().unwrap());
    req.metadata_mut()
        .insert("domicile-client-location", "48.86,2.35".parse().unwrap());
    edge.login(req)
        .await
        .expect("the claimed country was removed by the edge");
    // From Japan, through the trusted proxy (127.0.0.1 forwards for
    // 203.0.113.5), claiming to be in Berlin: the claim is replaced by what
    // the edge found, and the sign-in waits for a code sent to the user.
    let mut req = from("203.0.113.5", login(email));
    req.metadata_mut()
        .insert("domicile-client-country", "DE".parse().unwrap());
    req.metadata_mut()
        .insert("domicile-client-location", "52.52,13.40".parse().unwrap());
    let s = edge.login(req).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    let md = |k: &str| {
        s.metadata()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(md("domicile-mfa-methods"), "email_code");
    let token = md("domicile-mfa-token");
    assert!(token.starts_with("mfa_eu_"), "{token}");
    let mail = smtp
        .wait_for(email, 1, Duration::from_secs(10))
        .await
        .expect("the sign-in check's email");
    assert!(
        mail.subject().contains("Confirm your sign-in"),
        "{}",
        mail.subject()
    );
    assert_eq!(
        mail.link(),
        None,
        "a code only: no link to sign in elsewhere"
    );
    let code = mail.code().unwrap();
    // A wrong code is refused, the right one finishes, and is spent.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let s = edge
        .complete_sign_in(from("203.0.113.5", complete(&token, wrong)))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let ok = edge
        .complete_sign_in(from("203.0.113.5", complete(&token, &code)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.user_id, reg.user_id);
    assert_eq!(
        amr_of(&ok.access_token),
        ["pwd", "otp"],
        "an emailed code is not a second factor"
    );
    let s = edge
        .complete_sign_in(from("203.0.113.5", complete(&token, &code)))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "replayed: {s:?}");
    // The decision is audited by the signals' names: no country, no place.
    // (Audit events are written off the request path: wait for it.)
    let mut events = Vec::new();
    for _ in 0..100 {
        events = fed.nodes["eu"]
            .identity()
            .user_audit(&reg.user_id, 0)
            .await
            .unwrap()
            .1;
        if events.iter().any(|e| e.kind.as_str() == "sign_in_risk") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let risk: Vec<&str> = events
        .iter()
        .filter(|e| e.kind.as_str() == "sign_in_risk")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(
        risk,
        ["signals=new_country,impossible_travel step=email_code"],
        "{events:?}"
    );
    for e in &events {
        for personal in ["JP", "DE", "35.", "52.", "203.0.113", email] {
            assert!(!e.detail.contains(personal), "{e:?}");
        }
    }
    // Japan is the user's now; from Tokyo again, nothing is asked.
    edge.login(from("203.0.113.9", login(email))).await.unwrap();
}
