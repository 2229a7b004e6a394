//! The home-region index's domain: keyed identifier hashes and entries.
//!
//! Keys are HMAC-SHA256 under the federation's index secret of a normalized
//! identifier, so the index (the only global data) holds no personal data.

use crate::{RegionCode, UnixSeconds, email::Email, ids::UserId, phone::Phone};
use hmac::Mac;
use std::fmt;

/// Length of an index key in bytes.
pub const KEY_LEN: usize = 32;

/// The federation's secret for identifier keys (at least 32 bytes).
#[derive(Clone)]
pub struct IndexSecret(Vec<u8>);

impl fmt::Debug for IndexSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexSecret(<redacted>)")
    }
}

/// Why an index secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index secret must be at least 32 bytes, got {0}")]
pub struct WeakSecret(pub usize);

impl IndexSecret {
    pub fn new(bytes: Vec<u8>) -> Result<Self, WeakSecret> {
        if bytes.len() < 32 {
            return Err(WeakSecret(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// The key for an email login identifier.
    pub fn email_key(&self, email: &Email) -> IdentifierKey {
        self.key("email", email.as_str())
    }

    /// The key for a phone-number login identifier (E.164).
    pub fn phone_key(&self, phone: &Phone) -> IdentifierKey {
        self.phone_key_e164(phone.as_str())
    }

    /// The key of a number stored in E.164 form, without validating it
    /// again: a stored number must keep its key even if a later release
    /// of the numbering metadata would refuse it.
    pub fn phone_key_e164(&self, e164: &str) -> IdentifierKey {
        self.key("phone", e164)
    }

    /// The key of a passkey's user handle (a login identifier of its own,
    /// region-local: it is never put in the index).
    pub fn passkey_handle_key(&self, handle: &crate::passkey::UserHandle) -> IdentifierKey {
        let hex: String = handle.0.iter().map(|b| format!("{b:02x}")).collect();
        self.key("passkey handle", &hex)
    }

    /// A 32-byte key for `purpose`, derived from the secret (HMAC under a
    /// kind no identifier uses), so that every region derives the same one
    /// and no second secret needs provisioning. Used to seal OpenID Connect
    /// requests between pages.
    pub fn derive(&self, purpose: &str) -> [u8; KEY_LEN] {
        self.key("derived key", purpose).0
    }

    fn key(&self, kind: &str, normalized: &str) -> IdentifierKey {
        // The secret length is checked in `new`; HMAC accepts any key length.
        let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return IdentifierKey([0; KEY_LEN]),
        };
        mac.update(kind.as_bytes());
        mac.update(b":");
        mac.update(normalized.as_bytes());
        IdentifierKey(mac.finalize().into_bytes().into())
    }
}

/// A keyed hash of a normalized identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentifierKey(pub [u8; KEY_LEN]);

impl fmt::Debug for IdentifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentifierKey({})", self.to_hex())
    }
}

impl IdentifierKey {
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; KEY_LEN]>::try_from(b).ok().map(Self)
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// State of an index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexState {
    /// Claimed by a registration in progress; expires.
    Pending,
    /// Belongs to a user.
    Active,
}

/// What the index stores for a key: region, user id, state, timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub region: RegionCode,
    pub user_id: UserId,
    pub state: IndexState,
    pub created_at: UnixSeconds,
    /// Pending claims expire; active entries do not (`None`).
    pub expires_at: Option<UnixSeconds>,
}

impl IndexEntry {
    /// Whether the entry still holds its key at `now`.
    pub fn is_live(&self, now: UnixSeconds) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_secret_and_normal_form_only() {
        let a = IndexSecret::new(vec![1; 32]).unwrap();
        let b = IndexSecret::new(vec![2; 32]).unwrap();
        let e1 = Email::parse("Alice@Example.com").unwrap();
        let e2 = Email::parse(" alice@example.COM").unwrap();
        assert_eq!(a.email_key(&e1), a.email_key(&e2));
        assert_ne!(a.email_key(&e1), b.email_key(&e1));
        assert!(!a.email_key(&e1).to_hex().contains("alice"));
        assert_eq!(IndexSecret::new(vec![0; 31]).err(), Some(WeakSecret(31)));
        let p1 = Phone::parse("+49 151 12345678").unwrap();
        let p2 = Phone::parse("0049151-12345678").unwrap();
        assert_eq!(a.phone_key(&p1), a.phone_key(&p2));
        assert_ne!(a.phone_key(&p1), b.phone_key(&p1));
        assert!(!a.phone_key(&p1).to_hex().contains("4915112345678"));
    }
}
