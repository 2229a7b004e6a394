//! Access tokens: EdDSA (Ed25519) JWTs in the RFC 9068 profile.
//!
//! Header `typ: at+jwt`, `alg: EdDSA`, `kid: <region>-<n>`. Claims: `iss`, `sub`
//! (user id), `aud`, `exp`, `iat`, `nbf`, `jti`, `client_id`, `scope`, plus
//! `rgn` (home region) and `sid` (session id). Expiry is checked against a
//! `now` passed in, never the system clock. Seeds for keys are passed in.

use crate::{RegionCode, UnixSeconds};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::{collections::HashMap, fmt};

/// Longest access token accepted for verification.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Clock skew tolerated between regions, in seconds.
pub const LEEWAY_SECONDS: i64 = 30;

/// A key id: `<region>-<n>`, n ≥ 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kid {
    pub region: RegionCode,
    pub n: u32,
}

impl Kid {
    pub fn parse(s: &str) -> Option<Self> {
        let (region, n) = s.rsplit_once('-')?;
        let n: u32 = n.parse().ok().filter(|n| *n >= 1)?;
        Some(Self {
            region: RegionCode::parse(region).ok()?,
            n,
        })
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.region, self.n)
    }
}

/// A region's private signing key.
#[derive(Clone)]
pub struct SigningKey {
    kid: Kid,
    key: ed25519_dalek::SigningKey,
    encoding: EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.kid)
    }
}

/// Why a key or token operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("access token is malformed")]
    Malformed,
    #[error("access token is too long")]
    TooLong,
    #[error("access token was signed by another region ({0})")]
    ForeignRegion(RegionCode),
    #[error("access token is signed with an unknown key")]
    UnknownKey,
    #[error("access token signature is invalid")]
    BadSignature,
    #[error("access token has expired")]
    Expired,
    #[error("access token is not valid yet")]
    NotYetValid,
    #[error("access token was issued for another issuer or audience")]
    WrongAudience,
    #[error("could not sign token: {0}")]
    Signing(String),
}

impl SigningKey {
    /// A key from its 32-byte seed (fresh random bytes for a new key).
    pub fn from_seed(kid: Kid, seed: [u8; 32]) -> Result<Self, TokenError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let der = key
            .to_pkcs8_der()
            .map_err(|e| TokenError::Signing(e.to_string()))?;
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        Ok(Self { kid, key, encoding })
    }

    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// The seed, for storing the key in the region's store.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key as an RFC 8037 JWK.
    pub fn public_jwk(&self) -> Jwk {
        Jwk::ed25519(&self.kid, self.key.verifying_key().to_bytes())
    }

    /// Signs access token claims into a compact JWT (`typ: at+jwt`).
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        self.sign_typed(claims, "at+jwt")
    }

    /// Signs OpenID Connect ID token claims into a compact JWT (`typ: JWT`).
    pub fn sign_id_token(&self, claims: &IdClaims) -> Result<String, TokenError> {
        self.sign_typed(claims, "JWT")
    }

    pub(crate) fn sign_typed<C: Serialize>(
        &self,
        claims: &C,
        typ: &str,
    ) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(typ.into());
        header.kid = Some(self.kid.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))
    }
}

/// A public key in JWK form (RFC 8037, OKP/Ed25519).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub kid: String,
}

impl Jwk {
    pub fn ed25519(kid: &Kid, public: [u8; 32]) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
            alg: "EdDSA".into(),
            use_: "sig".into(),
            kid: kid.to_string(),
        }
    }
}

/// Access token claims (RFC 9068 plus `rgn` and `sid`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    /// Home region of the subject.
    pub rgn: String,
    /// Session the token belongs to.
    pub sid: String,
    /// How the session's user authenticated (RFC 8176 values); absent in
    /// tokens minted before it was carried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The assurance the session's sign-in reached
    /// (`urn:domicile:loa:1` or `:2`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub acr: String,
}

/// OpenID Connect ID token claims (Core §2), plus the region's `sid`.
/// Personal claims (`email`, names) are present only when the granted
/// scopes include them; `Debug` leaves them out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    /// The client id.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// When the user last entered their password.
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Left half of the access token's SHA-512, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// How the user authenticated (RFC 8176: `pwd`).
    pub amr: Vec<String>,
    pub acr: String,
    pub sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// E.164 (scope `phone`); only a verified number is ever given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_verified: Option<bool>,
}

impl fmt::Debug for IdClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdClaims")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("aud", &self.aud)
            .field("exp", &self.exp)
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

