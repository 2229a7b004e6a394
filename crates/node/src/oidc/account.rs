//! The account page of the hosted pages (`/account`): a signed-in browser
//! (its single sign-on cookie) sets up an authenticator app (the QR code
//! of its `otpauth://` URI, drawn as inline SVG by the `qrcode` crate, the
//! base32 key, and the link), confirms it with a first code, sees its
//! recovery codes once, replaces them or removes the app with its
//! password. Each form is CSRF-checked (double submit and origin) and
//! calls one use case of `domicile_identity::mfa`, as the API does.
//!
//! Passkeys: the page lists them with rename and remove forms; adding one
//! is the page's one script (nonce'd): it asks `/account/passkeys/options`
//! for the creation options, runs `navigator.credentials.create`, and posts
//! the answer with the form to `/account/passkeys` (the use cases of
//! `domicile_identity::passkeys`).
//!
//! Without a browser session the page says to sign in through an app
//! first; it is not a sign-in page of its own.

use super::{
    OidcState, cookie,
    pages::{self, Account, ShownEnrolment, Texts},
    params, unique,
};
use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use domicile_identity::{
    IdentityError,
    browser::BrowserSession,
    mfa::{Caller, Enrolment, Reauthentication, RecoveryCodes},
};
use std::{collections::BTreeMap, sync::Arc};

/// What one rendering of the account page shows beyond the factors.
#[derive(Default)]
struct View {
    error: Option<fn(&Texts) -> &'static str>,
    notice: Option<fn(&Texts) -> &'static str>,
    enrolment: Option<Enrolment>,
    codes: Vec<String>,
    /// A sealed authorization request to sign in to again afterwards (a
    /// sign-in that needed a factor the user did not have).
    continue_req: Option<String>,
}

impl View {
    fn notice(n: fn(&Texts) -> &'static str) -> Self {
        Self {
            notice: Some(n),
            ..Self::default()
        }
    }

    /// Recovery codes to show once (none: nothing to show).
    fn codes(codes: Option<Vec<String>>) -> Self {
        Self {
            codes: codes.unwrap_or_default(),
            ..Self::default()
        }
    }
}

/// The QR code of `uri` as inline SVG markup.
fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    let start = svg.find("<svg")?;
    Some(svg[start..].to_owned())
}

