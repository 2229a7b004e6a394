//! Second factors, as data and rules: TOTP (RFC 6238, computed by the
//! `totp-rs` crate: SHA-1, six digits, 30-second steps, one step of clock
//! drift either way), recovery codes (ten single-use codes of 60 random
//! bits, shown as `xxxx-xxxx-xxxx`), the sealing of TOTP secrets at rest
//! (AES-256-GCM bound to the user), and what a sign-in's methods and
//! assurance level are called in tokens (`amr`, RFC 8176; `acr`).
//!
//! No I/O, no clock, no randomness: secrets, nonces and `now` are passed
//! in. Replay of an accepted step is the store's to refuse (it keeps the
//! last step accepted); this module says which step a code matched.

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use std::fmt;

/// Length of a TOTP shared secret (160 bits, RFC 4226's recommendation).
pub const TOTP_SECRET_LEN: usize = 20;
/// Seconds per TOTP step.
pub const TOTP_STEP_SECONDS: u64 = 30;
/// Steps of clock drift accepted on each side of now.
pub const TOTP_SKEW_STEPS: u8 = 1;
/// Digits of a TOTP code.
pub const TOTP_DIGITS: usize = 6;
/// Recovery codes in a set.
pub const RECOVERY_CODES: usize = 10;
/// Random bytes behind one recovery code (60 bits are used).
pub const RECOVERY_CODE_BYTES: usize = 8;
/// Longest code text read (a TOTP or a recovery code, with spaces).
pub const MAX_CODE_INPUT: usize = 32;

/// `amr` of a password (RFC 8176).
pub const AMR_PASSWORD: &str = "pwd";
/// `amr` of a one-time password: a TOTP code, or an emailed or texted one.
pub const AMR_OTP: &str = "otp";
/// `amr` of a second factor having been used (RFC 8176).
pub const AMR_MFA: &str = "mfa";
/// `amr` of a recovery code (not in RFC 8176's registry; documented).
pub const AMR_RECOVERY: &str = "rec";
/// `amr` of a passkey: proof of possession of a key (RFC 8176's `pop`:
/// whether the key is in hardware or synced is not known).
pub const AMR_PASSKEY: &str = "pop";
/// `amr` of a user presence test (RFC 8176): a passkey sign-in without a
/// password, whose authenticator verified its user.
pub const AMR_USER_PRESENCE: &str = "user";
/// `acr` of a sign-in with one factor.
pub const ACR_ONE_FACTOR: &str = "urn:domicile:loa:1";
/// `acr` of a sign-in with two factors.
pub const ACR_TWO_FACTORS: &str = "urn:domicile:loa:2";
/// Another name of two-factor assurance that apps send in `acr_values`
/// (OpenID PAPE's multi-factor policy).
pub const ACR_PAPE_MULTI_FACTOR: &str =
    "http://schemas.openid.net/pape/policies/2007/06/multi-factor";

/// Whether an `acr_values` entry asks for two factors.
pub fn asks_two_factors(acr: &str) -> bool {
    acr == ACR_TWO_FACTORS || acr == ACR_PAPE_MULTI_FACTOR
}

/// The `acr` a sign-in with these `amr` values reached.
pub fn acr_of(amr: &[String]) -> &'static str {
    if amr.iter().any(|m| m == AMR_MFA) {
        ACR_TWO_FACTORS
    } else {
        ACR_ONE_FACTOR
    }
}

/// Why a typed code was refused before any check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeFormat {
    #[error("is longer than {MAX_CODE_INPUT} characters")]
    TooLong,
    #[error("must be {TOTP_DIGITS} digits")]
    NotTotp,
    #[error("must be 12 letters and digits (xxxx-xxxx-xxxx)")]
    NotRecovery,
}

/// A TOTP shared secret. `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret([u8; TOTP_SECRET_LEN]);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// Why an otpauth URI could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot make the authenticator link: {0}")]
pub struct UriError(String);

impl TotpSecret {
    /// A secret from random bytes (passed in).
    pub fn new(random: [u8; TOTP_SECRET_LEN]) -> Self {
        Self(random)
    }

