//! PKCE (RFC 7636) with the `S256` method only: `plain` is refused, since
//! it protects nothing a code interceptor lacks.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Whether `s` is a well-formed `code_challenge` for S256: 43 base64url
/// characters (a SHA-256, unpadded).
pub fn challenge_is_well_formed(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `verifier` is well formed (43 to 128 unreserved characters) and
/// its S256 challenge is `challenge` (compared in constant time).
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed || !challenge_is_well_formed(challenge) {
        return false;
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    computed
        .bytes()
        .zip(challenge.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B's example, and broken variants.
    #[test]
    fn the_rfc_example_and_refusals() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        for (v, c, ok) in [
            (verifier, challenge, true),
            (
                verifier,
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN",
                false,
            ),
            (
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
                challenge,
                false,
            ),
            (verifier, verifier, false),
            ("short", challenge, false),
            (&"a".repeat(129), challenge, false),
            (
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEj+k",
                challenge,
                false,
            ),
            ("", "", false),
        ] {
            assert_eq!(verify_s256(v, c), ok, "{v} / {c}");
        }
        assert!(challenge_is_well_formed(challenge));
        assert!(!challenge_is_well_formed("plain-text-challenge"));
    }
}
