//! The hosted sign-in page's "Sign in with a passkey": `POST
//! /passkey/options` (the page's script asks for a discoverable ceremony;
//! any region answers, JSON) and `POST /passkey` (the browser's answer with
//! the ceremony's sealed state, routed by the edge to the home region by
//! the user handle's tag), which ends like a password sign-in: the app's
//! code with a browser session. Both are forms of the sign-in page: the
//! sealed request and the double-submit CSRF token are checked first.
//!
//! It does not check passkeys (`domicile_identity::passkey_sign_in` does).

use super::{Journey, OidcState, json, pages::Texts};
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use domicile_identity::{IdentityError, Unauthenticated, passkey_sign_in::PasskeyAssertion};
use std::sync::Arc;

/// POST /passkey/options: a discoverable ceremony for the sign-in page,
/// `{"options": …, "state": …}`; a refused form is `{"error": …}`.
pub(super) async fn options(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(page) = s.checked_form(&headers, &body) {
        let status = page.status();
        return json(
            status,
            serde_json::json!({ "error": "this sign-in page has expired; reload it" }),
        );
    }
    match s.identity.start_passkey_sign_in() {
        Ok(c) => json(
            StatusCode::OK,
            serde_json::json!({
                "options": c.options,
                "state": c.state,
                "expires_in": c.expires_in,
            }),
        ),
        Err(e) => {
            tracing::error!(error = %e, "a passkey ceremony failed to start");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({ "error": "internal error" }),
            )
        }
    }
}

/// POST /passkey: the browser's answer; the app's code, or the sign-in
/// page again saying the passkey was not accepted.
pub(super) async fn sign_in(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, req, client) = match s.checked_form(&headers, &body) {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let again = |status, error: fn(&Texts) -> &'static str| {
        s.form_page(
            Journey::SignIn,
            status,
            &req,
            client,
            &headers,
            "",
            Some(error),
            Some(field("csrf")),
        )
    };
    let Ok(mut answer) = PasskeyAssertion::new(field("state"), field("credential")) else {
        return again(StatusCode::BAD_REQUEST, |t| t.passkey_sign_in_refused);
    };
    let (context, device_cookie) = s.sign_in_context(&headers, true);
    answer.context = context;
    let outcome = s.identity.sign_in_with_passkey_for(answer, &req).await;
    let mut response = match outcome {
        Err(IdentityError::Unauthenticated(Unauthenticated::PasskeyRefused)) => {
            again(StatusCode::UNAUTHORIZED, |t| t.passkey_sign_in_refused)
        }
        // The page that would send a code needs the address it goes to,
        // which this form does not carry: the user signs in once another
        // way (rare: a passkey is added by a signed-in user).
        Err(IdentityError::VerificationRequired { .. }) => {
            again(StatusCode::FORBIDDEN, |t| t.passkey_verify_first)
        }
        outcome => s.form_outcome(outcome, &req, |t| t.passkey_sign_in_refused, again),
    };
    if let Some(set) = device_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(header::SET_COOKIE, set);
    }
    response
}
