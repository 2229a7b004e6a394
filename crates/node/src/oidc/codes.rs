//! The hosted pages of the one-time code journeys: `/recover` (the page
//! asking for an address, and the request for a reset code),
//! `/passwordless` (the sign-in page's "email me a code"), `/code` (a code
//! typed from the email: a new password, a sign-in, or a verification that
//! a sign-in waited for), and `/link` (a clicked link: a page with one
//! button, since mail scanners open links, then the same outcomes). Each
//! parses its form, calls one use case of `domicile-identity` and answers
//! one page or redirect.
//!
//! Every request for a code answers with the same page whether or not the
//! account exists ("if an account exists…"); a refused code reads the same
//! for every reason. Limits answer 429 with `Retry-After`.

use super::{Journey, OidcState, cookie, header_str, params, unique};
use crate::oidc::pages::{self, Code, Done, Recover, Texts};
use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use domicile_core::clients::Client;
use domicile_identity::{
    IdentityError,
    messages::{Asked, Channel, Login},
    oidc::SignedIn,
    one_time::{CodeRefused, Proof},
};
use domicile_oidc::authorize::AuthorizationRequest;
use domicile_store::Purpose;
use std::sync::Arc;

/// What a code or link page shows and where it goes.
struct CodePage<'a> {
    purpose: Purpose,
    /// The request it continues (a link may continue none).
    req: Option<&'a AuthorizationRequest>,
    client: Option<&'a Client>,
    email: &'a str,
    link: Option<&'a str>,
    note: Option<fn(&Texts) -> &'static str>,
    error: Option<fn(&Texts) -> &'static str>,
    csrf: Option<&'a str>,
}

fn heading(t: &Texts, purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::ResetPassword => t.code_heading_reset,
        Purpose::SignIn | Purpose::SignInCheck => t.code_heading_sign_in,
        // A phone's code is confirmed over the API only (`ConfirmPhone`);
        // no page asks for it.
        Purpose::VerifyEmail | Purpose::VerifyPhone => t.code_heading_verify,
        Purpose::ChangeEmail => t.code_heading_change,
    }
}

