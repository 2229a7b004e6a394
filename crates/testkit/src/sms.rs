//! An SMS webhook receiver on loopback for tests: a real HTTP server
//! (axum on 127.0.0.1:0) that takes what a region's SMS sender POSTs,
//! checks each request's `Domicile-Signature` with its own HMAC-SHA256
//! (not the sender's code), and keeps the JSON it received. It answers
//! the statuses it was given in turn, then 200, so retries can be tested.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use bytes::Bytes;
use hmac::Mac;
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

/// One POST as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Texted {
    /// The last path segment (`/sms/eu` → `eu`): which region sent it.
    pub region: String,
    /// Whether `Domicile-Signature` was a valid HMAC of the raw body under
    /// the receiver's secret.
    pub signature_ok: bool,
    /// The signature's `t`.
    pub signed_at: i64,
    pub idempotency_key: String,
    /// `to` (E.164), `text`, `kind`, `id`.
    pub body: serde_json::Value,
}

impl Texted {
    pub fn to(&self) -> &str {
        self.body["to"].as_str().unwrap_or_default()
    }

    pub fn text(&self) -> &str {
        self.body["text"].as_str().unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        self.body["kind"].as_str().unwrap_or_default()
    }

    /// The first word of exactly six digits: the code.
    pub fn code(&self) -> Option<String> {
        self.text()
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .map(str::to_owned)
    }
}

#[derive(Clone)]
struct Shared {
    secret: Vec<u8>,
    seen: Arc<Mutex<Vec<Texted>>>,
    answers: Arc<Mutex<Vec<u16>>>,
}

/// The receiver's address and everything it received. It serves until
/// the test's runtime ends.
#[derive(Clone)]
pub struct SmsSink {
    pub addr: SocketAddr,
    shared: Shared,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `header` (`t=…,v1=…`) signs `body` under `secret`, and its `t`.
fn check(secret: &[u8], header: &str, body: &[u8]) -> (bool, i64) {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return (false, 0);
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    (hex(&mac.finalize().into_bytes()) == v1, t)
}

async fn receive(
    State(s): State<Shared>,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = headers
        .get("domicile-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (signature_ok, signed_at) = check(&s.secret, header, &body);
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    s.seen.lock().unwrap().push(Texted {
        region,
        signature_ok,
        signed_at,
        idempotency_key,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    let mut a = s.answers.lock().unwrap();
    let code = if a.is_empty() { 200 } else { a.remove(0) };
    StatusCode::from_u16(code).unwrap()
}

impl SmsSink {
    /// A receiver on 127.0.0.1:0 checking signatures under `secret`,
    /// answering `statuses` in turn (then 200).
    pub async fn start(secret: &str, statuses: Vec<u16>) -> Self {
        let shared = Shared {
            secret: secret.as_bytes().to_vec(),
            seen: Arc::default(),
            answers: Arc::new(Mutex::new(statuses)),
        };
        let app = axum::Router::new()
            .route("/sms/{region}", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, shared }
    }

    /// The URL a region posts to: `http://<addr>/sms/<region>`.
    pub fn url(&self, region: &str) -> String {
        format!("http://{}/sms/{region}", self.addr)
    }

    /// Everything received so far, oldest first.
    pub fn all(&self) -> Vec<Texted> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Every message received for `to` (E.164) so far, oldest first.
    pub fn messages_to(&self, to: &str) -> Vec<Texted> {
        self.all().into_iter().filter(|m| m.to() == to).collect()
    }

    /// Waits (up to `timeout`) for the `n`-th message (1-based) to `to`.
    pub async fn wait_for(&self, to: &str, n: usize, timeout: Duration) -> Option<Texted> {
        crate::poll(timeout, || self.messages_to(to).into_iter().nth(n - 1)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_over_the_raw_body() {
        let secret = b"a webhook secret of thirty-two bytes or more";
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(b"1700000000.{\"to\":\"+4915112345678\"}");
        let good = format!("t=1700000000,v1={}", hex(&mac.finalize().into_bytes()));
        let body = br#"{"to":"+4915112345678"}"#;
        assert_eq!(check(secret, &good, body), (true, 1_700_000_000));
        assert!(!check(secret, &good, br#"{"to":"+4915112345679"}"#).0);
        assert!(!check(b"another secret of thirty-two bytes or more", &good, body).0);
        assert!(!check(secret, "v1=00", body).0);
        assert!(!check(secret, "", body).0);
    }
}
