//! The OpenID Connect provider's HTTP endpoints on the node: `/authorize`
//! (GET checks the request and shows the sign-in page; POST is the sign-in
//! form), `/signup` (the sign-up page and form, and `/signin` back to the
//! sign-in page, both for a sealed request), `/token` (the `authorization_code` and `refresh_token` grants,
//! with client authentication), `/userinfo`, `/revoke` (RFC 7009) and
//! `/introspect` (RFC 7662, confidential clients) and `/logout`
//! (RP-initiated logout), the one-time code journeys (`codes`:
//! `/recover`, `/passwordless`, `/code`, `/link`), a sign-in's second
//! step (`second_factor`: `/mfa`), signing in with a passkey alone
//! (`passkey`: `/passkey/options`, `/passkey`), and the account page where a signed-in
//! browser sets up its second factors (`account`: `/account`). Each parses its input,
//! calls one use case of `domicile-identity` (or a check of
//! `domicile-oidc`) and answers one page, redirect or JSON document.
//!
//! No state is kept between requests: the checked request travels sealed
//! in the form, and the CSRF token in a cookie and a hidden field (double
//! submit). A sign-in or sign-up sets the browser session cookie (single
//! sign-on: the next `/authorize` of any client is answered without a
//! page while it lives and `max_age` allows; `prompt=login` asks again).
//! The edge routes every request to the user's home region (the form's
//! email through the routing table, codes, tokens, the browser cookie and
//! the `id_token_hint` by their region tag).

mod account;
mod codes;
pub mod pages;
mod passkey;
mod second_factor;

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine as _;
use domicile_core::clients::{Branding, Client};
use domicile_identity::{
    Clock, Entropy, Identity, IdentityError, browser::BrowserSession, login::Credentials,
    oidc::SignedIn, profile::ProfileChange, registration::Registration,
};
use domicile_oidc::{
    BROWSER_COOKIE, BROWSER_COOKIE_SECURE,
    authorize::{self, AuthorizationRequest, Prompt, Refusal},
    client_auth::{self, ClientAuthError, Presented},
    redirect,
    sealed::{LIFETIME_SECONDS, Sealer},
};
use pages::{ErrorPage, SignIn, Texts};
use std::{collections::BTreeMap, sync::Arc};

/// Largest query string or form body read.
pub const MAX_INPUT: usize = 16 * 1024;
/// How long a browser keeps its device cookie (400 days, the most
/// browsers allow).
const DEVICE_COOKIE_SECONDS: i64 = 400 * 24 * 3600;

/// Which hosted form a page shows.
#[derive(Clone, Copy)]
enum Journey {
    SignIn,
    SignUp,
}

/// A hosted form that passed its checks: its fields, its sealed request,
/// and the request's client.
type CheckedForm<'c> = (BTreeMap<String, String>, AuthorizationRequest, &'c Client);

/// What the endpoints need.
pub struct OidcState {
    pub identity: Arc<Identity>,
    pub sealer: Sealer,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
}

pub fn router(state: Arc<OidcState>) -> Router {
    Router::new()
        .route("/authorize", get(authorize_page).post(sign_in))
        .route("/signin", get(sign_in_again))
        .route("/signup", get(sign_up_page).post(sign_up))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo).post(userinfo))
        .route("/revoke", post(revoke))
        .route("/introspect", post(introspect))
        .route("/logout", get(logout).post(logout_form))
        .route("/recover", get(codes::recover_page).post(codes::recover))
        .route("/passwordless", post(codes::passwordless))
        .route("/code", post(codes::code))
        .route("/mfa", post(second_factor::second_factor))
        .route("/passkey/options", post(passkey::options))
        .route("/passkey", post(passkey::sign_in))
        .route("/account", get(account::page))
        .route("/account/totp", post(account::enrol))
        .route("/account/totp/confirm", post(account::confirm))
        .route("/account/totp/remove", post(account::remove))
        .route("/account/recovery-codes", post(account::regenerate))
        .route("/account/passkeys", post(account::passkey_add))
        .route("/account/passkeys/options", post(account::passkey_options))
        .route("/account/passkeys/rename", post(account::passkey_rename))
        .route("/account/passkeys/remove", post(account::passkey_remove))
        .route(
            domicile_oidc::LINK_PATH,
            get(codes::link_page).post(codes::link),
        )
        .layer(DefaultBodyLimit::max(MAX_INPUT))
        .with_state(state)
}