impl OidcState {
    /// Who asks, for the messages: the app, the page's language, the
    /// client's address (the edge's header), and the request sealed anew
    /// for the link to continue.
    fn asked(&self, req: &AuthorizationRequest, headers: &HeaderMap) -> Asked {
        let brand = self.brand(self.client(&req.client_id));
        let t = self.texts(&req.ui_locales, headers, brand.as_ref());
        Asked {
            client_id: Some(req.client_id.clone()),
            locale: Some(t.lang.to_owned()),
            address: header_str(
                headers,
                header::HeaderName::from_static(domicile_core::region::CLIENT_ADDRESS_HEADER),
            )
            .and_then(|a| a.trim().parse().ok()),
            continuation: Some(self.sealer.seal(req, self.now())),
            bound_to: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn recover_page(
        &self,
        status: StatusCode,
        req: &AuthorizationRequest,
        client: &Client,
        headers: &HeaderMap,
        email: &str,
        error: Option<fn(&Texts) -> &'static str>,
        csrf: Option<&str>,
    ) -> Response {
        let brand = &client.branding;
        let t = self.texts(&req.ui_locales, headers, brand);
        let nonce = self.random_text();
        let csrf = csrf.map_or_else(|| self.random_text(), str::to_owned);
        let sealed = self.sealer.seal(req, self.now());
        let html = askama::Template::render(&Recover {
            t,
            brand,
            nonce: &nonce,
            sealed: &sealed,
            csrf: &csrf,
            email,
            phone: self.identity.sends(Channel::Sms),
            error: error.map(|e| e(t)),
        });
        pages::respond(status, html, &nonce, None, &[self.csrf_set_cookie(&csrf)])
    }

    fn code_page(&self, status: StatusCode, headers: &HeaderMap, p: CodePage<'_>) -> Response {
        let brand = self.brand(p.client);
        let brand = brand.as_ref();
        let ui: &[String] = p.req.map_or(&[], |r| &r.ui_locales);
        let t = self.texts(ui, headers, brand);
        let nonce = self.random_text();
        let csrf = p.csrf.map_or_else(|| self.random_text(), str::to_owned);
        let sealed = p
            .req
            .map(|r| self.sealer.seal(r, self.now()))
            .unwrap_or_default();
        let html = askama::Template::render(&Code {
            t,
            brand,
            nonce: &nonce,
            sealed: &sealed,
            csrf: &csrf,
            purpose: p.purpose.as_str(),
            heading: heading(t, p.purpose),
            note: p.note.map(|n| n(t)),
            email: p.email,
            link: p.link,
            error: p.error.map(|e| e(t)),
        });
        let redirect_origin = p.req.and_then(|r| super::origin(&r.redirect_uri));
        pages::respond(
            status,
            html,
            &nonce,
            redirect_origin.as_deref(),
            &[self.csrf_set_cookie(&csrf)],
        )
    }

    fn done_page(
        &self,
        headers: &HeaderMap,
        client: Option<&Client>,
        heading: fn(&Texts) -> &'static str,
    ) -> Response {
        let brand = self.brand(client);
        let brand = brand.as_ref();
        let t = self.texts(&[], headers, brand);
        let nonce = self.random_text();
        let html = askama::Template::render(&Done {
            t,
            brand,
            nonce: &nonce,
            heading: heading(t),
        });
        pages::respond(StatusCode::OK, html, &nonce, None, &[])
    }

    /// What a use case's refusal answers on a code journey's page:
    /// `again(status, words)` shows the page again; a misdirected form is
    /// 421 with the home region (the edge follows it).
    fn refused(
        &self,
        e: IdentityError,
        again: impl Fn(StatusCode, fn(&Texts) -> &'static str) -> Response,
        bad_input: fn(&Texts) -> &'static str,
    ) -> Response {
        match e {
            IdentityError::Invalid { .. } => again(StatusCode::BAD_REQUEST, bad_input),
            IdentityError::CodeRefused(CodeRefused::Malformed) => {
                again(StatusCode::BAD_REQUEST, |t| t.code_malformed)
            }
            IdentityError::CodeRefused(_) => again(StatusCode::UNAUTHORIZED, |t| t.code_refused),
            IdentityError::Throttled { retry_after } => {
                let mut r = again(StatusCode::TOO_MANY_REQUESTS, |t| t.throttled);
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            IdentityError::NotOffered(_) => again(StatusCode::NOT_FOUND, |t| t.not_offered),
            // A texted code proved the number, not the address this app
            // wants verified.
            IdentityError::VerificationRequired { .. } => {
                again(StatusCode::FORBIDDEN, |t| t.verify_email_first)
            }
            IdentityError::Busy => again(StatusCode::SERVICE_UNAVAILABLE, |t| t.busy),
            IdentityError::WrongRegion { home } => {
                tracing::warn!(%home, "a code journey's form reached a region that does not home its email");
                let mut r = again(StatusCode::MISDIRECTED_REQUEST, |t| t.failed);
                if let Ok(v) = HeaderValue::from_str(home.as_str()) {
                    r.headers_mut()
                        .insert(domicile_core::region::HOME_REGION_HEADER, v);
                }
                r
            }
            e => {
                tracing::error!(error = %e, "a code journey failed");
                again(StatusCode::INTERNAL_SERVER_ERROR, |t| t.failed)
            }
        }
    }

    /// A sign-in (or sign-up) that waits for the email's verification:
    /// the code is sent and its page shown.
    pub(super) async fn verification_page(
        self: &Arc<Self>,
        user_id: &str,
        req: &AuthorizationRequest,
        client: &Client,
        headers: &HeaderMap,
        email: &str,
        csrf: &str,
    ) -> Response {
        let page = |status, error: Option<fn(&Texts) -> &'static str>| {
            self.code_page(
                status,
                headers,
                CodePage {
                    purpose: Purpose::VerifyEmail,
                    req: Some(req),
                    client: Some(client),
                    email,
                    link: None,
                    note: Some(|t| t.code_sent),
                    error,
                    csrf: Some(csrf),
                },
            )
        };
        match self
            .identity
            .send_verification(user_id, &self.asked(req, headers))
            .await
        {
            Ok(()) => page(StatusCode::OK, None),
            Err(e) => self.refused(e, |status, words| page(status, Some(words)), |t| t.failed),
        }
    }

    /// Sends the account's verification email after a sign-up that did
    /// not wait for it (best effort: logged, never shown).
    pub(super) async fn verify_later(
        self: &Arc<Self>,
        signed_in: &SignedIn,
        req: &AuthorizationRequest,
        headers: &HeaderMap,
    ) {
        let mut asked = self.asked(req, headers);
        // The link only confirms the address: the sign-in is done.
        asked.continuation = None;
        if let Err(e) = self
            .identity
            .send_verification(&signed_in.user_id, &asked)
            .await
        {
            tracing::warn!(user_id = %signed_in.user_id, error = %e, "verification email not sent");
        }
    }
}

/// GET /recover?req=…: the page asking for the account's address.
pub(super) async fn recover_page(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match s.sealed_in_query(&headers, query) {
        Ok((req, client)) => {
            let csrf = cookie(&headers, s.csrf_cookie()).map(str::to_owned);
            s.recover_page(
                StatusCode::OK,
                &req,
                client,
                &headers,
                "",
                None,
                csrf.as_deref(),
            )
        }
        Err(page) => *page,
    }
}

/// Which page asks for a code, and so shows its refusals.
#[derive(Clone, Copy)]
enum Asking {
    /// `/recover`: a reset code.
    Reset,
    /// The sign-in page's second button: a sign-in code.
    SignIn,
}

/// A form asking for a code by email: the code page, with the same words
/// whether or not the address has an account; or the asking page again.
async fn request(s: Arc<OidcState>, headers: HeaderMap, body: Bytes, asking: Asking) -> Response {
    let (form, req, client) = match s.checked_form(&headers, &body) {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let (email, csrf) = (field("email"), field("csrf"));
    let asked = s.asked(&req, &headers);
    let (outcome, purpose) = match asking {
        Asking::Reset => (
            s.identity
                .request_password_reset(Login::typed(email), &asked)
                .await,
            Purpose::ResetPassword,
        ),
        Asking::SignIn => (
            s.identity
                .request_sign_in_code(Login::typed(email), &asked)
                .await,
            Purpose::SignIn,
        ),
    };
    match outcome {
        Ok(()) => s.code_page(
            StatusCode::OK,
            &headers,
            CodePage {
                purpose,
                req: Some(&req),
                client: Some(client),
                email,
                link: None,
                note: Some(|t| t.code_sent_if_exists),
                error: None,
                csrf: Some(csrf),
            },
        ),
        Err(e) => s.refused(
            e,
            |status, words| match asking {
                Asking::Reset => s.recover_page(
                    status,
                    &req,
                    client,
                    &headers,
                    email,
                    Some(words),
                    Some(csrf),
                ),
                Asking::SignIn => s.form_page(
                    Journey::SignIn,
                    status,
                    &req,
                    client,
                    &headers,
                    email,
                    Some(words),
                    Some(csrf),
                ),
            },
            |t| t.enter_email,
        ),
    }
}

/// POST /recover: a reset code for the address, if it has an account.
pub(super) async fn recover(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    request(s, headers, body, Asking::Reset).await
}

/// POST /passwordless: the sign-in page's "email me a code".
pub(super) async fn passwordless(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    request(s, headers, body, Asking::SignIn).await
}

/// How a code or link ends for `purpose`: signed in for `req`, or (a
/// link that continues no request) a page saying what was done.
async fn complete(
    s: &Arc<OidcState>,
    headers: &HeaderMap,
    purpose: Purpose,
    proof: &Proof<'_>,
    password: &str,
    req: Option<&AuthorizationRequest>,
    client: Option<&Client>,
) -> Result<Response, IdentityError> {
    let redirect =
        |signed_in: SignedIn, req: &AuthorizationRequest| s.signed_in_redirect(req, &signed_in);
    match (purpose, req) {
        (Purpose::ResetPassword, _) => {
            let asked = match req {
                Some(r) => s.asked(r, headers),
                None => Asked::default(),
            };
            let reset = s
                .identity
                .reset_password(proof, password.to_owned(), req, &asked)
                .await?;
            Ok(match (reset.signed_in, reset.second_factor, req, client) {
                (Some(signed_in), _, Some(r), _) => redirect(signed_in, r),
                (None, Some(c), Some(r), Some(cl)) => s.second_factor_page(
                    StatusCode::OK,
                    r,
                    cl,
                    headers,
                    &super::second_factor::Waiting::of(&c),
                    None,
                ),
                _ => s.done_page(headers, client, |t| t.reset_done_heading),
            })
        }
        (Purpose::SignIn, Some(r)) => {
            let (context, _) = s.sign_in_context(headers, false);
            let outcome = s.identity.sign_in_with_code(proof, r, &context).await;
            if let Some(step) = client.and_then(|c| s.second_factor_step(&outcome, r, c, headers)) {
                return Ok(step);
            }
            Ok(redirect(outcome?, r))
        }
        (Purpose::SignIn, None) => Err(IdentityError::CodeRefused(CodeRefused::Dead)),
        (Purpose::VerifyEmail, Some(r)) => {
            let outcome = s.identity.verify_and_sign_in(proof, r).await;
            if let Some(step) = client.and_then(|c| s.second_factor_step(&outcome, r, c, headers)) {
                return Ok(step);
            }
            Ok(redirect(outcome?, r))
        }
        (Purpose::ChangeEmail, _) => {
            s.identity.confirm_email_change(proof).await?;
            Ok(s.done_page(headers, client, |t| t.email_changed_heading))
        }
        (Purpose::VerifyEmail, None) => {
            s.identity.verify_email(proof).await?;
            Ok(s.done_page(headers, client, |t| t.verified_heading))
        }
        (Purpose::VerifyPhone, _) => Err(IdentityError::NotOffered(
            "confirming a phone number on the hosted pages",
        )),
        // A sign-in check's code is typed on its sign-in's own page
        // (`/mfa`), and it has no link.
        (Purpose::SignInCheck, _) => Err(IdentityError::CodeRefused(CodeRefused::Dead)),
    }
}

/// POST /code: a code typed from the email.
pub(super) async fn code(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, req, client) = match s.checked_form(&headers, &body) {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let Some(purpose) = Purpose::parse(field("purpose")) else {
        return s.error_page(StatusCode::BAD_REQUEST, Some(client), &headers, |t| {
            t.forged.into()
        });
    };
    let (email, csrf) = (field("email"), field("csrf"));
    let proof = Proof::Code {
        login: Login::typed(email),
        code: field("code"),
    };
    let again = |status, words: fn(&Texts) -> &'static str| {
        s.code_page(
            status,
            &headers,
            CodePage {
                purpose,
                req: Some(&req),
                client: Some(client),
                email,
                link: None,
                note: None,
                error: Some(words),
                csrf: Some(csrf),
            },
        )
    };
    match complete(
        &s,
        &headers,
        purpose,
        &proof,
        field("password"),
        Some(&req),
        Some(client),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => s.refused(e, again, |t| t.sign_up_bad_input),
    }
}

/// A link's secret, purpose, opened sealed request (if it continues one)
/// and that request's client.
type LinkParams<'f> = (
    &'f str,
    Purpose,
    Option<AuthorizationRequest>,
    Option<&'f Client>,
);

/// The link's parameters; or the error page.
fn link_params<'f>(
    s: &'f OidcState,
    headers: &HeaderMap,
    pairs: &'f std::collections::BTreeMap<String, String>,
) -> Result<LinkParams<'f>, Box<Response>> {
    let forged =
        |status| Box::new(s.error_page(status, None, headers, |t: &Texts| t.link_refused.into()));
    let secret = pairs.get("t").map(String::as_str).unwrap_or_default();
    let purpose = pairs.get("p").or_else(|| pairs.get("purpose"));
    let (Some(purpose), false) = (purpose.and_then(|p| Purpose::parse(p)), secret.is_empty())
    else {
        return Err(forged(StatusCode::BAD_REQUEST));
    };
    let req = match pairs.get("req").filter(|r| !r.is_empty()) {
        None => None,
        Some(sealed) => Some(s.sealer.open(sealed, s.now()).map_err(|e| {
            Box::new(s.error_page(StatusCode::BAD_REQUEST, None, headers, |_| e.to_string()))
        })?),
    };
    let client = match &req {
        Some(r) => Some(
            s.client(&r.client_id)
                .ok_or_else(|| forged(StatusCode::BAD_REQUEST))?,
        ),
        None => None,
    };
    Ok((secret, purpose, req, client))
}

