//! An authorization request (the authorization code flow), checked against
//! the registered clients, in the order that decides where an error may go:
//! while the client or its redirect URI is in doubt, errors are shown on a
//! page and never sent anywhere (an unregistered redirect URI is how open
//! redirectors and code theft start); after that, they go back to the
//! registered redirect URI with `state`.

use domicile_core::clients::{Client, Clients};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest `state`, `nonce` or `login_hint` accepted.
pub const MAX_PARAM: usize = 512;

/// What the app asked about an existing sign-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prompt {
    /// Sign in only if there is no session (or it is older than `max_age`).
    Default,
    /// Never show a page: answer `login_required` without a session.
    None,
    /// Ask for the password again even with a session.
    Login,
}

/// A checked authorization request. It holds no personal data (the
/// `login_hint` an app may send is returned beside it, see [`Checked`]), so
/// it can travel sealed between pages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// Granted scopes: those asked for that the client may have, sorted;
    /// always with `openid`.
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// The S256 PKCE challenge (required of public clients).
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    /// Seconds since the last password a session may be to be used.
    pub max_age: Option<i64>,
    /// The languages asked for, in order (`ui_locales`).
    pub ui_locales: Vec<String>,
    /// The authentication context classes asked for (`acr_values`), in
    /// order; one asking for two factors makes the sign-in take a second.
    #[serde(default)]
    pub acr_values: Vec<String>,
}

impl AuthorizationRequest {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the app asked for a sign-in with two factors (`acr_values`).
    pub fn asks_two_factors(&self) -> bool {
        self.acr_values
            .iter()
            .any(|a| domicile_core::mfa::asks_two_factors(a))
    }

    /// The granted scopes as a space-separated string.
    pub fn scope(&self) -> String {
        self.scopes.join(" ")
    }
}

/// A checked request and the app's `login_hint` (an email, to prefill the
/// sign-in page; personal data, so never sealed or logged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub request: AuthorizationRequest,
    pub login_hint: Option<String>,
}

/// Why a request is refused on a page (nothing is sent to the app).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("the request names no client (client_id)")]
    MissingClient,
    #[error("no application is registered as {0:?}")]
    UnknownClient(String),
    #[error("the request names no redirect_uri")]
    MissingRedirectUri,
    #[error("{0:?} is not a redirect URI registered for this application")]
    UnregisteredRedirectUri(String),
    #[error("{0} is given more than once")]
    Repeated(&'static str),
}

/// An error that goes back to the app's registered redirect URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorRedirect {
    pub redirect_uri: String,
    pub state: Option<String>,
    /// An OAuth 2.0 / OpenID Connect error code.
    pub error: &'static str,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Page(PageError),
    Redirect(ErrorRedirect),
}

/// Every parameter of the flow this provider reads (repeats are refused).
const PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "ui_locales",
    "acr_values",
    "request",
    "request_uri",
];