/// Parameters of a query or form, refusing repeats.
fn params(text: &[u8]) -> Result<Vec<(String, String)>, &'static str> {
    if text.len() > MAX_INPUT {
        return Err("the request is too large");
    }
    Ok(url::form_urlencoded::parse(text).into_owned().collect())
}

fn unique(pairs: Vec<(String, String)>) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        if map.contains_key(&k) {
            return Err(format!("{k} is given more than once"));
        }
        map.insert(k, v);
    }
    Ok(map)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A cookie's value from the `Cookie` header.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

fn eq_ct(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `scheme://host[:port]` of a URL (a private-use scheme: `scheme:`).
fn origin(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    match u.origin() {
        url::Origin::Tuple(..) => Some(u.origin().ascii_serialization()),
        url::Origin::Opaque(_) => Some(format!("{}:", u.scheme())),
    }
}

fn see_other(location: Option<String>) -> Response {
    match location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        Some(l) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, l),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response(),
    }
}

impl OidcState {
    fn now(&self) -> i64 {
        self.clock.now()
    }

    fn issuer(&self) -> &str {
        &self.identity.topology().federation.issuer
    }

    fn secure(&self) -> bool {
        self.issuer().starts_with("https://")
    }

    /// The CSRF cookie's name: `__Host-` bound to this origin when https.
    fn csrf_cookie(&self) -> &'static str {
        if self.secure() {
            "__Host-domicile_csrf"
        } else {
            "domicile_csrf"
        }
    }

    fn random_text(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(domicile_identity::env::random::<32>(self.entropy.as_ref()))
    }

    fn client(&self, id: &str) -> Option<&Client> {
        self.identity.topology().clients.get(id)
    }

    fn texts(
        &self,
        ui_locales: &[String],
        headers: &HeaderMap,
        brand: &Branding,
    ) -> &'static Texts {
        pages::texts(
            ui_locales,
            header_str(headers, header::ACCEPT_LANGUAGE),
            &brand.default_locale,
        )
    }

    /// The branding of a page for `client`, or the federation's own.
    fn brand<'c>(&self, client: Option<&'c Client>) -> std::borrow::Cow<'c, Branding> {
        match client {
            Some(c) => std::borrow::Cow::Borrowed(&c.branding),
            None => std::borrow::Cow::Owned(pages::neutral_brand(
                &self.identity.topology().federation.name,
            )),
        }
    }

    /// The error page, branded for `client` when there is one.
    fn error_page(
        &self,
        status: StatusCode,
        client: Option<&Client>,
        headers: &HeaderMap,
        message: impl Fn(&Texts) -> String,
    ) -> Response {
        let brand = self.brand(client);
        let brand = brand.as_ref();
        let t = self.texts(&[], headers, brand);
        let nonce = self.random_text();
        let message = message(t);
        let html = askama::Template::render(&ErrorPage {
            t,
            brand,
            nonce: &nonce,
            message: &message,
        });
        pages::respond(status, html, &nonce, None, &[])
    }

    /// The sign-in or sign-up page for `req`, with a CSRF token (a new one,
    /// or the browser's) in a cookie and the form. The sign-up page says
    /// where the account will be kept (this region, where the edge placed
    /// the page, unless a domain rule says otherwise) and offers the choice
    /// of region when the federation allows it.
    #[allow(clippy::too_many_arguments)]
    fn form_page(
        &self,
        journey: Journey,
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
        let error = error.map(|e| e(t));
        let html = match journey {
            Journey::SignIn => askama::Template::render(&SignIn {
                t,
                brand,
                nonce: &nonce,
                sealed: &sealed,
                csrf: &csrf,
                email,
                error,
                recovery: self
                    .identity
                    .sends(domicile_identity::messages::Channel::Email),
                passwordless: self.identity.offers_sign_in_by_email(),
            }),
            Journey::SignUp => {
                let topology = self.identity.topology();
                let label =
                    |r: &domicile_core::topology::Region| format!("{} ({})", r.residency, r.code);
                let here = self.identity.region();
                let regions = if topology.federation.allow_region_preference {
                    topology
                        .regions
                        .values()
                        .map(|r| (r.code.to_string(), label(r)))
                        .collect()
                } else {
                    Vec::new()
                };
                askama::Template::render(&pages::SignUp {
                    t,
                    brand,
                    nonce: &nonce,
                    sealed: &sealed,
                    csrf: &csrf,
                    email,
                    error,
                    here: topology
                        .region(here)
                        .map_or_else(|| here.to_string(), label),
                    here_code: here.as_str(),
                    regions,
                })
            }
        };
        pages::respond(
            status,
            html,
            &nonce,
            origin(&req.redirect_uri).as_deref(),
            &[self.csrf_set_cookie(&csrf)],
        )
    }

    /// The device cookie's name: `__Host-` bound to this origin when https.
    fn device_cookie(&self) -> &'static str {
        if self.secure() {
            "__Host-domicile_device"
        } else {
            "domicile_device"
        }
    }

    /// Where a hosted sign-in comes from: the edge's GeoIP headers and this
    /// browser's device cookie. A browser without a (well-formed) device
    /// cookie gets a new device id, with the `Set-Cookie` that keeps it
    /// (`mint`). Malformed GeoIP headers (the edge sends none such) count
    /// as unknown, logged.
    fn sign_in_context(
        &self,
        headers: &HeaderMap,
        mint: bool,
    ) -> (domicile_identity::risk::Context, Option<String>) {
        use domicile_core::risk::DeviceId;
        let kept = cookie(headers, self.device_cookie()).filter(|v| DeviceId::parse(v).is_ok());
        let (device, set) = match (kept, mint) {
            (Some(v), _) => (Some(v.to_owned()), None),
            (None, true) => {
                let v = self.random_text();
                let set = self.set_cookie(self.device_cookie(), &v, DEVICE_COOKIE_SECONDS);
                (Some(v), Some(set))
            }
            (None, false) => (None, None),
        };
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let context = match crate::convert::sign_in_context(get, device.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "sign-in context ignored");
                domicile_identity::risk::Context::default()
            }
        };
        (context, set)
    }

    /// `Set-Cookie` of the CSRF token.
    fn csrf_set_cookie(&self, csrf: &str) -> String {
        self.set_cookie(self.csrf_cookie(), csrf, LIFETIME_SECONDS)
    }

    /// The browser (single sign-on) session cookie's name: `__Host-` bound
    /// to this origin when https.
    fn browser_cookie(&self) -> &'static str {
        if self.secure() {
            BROWSER_COOKIE_SECURE
        } else {
            BROWSER_COOKIE
        }
    }

    /// A `Set-Cookie` for the hosted pages: the whole origin, never sent to
    /// scripts, sent on top-level navigations from the apps (`Lax`), and
    /// only over https when the issuer is https. `max_age` 0 removes it.
    fn set_cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        format!(
            "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            if self.secure() { "; Secure" } else { "" }
        )
    }

    /// The live browser session of this request's cookie, if any. A store
    /// failure is logged and treated as no session (the page is shown).
    async fn browser_session(&self, headers: &HeaderMap) -> Option<BrowserSession> {
        let value = cookie(headers, self.browser_cookie())?;
        match self.identity.browser_session(value).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "browser session lookup failed");
                None
            }
        }
    }

    /// A form's sealed request and its client, and whether its CSRF token
    /// and origin are this service's; or the error page.
    fn checked_form<'f>(
        &'f self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<CheckedForm<'f>, Box<Response>> {
        let bad = |t: &Texts| t.forged.to_owned();
        let Ok(form) = params(body).map_err(String::from).and_then(unique) else {
            return Err(Box::new(self.error_page(
                StatusCode::BAD_REQUEST,
                None,
                headers,
                bad,
            )));
        };
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let req = self.sealer.open(field("req"), self.now()).map_err(|e| {
            Box::new(self.error_page(StatusCode::BAD_REQUEST, None, headers, |_| e.to_string()))
        })?;
        let Some(client) = self.client(&req.client_id) else {
            return Err(Box::new(self.error_page(
                StatusCode::BAD_REQUEST,
                None,
                headers,
                bad,
            )));
        };
        if !self.csrf_ok(headers, field("csrf")) {
            return Err(Box::new(self.error_page(
                StatusCode::FORBIDDEN,
                Some(client),
                headers,
                bad,
            )));
        }
        Ok((form, req, client))
    }

    /// Whether a form's CSRF token is the browser's (double submit) and the
    /// form came from this origin.
    fn csrf_ok(&self, headers: &HeaderMap, presented: &str) -> bool {
        let token_ok = cookie(headers, self.csrf_cookie()).is_some_and(|c| eq_ct(c, presented));
        let origin_ok = header_str(headers, header::ORIGIN)
            .is_none_or(|o| Some(o.to_owned()) == origin(self.issuer()));
        token_ok && origin_ok
    }

    /// What a sign-in or sign-up form answers: the redirect with the code,
    /// or the page again (`again`) with what went wrong; `bad_input` is
    /// the journey's own words for an input the use case refused.
    fn form_outcome(
        &self,
        outcome: Result<SignedIn, IdentityError>,
        req: &AuthorizationRequest,
        bad_input: fn(&Texts) -> &'static str,
        again: impl Fn(StatusCode, fn(&Texts) -> &'static str) -> Response,
    ) -> Response {
        match outcome {
            Ok(signed_in) => self.signed_in_redirect(req, &signed_in),
            Err(IdentityError::Unauthenticated(_)) => {
                again(StatusCode::UNAUTHORIZED, |t| t.bad_credentials)
            }
            Err(IdentityError::EmailTaken) => again(StatusCode::CONFLICT, |t| t.email_taken),
            Err(IdentityError::Invalid { .. }) => again(StatusCode::BAD_REQUEST, bad_input),
            Err(IdentityError::Busy) => again(StatusCode::SERVICE_UNAVAILABLE, |t| t.busy),
            Err(IdentityError::WrongRegion { home }) => {
                // The edge sent the form to the wrong region (a stale index
                // answer): nothing was read or written here. The edge
                // follows the home region header once; a client that
                // reached this node directly sees the page again.
                tracing::warn!(%home, "a hosted form reached a region that does not home its email");
                let mut r = again(StatusCode::MISDIRECTED_REQUEST, |t| t.failed);
                if let Ok(v) = HeaderValue::from_str(home.as_str()) {
                    r.headers_mut()
                        .insert(domicile_core::region::HOME_REGION_HEADER, v);
                }
                r
            }
            Err(e) => {
                tracing::error!(error = %e, "a hosted form failed");
                again(StatusCode::INTERNAL_SERVER_ERROR, |t| t.failed)
            }
        }
    }

    /// The redirect that hands a finished sign-in's code to the app, with
    /// the browser session's cookie.
    fn signed_in_redirect(&self, req: &AuthorizationRequest, signed_in: &SignedIn) -> Response {
        let mut r = self.code_redirect(req, &signed_in.code);
        let set = self.set_cookie(
            self.browser_cookie(),
            &signed_in.browser.value,
            signed_in.browser.max_age,
        );
        if let Ok(v) = HeaderValue::from_str(&set) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    }

    /// The redirect that hands `code` to the app.
    fn code_redirect(&self, req: &AuthorizationRequest, code: &str) -> Response {
        see_other(redirect::code(
            &req.redirect_uri,
            code,
            req.state.as_deref(),
            self.issuer(),
        ))
    }

    /// Answers `req` from the browser's session when it may be (single
    /// sign-on): not `prompt=login`, the session young enough for
    /// `max_age`, of two factors when the request needs them, and the user
    /// the `login_hint` names when there is one.
    /// `None`: a page (or `login_required`) is the answer.
    async fn single_sign_on(
        &self,
        req: &AuthorizationRequest,
        login_hint: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<Response> {
        if req.prompt == Prompt::Login {
            return None;
        }
        let session = self.browser_session(headers).await?;
        if !domicile_identity::browser::fresh_enough(&session, req.max_age, self.now()) {
            return None;
        }
        match self.identity.session_suffices(&session, req).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::error!(error = %e, "single sign-on check failed");
                return None;
            }
        }
        if let Some(hint) = login_hint {
            let same = match domicile_core::email::Email::parse(hint) {
                Ok(email) => self.identity.is_hinted_user(&session, &email).await,
                Err(_) => Ok(false),
            };
            match same {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    tracing::error!(error = %e, "login_hint check failed");
                    return None;
                }
            }
        }
        match self.identity.continue_for(&session, req).await {
            Ok(code) => Some(self.code_redirect(req, &code)),
            Err(e) => {
                tracing::error!(error = %e, "single sign-on failed");
                None
            }
        }
    }

    /// The page a link names with its sealed request (`?req=`).
    fn linked_page(
        &self,
        journey: Journey,
        headers: &HeaderMap,
        query: Option<String>,
    ) -> Response {
        match self.sealed_in_query(headers, query) {
            Ok((req, client)) => {
                let csrf = cookie(headers, self.csrf_cookie()).map(str::to_owned);
                self.form_page(
                    journey,
                    StatusCode::OK,
                    &req,
                    client,
                    headers,
                    "",
                    None,
                    csrf.as_deref(),
                )
            }
            Err(page) => *page,
        }
    }

    /// The sealed request of a page link (`?req=`) and its client.
    fn sealed_in_query(
        &self,
        headers: &HeaderMap,
        query: Option<String>,
    ) -> Result<(AuthorizationRequest, &Client), Box<Response>> {
        let pairs = params(query.unwrap_or_default().as_bytes()).unwrap_or_default();
        let sealed = pairs
            .iter()
            .find(|(k, _)| k == "req")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        let req = self.sealer.open(sealed, self.now()).map_err(|e| {
            Box::new(self.error_page(StatusCode::BAD_REQUEST, None, headers, |_| e.to_string()))
        })?;
        match self.client(&req.client_id) {
            Some(c) => Ok((req, c)),
            None => Err(Box::new(self.error_page(
                StatusCode::BAD_REQUEST,
                None,
                headers,
                |t| t.forged.into(),
            ))),
        }
    }
}