/// GET /link?t=…&p=…[&req=…]: the page of a clicked link. Opening it
/// spends nothing (mail scanners open links); its button does.
pub(super) async fn link_page(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = match params(query.unwrap_or_default().as_bytes())
        .map_err(String::from)
        .and_then(unique)
    {
        Ok(p) => p,
        Err(_) => {
            return s.error_page(StatusCode::BAD_REQUEST, None, &headers, |t| {
                t.link_refused.into()
            });
        }
    };
    let (secret, purpose, req, client) = match link_params(&s, &headers, &pairs) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    let csrf = cookie(&headers, s.csrf_cookie()).map(str::to_owned);
    s.code_page(
        StatusCode::OK,
        &headers,
        CodePage {
            purpose,
            req: req.as_ref(),
            client,
            email: "",
            link: Some(secret),
            note: None,
            error: None,
            csrf: csrf.as_deref(),
        },
    )
}

/// POST /link: the link's button.
pub(super) async fn link(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(form) = params(&body).map_err(String::from).and_then(unique) else {
        return s.error_page(StatusCode::BAD_REQUEST, None, &headers, |t| t.forged.into());
    };
    let (secret, purpose, req, client) = match link_params(&s, &headers, &form) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    let csrf = form.get("csrf").map(String::as_str).unwrap_or_default();
    if !s.csrf_ok(&headers, csrf) {
        return s.error_page(StatusCode::FORBIDDEN, client, &headers, |t| t.forged.into());
    }
    let password = form.get("password").map(String::as_str).unwrap_or_default();
    let again = |status, words: fn(&Texts) -> &'static str| {
        s.code_page(
            status,
            &headers,
            CodePage {
                purpose,
                req: req.as_ref(),
                client,
                email: "",
                link: Some(secret),
                note: None,
                error: Some(words),
                csrf: Some(csrf),
            },
        )
    };
    match complete(
        &s,
        &headers,
        purpose,
        &Proof::Link(secret),
        password,
        req.as_ref(),
        client,
    )
    .await
    {
        Ok(r) => r,
        Err(IdentityError::CodeRefused(_)) => {
            s.error_page(StatusCode::BAD_REQUEST, client, &headers, |t| {
                t.link_refused.into()
            })
        }
        Err(e) => s.refused(e, again, |t| t.sign_up_bad_input),
    }
}