impl OidcState {
    /// The account page for `session`, with `view`.
    async fn account_view(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        session: &BrowserSession,
        view: View,
    ) -> Response {
        let caller = Caller::Browser(session);
        let factors = match self.identity.factor_status(caller).await {
            Ok(f) => self
                .identity
                .list_passkeys(caller)
                .await
                .map(|passkeys| (f, passkeys)),
            Err(e) => Err(e),
        };
        let (status_now, passkeys) = match factors {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "account page failed");
                return self.error_page(StatusCode::INTERNAL_SERVER_ERROR, None, headers, |t| {
                    t.failed.into()
                });
            }
        };
        let brand = self.brand(None);
        let brand = brand.as_ref();
        let t = self.texts(&[], headers, brand);
        let nonce = self.random_text();
        let csrf =
            cookie(headers, self.csrf_cookie()).map_or_else(|| self.random_text(), str::to_owned);
        let enrolment = view.enrolment.map(|e| ShownEnrolment {
            qr_svg: qr_svg(&e.otpauth_uri).unwrap_or_default(),
            uri: e.otpauth_uri,
            secret: e.secret,
        });
        let html = askama::Template::render(&Account {
            t,
            brand,
            nonce: &nonce,
            csrf: &csrf,
            error: view.error.map(|e| e(t)),
            notice: view.notice.map(|n| n(t)),
            totp: status_now.totp,
            pending: status_now.totp_pending,
            recovery_left: status_now.recovery_codes_left,
            enrolment,
            codes: view.codes,
            continue_req: view.continue_req,
            has_factor: status_now.totp || !passkeys.is_empty(),
            passkeys,
        });
        pages::respond(status, html, &nonce, None, &[self.csrf_set_cookie(&csrf)])
    }

    /// `sealed`, when it is a live sealed request of this service.
    fn continuation(&self, sealed: Option<&str>) -> Option<String> {
        let sealed = sealed.filter(|s| !s.is_empty())?;
        self.sealer
            .open(sealed, self.now())
            .ok()
            .map(|_| sealed.to_owned())
    }

    /// The browser session and the checked form of an account form, or
    /// the page that refuses it.
    async fn account_form(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(BrowserSession, BTreeMap<String, String>), Box<Response>> {
        let Some(session) = self.browser_session(headers).await else {
            return Err(Box::new(self.signed_out(headers)));
        };
        let form = params(body)
            .map_err(String::from)
            .and_then(unique)
            .unwrap_or_default();
        let csrf = form.get("csrf").map(String::as_str).unwrap_or_default();
        if !self.csrf_ok(headers, csrf) {
            return Err(Box::new(self.error_page(
                StatusCode::FORBIDDEN,
                None,
                headers,
                |t| t.forged.into(),
            )));
        }
        Ok((session, form))
    }

    fn signed_out(&self, headers: &HeaderMap) -> Response {
        self.error_page(StatusCode::UNAUTHORIZED, None, headers, |t| {
            t.account_sign_in_first.into()
        })
    }

    /// The account page after a use case's refusal.
    async fn account_refused(
        &self,
        headers: &HeaderMap,
        session: &BrowserSession,
        e: IdentityError,
        bad_input: fn(&Texts) -> &'static str,
        continue_req: Option<String>,
    ) -> Response {
        let (status, error): (StatusCode, fn(&Texts) -> &'static str) = match e {
            IdentityError::Invalid { .. } => (StatusCode::BAD_REQUEST, bad_input),
            IdentityError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, |t| t.wrong_password),
            IdentityError::Busy => (StatusCode::SERVICE_UNAVAILABLE, |t| t.busy),
            IdentityError::StepUpRequired => (StatusCode::FORBIDDEN, |t| t.step_up_needed),
            e => {
                tracing::error!(error = %e, "an account form failed");
                (StatusCode::INTERNAL_SERVER_ERROR, |t| t.failed)
            }
        };
        let view = View {
            error: Some(error),
            continue_req,
            ..View::default()
        };
        self.account_view(status, headers, session, view).await
    }

    /// The account page after a form's use case: its `outcome` shown as
    /// `view` makes it, or the refusal (with `bad_input` for invalid
    /// input), keeping `continue_req` either way.
    async fn account_answer<T>(
        &self,
        headers: &HeaderMap,
        session: &BrowserSession,
        outcome: Result<T, IdentityError>,
        view: impl FnOnce(T) -> View,
        bad_input: fn(&Texts) -> &'static str,
        continue_req: Option<String>,
    ) -> Response {
        match outcome {
            Ok(v) => {
                let view = View {
                    continue_req,
                    ..view(v)
                };
                self.account_view(StatusCode::OK, headers, session, view)
                    .await
            }
            Err(e) => {
                self.account_refused(headers, session, e, bad_input, continue_req)
                    .await
            }
        }
    }
}

