//! Routable artifacts: `<kind>_<region>_<random>`.
//!
//! User ids and session ids carry a ULID (time-ordered); refresh tokens carry
//! their session's ULID and 32 random bytes in unpadded base64url
//! (`rt_<region>_<session ULID>_<secret>`), and so do the hosted pages'
//! single sign-on cookies (`bs_…`); authorization codes are 32 random bytes
//! (`ac_<region>_<secret>`). The region part lets the edge
//! route any of them without a lookup; the session part lets the store find
//! a token inside its session's partition without a per-token index.

use crate::{RegionCode, UnixSeconds};
use base64::Engine as _;
use std::fmt;

/// The kinds of routable artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactKind {
    User,
    Session,
    RefreshToken,
    AuthorizationCode,
    /// A browser's single sign-on cookie (`BrowserSecret`).
    BrowserSession,
    /// An emailed one-time link (`OneTimeLink`).
    OneTimeLink,
    /// A sign-in waiting for its second factor (`PendingSignIn`).
    PendingSignIn,
}

impl ArtifactKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            ArtifactKind::User => "usr",
            ArtifactKind::Session => "ses",
            ArtifactKind::RefreshToken => "rt",
            ArtifactKind::AuthorizationCode => "ac",
            ArtifactKind::BrowserSession => "bs",
            ArtifactKind::OneTimeLink => "ol",
            ArtifactKind::PendingSignIn => "mfa",
        }
    }

    fn from_prefix(p: &str) -> Option<Self> {
        match p {
            "usr" => Some(ArtifactKind::User),
            "ses" => Some(ArtifactKind::Session),
            "rt" => Some(ArtifactKind::RefreshToken),
            "ac" => Some(ArtifactKind::AuthorizationCode),
            "bs" => Some(ArtifactKind::BrowserSession),
            "ol" => Some(ArtifactKind::OneTimeLink),
            "mfa" => Some(ArtifactKind::PendingSignIn),
            _ => None,
        }
    }
}

/// Why a string is not a well-formed artifact of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidArtifact {
    #[error("malformed {expected} identifier")]
    Malformed { expected: &'static str },
    #[error("expected a {expected} identifier, got a {got} one")]
    WrongKind {
        expected: &'static str,
        got: &'static str,
    },
}

/// Longest artifact we accept anywhere (refresh tokens are the longest: ~76 bytes).
pub const MAX_ARTIFACT_LEN: usize = 128;

/// Splits `<kind>_<region>_<rest>` and validates the kind and region.
pub fn parse_artifact(s: &str) -> Option<(ArtifactKind, RegionCode, &str)> {
    if s.len() > MAX_ARTIFACT_LEN {
        return None;
    }
    let mut parts = s.splitn(3, '_');
    let kind = ArtifactKind::from_prefix(parts.next()?)?;
    let region = RegionCode::parse(parts.next()?).ok()?;
    let rest = parts.next()?;
    let rest_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    rest_ok.then_some((kind, region, rest))
}

macro_rules! ulid_artifact {
    ($name:ident, $kind:expr, $label:literal) => {
        #[doc = concat!("A ", $label, " id: `", stringify!($kind), "`-prefixed, region-tagged ULID.")]
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            text: String,
            region: RegionCode,
        }

        impl $name {
            /// A new id; `now_ms` and `random` are passed in.
            pub fn new(region: &RegionCode, now_ms: u64, random: u128) -> Self {
                let ulid = ulid::Ulid::from_parts(now_ms, random);
                Self {
                    text: format!("{}_{}_{}", $kind.prefix(), region, ulid),
                    region: region.clone(),
                }
            }

            /// Parses an id and checks its kind, region shape and ULID.
            pub fn parse(s: &str) -> Result<Self, InvalidArtifact> {
                let malformed = InvalidArtifact::Malformed { expected: $label };
                let (kind, region, rest) = parse_artifact(s).ok_or(malformed.clone())?;
                if kind != $kind {
                    return Err(InvalidArtifact::WrongKind {
                        expected: $label,
                        got: kind.prefix(),
                    });
                }
                ulid::Ulid::from_string(rest).map_err(|_| malformed)?;
                Ok(Self {
                    text: s.to_owned(),
                    region,
                })
            }

            /// The home region named in the id.
            pub fn region(&self) -> &RegionCode {
                &self.region
            }

            pub fn as_str(&self) -> &str {
                &self.text
            }

            /// The ULID part of the id, as text.
            pub fn ulid_text(&self) -> &str {
                // `<prefix>_<region>_<ulid>`: the ULID is the fixed-length tail.
                self.text
                    .get(self.text.len().saturating_sub(ULID_LEN)..)
                    .unwrap_or("")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }
    };
}

