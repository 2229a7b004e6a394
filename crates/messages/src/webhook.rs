//! SMS through an HTTP webhook: each message is POSTed as JSON
//! ([`Payload`]) to the region's URL, signed so that the receiver can tell
//! it came from this region and is fresh:
//!
//! `Domicile-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//!
//! (the receiver recomputes it over the raw body, compares in constant
//! time, and refuses a `t` more than a few minutes old). The payload's `id`
//! is also sent as `Idempotency-Key`, the same on every retry. A message
//! is tried up to the configured attempts on a timeout, a connection
//! failure, a 429 or a 5xx; any other status is final.

use hmac::Mac;
use std::time::Duration;

pub const SIGNATURE_HEADER: &str = "domicile-signature";

/// What the webhook receives. The text holds the code: never logged.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Payload<'a> {
    pub id: &'a str,
    /// E.164.
    pub to: &'a str,
    pub text: &'a str,
    pub kind: &'a str,
}

/// The signature header's value for `body` at `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// A region's SMS webhook.
pub struct Webhook {
    url: String,
    secret: Vec<u8>,
    attempts: u32,
    client: reqwest::Client,
}

impl Webhook {
    /// A secret shorter than 32 bytes is refused.
    pub fn new(w: &domicile_core::messaging::Webhook, secret: Vec<u8>) -> Result<Self, String> {
        if secret.len() < 32 {
            let from = match &w.secret {
                domicile_core::messaging::SecretSource::Env(var) => var.clone(),
                domicile_core::messaging::SecretSource::File(f) => f.display().to_string(),
            };
            return Err(format!(
                "the signing secret in {from} must be at least 32 bytes"
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(w.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            url: w.url.clone(),
            secret,
            attempts: w.attempts,
            client,
        })
    }

    /// POSTs `payload`, signed at `now`, retrying what may succeed later.
    pub async fn send(&self, payload: &Payload<'_>, now: i64) -> Result<(), String> {
        let body = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let sent = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, signature(&self.secret, now, &body))
                .header("idempotency-key", payload.id)
                .body(body.clone())
                .send()
                .await;
            let retry = match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let s = r.status();
                    last = format!("attempt {attempt}: the webhook answered {s}");
                    s.as_u16() == 429 || s.is_server_error()
                }
                Err(e) => {
                    last = format!("attempt {attempt}: {}", without_url(&e));
                    true
                }
            };
            if !retry {
                break;
            }
            if attempt < self.attempts {
                tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt - 1))).await;
            }
        }
        Err(last)
    }
}

/// An error's text without the URL (it may carry a token in its query).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        let s = signature(b"key", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            s,
            "t=1700000000,v1=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
        assert_ne!(s, signature(b"key", 1_700_000_001, br#"{"a":1}"#));
        assert_ne!(s, signature(b"other", 1_700_000_000, br#"{"a":1}"#));
    }
}
