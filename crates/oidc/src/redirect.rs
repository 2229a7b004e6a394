//! Responses that send the browser back to the app: the code (with `state`
//! and, per RFC 9207, `iss`), or an error. Parameters are added to the
//! registered redirect URI's own query, encoded; a URI that does not parse
//! (registration refuses those) yields `None`, never a made-up address.

use crate::authorize::ErrorRedirect;
use url::Url;

fn with_params(base: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut url = Url::parse(base).ok()?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    Some(url.into())
}

/// `redirect_uri?code=…&state=…&iss=…`.
pub fn code(redirect_uri: &str, code: &str, state: Option<&str>, issuer: &str) -> Option<String> {
    let mut p = vec![("code", code)];
    if let Some(s) = state {
        p.push(("state", s));
    }
    p.push(("iss", issuer));
    with_params(redirect_uri, &p)
}

/// `redirect_uri?error=…&error_description=…&state=…&iss=…`.
pub fn error(e: &ErrorRedirect, issuer: &str) -> Option<String> {
    let mut p = vec![
        ("error", e.error),
        ("error_description", e.description.as_str()),
    ];
    if let Some(s) = &e.state {
        p.push(("state", s));
    }
    p.push(("iss", issuer));
    with_params(&e.redirect_uri, &p)
}

/// A post-logout redirect with the app's `state`.
pub fn after_logout(uri: &str, state: Option<&str>) -> Option<String> {
    match state {
        Some(s) => with_params(uri, &[("state", s)]),
        None => Url::parse(uri).ok().map(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_appended_and_encoded() {
        let iss = "https://id.example.com";
        for (base, state, want) in [
            (
                "https://app.example.com/cb",
                Some("a b&c"),
                "https://app.example.com/cb?code=C&state=a+b%26c&iss=https%3A%2F%2Fid.example.com",
            ),
            (
                "https://app.example.com/cb?tenant=1",
                None,
                "https://app.example.com/cb?tenant=1&code=C&iss=https%3A%2F%2Fid.example.com",
            ),
            (
                "com.example.app:/oauth2",
                Some("s"),
                "com.example.app:/oauth2?code=C&state=s&iss=https%3A%2F%2Fid.example.com",
            ),
        ] {
            assert_eq!(code(base, "C", state, iss).as_deref(), Some(want), "{base}");
        }
        let e = ErrorRedirect {
            redirect_uri: "https://app.example.com/cb".into(),
            state: Some("xyz".into()),
            error: "login_required",
            description: "sign in first".into(),
        };
        assert_eq!(
            error(&e, iss).as_deref(),
            Some(
                "https://app.example.com/cb?error=login_required&error_description=sign+in+first&state=xyz&iss=https%3A%2F%2Fid.example.com"
            )
        );
        assert_eq!(code("not a url", "C", None, iss), None);
        assert_eq!(
            after_logout("https://app.example.com/bye", Some("s")).as_deref(),
            Some("https://app.example.com/bye?state=s")
        );
    }
}