ulid_artifact!(UserId, ArtifactKind::User, "user");
ulid_artifact!(SessionId, ArtifactKind::Session, "session");

/// Characters of a ULID in its canonical text.
const ULID_LEN: usize = 26;

/// A secret that belongs to an owner (a session or a user):
/// `<prefix>_<region>_<owner ULID>_<43 chars base64url of 32 random
/// bytes>`. The owner part is not secret (tokens' `sid` and `sub` name it
/// too); the random part is. The store keeps only the SHA-256 of the whole
/// text.
macro_rules! owned_secret {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $label:literal, $owner:ident, $owner_kind:expr, $accessor:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name {
            text: String,
            owner: $owner,
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Never print the secret part.
                write!(f, "{}({} {}, …)", stringify!($name), stringify!($accessor), self.owner)
            }
        }

        impl $name {
            /// A new secret of its owner from 32 random bytes (passed in).
            pub fn new(owner: &$owner, random: [u8; 32]) -> Self {
                let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
                Self {
                    text: format!(
                        "{}_{}_{}_{body}",
                        $kind.prefix(),
                        owner.region(),
                        owner.ulid_text()
                    ),
                    owner: owner.clone(),
                }
            }

            /// Checks the shape of a presented secret.
            pub fn parse(s: &str) -> Result<Self, InvalidArtifact> {
                let malformed = InvalidArtifact::Malformed { expected: $label };
                let (region, ulid) = parse_owned_secret(s, $kind, $label)?;
                let owner = $owner::parse(&format!("{}_{region}_{ulid}", $owner_kind.prefix()))
                    .map_err(|_| malformed)?;
                Ok(Self {
                    text: s.to_owned(),
                    owner,
                })
            }

            /// What it belongs to.
            pub fn $accessor(&self) -> &$owner {
                &self.owner
            }

            pub fn region(&self) -> &RegionCode {
                self.owner.region()
            }

            /// What the store keeps: SHA-256 of the whole text, so a stolen
            /// store reveals nothing usable.
            pub fn storage_hash(&self) -> [u8; 32] {
                use sha2::Digest;
                sha2::Sha256::digest(self.text.as_bytes()).into()
            }

            /// The text, to hand to its holder.
            pub fn expose(&self) -> &str {
                &self.text
            }
        }
    };
}

/// The region and owner ULID of a `<prefix>_<region>_<ULID>_<secret>`
/// text, if it is well formed and of `kind`.
fn parse_owned_secret<'s>(
    s: &'s str,
    kind: ArtifactKind,
    label: &'static str,
) -> Result<(RegionCode, &'s str), InvalidArtifact> {
    let malformed = InvalidArtifact::Malformed { expected: label };
    let (got, region, rest) = parse_artifact(s).ok_or(malformed.clone())?;
    if got != kind {
        return Err(InvalidArtifact::WrongKind {
            expected: label,
            got: got.prefix(),
        });
    }
    let (ulid, secret) = match (rest.get(..ULID_LEN), rest.get(ULID_LEN..)) {
        (Some(u), Some(s)) => (u, s.strip_prefix('_').ok_or(malformed.clone())?),
        _ => return Err(malformed),
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(secret)
        .map_err(|_| malformed.clone())?;
    if raw.len() != 32 {
        return Err(malformed);
    }
    Ok((region, ulid))
}

owned_secret!(
    /// A refresh token as the client holds it:
    /// `rt_<region>_<session ULID>_<43 chars base64url>`.
    RefreshToken,
    ArtifactKind::RefreshToken,
    "refresh token",
    SessionId,
    ArtifactKind::Session,
    session
);

owned_secret!(
    /// The single sign-on cookie of a browser session at the hosted pages:
    /// `bs_<region>_<session ULID>_<43 chars base64url>`. The edge routes
    /// the pages to the region it names; that region's session record
    /// holds its hash.
    BrowserSecret,
    ArtifactKind::BrowserSession,
    "browser session",
    SessionId,
    ArtifactKind::Session,
    session
);

owned_secret!(
    /// The secret of a one-time link (an emailed verification, reset or
    /// sign-in link): `ol_<region>_<user ULID>_<43 chars base64url>`. The
    /// edge routes the click to the region it names; that region keeps its
    /// hash beside the one-time code it was issued with.
    OneTimeLink,
    ArtifactKind::OneTimeLink,
    "one-time link",
    UserId,
    ArtifactKind::User,
    user
);

owned_secret!(
    /// A sign-in whose first factor passed, waiting for its second:
    /// `mfa_<region>_<user ULID>_<43 chars base64url>`. Whoever completes
    /// it presents it with the second factor; the edge routes it to the
    /// region it names, whose pending sign-ins hold its hash.
    PendingSignIn,
    ArtifactKind::PendingSignIn,
    "pending sign-in",
    UserId,
    ArtifactKind::User,
    user
);

/// An OpenID Connect authorization code: `ac_<region>_<43 base64url
/// characters of 32 random bytes>`, a region-tagged artifact the edge
/// routes to the home region without a lookup. Single use, short-lived
/// (the use cases decide); the store keeps only its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    text: String,
    region: RegionCode,
}