/// GET /signin?req=…: the sign-in page again (from the sign-up page).
async fn sign_in_again(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    s.linked_page(Journey::SignIn, &headers, query)
}

/// GET /signup?req=…: the sign-up page.
async fn sign_up_page(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    s.linked_page(Journey::SignUp, &headers, query)
}

/// POST /signup: the sign-up form.
async fn sign_up(State(s): State<Arc<OidcState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (form, req, client) = match s.checked_form(&headers, &body) {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let email = field("email");
    let again = |status, error: fn(&Texts) -> &'static str| {
        s.form_page(
            Journey::SignUp,
            status,
            &req,
            client,
            &headers,
            email,
            Some(error),
            Some(field("csrf")),
        )
    };
    let registration = match Registration::new(
        email,
        field("password").to_owned(),
        ProfileChange::default(),
        field("region_preference"),
    ) {
        Ok(r) => r,
        Err(_) => return again(StatusCode::BAD_REQUEST, |t| t.sign_up_bad_input),
    };
    let outcome = s.identity.sign_up_for(registration, &req).await;
    match &outcome {
        Err(IdentityError::VerificationRequired { user_id }) => {
            return s
                .verification_page(user_id, &req, client, &headers, email, field("csrf"))
                .await;
        }
        Ok(signed_in) => s.verify_later(signed_in, &req, &headers).await,
        Err(_) => {}
    }
    // An app that requires two steps: the new account sets one up first.
    if let Some(step) = s.second_factor_step(&outcome, &req, client, &headers) {
        return step;
    }
    s.form_outcome(outcome, &req, |t| t.sign_up_bad_input, again)
}