    /// A stored secret, if it has the right length.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; TOTP_SECRET_LEN]>::try_from(b).ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; TOTP_SECRET_LEN] {
        &self.0
    }

    fn totp(&self, issuer: &str, account: &str) -> Option<totp_rs::Totp> {
        totp_rs::Builder::new()
            .with_secret(self.0.to_vec())
            .with_digits(TOTP_DIGITS as u8)
            .with_skew(u16::from(TOTP_SKEW_STEPS))
            .with_step_duration(TOTP_STEP_SECONDS)
            .with_issuer(Some(label(issuer)))
            .with_account_name(label(account))
            .build()
            .ok()
    }

    /// The secret in base32 (RFC 4648, no padding), for typing into an
    /// authenticator app.
    pub fn base32(&self) -> String {
        self.totp("x", "x")
            .map(|t| t.secret().to_base32())
            .unwrap_or_default()
    }

    /// The `otpauth://totp/…` URI an authenticator app reads (from a QR
    /// code): `issuer` is the service's name, `account` the user's.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Result<String, UriError> {
        let totp = self
            .totp(issuer, account)
            .ok_or_else(|| UriError("invalid parameters".into()))?;
        totp.to_url().map_err(|e| UriError(e.to_string()))
    }

    /// The step a typed code matches at `now` (Unix seconds), within the
    /// drift window; `None` when it matches none. The caller must refuse a
    /// step at or before the last one accepted (replay).
    pub fn matching_step(&self, code: &TotpCode, now: i64) -> Option<u64> {
        let now = u64::try_from(now).ok()?;
        self.totp("x", "x")?.check(&code.0, now)
    }

    /// The code of `now` (tests, and the confirmation page's example).
    pub fn code_at(&self, now: i64) -> Option<String> {
        let now = u64::try_from(now).ok()?;
        Some(self.totp("x", "x")?.generate(now).to_string())
    }
}

/// Issuer and account names may not hold ':' in an otpauth label.
fn label(s: &str) -> String {
    let cleaned: String = s.chars().filter(|c| *c != ':' && !c.is_control()).collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        "account".into()
    } else {
        trimmed.into()
    }
}

/// A typed TOTP code: six digits (spaces ignored).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode(…)")
    }
}

impl TotpCode {
    /// The six digits.
    pub fn digits(&self) -> &str {
        &self.0
    }

    pub fn parse(s: &str) -> Result<Self, CodeFormat> {
        if s.len() > MAX_CODE_INPUT {
            return Err(CodeFormat::TooLong);
        }
        let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        if digits.len() != TOTP_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeFormat::NotTotp);
        }
        Ok(Self(digits))
    }
}

/// The alphabet of recovery codes: Crockford's base32 (digits and
/// lower-case letters without i, l, o, u), 5 bits per character. Typing
/// `o` for 0 and `i` or `l` for 1 is forgiven.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A recovery code: 12 characters of 5 bits (60 bits), shown in groups of
/// four. Secret: `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(…)")
    }
}

impl RecoveryCode {
    /// A code from random bytes (passed in).
    pub fn new(random: [u8; RECOVERY_CODE_BYTES]) -> Self {
        let bits = u64::from_be_bytes(random);
        let text = (0..12)
            .map(|i| {
                let v = (bits >> (i * 5)) & 31;
                char::from(RECOVERY_ALPHABET[v as usize])
            })
            .collect();
        Self(text)
    }

    /// A typed code: case, spaces and dashes are ignored.
    pub fn parse(s: &str) -> Result<Self, CodeFormat> {
        if s.len() > MAX_CODE_INPUT {
            return Err(CodeFormat::TooLong);
        }
        let text: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| match c.to_ascii_lowercase() {
                'o' => '0',
                'i' | 'l' => '1',
                c => c,
            })
            .collect();
        if text.len() != 12 || !text.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)) {
            return Err(CodeFormat::NotRecovery);
        }
        Ok(Self(text))
    }

    /// As shown to the user: `xxxx-xxxx-xxxx`.
    pub fn display(&self) -> String {
        let s = &self.0;
        format!(
            "{}-{}-{}",
            s.get(..4).unwrap_or_default(),
            s.get(4..8).unwrap_or_default(),
            s.get(8..).unwrap_or_default()
        )
    }

    /// The normalized text a keyed hash is taken of.
    pub fn normalized(&self) -> &str {
        &self.0
    }
}

/// A TOTP secret sealed for storage: AES-256-GCM under the region's
/// secrets key, with the user id as associated data (a sealed secret
/// copied to another user's record does not open).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealed(…)")
    }
}

/// Why a sealed secret did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sealed factor secret does not open under this key and user (tampered, or another key)")]
pub struct Unsealable;

/// Why a secret could not be sealed (the cipher refused its input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a factor secret could not be sealed")]
pub struct SealFailed;

/// Seals `secret` of `user_id` under `key` with a fresh `nonce` (passed in;
/// never reuse one under a key).
pub fn seal(
    key: &[u8; 32],
    nonce: [u8; 12],
    user_id: &str,
    secret: &TotpSecret,
) -> Result<Sealed, SealFailed> {
    let cipher = Aes256Gcm::new(key.into());
    let ciphertext = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: secret.as_bytes(),
                aad: user_id.as_bytes(),
            },
        )
        .map_err(|_| SealFailed)?;
    Ok(Sealed { nonce, ciphertext })
}