/// GET /account (`?req=`: a sealed request to sign in to afterwards).
pub(super) async fn page(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = params(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let sealed = pairs
        .iter()
        .find(|(k, _)| k == "req")
        .map(|(_, v)| v.as_str());
    let view = View {
        continue_req: s.continuation(sealed),
        ..View::default()
    };
    match s.browser_session(&headers).await {
        Some(session) => {
            s.account_view(StatusCode::OK, &headers, &session, view)
                .await
        }
        None => s.signed_out(&headers),
    }
}

/// POST /account/totp: a new secret to scan.
pub(super) async fn enrol(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match s.account_form(&headers, &body).await {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let continue_req = s.continuation(form.get("req").map(String::as_str));
    let outcome = s
        .identity
        .enroll_totp(Caller::Browser(&session), None)
        .await;
    let view = |e| View {
        enrolment: Some(e),
        ..View::default()
    };
    s.account_answer(
        &headers,
        &session,
        outcome,
        view,
        |t| t.failed,
        continue_req,
    )
    .await
}

/// POST /account/totp/confirm: the app's first code.
pub(super) async fn confirm(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match s.account_form(&headers, &body).await {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let continue_req = s.continuation(form.get("req").map(String::as_str));
    let code = form.get("code").map(String::as_str).unwrap_or_default();
    let outcome = s
        .identity
        .confirm_totp(Caller::Browser(&session), code)
        .await;
    let view = |codes: Option<RecoveryCodes>| View::codes(codes.map(|c| c.0));
    s.account_answer(
        &headers,
        &session,
        outcome,
        view,
        |t| t.enrol_wrong,
        continue_req,
    )
    .await
}

/// POST /account/recovery-codes: ten new codes, after the password.
pub(super) async fn regenerate(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match s.account_form(&headers, &body).await {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let continue_req = s.continuation(form.get("req").map(String::as_str));
    let password = form.get("password").cloned().unwrap_or_default();
    let outcome = match Reauthentication::new(password) {
        Ok(p) => {
            s.identity
                .regenerate_recovery_codes(Caller::Browser(&session), p)
                .await
        }
        Err(e) => Err(e),
    };
    let view = |codes: RecoveryCodes| View::codes(Some(codes.0));
    s.account_answer(
        &headers,
        &session,
        outcome,
        view,
        |t| t.wrong_password,
        continue_req,
    )
    .await
}

/// POST /account/totp/remove: the app goes, after the password.
pub(super) async fn remove(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match s.account_form(&headers, &body).await {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let continue_req = s.continuation(form.get("req").map(String::as_str));
    let password = form.get("password").cloned().unwrap_or_default();
    let outcome = match Reauthentication::new(password) {
        Ok(p) => s.identity.remove_totp(Caller::Browser(&session), p).await,
        Err(e) => Err(e),
    };
    let view = |_| View::notice(|t| t.totp_removed);
    s.account_answer(
        &headers,
        &session,
        outcome,
        view,
        |t| t.wrong_password,
        continue_req,
    )
    .await
}

/// POST /account/passkeys/options: the creation options for the page's
/// script (JSON), for a passkey named `name`, after the `password`.
/// Refusals are JSON too.
pub(super) async fn passkey_options(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match s.account_form(&headers, &body).await {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let outcome = match Reauthentication::new(field("password")) {
        Ok(password) => {
            s.identity
                .start_passkey_registration(Caller::Browser(&session), &field("name"), password)
                .await
        }
        Err(e) => Err(e),
    };
    let (status, body) = match outcome {
        Ok(options) => (StatusCode::OK, options),
        Err(e) => {
            let status = match &e {
                IdentityError::Invalid { .. } => StatusCode::BAD_REQUEST,
                IdentityError::StepUpRequired => StatusCode::FORBIDDEN,
                IdentityError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                other => {
                    tracing::error!(error = %other, "passkey options failed");
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            let text = match status {
                StatusCode::INTERNAL_SERVER_ERROR => "internal error".to_owned(),
                _ => e.to_string(),
            };
            (status, serde_json::json!({ "error": text }).to_string())
        }
    };
    (
        status,
        [
            (
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            ),
            (
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            ),
        ],
        body,
    )
        .into_response()
}

/// POST /account/passkeys: the browser's answer (`credential`, JSON).
pub(super) async fn passkey_add(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match s.account_form(&headers, &body).await {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let credential = form
        .get("credential")
        .map(String::as_str)
        .unwrap_or_default();
    let outcome = s
        .identity
        .finish_passkey_registration(Caller::Browser(&session), credential)
        .await;
    let view = |(_, codes): (_, Option<RecoveryCodes>)| View {
        notice: Some(|t| t.passkey_added),
        ..View::codes(codes.map(|c| c.0))
    };
    s.account_answer(
        &headers,
        &session,
        outcome,
        view,
        |t| t.passkey_refused,
        None,
    )
    .await
}

/// POST /account/passkeys/rename: `id`, `name`.
pub(super) async fn passkey_rename(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match s.account_form(&headers, &body).await {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let outcome = s
        .identity
        .rename_passkey(Caller::Browser(&session), field("id"), field("name"))
        .await;
    let view = |_| View::notice(|t| t.passkey_renamed);
    s.account_answer(&headers, &session, outcome, view, |t| t.bad_input, None)
        .await
}

/// POST /account/passkeys/remove: `id`, `password` (from a two-step
/// sign-in).
pub(super) async fn passkey_remove(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match s.account_form(&headers, &body).await {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let outcome = match Reauthentication::new(field("password").to_owned()) {
        Ok(p) => {
            s.identity
                .remove_passkey(Caller::Browser(&session), field("id"), p)
                .await
        }
        Err(e) => Err(e),
    };
    let view = |_| View::notice(|t| t.passkey_removed);
    s.account_answer(
        &headers,
        &session,
        outcome,
        view,
        |t| t.wrong_password,
        None,
    )
    .await
}
