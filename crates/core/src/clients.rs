//! OpenID Connect clients (relying parties) as `regions.toml` registers them
//! under `[clients.<id>]`: parsed with the topology and validated the same
//! way (file, key, reason), into [`Clients`]. A client's configuration holds
//! no personal data and is the same in every region (the edge and every node
//! read the one file).
//!
//! What is here: the registration (type, secret hash, redirect and
//! post-logout URIs, scopes, refresh-token policy, lifetimes, branding) and
//! the two checks that belong to it: whether a redirect URI is registered
//! (exactly, or under RFC 8252 §7.3's loopback rule: a registered
//! `http://127.0.0.1/…` or `http://[::1]/…` matches any port) and whether a
//! presented secret is the client's. What is not: authorization requests,
//! codes and tokens (`domicile-oidc`, `domicile-identity`).

use crate::topology::ConfigError;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The scopes a client may be allowed.
pub const KNOWN_SCOPES: &[&str] = &["openid", "email", "profile", "phone", "offline_access"];

/// The languages of the hosted pages.
pub const LOCALES: &[&str] = &["en", "de"];

// ---- As written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClient {
    /// The client's name, for operators (and the pages, unless branded).
    name: String,
    /// `public` (a browser or native app: no secret, PKCE required) or
    /// `confidential` (a server: authenticates with its secret).
    client_type: String,
    /// Hex SHA-256 of a confidential client's secret (the secret itself is
    /// never in the file; `domicile oidc-secret` makes a pair).
    #[serde(default)]
    secret_sha256: Option<String>,
    /// Where authorization responses may go, exactly as registered.
    redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser afterwards.
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    /// The scopes the client may ask for; `openid` is required.
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    /// `offline_access` (a refresh token only when that scope is granted)
    /// or `always`.
    #[serde(default = "default_refresh_policy")]
    refresh_tokens: String,
    /// Access token lifetime for this client (default: `tokens`').
    #[serde(default)]
    access_ttl_seconds: Option<u64>,
    /// How the hosted pages look for this client.
    #[serde(default)]
    branding: RawBranding,
    /// Whether sign-in for this client completes only once the user's
    /// email is verified (default: `accounts.require_verified_email`).
    #[serde(default)]
    require_verified_email: Option<bool>,
    /// `optional` (a second factor when the user has one, or the app asks
    /// with `acr_values`) or `required` (every sign-in for this client).
    #[serde(default = "default_mfa")]
    mfa: String,
}

