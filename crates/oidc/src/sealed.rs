//! A checked authorization request, sealed to travel between the hosted
//! pages (in a hidden form field or a query parameter) so that no region
//! keeps state for a browser whose user it may not home: HMAC-SHA256 over
//! the request and its expiry, under a key every region derives from the
//! federation secret. It holds no personal data (see
//! [`AuthorizationRequest`]). Other state that travels with a page (a
//! passkey ceremony's) is sealed the same way under a key of its own
//! (`seal_value`). Sealing is not encryption: the request is
//! what the app put in the URL anyway.

use crate::authorize::AuthorizationRequest;
use base64::Engine as _;
use domicile_core::UnixSeconds;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long a sealed request may take from the sign-in page to its form's
/// answer.
pub const LIFETIME_SECONDS: i64 = 1800;

/// Longest sealed text accepted (before any decoding).
pub const MAX_LEN: usize = 8 * 1024;

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    /// Format version.
    v: u8,
    exp: UnixSeconds,
    req: T,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the sign-in request is malformed")]
    Malformed,
    #[error("the sign-in request was not made by this service")]
    Forged,
    #[error("the sign-in request has expired; start again from the app")]
    Expired,
    #[error("the sealing key must be at least 32 bytes")]
    WeakKey,
}

type HmacSha256 = Hmac<Sha256>;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// Seals and opens requests under one key (made once, at start).
#[derive(Clone)]
pub struct Sealer(HmacSha256);

impl Sealer {
    /// A sealer keyed with `key` (at least 32 bytes).
    pub fn new(key: &[u8]) -> Result<Self, SealError> {
        if key.len() < 32 {
            return Err(SealError::WeakKey);
        }
        <HmacSha256 as Mac>::new_from_slice(key)
            .map(Self)
            .map_err(|_| SealError::WeakKey)
    }

    fn tag(&self, body: &str) -> HmacSha256 {
        let mut m = self.0.clone();
        m.update(body.as_bytes());
        m
    }

    /// `<body>.<mac>`, base64url, valid until `now + LIFETIME_SECONDS`.
    pub fn seal(&self, req: &AuthorizationRequest, now: UnixSeconds) -> String {
        // Serializing strings, numbers and unit enums cannot fail.
        self.seal_value(req, now + LIFETIME_SECONDS)
            .unwrap_or_default()
    }

    /// The request in `sealed`, if this service sealed it with this key
    /// and it has not expired at `now`.
    pub fn open(&self, sealed: &str, now: UnixSeconds) -> Result<AuthorizationRequest, SealError> {
        self.open_value(sealed, now).map(|(req, _)| req)
    }

    /// Seals any value (a sealer of its own key per kind of value, so that
    /// one kind never opens as another) until `exp`.
    pub fn seal_value<T: Serialize>(
        &self,
        value: &T,
        exp: UnixSeconds,
    ) -> Result<String, SealError> {
        let envelope = Envelope {
            v: 1,
            exp,
            req: value,
        };
        let json = serde_json::to_vec(&envelope).map_err(|_| SealError::Malformed)?;
        let body = b64().encode(json);
        let tag = b64().encode(self.tag(&body).finalize().into_bytes());
        Ok(format!("{body}.{tag}"))
    }

    /// The value in `sealed` and when it expires, if this sealer sealed it
    /// and it has not expired at `now`.
    pub fn open_value<T: serde::de::DeserializeOwned>(
        &self,
        sealed: &str,
        now: UnixSeconds,
    ) -> Result<(T, UnixSeconds), SealError> {
        if sealed.len() > MAX_LEN {
            return Err(SealError::Malformed);
        }
        let (body, tag) = sealed.split_once('.').ok_or(SealError::Malformed)?;
        let tag = b64().decode(tag).map_err(|_| SealError::Malformed)?;
        self.tag(body)
            .verify_slice(&tag)
            .map_err(|_| SealError::Forged)?;
        let json = b64().decode(body).map_err(|_| SealError::Malformed)?;
        let envelope: Envelope<T> =
            serde_json::from_slice(&json).map_err(|_| SealError::Malformed)?;
        if envelope.v != 1 {
            return Err(SealError::Malformed);
        }
        if now >= envelope.exp {
            return Err(SealError::Expired);
        }
        Ok((envelope.req, envelope.exp))
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::Prompt;

    fn req() -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: "app".into(),
            redirect_uri: "https://app.example.com/cb".into(),
            scopes: vec!["openid".into()],
            state: Some("xyz".into()),
            nonce: Some("n".into()),
            code_challenge: None,
            prompt: Prompt::Default,
            max_age: None,
            ui_locales: vec![],
            acr_values: vec![],
        }
    }

    #[test]
    fn sealed_requests_open_only_untouched_under_their_key_in_time() {
        let ours = Sealer::new(&[7u8; 32]).unwrap();
        let theirs = Sealer::new(&[8u8; 32]).unwrap();
        let s = ours.seal(&req(), 1000);
        assert_eq!(ours.open(&s, 1000), Ok(req()));
        assert_eq!(
            ours.open(&s, 1000 + LIFETIME_SECONDS),
            Err(SealError::Expired)
        );
        assert_eq!(theirs.open(&s, 1000), Err(SealError::Forged));
        // Another request's body under this one's tag.
        let mut other = req();
        other.redirect_uri = "https://evil.example/cb".into();
        let forged_body = theirs.seal(&other, 1000);
        let (body, _) = forged_body.split_once('.').unwrap();
        let (_, tag) = s.split_once('.').unwrap();
        assert_eq!(
            ours.open(&format!("{body}.{tag}"), 1000),
            Err(SealError::Forged)
        );
        for bad in [
            "",
            "no-dot",
            "a.b",
            &"x".repeat(MAX_LEN + 1),
            &format!("{s}x"),
        ] {
            assert!(ours.open(bad, 1000).is_err(), "{bad:.40}");
        }
        assert_eq!(Sealer::new(&[1u8; 16]).map(|_| ()), Err(SealError::WeakKey));
    }
}