/// Checks the query parameters of an authorization request.
pub fn check(params: &[(String, String)], clients: &Clients) -> Result<Checked, Refusal> {
    let mut map: BTreeMap<&str, &str> = BTreeMap::new();
    let mut repeated = None;
    for (k, v) in params {
        if let Some(known) = PARAMS.iter().find(|p| **p == k.as_str())
            && map.insert(known, v.as_str()).is_some()
        {
            repeated.get_or_insert(*known);
        }
    }
    let get = |k: &str| map.get(k).copied().filter(|v| !v.is_empty());
    let page = |e| Err(Refusal::Page(e));
    // The client and the redirect URI first: until both are known good,
    // nothing may be sent anywhere.
    for p in ["client_id", "redirect_uri"] {
        if repeated == Some(p) {
            return page(PageError::Repeated(p));
        }
    }
    let Some(client_id) = get("client_id") else {
        return page(PageError::MissingClient);
    };
    let Some(client) = clients.get(client_id) else {
        return page(PageError::UnknownClient(client_id.to_owned()));
    };
    let Some(redirect_uri) = get("redirect_uri") else {
        return page(PageError::MissingRedirectUri);
    };
    if !client.redirect_uri_matches(redirect_uri) {
        return page(PageError::UnregisteredRedirectUri(redirect_uri.to_owned()));
    }
    let state = get("state").map(str::to_owned);
    let fail = |error: &'static str, description: String| {
        Err(Refusal::Redirect(ErrorRedirect {
            redirect_uri: redirect_uri.to_owned(),
            state: state.clone().filter(|s| printable(s, MAX_PARAM)),
            error,
            description,
        }))
    };
    if let Some(p) = repeated {
        return fail("invalid_request", format!("{p} is given more than once"));
    }
    if let Some(s) = &state
        && !printable(s, MAX_PARAM)
    {
        return fail(
            "invalid_request",
            format!("state must be at most {MAX_PARAM} printable characters"),
        );
    }
    if get("request").is_some() {
        return fail(
            "request_not_supported",
            "request objects are not supported".into(),
        );
    }
    if get("request_uri").is_some() {
        return fail(
            "request_uri_not_supported",
            "request_uri is not supported".into(),
        );
    }
    match get("response_type") {
        Some("code") => {}
        None => return fail("invalid_request", "response_type is required".into()),
        Some(other) => {
            return fail(
                "unsupported_response_type",
                format!("response_type {other:?} is not supported; use \"code\""),
            );
        }
    }
    if let Some(mode) = get("response_mode")
        && mode != "query"
    {
        return fail(
            "invalid_request",
            format!("response_mode {mode:?} is not supported; use \"query\""),
        );
    }
    let scopes = match granted_scopes(get("scope"), client) {
        Ok(s) => s,
        Err(why) => return fail("invalid_scope", why),
    };
    let nonce = get("nonce").map(str::to_owned);
    if let Some(n) = &nonce
        && !printable(n, MAX_PARAM)
    {
        return fail(
            "invalid_request",
            format!("nonce must be at most {MAX_PARAM} printable characters"),
        );
    }
    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, None) if client.is_public() => {
            return fail(
                "invalid_request",
                "a public client must use PKCE (code_challenge with code_challenge_method S256)"
                    .into(),
            );
        }
        (None, None) => None,
        (Some(c), Some("S256")) if crate::pkce::challenge_is_well_formed(c) => Some(c.to_owned()),
        (Some(_), Some("S256")) => {
            return fail(
                "invalid_request",
                "code_challenge must be 43 base64url characters (S256)".into(),
            );
        }
        (Some(_), None | Some("plain")) => {
            return fail(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)".into(),
            );
        }
        _ => {
            return fail(
                "invalid_request",
                "code_challenge and code_challenge_method S256 go together".into(),
            );
        }
    };
    let prompt = match prompt(get("prompt")) {
        Ok(p) => p,
        Err(why) => return fail("invalid_request", why),
    };
    let max_age = match get("max_age").map(str::parse::<i64>) {
        None => None,
        Some(Ok(s)) if s >= 0 => Some(s),
        Some(_) => {
            return fail(
                "invalid_request",
                "max_age must be a number of seconds".into(),
            );
        }
    };
    let login_hint = get("login_hint")
        .filter(|h| printable(h, MAX_PARAM))
        .map(str::to_owned);
    let ui_locales = ui_locales(get("ui_locales"));
    let acr_values = acr_values(get("acr_values"));
    Ok(Checked {
        request: AuthorizationRequest {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            scopes,
            state,
            nonce,
            code_challenge,
            prompt,
            max_age,
            ui_locales,
            acr_values,
        },
        login_hint,
    })
}

/// The scopes asked for that the client may have, sorted; `openid` must
/// be asked for. Scopes the client may not have are left out (OpenID
/// Connect Core §3.1.2.1: unknown scope values are ignored).
fn granted_scopes(scope: Option<&str>, client: &Client) -> Result<Vec<String>, String> {
    let asked: Vec<&str> = scope.unwrap_or_default().split(' ').collect();
    if !asked.contains(&"openid") {
        return Err("scope must include openid".into());
    }
    let mut granted: Vec<String> = asked
        .into_iter()
        .filter(|s| client.scopes.contains(*s))
        .map(str::to_owned)
        .collect();
    granted.sort();
    granted.dedup();
    Ok(granted)
}