/// GET /authorize: check the request; show the sign-in page, or send the
/// error where it may go.
async fn authorize_page(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = match params(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(why) => return s.error_page(StatusCode::BAD_REQUEST, None, &headers, |_| why.into()),
    };
    match authorize::check(&pairs, &s.identity.topology().clients) {
        Err(Refusal::Page(e)) => {
            s.error_page(StatusCode::BAD_REQUEST, None, &headers, |_| e.to_string())
        }
        Err(Refusal::Redirect(r)) => see_other(redirect::error(&r, s.issuer())),
        Ok(checked) => {
            let req = checked.request;
            let Some(client) = s.client(&req.client_id) else {
                return s.error_page(StatusCode::BAD_REQUEST, None, &headers, |t| t.forged.into());
            };
            if let Some(answer) = s
                .single_sign_on(&req, checked.login_hint.as_deref(), &headers)
                .await
            {
                return answer;
            }
            if req.prompt == Prompt::None {
                // No browser session may answer, and no page may be shown.
                let e = authorize::ErrorRedirect {
                    redirect_uri: req.redirect_uri.clone(),
                    state: req.state.clone(),
                    error: "login_required",
                    description: "the user is not signed in".into(),
                };
                return see_other(redirect::error(&e, s.issuer()));
            }
            let email = checked.login_hint.unwrap_or_default();
            s.form_page(
                Journey::SignIn,
                StatusCode::OK,
                &req,
                client,
                &headers,
                &email,
                None,
                None,
            )
        }
    }
}