/// Opens what `seal` sealed for `user_id`.
pub fn open(key: &[u8; 32], user_id: &str, sealed: &Sealed) -> Result<TotpSecret, Unsealable> {
    let cipher = Aes256Gcm::new(key.into());
    let plain = cipher
        .decrypt(
            &Nonce::from(sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: user_id.as_bytes(),
            },
        )
        .map_err(|_| Unsealable)?;
    TotpSecret::from_slice(&plain).ok_or(Unsealable)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B's SHA-1 secret and vectors, truncated to six digits.
    const RFC_SECRET: &[u8; 20] = b"12345678901234567890";

    #[test]
    fn rfc_6238_vectors() {
        let s = TotpSecret::new(*RFC_SECRET);
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(s.code_at(t).as_deref(), Some(code), "t={t}");
            let step = s.matching_step(&TotpCode::parse(code).unwrap(), t);
            assert_eq!(step, Some(t as u64 / 30), "t={t}");
        }
    }

    #[test]
    fn drift_window_is_one_step_each_way() {
        let s = TotpSecret::new(*RFC_SECRET);
        let t = 1_234_567_890;
        let code = TotpCode::parse(&s.code_at(t).unwrap()).unwrap();
        for (offset, ok) in [
            (-60, false),
            (-30, true),
            (0, true),
            (30, true),
            (61, false),
        ] {
            assert_eq!(
                s.matching_step(&code, t + offset).is_some(),
                ok,
                "offset {offset}"
            );
        }
        assert_eq!(s.matching_step(&code, -5), None);
    }

    #[test]
    fn typed_codes_are_checked_before_use() {
        let long = "1".repeat(33);
        let cases: Vec<(&str, Result<(), CodeFormat>)> = vec![
            ("123456", Ok(())),
            (" 123 456 ", Ok(())),
            ("12345", Err(CodeFormat::NotTotp)),
            ("1234567", Err(CodeFormat::NotTotp)),
            ("12345a", Err(CodeFormat::NotTotp)),
            ("１２３４５６", Err(CodeFormat::NotTotp)),
            (&long, Err(CodeFormat::TooLong)),
        ];
        for (input, want) in cases {
            assert_eq!(TotpCode::parse(input).map(|_| ()), want, "{input:?}");
        }
    }

    #[test]
    fn recovery_codes_round_trip_and_refuse_garbage() {
        let c = RecoveryCode::new([0xa5; 8]);
        let shown = c.display();
        assert_eq!(shown.len(), 14);
        assert_eq!(RecoveryCode::parse(&shown).unwrap(), c);
        assert_eq!(RecoveryCode::parse(&shown.to_uppercase()).unwrap(), c);
        assert_eq!(RecoveryCode::parse(&shown.replace('-', " ")).unwrap(), c);
        assert_ne!(RecoveryCode::new([1; 8]), RecoveryCode::new([2; 8]));
        assert_eq!(
            RecoveryCode::parse("0011-abcd-efgh").unwrap(),
            RecoveryCode::parse("oOiL-ABCD-EFGH").unwrap()
        );
        let long = "a".repeat(40);
        for bad in ["", "abcd-efgh", "abcd-efgh-jku0", "abcd-efgh-jkmn-p", &long] {
            assert!(RecoveryCode::parse(bad).is_err(), "{bad:?}");
        }
        assert!(!format!("{c:?}").contains(c.normalized()));
    }

    #[test]
    fn sealed_secrets_open_only_for_their_user_and_key() {
        let key = [7; 32];
        let secret = TotpSecret::new([9; 20]);
        let sealed = seal(&key, [1; 12], "usr_eu_a", &secret).unwrap();
        assert!(
            !sealed
                .ciphertext
                .windows(20)
                .any(|w| w == secret.as_bytes())
        );
        assert_eq!(open(&key, "usr_eu_a", &sealed), Ok(secret));
        assert_eq!(open(&key, "usr_eu_b", &sealed), Err(Unsealable));
        assert_eq!(open(&[8; 32], "usr_eu_a", &sealed), Err(Unsealable));
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(open(&key, "usr_eu_a", &tampered), Err(Unsealable));
    }

    #[test]
    fn the_uri_is_what_authenticator_apps_read() {
        let s = TotpSecret::new(*RFC_SECRET);
        let uri = s.otpauth_uri("Acme: Shop", "ana@example.org").unwrap();
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(uri.contains(&format!("secret={}", s.base32())), "{uri}");
        assert!(uri.contains("issuer=Acme"), "{uri}");
        assert_eq!(s.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn assurance_follows_the_methods() {
        let one = vec![AMR_PASSWORD.to_owned()];
        let two = vec![AMR_PASSWORD.into(), AMR_OTP.into(), AMR_MFA.into()];
        assert_eq!(acr_of(&one), ACR_ONE_FACTOR);
        assert_eq!(acr_of(&two), ACR_TWO_FACTORS);
        assert!(asks_two_factors(ACR_PAPE_MULTI_FACTOR));
        assert!(!asks_two_factors(ACR_ONE_FACTOR));
    }
}
