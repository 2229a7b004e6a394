//! An RP-initiated logout request (OpenID Connect RP-Initiated Logout
//! 1.0), checked against the registered clients: where the browser may be
//! sent afterwards is decided here, and only a `post_logout_redirect_uri`
//! registered for the request's client qualifies (anything else is how an
//! open redirector starts, so it is refused on a page, never followed).
//!
//! The `id_token_hint` is verified by the caller (it needs the keys); its
//! audience is passed in and must agree with `client_id` when both are
//! given.

use crate::authorize::{MAX_PARAM, printable, ui_locales};
use domicile_core::clients::Clients;
use std::collections::BTreeMap;

/// A checked logout request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutRequest {
    /// The client: `client_id`, or the hint's audience.
    pub client_id: Option<String>,
    /// A registered post-logout URI of that client.
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub ui_locales: Vec<String>,
}

/// Why a logout request is refused (on a page; nothing is redirected).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogoutError {
    #[error("{0} is given more than once")]
    Repeated(&'static str),
    #[error("no application is registered as {0:?}")]
    UnknownClient(String),
    #[error("client_id does not match the id_token_hint's audience")]
    ClientMismatch,
    #[error("post_logout_redirect_uri needs client_id or id_token_hint to name its application")]
    RedirectWithoutClient,
    #[error("{0:?} is not a registered post_logout_redirect_uri of this application")]
    UnregisteredRedirect(String),
    #[error("state must be at most {MAX_PARAM} printable characters")]
    BadState,
}

/// The parameters this endpoint reads (repeats are refused).
const PARAMS: &[&str] = &[
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
    "logout_hint",
];

/// Checks a logout request's parameters; `hinted_client` is the verified
/// `id_token_hint`'s audience, when there is one.
pub fn check(
    params: &[(String, String)],
    clients: &Clients,
    hinted_client: Option<&str>,
) -> Result<LogoutRequest, LogoutError> {
    let mut map: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in params {
        if let Some(known) = PARAMS.iter().find(|p| **p == k.as_str())
            && map.insert(known, v.as_str()).is_some()
        {
            return Err(LogoutError::Repeated(known));
        }
    }
    let get = |k: &str| map.get(k).copied().filter(|v| !v.is_empty());
    let client_id = match (get("client_id"), hinted_client) {
        (Some(c), Some(h)) if c != h => return Err(LogoutError::ClientMismatch),
        (Some(c), _) => Some(c),
        (None, h) => h,
    };
    let client = match client_id {
        Some(id) => Some(
            clients
                .get(id)
                .ok_or_else(|| LogoutError::UnknownClient(id.to_owned()))?,
        ),
        None => None,
    };
    let post_logout_redirect_uri = match (get("post_logout_redirect_uri"), client) {
        (None, _) => None,
        (Some(_), None) => return Err(LogoutError::RedirectWithoutClient),
        (Some(uri), Some(c)) if c.post_logout_uri_matches(uri) => Some(uri.to_owned()),
        (Some(uri), Some(_)) => return Err(LogoutError::UnregisteredRedirect(uri.to_owned())),
    };
    let state = get("state").map(str::to_owned);
    if state.as_deref().is_some_and(|s| !printable(s, MAX_PARAM)) {
        return Err(LogoutError::BadState);
    }
    Ok(LogoutRequest {
        client_id: client.map(|c| c.id.clone()),
        post_logout_redirect_uri,
        state,
        ui_locales: ui_locales(get("ui_locales")),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn clients() -> Clients {
        crate::test_clients(
            r#"
[clients.app]
name = "App"
client_type = "public"
redirect_uris = ["https://app.example/cb"]
post_logout_redirect_uris = ["https://app.example/bye"]
[clients.other]
name = "Other"
client_type = "public"
redirect_uris = ["https://other.example/cb"]
"#,
        )
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_a_registered_uri_of_the_named_client_is_followed() {
        let ok = check(
            &pairs(&[
                ("client_id", "app"),
                ("post_logout_redirect_uri", "https://app.example/bye"),
                ("state", "s1"),
                ("ui_locales", "de en"),
            ]),
            &clients(),
            None,
        )
        .unwrap();
        assert_eq!(
            ok,
            LogoutRequest {
                client_id: Some("app".into()),
                post_logout_redirect_uri: Some("https://app.example/bye".into()),
                state: Some("s1".into()),
                ui_locales: vec!["de".into(), "en".into()],
            }
        );
        let by_hint = check(
            &pairs(&[("post_logout_redirect_uri", "https://app.example/bye")]),
            &clients(),
            Some("app"),
        )
        .unwrap();
        assert_eq!(by_hint.client_id.as_deref(), Some("app"));
        let bare = check(&[], &clients(), None).unwrap();
        assert_eq!(
            (bare.client_id, bare.post_logout_redirect_uri),
            (None, None)
        );
    }

    #[test]
    fn open_redirect_attempts_and_bad_requests_are_refused() {
        let bye = "https://app.example/bye";
        for (params, hint, want) in [
            (
                vec![("post_logout_redirect_uri", "https://evil.example/")],
                None,
                LogoutError::RedirectWithoutClient,
            ),
            (
                vec![
                    ("client_id", "app"),
                    ("post_logout_redirect_uri", "https://evil.example/"),
                ],
                None,
                LogoutError::UnregisteredRedirect("https://evil.example/".into()),
            ),
            (
                vec![
                    ("client_id", "app"),
                    ("post_logout_redirect_uri", "https://app.example/bye/../x"),
                ],
                None,
                LogoutError::UnregisteredRedirect("https://app.example/bye/../x".into()),
            ),
            (
                // Another client's URI is not this one's.
                vec![("client_id", "other"), ("post_logout_redirect_uri", bye)],
                None,
                LogoutError::UnregisteredRedirect(bye.into()),
            ),
            (
                vec![("client_id", "other"), ("post_logout_redirect_uri", bye)],
                Some("app"),
                LogoutError::ClientMismatch,
            ),
            (
                vec![("client_id", "nobody")],
                None,
                LogoutError::UnknownClient("nobody".into()),
            ),
            (
                vec![
                    ("client_id", "app"),
                    ("post_logout_redirect_uri", bye),
                    ("post_logout_redirect_uri", "https://evil.example/"),
                ],
                None,
                LogoutError::Repeated("post_logout_redirect_uri"),
            ),
            (
                vec![("client_id", "app"), ("state", "a\nb")],
                None,
                LogoutError::BadState,
            ),
        ] {
            assert_eq!(
                check(&pairs(&params), &clients(), hint),
                Err(want.clone()),
                "{want}"
            );
        }
    }
}