/// POST /authorize: the sign-in form.
async fn sign_in(State(s): State<Arc<OidcState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (form, req, client) = match s.checked_form(&headers, &body) {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let email = field("email");
    let again = |status, error: fn(&Texts) -> &'static str| {
        s.form_page(
            Journey::SignIn,
            status,
            &req,
            client,
            &headers,
            email,
            Some(error),
            Some(field("csrf")),
        )
    };
    let Ok(mut creds) = Credentials::new(email, field("password").to_owned()) else {
        return again(StatusCode::BAD_REQUEST, |t| t.bad_input);
    };
    let (context, device_cookie) = s.sign_in_context(&headers, true);
    creds.context = context;
    let outcome = s.identity.sign_in_for(creds, &req).await;
    let mut response = if let Err(IdentityError::VerificationRequired { user_id }) = &outcome {
        s.verification_page(user_id, &req, client, &headers, email, field("csrf"))
            .await
    } else if let Some(step) = s.second_factor_step(&outcome, &req, client, &headers) {
        step
    } else {
        s.form_outcome(outcome, &req, |t| t.bad_input, again)
    };
    if let Some(set) = device_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(header::SET_COOKIE, set);
    }
    response
}

/// An OAuth 2.0 error document (RFC 6749 §5.2), never cached.
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut r = json(
        status,
        serde_json::json!({ "error": code, "error_description": description }),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"domicile\""),
        );
    }
    r
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        axum::Json(body),
    )
        .into_response()
}