/// `prompt`: `none` alone, `login`, or `consent` / `select_account` (both
/// accepted and treated as the default: sign-in is first-party, with one
/// account per browser session).
fn prompt(p: Option<&str>) -> Result<Prompt, String> {
    let values: Vec<&str> = p
        .unwrap_or_default()
        .split(' ')
        .filter(|v| !v.is_empty())
        .collect();
    if values.contains(&"none") {
        return if values.len() == 1 {
            Ok(Prompt::None)
        } else {
            Err("prompt=none cannot be combined with other values".into())
        };
    }
    let mut out = Prompt::Default;
    for v in values {
        match v {
            "login" => out = Prompt::Login,
            "consent" | "select_account" => {}
            other => return Err(format!("prompt {other:?} is not supported")),
        }
    }
    Ok(out)
}

/// Printable ASCII (no controls), at most `max` bytes.
/// The language tags of a `ui_locales` parameter, in order (at most ten;
/// tags that are not printable or too long are left out).
pub(crate) fn ui_locales(param: Option<&str>) -> Vec<String> {
    param
        .map(|l| {
            l.split(' ')
                .filter(|t| !t.is_empty() && printable(t, 35))
                .take(10)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The values of an `acr_values` parameter, in order (at most five; values
/// that are not printable or too long are left out: the parameter is a
/// wish, OpenID Connect Core §3.1.2.1).
fn acr_values(param: Option<&str>) -> Vec<String> {
    param
        .map(|l| {
            l.split(' ')
                .filter(|t| !t.is_empty() && printable(t, 200))
                .take(5)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn printable(s: &str, max: usize) -> bool {
    s.len() <= max && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients() -> Clients {
        crate::test_clients(
            r#"
[clients.app]
name = "App"
client_type = "public"
redirect_uris = ["https://app.example.com/cb", "http://127.0.0.1/cb"]
scopes = ["openid", "email", "offline_access"]
[clients.srv]
name = "Server"
client_type = "confidential"
secret_sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
redirect_uris = ["https://srv.example.com/cb"]
"#,
        )
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn good() -> Vec<(String, String)> {
        [
            ("client_id", "app"),
            ("redirect_uri", "https://app.example.com/cb"),
            ("response_type", "code"),
            ("scope", "openid email profile"),
            ("state", "xyz"),
            ("nonce", "n-0S6_WzA2Mj"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("login_hint", "ada@example.org"),
            ("ui_locales", "de en"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    /// `good()` with `key` set to `value` ("" removes it; a repeated key
    /// adds it again).
    fn with(changes: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p = good();
        for (k, v) in changes {
            if let Some(k) = k.strip_prefix('+') {
                p.push((k.to_owned(), (*v).to_owned()));
                continue;
            }
            p.retain(|(key, _)| key != k);
            if !v.is_empty() {
                p.push(((*k).to_owned(), (*v).to_owned()));
            }
        }
        p
    }

    #[test]
    fn a_good_request_is_checked() {
        let c = check(&good(), &clients()).unwrap();
        let r = &c.request;
        assert_eq!(r.scopes, ["email", "openid"], "profile is not the client's");
        assert_eq!(r.state.as_deref(), Some("xyz"));
        assert_eq!(r.code_challenge.as_deref(), Some(CHALLENGE));
        assert_eq!(r.prompt, Prompt::Default);
        assert_eq!(r.ui_locales, ["de", "en"]);
        assert!(r.acr_values.is_empty() && !r.asks_two_factors());
        assert_eq!(c.login_hint.as_deref(), Some("ada@example.org"));
        let mfa = check(
            &with(&[("acr_values", "urn:domicile:loa:2 other")]),
            &clients(),
        )
        .unwrap();
        assert!(mfa.request.asks_two_factors());
        assert_eq!(mfa.request.acr_values, ["urn:domicile:loa:2", "other"]);
        // A native app's loopback redirect on any port.
        let native = with(&[("redirect_uri", "http://127.0.0.1:49152/cb")]);
        assert!(check(&native, &clients()).is_ok());
    }

    /// Refusals shown on a page: the app is never redirected to.
    #[test]
    fn client_and_redirect_errors_stay_on_the_page() {
        for (changes, want) in [
            (vec![("client_id", "")], PageError::MissingClient),
            (
                vec![("client_id", "nobody")],
                PageError::UnknownClient("nobody".into()),
            ),
            (vec![("redirect_uri", "")], PageError::MissingRedirectUri),
            (
                vec![("redirect_uri", "https://evil.example/cb")],
                PageError::UnregisteredRedirectUri("https://evil.example/cb".into()),
            ),
            (
                vec![("redirect_uri", "https://app.example.com/cb/../evil")],
                PageError::UnregisteredRedirectUri("https://app.example.com/cb/../evil".into()),
            ),
            (
                vec![("+redirect_uri", "https://evil.example/cb")],
                PageError::Repeated("redirect_uri"),
            ),
            (
                vec![("+client_id", "srv")],
                PageError::Repeated("client_id"),
            ),
        ] {
            assert_eq!(
                check(&with(&changes), &clients()),
                Err(Refusal::Page(want.clone())),
                "{changes:?}"
            );
        }
    }

    /// Refusals sent back to the registered redirect URI with `state`.
    #[test]
    fn other_errors_go_back_to_the_app() {
        for (changes, error, says) in [
            (
                vec![("response_type", "")],
                "invalid_request",
                "response_type",
            ),
            (
                vec![("response_type", "token")],
                "unsupported_response_type",
                "code",
            ),
            (
                vec![("response_type", "code id_token")],
                "unsupported_response_type",
                "code",
            ),
            (
                vec![("response_mode", "fragment")],
                "invalid_request",
                "query",
            ),
            (vec![("scope", "email")], "invalid_scope", "openid"),
            (vec![("scope", "")], "invalid_scope", "openid"),
            (
                vec![("code_challenge", ""), ("code_challenge_method", "")],
                "invalid_request",
                "PKCE",
            ),
            (
                vec![("code_challenge_method", "plain")],
                "invalid_request",
                "S256",
            ),
            (
                vec![("code_challenge_method", "")],
                "invalid_request",
                "S256",
            ),
            (vec![("code_challenge", "short")], "invalid_request", "43"),
            (vec![("code_challenge", "")], "invalid_request", "together"),
            (
                vec![("prompt", "none login")],
                "invalid_request",
                "combined",
            ),
            (vec![("prompt", "sideways")], "invalid_request", "sideways"),
            (vec![("max_age", "-1")], "invalid_request", "max_age"),
            (vec![("max_age", "soon")], "invalid_request", "max_age"),
            (
                vec![("nonce", &"n".repeat(513))],
                "invalid_request",
                "nonce",
            ),
            (
                vec![("request", "eyJ...")],
                "request_not_supported",
                "request",
            ),
            (
                vec![("request_uri", "https://x")],
                "request_uri_not_supported",
                "request_uri",
            ),
            (
                vec![("+scope", "openid")],
                "invalid_request",
                "more than once",
            ),
        ] {
            match check(&with(&changes), &clients()) {
                Err(Refusal::Redirect(r)) => {
                    assert_eq!(r.error, error, "{changes:?}");
                    assert!(
                        r.description.contains(says),
                        "{changes:?}: {}",
                        r.description
                    );
                    assert_eq!(r.redirect_uri, "https://app.example.com/cb");
                    assert_eq!(r.state.as_deref(), Some("xyz"), "state is carried back");
                }
                other => panic!("{changes:?}: {other:?}"),
            }
        }
        // A state that cannot be carried back is refused without it.
        match check(&with(&[("state", "a\u{7f}b")]), &clients()) {
            Err(Refusal::Redirect(r)) => assert_eq!((r.error, r.state), ("invalid_request", None)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prompts_and_confidential_clients() {
        let c = clients();
        for (p, want) in [
            ("none", Prompt::None),
            ("login", Prompt::Login),
            ("consent", Prompt::Default),
            ("login consent", Prompt::Login),
        ] {
            assert_eq!(
                check(&with(&[("prompt", p)]), &c).unwrap().request.prompt,
                want,
                "{p}"
            );
        }
        // A confidential client may skip PKCE.
        let srv = with(&[
            ("client_id", "srv"),
            ("redirect_uri", "https://srv.example.com/cb"),
            ("code_challenge", ""),
            ("code_challenge_method", ""),
        ]);
        let r = check(&srv, &c).unwrap().request;
        assert_eq!(r.code_challenge, None);
        assert_eq!(r.scopes, ["email", "openid", "profile"]);
    }
}
