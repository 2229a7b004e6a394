//! Domicile's OpenID Connect protocol logic, pure: what an authorization
//! request may ask of a registered client ([`authorize`]), the sealed form
//! in which a checked request travels between the hosted pages without
//! server state in any region ([`sealed`]), PKCE ([`pkce`]), the `at_hash`
//! of an EdDSA ID token ([`at_hash`]), the redirects back to the app
//! ([`redirect`]), RP-initiated logout requests ([`logout`]) and the
//! discovery document ([`discovery`]).
//!
//! It does no I/O: it reads no clock (`now` is an argument), draws no
//! randomness, and knows no HTTP server, store or template. Sessions,
//! codes and tokens are the use cases' (`domicile-identity`); pages and
//! endpoints are the node's.

#![forbid(unsafe_code)]

pub mod authorize;
pub mod client_auth;
pub mod discovery;
pub mod logout;
pub mod pkce;
pub mod redirect;
pub mod sealed;

use base64::Engine as _;

/// The hosted pages' browser session cookie (single sign-on) when the
/// issuer is http, and when it is https (`__Host-`: bound to the origin).
/// Its value is a region-tagged `bs_` artifact: the node sets it, the edge
/// routes the pages by it.
pub const BROWSER_COOKIE: &str = "domicile_session";
pub const BROWSER_COOKIE_SECURE: &str = "__Host-domicile_session";

/// The hosted pages' path of a one-time link (`?t=ol_…&p=<purpose>`, and
/// `&req=` when it continues a sign-in): the edge routes it by `t`'s
/// region tag, the node spends it.
pub const LINK_PATH: &str = "/link";
use sha2::{Digest, Sha512};

/// The `at_hash` of an access token in an ID token signed with EdDSA over
/// Ed25519: the left half of its SHA-512, base64url without padding (OpenID
/// Connect Core §3.1.3.6, with the hash of the signing algorithm's curve).
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha512::digest(access_token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..32])
}

/// Registered clients for the unit tests: `clients_toml` (`[clients.*]`
/// tables) in a one-region federation.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_clients(clients_toml: &str) -> domicile_core::clients::Clients {
    let text = format!(
        r#"
[federation]
name = "t"
issuer = "https://id.example.com"
default_region = "eu"
[index]
host_region = "eu"
secret_file = "k"
store = {{ backend = "embedded", path = "i" }}
[regions.eu]
residency = "EU"
nodes = [{{ address = "127.0.0.1:7101" }}]
store = {{ backend = "embedded", path = "eu" }}
{clients_toml}"#
    );
    domicile_core::topology::Topology::parse(std::path::Path::new("r.toml"), &text)
        .unwrap()
        .clients
}

#[cfg(test)]
mod tests {
    #[test]
    fn at_hash_is_the_left_half_of_sha512() {
        // SHA-512("abc") begins ddaf35a193617aba cc417349ae204131
        // 12e6fa4e89a97ea2 0a9eeee64b55d39a.
        let want = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            [
                0xdd, 0xaf, 0x35, 0xa1, 0x93, 0x61, 0x7a, 0xba, 0xcc, 0x41, 0x73, 0x49, 0xae, 0x20,
                0x41, 0x31, 0x12, 0xe6, 0xfa, 0x4e, 0x89, 0xa9, 0x7e, 0xa2, 0x0a, 0x9e, 0xee, 0xe6,
                0x4b, 0x55, 0xd3, 0x9a,
            ],
        );
        assert_eq!(super::at_hash("abc"), want);
        assert_eq!(super::at_hash("abc").len(), 43);
    }
}