/// The use cases' refusals at the token endpoint.
fn grant_error(e: IdentityError) -> Response {
    match e {
        IdentityError::Grant(g) => oauth_error(StatusCode::BAD_REQUEST, g.code(), &g.to_string()),
        IdentityError::Invalid { field, reason } => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("{field}: {reason}"),
        ),
        IdentityError::Busy => oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "try again shortly",
        ),
        other => {
            tracing::error!(error = %other, "token endpoint failed");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            )
        }
    }
}

/// A client's form request (token, revocation, introspection): the form
/// and the authenticated client, or the OAuth error to answer.
fn client_request<'s>(
    s: &'s OidcState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(BTreeMap<String, String>, &'s Client), Box<Response>> {
    let form = params(body)
        .map_err(String::from)
        .and_then(unique)
        .map_err(|why| {
            Box::new(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &why,
            ))
        })?;
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let presented = Presented {
        authorization: header_str(headers, header::AUTHORIZATION),
        client_id: field("client_id"),
        client_secret: field("client_secret"),
    };
    match client_auth::authenticate(&s.identity.topology().clients, presented) {
        Ok(c) => Ok((form, c)),
        Err(e) => {
            let status = match e {
                ClientAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
                ClientAuthError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            };
            Err(Box::new(oauth_error(status, e.code(), &e.to_string())))
        }
    }
}

