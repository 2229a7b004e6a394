//! The hosted second step of a sign-in: the page asking for a code from
//! the authenticator app or a recovery code (one field takes either), and
//! `POST /mfa`, which finishes the pending sign-in with it through the
//! same use case as the API's `CompleteSignIn`. The pending sign-in's
//! token travels in the form (the edge routes by its region tag); the
//! request it answers is the one kept with it in the home region, not the
//! form's (the form's sealed request only brands the page and carries the
//! CSRF check).

use super::{
    Journey, OidcState, cookie,
    pages::{self, SecondFactor, Texts},
};
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::Response,
};
use domicile_core::clients::Client;
use domicile_identity::{
    IdentityError,
    second_factor::{Concluded, Factor, FactorRefused, Surface},
};
use domicile_oidc::authorize::AuthorizationRequest;
use std::sync::Arc;

/// What the second-step page shows of its pending sign-in: the token, and
/// whether the code was emailed (a sign-in check) or which passkey options
/// its script passes to the browser.
pub(super) struct Waiting<'a> {
    pub token: &'a str,
    pub by_email: bool,
    pub has_app: bool,
    pub passkey_options: Option<&'a str>,
}

impl<'a> Waiting<'a> {
    pub(super) fn of(c: &'a domicile_identity::second_factor::Challenge) -> Self {
        Self {
            token: &c.token,
            by_email: c.by_email(),
            has_app: c.methods.contains(&"totp"),
            passkey_options: c.passkey_options.as_deref(),
        }
    }
}

impl OidcState {
    /// The page asking for the second factor of the pending sign-in
    /// `waiting`, for `req`.
    pub(super) fn second_factor_page(
        &self,
        status: StatusCode,
        req: &AuthorizationRequest,
        client: &Client,
        headers: &HeaderMap,
        waiting: &Waiting<'_>,
        error: Option<fn(&Texts) -> &'static str>,
    ) -> Response {
        let brand = &client.branding;
        let t = self.texts(&req.ui_locales, headers, brand);
        let nonce = self.random_text();
        let csrf =
            cookie(headers, self.csrf_cookie()).map_or_else(|| self.random_text(), str::to_owned);
        let sealed = self.sealer.seal(req, self.now());
        let html = askama::Template::render(&SecondFactor {
            t,
            brand,
            nonce: &nonce,
            sealed: &sealed,
            csrf: &csrf,
            token: waiting.token,
            error: error.map(|e| e(t)),
            by_email: waiting.by_email,
            has_app: waiting.has_app,
            passkey_options: waiting.passkey_options,
        });
        pages::respond(
            status,
            html,
            &nonce,
            super::origin(&req.redirect_uri).as_deref(),
            &[self.csrf_set_cookie(&csrf)],
        )
    }

    /// The answer of a sign-in that waits for a second factor, or cannot
    /// finish without one; `None` for any other outcome.
    pub(super) fn second_factor_step<T>(
        &self,
        outcome: &Result<T, IdentityError>,
        req: &AuthorizationRequest,
        client: &Client,
        headers: &HeaderMap,
    ) -> Option<Response> {
        match outcome {
            Err(IdentityError::SecondFactorRequired(c)) => Some(self.second_factor_page(
                StatusCode::OK,
                req,
                client,
                headers,
                &Waiting::of(c),
                None,
            )),
            Err(IdentityError::SecondFactorUnavailable(browser)) => {
                let brand = &client.branding;
                let t = self.texts(&req.ui_locales, headers, brand);
                let nonce = self.random_text();
                let sealed = self.sealer.seal(req, self.now());
                let html = askama::Template::render(&pages::SetupRequired {
                    t,
                    brand,
                    nonce: &nonce,
                    sealed: &sealed,
                });
                let cookies: Vec<String> = browser
                    .iter()
                    .map(|b| self.set_cookie(self.browser_cookie(), &b.value, b.max_age))
                    .collect();
                Some(pages::respond(
                    StatusCode::FORBIDDEN,
                    html,
                    &nonce,
                    None,
                    &cookies,
                ))
            }
            _ => None,
        }
    }
}

/// The factor one field holds: six digits are the app's code, anything
/// else a recovery code.
fn factor(typed: &str) -> Result<Factor, IdentityError> {
    let digits: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
        Factor::new(typed, "")
    } else {
        Factor::new("", typed)
    }
}

/// POST /mfa: the second factor of a pending sign-in.
pub(super) async fn second_factor(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, req, client) = match s.checked_form(&headers, &body) {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let token = field("mfa_token");
    let again = |status, error: fn(&Texts) -> &'static str| {
        // Only which texts the page shows: the pending sign-in decides what
        // its code is checked against.
        let waiting = Waiting {
            token,
            by_email: field("by_email") == "1",
            has_app: field("has_app") == "1",
            passkey_options: Some(field("passkey_options")).filter(|o| !o.is_empty()),
        };
        s.second_factor_page(status, &req, client, &headers, &waiting, Some(error))
    };
    let typed = match field("passkey") {
        "" => factor(field("code")),
        answer => Factor::passkey(answer, "passkey"),
    };
    let factor = match typed {
        Ok(f) => f,
        Err(_) => return again(StatusCode::BAD_REQUEST, |t| t.mfa_wrong),
    };
    match s
        .identity
        .complete_sign_in(token, &factor, Surface::HostedPages)
        .await
    {
        Ok(Concluded::Code(signed_in, kept)) => s.signed_in_redirect(&kept, &signed_in),
        Ok(Concluded::Session(_)) => {
            s.error_page(StatusCode::BAD_REQUEST, Some(client), &headers, |t| {
                t.forged.into()
            })
        }
        Err(IdentityError::SecondFactorRefused(FactorRefused::Wrong { .. })) => {
            again(StatusCode::UNAUTHORIZED, |t| t.mfa_wrong)
        }
        Err(IdentityError::SecondFactorRefused(FactorRefused::Expired)) => s.form_page(
            Journey::SignIn,
            StatusCode::UNAUTHORIZED,
            &req,
            client,
            &headers,
            "",
            Some(|t| t.mfa_expired),
            Some(field("csrf")),
        ),
        Err(IdentityError::Invalid { .. }) => again(StatusCode::BAD_REQUEST, |t| t.mfa_wrong),
        Err(IdentityError::Throttled { retry_after }) => {
            let mut r = again(StatusCode::TOO_MANY_REQUESTS, |t| t.throttled);
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            r
        }
        Err(IdentityError::WrongRegion { home }) => {
            tracing::warn!(%home, "a second factor reached a region that does not home its sign-in");
            let mut r = again(StatusCode::MISDIRECTED_REQUEST, |t| t.failed);
            if let Ok(v) = HeaderValue::from_str(home.as_str()) {
                r.headers_mut()
                    .insert(domicile_core::region::HOME_REGION_HEADER, v);
            }
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "a second factor failed");
            again(StatusCode::INTERNAL_SERVER_ERROR, |t| t.failed)
        }
    }
}