impl fmt::Debug for AuthorizationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorizationCode({}, …)", self.region)
    }
}

impl AuthorizationCode {
    /// A new code of `region` from 32 random bytes (passed in).
    pub fn new(region: &RegionCode, random: [u8; 32]) -> Self {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
        Self {
            text: format!("ac_{region}_{body}"),
            region: region.clone(),
        }
    }

    /// Checks the shape of a presented code.
    pub fn parse(s: &str) -> Result<Self, InvalidArtifact> {
        let malformed = InvalidArtifact::Malformed {
            expected: "authorization code",
        };
        let (kind, region, rest) = parse_artifact(s).ok_or(malformed.clone())?;
        if kind != ArtifactKind::AuthorizationCode {
            return Err(InvalidArtifact::WrongKind {
                expected: "authorization code",
                got: kind.prefix(),
            });
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(rest)
            .map_err(|_| malformed.clone())?;
        if raw.len() != 32 {
            return Err(malformed);
        }
        Ok(Self {
            text: s.to_owned(),
            region,
        })
    }

    pub fn region(&self) -> &RegionCode {
        &self.region
    }

    /// SHA-256 of the whole code: what the store keeps.
    pub fn storage_hash(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(self.text.as_bytes()).into()
    }

    /// The code text, to hand to the client once.
    pub fn expose(&self) -> &str {
        &self.text
    }
}

/// Milliseconds for ULIDs from Unix seconds plus a sub-second part.
pub fn ulid_ms(now: UnixSeconds, subsec_ms: u32) -> u64 {
    u64::try_from(now).unwrap_or(0).saturating_mul(1000) + u64::from(subsec_ms.min(999))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn eu() -> RegionCode {
        RegionCode::parse("eu").unwrap()
    }

    #[test]
    fn authorization_codes_name_their_region_and_hide_their_secret() {
        let c = AuthorizationCode::new(&eu(), [7; 32]);
        assert!(c.expose().starts_with("ac_eu_"), "{c:?}");
        assert_eq!(c.expose().len(), "ac_eu_".len() + 43);
        assert_eq!(AuthorizationCode::parse(c.expose()), Ok(c.clone()));
        assert_eq!(c.region().as_str(), "eu");
        assert!(!format!("{c:?}").contains(&c.expose()[6..]));
        let rt = RefreshToken::new(&SessionId::new(&eu(), 1, 2), [1; 32]);
        for bad in [
            "",
            "ac_eu_",
            "ac_eu_short",
            "ac__BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc",
            rt.expose(),
            &format!("{}A", c.expose()),
        ] {
            assert!(AuthorizationCode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_ids_round_trip_and_name_their_region() {
        let id = UserId::new(&eu(), 1_700_000_000_000, 42);
        assert!(id.as_str().starts_with("usr_eu_"), "{id}");
        assert_eq!(UserId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(id.region().as_str(), "eu");
    }

    fn check(input: &str, expected: Option<(&str, &str)>) {
        let got = parse_artifact(input).map(|(k, r, _)| (k.prefix(), r.as_str().to_owned()));
        let expected = expected.map(|(k, r)| (k, r.to_owned()));
        assert_eq!(got, expected, "{input:?}");
    }

    #[test]
    fn artifacts() {
        check("usr_eu_01JD0000000000000000000000", Some(("usr", "eu")));
        check("ses_ap_01JD0000000000000000000000", Some(("ses", "ap")));
        check("rt_us_abc-def_ghi", Some(("rt", "us")));
        check("usr_EU_01JD", None);
        check("usr_eu_", None);
        check("usr_eu", None);
        check("foo_eu_123", None);
        check("usr_eu_a b", None);
        check(&format!("rt_eu_{}", "a".repeat(200)), None);
    }

    #[test]
    fn wrong_kinds_are_named() {
        let s = SessionId::new(&eu(), 1, 2);
        assert_eq!(
            UserId::parse(s.as_str()),
            Err(InvalidArtifact::WrongKind {
                expected: "user",
                got: "ses"
            })
        );
    }

    #[test]
    fn refresh_tokens_name_their_session() {
        let session = SessionId::new(&eu(), 1_700_000_000_000, 9);
        let t = RefreshToken::new(&session, [7; 32]);
        assert!(
            t.expose()
                .starts_with(&format!("rt_eu_{}_", session.ulid_text()))
        );
        assert!(t.expose().len() <= MAX_ARTIFACT_LEN);
        assert_eq!(RefreshToken::parse(t.expose()), Ok(t.clone()));
        assert_eq!(t.session(), &session);
        assert_eq!(t.region().as_str(), "eu");
        let secret = &t.expose()[t.expose().len() - 43..];
        assert!(!format!("{t:?}").contains(secret), "{t:?}");
        assert_ne!(
            t.storage_hash(),
            RefreshToken::new(&session, [8; 32]).storage_hash()
        );
    }

    #[test]
    fn browser_secrets_are_their_own_kind() {
        let session = SessionId::new(&eu(), 1_700_000_000_000, 9);
        let b = BrowserSecret::new(&session, [7; 32]);
        assert!(b.expose().starts_with("bs_eu_"), "{b:?}");
        assert_eq!(BrowserSecret::parse(b.expose()), Ok(b.clone()));
        assert_eq!(b.session(), &session);
        assert!(!format!("{b:?}").contains(&b.expose()[b.expose().len() - 43..]));
        let rt = RefreshToken::new(&session, [7; 32]);
        assert_eq!(
            BrowserSecret::parse(rt.expose()),
            Err(InvalidArtifact::WrongKind {
                expected: "browser session",
                got: "rt"
            })
        );
        assert!(RefreshToken::parse(b.expose()).is_err());
        assert_ne!(b.storage_hash(), rt.storage_hash());
    }

    #[test]
    fn one_time_links_name_their_user() {
        let user = UserId::new(&eu(), 1_700_000_000_000, 5);
        let l = OneTimeLink::new(&user, [3; 32]);
        assert!(
            l.expose()
                .starts_with(&format!("ol_eu_{}_", user.ulid_text())),
            "{l:?}"
        );
        assert_eq!(OneTimeLink::parse(l.expose()), Ok(l.clone()));
        assert_eq!(l.user(), &user);
        assert!(!format!("{l:?}").contains(&l.expose()[l.expose().len() - 43..]));
        let bs = BrowserSecret::new(&SessionId::new(&eu(), 1, 2), [3; 32]);
        assert!(OneTimeLink::parse(bs.expose()).is_err());
        assert!(OneTimeLink::parse(&format!("{}x", l.expose())).is_err());
    }

    #[test]
    fn malformed_refresh_tokens_are_refused() {
        let ulid = "01JD0000000000000000000000";
        let secret = "A".repeat(43);
        let good = format!("rt_eu_{ulid}_{secret}");
        assert!(RefreshToken::parse(&good).is_ok(), "{good}");
        for bad in [
            "rt_eu_short".to_owned(),
            // The format before tokens named their session.
            format!("rt_eu_{secret}"),
            format!("rt_eu_{ulid}{secret}"),
            format!("rt_eu_{ulid}_{}", "A".repeat(42)),
            format!("rt_eu_{ulid}_{secret}A"),
            format!("rt_eu_{}_{secret}", "U".repeat(26)),
            format!("rt_eu_{ulid}"),
            format!("rt_eu_{ulid}_"),
        ] {
            assert_eq!(
                RefreshToken::parse(&bad),
                Err(InvalidArtifact::Malformed {
                    expected: "refresh token"
                }),
                "{bad}"
            );
        }
    }
}