/// POST /token.
async fn token(State(s): State<Arc<OidcState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (form, client) = match client_request(&s, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return *refusal,
    };
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let missing = |p: &str| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("{p} is required"),
        )
    };
    let answer = match field("grant_type") {
        Some("authorization_code") => {
            let (Some(code), Some(redirect_uri)) = (field("code"), field("redirect_uri")) else {
                return missing("code and redirect_uri");
            };
            s.identity
                .redeem_code(code, redirect_uri, field("code_verifier"), client)
                .await
        }
        Some("refresh_token") => {
            let Some(t) = field("refresh_token") else {
                return missing("refresh_token");
            };
            s.identity.refresh_for(t, client).await
        }
        None => return missing("grant_type"),
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("grant_type {other:?} is not supported"),
            );
        }
    };
    match answer {
        Ok(t) => {
            let mut body = serde_json::json!({
                "access_token": t.access_token,
                "token_type": t.token_type,
                "expires_in": t.expires_in,
                "id_token": t.id_token,
                "scope": t.scope,
            });
            if let Some(r) = t.refresh_token {
                body["refresh_token"] = r.into();
            }
            json(StatusCode::OK, body)
        }
        Err(e) => grant_error(e),
    }
}

/// GET or POST /userinfo with a bearer access token.
async fn userinfo(State(s): State<Arc<OidcState>>, headers: HeaderMap) -> Response {
    let refuse = |description: &str| {
        let mut r = json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({ "error": "invalid_token", "error_description": description }),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        r
    };
    let Some(bearer) =
        header_str(&headers, header::AUTHORIZATION).and_then(|h| h.strip_prefix("Bearer "))
    else {
        return refuse("a bearer access token is required");
    };
    match s.identity.userinfo(bearer.trim()).await {
        Ok(info) => match serde_json::to_value(&info) {
            Ok(v) => json(StatusCode::OK, v),
            Err(_) => oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            ),
        },
        Err(IdentityError::Unauthenticated(u)) => refuse(&u.to_string()),
        Err(IdentityError::WrongRegion { .. }) => refuse("the token was not issued by this region"),
        Err(e) => grant_error(e),
    }
}

/// POST /revoke (RFC 7009): 200 whether or not the token was live.
async fn revoke(State(s): State<Arc<OidcState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (form, client) = match client_request(&s, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return *refusal,
    };
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        );
    };
    match s.identity.revoke(token, client).await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        )
            .into_response(),
        Err(e) => grant_error(e),
    }
}

/// POST /introspect (RFC 7662), for confidential clients.
async fn introspect(State(s): State<Arc<OidcState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (form, client) = match client_request(&s, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return *refusal,
    };
    if client.is_public() {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "introspection is for confidential clients",
        );
    }
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        );
    };
    match s.identity.introspect(token).await {
        Ok(domicile_identity::oidc::Introspection::Inactive) => {
            json(StatusCode::OK, serde_json::json!({ "active": false }))
        }
        Ok(domicile_identity::oidc::Introspection::Active {
            token_type,
            client_id,
            sub,
            scope,
            exp,
            iat,
            sid,
        }) => json(
            StatusCode::OK,
            serde_json::json!({
                "active": true,
                "token_type": token_type,
                "client_id": client_id,
                "sub": sub,
                "scope": scope,
                "exp": exp,
                "iat": iat,
                "iss": s.issuer(),
                "sid": sid,
            }),
        ),
        Err(e) => grant_error(e),
    }
}

/// GET /logout: RP-initiated logout with the request in the query.
async fn logout(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    s.end_session(&headers, query.unwrap_or_default().as_bytes(), false)
        .await
}

/// POST /logout: the request as a form (from an app), or the answer to
/// the confirmation page (it carries a CSRF token).
async fn logout_form(State(s): State<Arc<OidcState>>, headers: HeaderMap, body: Bytes) -> Response {
    s.end_session(&headers, &body, true).await
}