/// Public keys that verify access tokens, by kid.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

/// What a token must be to be accepted.
#[derive(Clone, Debug)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    /// Tokens whose kid names another region are refused as `ForeignRegion`.
    pub region: Option<&'a RegionCode>,
}

impl KeySet {
    pub fn insert(&mut self, kid: &Kid, public: [u8; 32]) {
        self.keys
            .insert(kid.to_string(), DecodingKey::from_ed_der(&public));
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies signature, issuer, audience and lifetime at `now`.
    pub fn verify(
        &self,
        token: &str,
        want: &Expectations<'_>,
        now: UnixSeconds,
    ) -> Result<AccessClaims, TokenError> {
        let (c, kid): (AccessClaims, Kid) = self.decode_signed(token, want.region)?;
        if c.iss != want.issuer || c.aud != want.audience {
            return Err(TokenError::WrongAudience);
        }
        if now >= c.exp + LEEWAY_SECONDS {
            return Err(TokenError::Expired);
        }
        if now + LEEWAY_SECONDS < c.nbf {
            return Err(TokenError::NotYetValid);
        }
        if RegionCode::parse(&c.rgn).ok() != Some(kid.region) {
            // `rgn` must agree with the signing region.
            return Err(TokenError::Malformed);
        }
        Ok(c)
    }

    /// Verifies an ID token presented back to this provider as an
    /// `id_token_hint` (RP-initiated logout): signed by one of these keys
    /// (of `region`, when given) and issued by `issuer`. Its lifetime is
    /// not checked, since a hint may have expired (RP-Initiated Logout
    /// 1.0 §2); one issued in the future is refused. An access token is
    /// not an ID token and is refused as malformed.
    pub fn verify_id_token_hint(
        &self,
        token: &str,
        issuer: &str,
        region: Option<&RegionCode>,
        now: UnixSeconds,
    ) -> Result<IdClaims, TokenError> {
        let (c, _): (IdClaims, Kid) = self.decode_signed(token, region)?;
        if c.iss != issuer {
            return Err(TokenError::WrongAudience);
        }
        if now + LEEWAY_SECONDS < c.iat {
            return Err(TokenError::NotYetValid);
        }
        Ok(c)
    }

    /// The claims of an EdDSA JWT whose signature one of these keys
    /// verifies, and its kid; a kid of another region than `region` is
    /// refused as `ForeignRegion` before any key is tried.
    pub(crate) fn decode_signed<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        region: Option<&RegionCode>,
    ) -> Result<(T, Kid), TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Malformed);
        }
        let kid = header
            .kid
            .as_deref()
            .and_then(Kid::parse)
            .ok_or(TokenError::Malformed)?;
        if let Some(region) = region
            && &kid.region != region
        {
            return Err(TokenError::ForeignRegion(kid.region));
        }
        let key = self
            .keys
            .get(&kid.to_string())
            .ok_or(TokenError::UnknownKey)?;
        let mut v = Validation::new(Algorithm::EdDSA);
        // Lifetimes are checked by the callers against the `now` passed in.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.required_spec_claims.clear();
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<T>(token, key, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
            _ => TokenError::Malformed,
        })?;
        Ok((data.claims, kid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kid(s: &str) -> Kid {
        Kid::parse(s).unwrap()
    }

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://id.example".into(),
            sub: "usr_eu_01JD0000000000000000000000".into(),
            aud: "https://id.example".into(),
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: "j1".into(),
            client_id: "domicile".into(),
            scope: "openid profile".into(),
            rgn: "eu".into(),
            sid: "ses_eu_01JD0000000000000000000000".into(),
            amr: vec![],
            acr: String::new(),
        }
    }

    fn setup() -> (SigningKey, KeySet) {
        let key = SigningKey::from_seed(kid("eu-1"), [9; 32]).unwrap();
        let mut set = KeySet::default();
        let jwk = key.public_jwk();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&jwk.x)
            .unwrap();
        set.insert(key.kid(), x.try_into().unwrap());
        (key, set)
    }

    const NOW: i64 = 1_800_000_000;

    fn want() -> Expectations<'static> {
        Expectations {
            issuer: "https://id.example",
            audience: "https://id.example",
            region: None,
        }
    }

    #[test]
    fn kids() {
        assert_eq!(kid("eu-1").to_string(), "eu-1");
        assert_eq!(kid("eu2-17").n, 17);
        for bad in ["eu", "eu-0", "eu-x", "EU-1", "-1", "e-1"] {
            assert_eq!(Kid::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn sign_and_verify() {
        let (key, set) = setup();
        let token = key.sign(&claims(NOW)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some("eu-1"));
        assert_eq!(set.verify(&token, &want(), NOW + 10), Ok(claims(NOW)));
    }

    #[test]
    fn refusals() {
        let (key, set) = setup();
        let token = key.sign(&claims(NOW)).unwrap();
        let check = |t: &str, w: &Expectations<'_>, now: i64, e: TokenError| {
            assert_eq!(set.verify(t, w, now), Err(e));
        };
        check(
            &token,
            &want(),
            NOW + 600 + LEEWAY_SECONDS,
            TokenError::Expired,
        );
        check(&token, &want(), NOW - 100, TokenError::NotYetValid);
        check("garbage", &want(), NOW, TokenError::Malformed);
        check(&"a".repeat(5000), &want(), NOW, TokenError::TooLong);
        let us = RegionCode::parse("us").unwrap();
        check(
            &token,
            &Expectations {
                region: Some(&us),
                ..want()
            },
            NOW,
            TokenError::ForeignRegion(RegionCode::parse("eu").unwrap()),
        );
        check(
            &token,
            &Expectations {
                audience: "other",
                ..want()
            },
            NOW,
            TokenError::WrongAudience,
        );
        // Same kid, another key: a forged token.
        let forger = SigningKey::from_seed(kid("eu-1"), [1; 32]).unwrap();
        check(
            &forger.sign(&claims(NOW)).unwrap(),
            &want(),
            NOW,
            TokenError::BadSignature,
        );
        let stranger = SigningKey::from_seed(kid("eu-2"), [1; 32]).unwrap();
        check(
            &stranger.sign(&claims(NOW)).unwrap(),
            &want(),
            NOW,
            TokenError::UnknownKey,
        );
        // Tampered payload.
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut c = claims(NOW);
        c.sub = "usr_eu_01JD0000000000000000000001".into();
        let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&c).unwrap());
        parts[1] = &forged_payload;
        check(&parts.join("."), &want(), NOW, TokenError::BadSignature);
    }

    fn id_claims(now: i64) -> IdClaims {
        IdClaims {
            iss: "https://id.example".into(),
            sub: "usr_eu_01JD0000000000000000000000".into(),
            aud: "app".into(),
            exp: now + 300,
            iat: now,
            auth_time: now,
            nonce: None,
            at_hash: None,
            amr: vec!["pwd".into()],
            acr: "0".into(),
            sid: "ses_eu_01JD0000000000000000000000".into(),
            email: None,
            email_verified: None,
            name: None,
            given_name: None,
            family_name: None,
            locale: None,
            phone_number: None,
            phone_number_verified: None,
        }
    }

    /// An ID token comes back as a logout hint: expired is fine, anything
    /// not signed by the federation for this issuer is not.
    #[test]
    fn id_token_hints() {
        let (key, set) = setup();
        let iss = "https://id.example";
        let eu = RegionCode::parse("eu").unwrap();
        let us = RegionCode::parse("us").unwrap();
        let hint = key.sign_id_token(&id_claims(NOW)).unwrap();
        let later = NOW + 30 * 86_400;
        assert_eq!(
            set.verify_id_token_hint(&hint, iss, Some(&eu), later),
            Ok(id_claims(NOW)),
            "an expired hint still names its session"
        );
        let forger = SigningKey::from_seed(kid("eu-1"), [1; 32]).unwrap();
        let unsigned = {
            let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(br#"{"alg":"none","kid":"eu-1"}"#);
            let body = hint.split('.').nth(1).unwrap();
            format!("{header}.{body}.")
        };
        for (token, region, issuer, now, want) in [
            (
                hint.clone(),
                Some(&us),
                iss,
                NOW,
                TokenError::ForeignRegion(eu.clone()),
            ),
            (
                hint.clone(),
                None,
                "https://other.example",
                NOW,
                TokenError::WrongAudience,
            ),
            (hint.clone(), None, iss, NOW - 100, TokenError::NotYetValid),
            (
                forger.sign_id_token(&id_claims(NOW)).unwrap(),
                None,
                iss,
                NOW,
                TokenError::BadSignature,
            ),
            (unsigned, None, iss, NOW, TokenError::Malformed),
            // An access token is not an ID token.
            (
                key.sign(&claims(NOW)).unwrap(),
                None,
                iss,
                NOW,
                TokenError::Malformed,
            ),
        ] {
            assert_eq!(
                set.verify_id_token_hint(&token, issuer, region, now),
                Err(want.clone()),
                "{want:?}"
            );
        }
    }
}