fn default_mfa() -> String {
    "optional".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBranding {
    /// Shown on the pages (default: the client's name).
    #[serde(default)]
    display_name: Option<String>,
    /// An https (or loopback http) URL of the logo image.
    #[serde(default)]
    logo_url: Option<String>,
    /// `#rrggbb` of buttons and links.
    #[serde(default)]
    primary_color: Option<String>,
    /// `#rrggbb` of the page background.
    #[serde(default)]
    background_color: Option<String>,
    /// The app's terms of service.
    #[serde(default)]
    terms_url: Option<String>,
    /// The app's privacy policy.
    #[serde(default)]
    privacy_url: Option<String>,
    /// The pages' language when the request names none we have.
    #[serde(default)]
    default_locale: Option<String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

fn default_refresh_policy() -> String {
    "offline_access".into()
}

// ---- Validated ----

/// Every registered client, by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clients(BTreeMap<String, Client>);

impl Clients {
    pub fn get(&self, id: &str) -> Option<&Client> {
        self.0.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Client> {
        self.0.values()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub kind: ClientKind,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: BTreeSet<String>,
    pub refresh_tokens: RefreshPolicy,
    pub access_ttl_seconds: Option<i64>,
    pub branding: Branding,
    /// `None`: the federation's `accounts.require_verified_email`.
    pub require_verified_email: Option<bool>,
    pub mfa: MfaPolicy,
}

/// When sign-in for a client takes a second factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MfaPolicy {
    /// When the user has one (or the request asks for it).
    Optional,
    /// Always: a user without a second factor cannot sign in to the client
    /// until they add one.
    Required,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientKind {
    Public,
    /// Authenticates with a secret whose SHA-256 is this.
    Confidential {
        secret_sha256: [u8; 32],
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshPolicy {
    /// A refresh token only when `offline_access` is granted.
    OfflineAccess,
    Always,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Branding {
    pub display_name: String,
    pub logo_url: Option<String>,
    pub primary_color: String,
    pub background_color: String,
    pub terms_url: Option<String>,
    pub privacy_url: Option<String>,
    pub default_locale: String,
}

impl Branding {
    /// The looks of what belongs to no (known) client: the federation's
    /// name and the default colours.
    pub fn neutral(federation: &str) -> Self {
        Self {
            display_name: federation.to_owned(),
            logo_url: None,
            primary_color: "#1f4b99".into(),
            background_color: "#f6f7f9".into(),
            terms_url: None,
            privacy_url: None,
            default_locale: "en".into(),
        }
    }
}

impl Client {
    /// Whether `uri` is one of the client's redirect URIs: exactly, or a
    /// loopback IP literal registered without regard to its port (RFC 8252
    /// §7.3: a native app listens on an ephemeral port).
    pub fn redirect_uri_matches(&self, uri: &str) -> bool {
        registered(&self.redirect_uris, uri)
    }

    /// Whether `uri` is one of the client's post-logout redirect URIs (the
    /// same rule).
    pub fn post_logout_uri_matches(&self, uri: &str) -> bool {
        registered(&self.post_logout_redirect_uris, uri)
    }

    /// Whether `secret` is this confidential client's (constant time in
    /// the secret's digest). A public client has none.
    pub fn secret_matches(&self, secret: &str) -> bool {
        match &self.kind {
            ClientKind::Public => false,
            ClientKind::Confidential { secret_sha256 } => {
                let got: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
                got.iter()
                    .zip(secret_sha256)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
        }
    }

    pub fn is_public(&self) -> bool {
        self.kind == ClientKind::Public
    }
}

/// `uri` against registered URIs: equal, or both loopback-IP `http` URIs
/// equal but for the port.
fn registered(list: &[String], uri: &str) -> bool {
    list.iter().any(|r| {
        r == uri
            || matches!(
                (loopback_ip_http(r), loopback_ip_http(uri)),
                (Some(a), Some(b)) if a == b
            )
    })
}

/// An `http` URI on a loopback IP literal, without its port: (host, rest).
fn loopback_ip_http(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (host, port) = match authority.strip_prefix("[::1]") {
        Some(port) => ("[::1]", port),
        None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .and_then(|p| p.parse::<u16>().ok())
            .is_some_and(|p| p > 0);
    (matches!(host, "127.0.0.1" | "[::1]") && port_ok).then_some((host, path))
}

/// Why a registered redirect URI is refused, if it is.
fn redirect_uri_problem(uri: &str) -> Option<String> {
    if uri.contains('#') {
        return Some("must not have a fragment".into());
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain spaces or control characters".into());
    }
    if let Some(rest) = uri.strip_prefix("https://") {
        let host = rest.split(['/', '?', ':']).next().unwrap_or_default();
        return host
            .is_empty()
            .then(|| "an https URI needs a host".to_owned());
    }
    if uri.starts_with("http://") {
        return (loopback_ip_http(uri).is_none() && !uri.starts_with("http://localhost"))
            .then(|| {
                "plain http only on a loopback address (http://127.0.0.1/…, http://[::1]/…, http://localhost…); use https".to_owned()
            });
    }
    // A native app's private-use scheme (RFC 8252 §7.1): reverse domain
    // name, then `:/`.
    match uri.split_once(':') {
        Some((scheme, rest))
            if scheme.contains('.')
                && rest.starts_with('/')
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)) =>
        {
            None
        }
        _ => Some(
            "must be https, http on a loopback address, or a private-use scheme like com.example.app:/callback".into(),
        ),
    }
}

/// An absolute http(s) URL for branding (`https`, or `http` on loopback).
fn branding_url_problem(url: &str) -> Option<String> {
    let ok = url.starts_with("https://")
        || url.starts_with("http://127.0.0.1")
        || url.starts_with("http://localhost")
        || url.starts_with("http://[::1]");
    let clean = !url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"');
    (!(ok && clean && url.len() <= 2048))
        .then(|| "must be an https URL (or http on a loopback address)".into())
}

fn color_ok(c: &str) -> bool {
    c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn client_id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Validates every `[clients.<id>]`; `err(key, reason)` makes the error.
pub(crate) fn build(
    raw: BTreeMap<String, RawClient>,
    err: &dyn Fn(String, String) -> ConfigError,
) -> Result<Clients, ConfigError> {
    let mut clients = BTreeMap::new();
    for (id, r) in raw {
        let key = format!("clients.{id}");
        let e = |field: &str, reason: String| {
            err(
                if field.is_empty() {
                    key.clone()
                } else {
                    format!("{key}.{field}")
                },
                reason,
            )
        };
        if !client_id_ok(&id) {
            return Err(e(
                "",
                "a client id is 1 to 64 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        if r.name.trim().is_empty() {
            return Err(e("name", "must not be empty".into()));
        }
        let kind = match (r.client_type.as_str(), &r.secret_sha256) {
            ("public", None) => ClientKind::Public,
            ("public", Some(_)) => {
                return Err(e(
                    "secret_sha256",
                    "a public client has no secret (it proves itself with PKCE)".into(),
                ));
            }
            ("confidential", Some(hex)) => ClientKind::Confidential {
                secret_sha256: parse_sha256(hex).ok_or_else(|| {
                    e(
                        "secret_sha256",
                        "must be 64 hex digits (the SHA-256 of the secret)".into(),
                    )
                })?,
            },
            ("confidential", None) => {
                return Err(e(
                    "secret_sha256",
                    "a confidential client needs one (`domicile oidc-secret` makes a pair)".into(),
                ));
            }
            (other, _) => {
                return Err(e(
                    "client_type",
                    format!("must be \"public\" or \"confidential\", got {other:?}"),
                ));
            }
        };
        if r.redirect_uris.is_empty() {
            return Err(e("redirect_uris", "at least one is required".into()));
        }
        for (field, list) in [
            ("redirect_uris", &r.redirect_uris),
            ("post_logout_redirect_uris", &r.post_logout_redirect_uris),
        ] {
            let mut seen = BTreeSet::new();
            for (i, uri) in list.iter().enumerate() {
                if let Some(why) = redirect_uri_problem(uri) {
                    return Err(e(&format!("{field}[{i}]"), format!("{uri:?}: {why}")));
                }
                if !seen.insert(uri) {
                    return Err(e(
                        &format!("{field}[{i}]"),
                        format!("{uri:?} is listed twice"),
                    ));
                }
            }
        }
        let mut scopes = BTreeSet::new();
        for (i, s) in r.scopes.iter().enumerate() {
            if !KNOWN_SCOPES.contains(&s.as_str()) {
                return Err(e(
                    &format!("scopes[{i}]"),
                    format!("{s:?} is not one of {KNOWN_SCOPES:?}"),
                ));
            }
            scopes.insert(s.clone());
        }
        if !scopes.contains("openid") {
            return Err(e("scopes", "must include \"openid\"".into()));
        }
        let refresh_tokens = match r.refresh_tokens.as_str() {
            "offline_access" => RefreshPolicy::OfflineAccess,
            "always" => RefreshPolicy::Always,
            other => {
                return Err(e(
                    "refresh_tokens",
                    format!("must be \"offline_access\" or \"always\", got {other:?}"),
                ));
            }
        };
        let mfa = match r.mfa.as_str() {
            "optional" => MfaPolicy::Optional,
            "required" => MfaPolicy::Required,
            other => {
                return Err(e(
                    "mfa",
                    format!("must be \"optional\" or \"required\", got {other:?}"),
                ));
            }
        };
        let access_ttl_seconds = match r.access_ttl_seconds {
            None => None,
            Some(s @ 60..=86_400) => Some(s as i64),
            Some(s) => {
                return Err(e(
                    "access_ttl_seconds",
                    format!("must be 60 to 86400, got {s}"),
                ));
            }
        };
        let b = r.branding;
        for (field, url) in [
            ("logo_url", &b.logo_url),
            ("terms_url", &b.terms_url),
            ("privacy_url", &b.privacy_url),
        ] {
            if let Some(why) = url.as_deref().and_then(branding_url_problem) {
                return Err(e(&format!("branding.{field}"), why));
            }
        }
        let color = |field: &str, c: Option<String>, default: &str| {
            let c = c.unwrap_or_else(|| default.to_owned());
            if color_ok(&c) {
                Ok(c.to_ascii_lowercase())
            } else {
                Err(e(
                    &format!("branding.{field}"),
                    format!("must be #rrggbb, got {c:?}"),
                ))
            }
        };
        let default_locale = b.default_locale.unwrap_or_else(|| "en".into());
        if !LOCALES.contains(&default_locale.as_str()) {
            return Err(e(
                "branding.default_locale",
                format!("must be one of {LOCALES:?}, got {default_locale:?}"),
            ));
        }
        let display_name = b.display_name.unwrap_or_else(|| r.name.clone());
        if display_name.trim().is_empty() || display_name.chars().count() > 80 {
            return Err(e(
                "branding.display_name",
                "must be 1 to 80 characters".into(),
            ));
        }
        let branding = Branding {
            display_name,
            logo_url: b.logo_url,
            primary_color: color("primary_color", b.primary_color, "#1f4b99")?,
            background_color: color("background_color", b.background_color, "#f6f7f9")?,
            terms_url: b.terms_url,
            privacy_url: b.privacy_url,
            default_locale,
        };
        clients.insert(
            id.clone(),
            Client {
                id,
                name: r.name,
                kind,
                redirect_uris: r.redirect_uris,
                post_logout_redirect_uris: r.post_logout_redirect_uris,
                scopes,
                refresh_tokens,
                access_ttl_seconds,
                branding,
                require_verified_email: r.require_verified_email,
                mfa,
            },
        );
    }
    Ok(Clients(clients))
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The hex SHA-256 of a secret, as `secret_sha256` holds it.
pub fn secret_sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Topology;

    const BASE: &str = r#"
[federation]
name = "t"
issuer = "https://id.example.com"
default_region = "eu"

[index]
host_region = "eu"
secret_file = "k"
store = { backend = "embedded", path = "i" }

[regions.eu]
residency = "EU"
nodes = [{ address = "127.0.0.1:7101" }]
store = { backend = "embedded", path = "eu" }
"#;

    const PUBLIC: &str = r#"
[clients.app]
name = "App"
client_type = "public"
redirect_uris = ["https://app.example.com/cb", "http://127.0.0.1/callback", "com.example.app:/oauth2"]
"#;

    fn parse(clients: &str) -> Result<Topology, ConfigError> {
        Topology::parse(std::path::Path::new("r.toml"), &format!("{BASE}{clients}"))
    }

    #[test]
    fn a_public_client_with_defaults() {
        let t = parse(PUBLIC).unwrap();
        let c = t.clients.get("app").unwrap();
        assert!(c.is_public());
        assert_eq!(
            c.scopes.iter().map(String::as_str).collect::<Vec<_>>(),
            ["email", "openid", "profile"]
        );
        assert_eq!(c.refresh_tokens, RefreshPolicy::OfflineAccess);
        assert_eq!(c.mfa, MfaPolicy::Optional);
        assert_eq!(c.branding.display_name, "App");
        assert_eq!(c.branding.default_locale, "en");
        assert!(!c.secret_matches(""), "a public client has no secret");
        assert!(t.clients.get("other").is_none());
    }

    /// (requested URI, matches a registered one)
    #[test]
    fn redirect_uris_match_exactly_or_by_loopback_port() {
        let t = parse(&format!(
            "{PUBLIC}post_logout_redirect_uris = [\"https://app.example.com/bye\"]\n"
        ))
        .unwrap();
        let c = t.clients.get("app").unwrap();
        for (uri, ok) in [
            ("https://app.example.com/cb", true),
            ("https://app.example.com/cb/", false),
            ("https://app.example.com/cb?x=1", false),
            ("https://APP.example.com/cb", false),
            ("https://app.example.com.evil.test/cb", false),
            ("http://app.example.com/cb", false),
            ("http://127.0.0.1/callback", true),
            ("http://127.0.0.1:51234/callback", true),
            ("http://127.0.0.1:0/callback", false),
            ("http://127.0.0.1:99999/callback", false),
            ("http://127.0.0.1:5000/other", false),
            ("http://127.0.0.1.evil.test/callback", false),
            ("http://localhost:5000/callback", false),
            ("http://[::1]:5000/callback", false),
            ("com.example.app:/oauth2", true),
            ("com.example.app:/oauth2/x", false),
            ("", false),
        ] {
            assert_eq!(c.redirect_uri_matches(uri), ok, "{uri}");
        }
        assert!(c.post_logout_uri_matches("https://app.example.com/bye"));
        assert!(!c.post_logout_uri_matches("https://app.example.com/cb"));
    }

    #[test]
    fn a_confidential_client_proves_its_secret() {
        let hash = secret_sha256_hex("s3cret-s3cret-s3cret-s3cret-s3cret");
        let t = parse(&format!(
            "[clients.srv]\nname = \"Server\"\nclient_type = \"confidential\"\nsecret_sha256 = \"{hash}\"\nredirect_uris = [\"https://srv.example.com/cb\"]\nscopes = [\"openid\", \"offline_access\"]\nrefresh_tokens = \"always\"\nmfa = \"required\"\n"
        ))
        .unwrap();
        let c = t.clients.get("srv").unwrap();
        assert_eq!(c.mfa, MfaPolicy::Required);
        assert!(!c.is_public());
        assert!(c.secret_matches("s3cret-s3cret-s3cret-s3cret-s3cret"));
        assert!(!c.secret_matches("s3cret-s3cret-s3cret-s3cret-s3creT"));
        assert!(!c.secret_matches(""));
        assert_eq!(c.refresh_tokens, RefreshPolicy::Always);
    }

    /// (client table, key, reason): each refusal names the key.
    #[test]
    fn bad_registrations_name_the_key() {
        let h = "a".repeat(64);
        let cases: &[(&str, &str, &str)] = &[
            (
                "[clients.\"bad id!\"]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\"]",
                "clients.bad id!",
                "client id",
            ),
            (
                "[clients.a]\nname = \" \"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\"]",
                "clients.a.name",
                "empty",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"spa\"\nredirect_uris = [\"https://a.example/cb\"]",
                "clients.a.client_type",
                "public",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"confidential\"\nredirect_uris = [\"https://a.example/cb\"]",
                "clients.a.secret_sha256",
                "needs one",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"confidential\"\nsecret_sha256 = \"abc\"\nredirect_uris = [\"https://a.example/cb\"]",
                "clients.a.secret_sha256",
                "64 hex",
            ),
            (
                &format!(
                    "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nsecret_sha256 = \"{h}\"\nredirect_uris = [\"https://a.example/cb\"]"
                ),
                "clients.a.secret_sha256",
                "no secret",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = []",
                "clients.a.redirect_uris",
                "at least one",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"http://a.example/cb\"]",
                "clients.a.redirect_uris[0]",
                "loopback",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb#x\"]",
                "clients.a.redirect_uris[0]",
                "fragment",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"javascript:alert(1)\"]",
                "clients.a.redirect_uris[0]",
                "private-use",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\", \"https://a.example/cb\"]",
                "clients.a.redirect_uris[1]",
                "twice",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\"]\npost_logout_redirect_uris = [\"ftp://a.example/\"]",
                "clients.a.post_logout_redirect_uris[0]",
                "https",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\"]\nscopes = [\"email\"]",
                "clients.a.scopes",
                "openid",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\"]\nscopes = [\"openid\", \"admin\"]",
                "clients.a.scopes[1]",
                "not one of",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\"]\nrefresh_tokens = \"never\"",
                "clients.a.refresh_tokens",
                "offline_access",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\"]\nmfa = \"sometimes\"",
                "clients.a.mfa",
                "optional",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\"]\naccess_ttl_seconds = 5",
                "clients.a.access_ttl_seconds",
                "60 to 86400",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\"]\n[clients.a.branding]\nprimary_color = \"red\"",
                "clients.a.branding.primary_color",
                "#rrggbb",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\"]\n[clients.a.branding]\nlogo_url = \"javascript:x\"",
                "clients.a.branding.logo_url",
                "https",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\"]\n[clients.a.branding]\ndefault_locale = \"fr\"",
                "clients.a.branding.default_locale",
                "one of",
            ),
            (
                "[clients.a]\nname = \"x\"\nclient_type = \"public\"\nredirect_uris = [\"https://a.example/cb\"]\ncolour = 1",
                "clients.a.colour",
                "unknown field",
            ),
        ];
        for (table, key, reason) in cases {
            let e = parse(table).unwrap_err();
            assert_eq!(e.key, *key, "{table}: {e}");
            assert!(e.reason.contains(reason), "{table}: {e}");
        }
    }
}