impl OidcState {
    /// RP-initiated logout. The request is checked first (an unknown
    /// client, a `post_logout_redirect_uri` not registered for it, or an
    /// `id_token_hint` that does not verify is refused on a page, and
    /// nothing ends). With a valid hint for the browser's user (or no
    /// browser session) the sessions end at once; otherwise the user is
    /// asked first (a form with a CSRF token), so a page elsewhere cannot
    /// sign them out. Then the browser cookie is removed and the browser
    /// sent to the app's post-logout URI with `state`, or shown that it is
    /// signed out.
    async fn end_session(&self, headers: &HeaderMap, input: &[u8], posted: bool) -> Response {
        let refuse = |message: String| {
            self.error_page(StatusCode::BAD_REQUEST, None, headers, move |_| {
                message.clone()
            })
        };
        let pairs = match params(input) {
            Ok(p) => p,
            Err(why) => return refuse(why.into()),
        };
        let field = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let hint = match field("id_token_hint").map(|t| self.identity.id_token_hint(t)) {
            None => None,
            Some(Ok(claims)) => Some(claims),
            Some(Err(IdentityError::WrongRegion { home })) => {
                tracing::warn!(%home, "a logout reached a region that did not sign its id_token_hint");
                return refuse("the id_token_hint was not issued here".into());
            }
            Some(Err(e)) => return refuse(e.to_string()),
        };
        let clients = &self.identity.topology().clients;
        let req = match domicile_oidc::logout::check(
            &pairs,
            clients,
            hint.as_ref().map(|h| h.aud.as_str()),
        ) {
            Ok(r) => r,
            Err(e) => return refuse(e.to_string()),
        };
        let client = req.client_id.as_deref().and_then(|id| self.client(id));
        let confirmed = posted && field("csrf").is_some();
        if confirmed && !field("csrf").is_some_and(|c| self.csrf_ok(headers, c)) {
            return self.error_page(StatusCode::FORBIDDEN, client, headers, |t| t.forged.into());
        }
        let browser = self.browser_session(headers).await;
        let hint_is_the_browsers = match (&hint, &browser) {
            (Some(h), Some(b)) => h.sub == b.user_id,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let brand = self.brand(client);
        let brand = brand.as_ref();
        let t = self.texts(&req.ui_locales, headers, brand);
        let after = req.post_logout_redirect_uri.as_deref().and_then(origin);
        if !confirmed && !hint_is_the_browsers {
            if browser.is_none() && hint.is_none() {
                // Nothing to end: say so (and go back to the app) at once.
                return self.logged_out(&req, t, brand, after.as_deref());
            }
            let csrf = cookie(headers, self.csrf_cookie())
                .map_or_else(|| self.random_text(), str::to_owned);
            let carried: Vec<(&str, &str)> = pairs
                .iter()
                .filter(|(k, _)| {
                    [
                        "id_token_hint",
                        "client_id",
                        "post_logout_redirect_uri",
                        "state",
                        "ui_locales",
                    ]
                    .contains(&k.as_str())
                })
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let nonce = self.random_text();
            let html = askama::Template::render(&pages::Logout {
                t,
                brand,
                nonce: &nonce,
                confirm: true,
                csrf: &csrf,
                carried,
            });
            return pages::respond(
                StatusCode::OK,
                html,
                &nonce,
                after.as_deref(),
                &[self.csrf_set_cookie(&csrf)],
            );
        }
        if let Err(e) = self.identity.log_out(browser.as_ref(), hint.as_ref()).await {
            tracing::error!(error = %e, "logout failed");
            return self.error_page(StatusCode::INTERNAL_SERVER_ERROR, client, headers, |t| {
                t.failed.into()
            });
        }
        self.logged_out(&req, t, brand, after.as_deref())
    }

    /// The answer of a logout: the browser cookie removed, and the browser
    /// sent back to the app (`post_logout_redirect_uri` with `state`) or
    /// shown that it is signed out.
    fn logged_out(
        &self,
        req: &domicile_oidc::logout::LogoutRequest,
        t: &'static Texts,
        brand: &Branding,
        after: Option<&str>,
    ) -> Response {
        let clear = self.set_cookie(self.browser_cookie(), "", 0);
        let mut r = match &req.post_logout_redirect_uri {
            Some(uri) => see_other(redirect::after_logout(uri, req.state.as_deref())),
            None => {
                let nonce = self.random_text();
                let html = askama::Template::render(&pages::Logout {
                    t,
                    brand,
                    nonce: &nonce,
                    confirm: false,
                    csrf: "",
                    carried: Vec::new(),
                });
                pages::respond(StatusCode::OK, html, &nonce, after, &[])
            }
        };
        if let Ok(v) = HeaderValue::from_str(&clear) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    }
}
