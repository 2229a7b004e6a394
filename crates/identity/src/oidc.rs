//! OpenID Connect use cases: a password sign-in for a checked
//! authorization request (a session for the client and an authorization
//! code for it), the token endpoint's grants (`authorization_code`, checked
//! against the code's client, redirect URI and PKCE challenge; and
//! `refresh_token`, bound to the client's session), and userinfo. The
//! protocol rules are `domicile-oidc`'s and sessions and tokens are
//! `sessions`'; no HTTP here (client authentication is the transport's:
//! these take the authenticated client).

use crate::risk::Context;
use crate::{
    GrantError, Identity, IdentityError,
    browser::{BrowserCookie, BrowserSession},
    env::random,
    login::Credentials,
    registration::{Finish, Finished, Registration},
    second_factor::{Concluded, End},
    sessions::Minted,
};
use domicile_core::mfa::AMR_PASSWORD;
use domicile_core::{
    clients::{Client, RefreshPolicy},
    ids::{AuthorizationCode, RefreshToken, SessionId},
    token::IdClaims,
};
use domicile_oidc::{authorize::AuthorizationRequest, pkce};
use domicile_store::{
    AuditKind, CodeRecord, Redemption, RevokeReason, SessionClient, SessionRecord,
};
use std::sync::Arc;

/// An authorization code is refused this many seconds after it was issued.
pub const CODE_TTL_SECONDS: i64 = 60;
/// A code's record is kept this long after issue, so that a replay is
/// recognised as one (and what the code issued revoked).
pub const CODE_KEPT_SECONDS: i64 = 600;

/// What a sign-in or sign-up page ends with: the authorization code for
/// the client, and the new browser session's cookie. Secrets: `Debug`
/// shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub user_id: String,
    pub code: String,
    pub browser: BrowserCookie,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("user_id", &self.user_id)
            .field("browser", &self.browser)
            .finish_non_exhaustive()
    }
}

/// What the token endpoint answers. The tokens are secrets: `Debug` shows
/// none of them.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: Option<String>,
    pub id_token: String,
    /// Granted scopes, space-separated.
    pub scope: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("refresh", &self.refresh_token.is_some())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The claims `/userinfo` answers: `sub`, and what the token's scopes
/// allow. Personal data: `Debug` shows only `sub`.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserInfo {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_verified: Option<bool>,
}

impl std::fmt::Debug for UserInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserInfo")
            .field("sub", &self.sub)
            .finish_non_exhaustive()
    }
}

/// What `/introspect` says about a token (RFC 7662).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Introspection {
    /// Unknown, malformed, expired, spent, revoked, or not this region's.
    Inactive,
    Active {
        /// `access_token` or `refresh_token`.
        token_type: &'static str,
        client_id: String,
        sub: String,
        scope: String,
        exp: i64,
        iat: i64,
        sid: String,
    },
}

fn invalid(why: &'static str) -> IdentityError {
    GrantError::InvalidGrant(why).into()
}

/// Non-empty text, as an optional claim.
fn claim(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl Identity {
    pub(crate) fn client(&self, id: &str) -> Result<&Client, IdentityError> {
        self.topology
            .clients
            .get(id)
            .ok_or_else(|| IdentityError::invalid("client_id", "no such client"))
    }

    /// Signs the user in with their password for `req` (checked by
    /// `domicile_oidc::authorize::check`): a browser session (single
    /// sign-on), a session for the client with the granted scopes started
    /// from it, and a single-use authorization code for that.
    pub async fn sign_in_for(
        self: &Arc<Self>,
        input: Credentials,
        req: &AuthorizationRequest,
    ) -> Result<SignedIn, IdentityError> {
        let client = self.client(&req.client_id)?;
        let context = input.context.clone();
        let user = self.authenticate(input).await?;
        if !user.email_verified && self.verification_required(client) {
            return Err(IdentityError::VerificationRequired {
                user_id: user.user_id,
            });
        }
        self.conclude_for(
            &user,
            vec![AMR_PASSWORD.into()],
            req,
            AuditKind::LoginSucceeded,
            &context,
        )
        .await
    }

    /// `conclude` for an authorization request: its code, or the wait for
    /// a second factor.
    pub(crate) async fn conclude_for(
        self: &Arc<Self>,
        user: &domicile_store::UserRecord,
        amr: Vec<String>,
        req: &AuthorizationRequest,
        audit: AuditKind,
        context: &Context,
    ) -> Result<SignedIn, IdentityError> {
        match self
            .conclude(user, amr, End::Oidc(Box::new(req.clone())), audit, context)
            .await?
        {
            Concluded::Code(signed_in, _) => Ok(signed_in),
            Concluded::Session(_) => Err(IdentityError::internal(
                "sign in",
                "an OpenID Connect sign-in ended without a code",
            )),
        }
    }

    /// Registers a new user homed in this region (the rules of
    /// `register`, including the retry of a cut-off registration) for
    /// `req`: signed in as by `sign_in_for`.
    pub async fn sign_up_for(
        self: &Arc<Self>,
        input: Registration,
        req: &AuthorizationRequest,
    ) -> Result<SignedIn, IdentityError> {
        let client = self.client(&req.client_id)?;
        let how = if self.verification_required(client) {
            Finish::Unverified
        } else {
            Finish::Oidc(req)
        };
        match self.register_as(input, how).await? {
            Finished::Code(signed_in) => Ok(signed_in),
            Finished::Unverified { user_id } => {
                Err(IdentityError::VerificationRequired { user_id })
            }
            Finished::Session(_) => Err(IdentityError::internal(
                "sign up",
                "an OpenID Connect registration ended without a code",
            )),
        }
    }

    /// Answers `req` from the browser session a cookie named (single
    /// sign-on; the caller checked `max_age` and `login_hint`): a session
    /// for the client started from it, and an authorization code for that.
    /// The ID token will carry the browser session's `auth_time`.
    pub async fn continue_for(
        &self,
        browser: &BrowserSession,
        req: &AuthorizationRequest,
    ) -> Result<String, IdentityError> {
        self.client(&req.client_id)?;
        if !self.session_suffices(browser, req).await? {
            return Err(IdentityError::StepUpRequired);
        }
        let (code, session_id) = self
            .issue_code(
                &browser.user_id,
                req,
                &browser.session_id,
                browser.auth_time,
                &browser.amr,
            )
            .await?;
        self.audit_event(&browser.user_id, AuditKind::SingleSignOn, &session_id);
        Ok(code)
    }

    /// A new browser session of `user_id` and a code for `req` in a client
    /// session started from it: what a sign-in or sign-up page ends with,
    /// and the client session's id.
    pub(crate) async fn sign_in_browser(
        &self,
        user_id: &str,
        req: &AuthorizationRequest,
        amr: &[String],
    ) -> Result<(SignedIn, String), IdentityError> {
        let (browser, cookie) = self.open_browser_session(user_id, amr).await?;
        let (code, session_id) = self
            .issue_code(user_id, req, &browser.session_id, browser.created_at, amr)
            .await?;
        Ok((
            SignedIn {
                user_id: user_id.to_owned(),
                code,
                browser: cookie,
            },
            session_id,
        ))
    }

    /// A session of `user_id` for `req`'s client with its grant, started
    /// from the browser session `browser` whose password was entered at
    /// `auth_time`, and a single-use authorization code for it:
    /// (code, session id).
    async fn issue_code(
        &self,
        user_id: &str,
        req: &AuthorizationRequest,
        browser: &str,
        auth_time: domicile_core::UnixSeconds,
        amr: &[String],
    ) -> Result<(String, String), IdentityError> {
        let client = self.client(&req.client_id)?;
        let grant = SessionClient {
            client_id: client.id.clone(),
            scope: req.scope(),
            refresh: req.has_scope("offline_access")
                || client.refresh_tokens == RefreshPolicy::Always,
        };
        let (_, session) = self
            .open_session(user_id, Some(grant), Some(browser), amr)
            .await?;
        let now = self.now();
        let code = AuthorizationCode::new(&self.region, random::<32>(self.entropy.as_ref()));
        let record = CodeRecord {
            code_hash: code.storage_hash(),
            user_id: user_id.to_owned(),
            session_id: session.session_id.clone(),
            client_id: client.id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            scope: req.scope(),
            nonce: req.nonce.clone(),
            code_challenge: req.code_challenge.clone(),
            auth_time,
            issued_at: now,
            expires_at: now + CODE_TTL_SECONDS,
            kept_until: now + CODE_KEPT_SECONDS,
            redeemed_at: None,
        };
        if !self.store.insert_code(&record, now).await?.is_applied() {
            return Err(IdentityError::internal(
                "sign in",
                "authorization code collision",
            ));
        }
        Ok((code.expose().to_owned(), session.session_id))
    }

    /// The `authorization_code` grant for an authenticated `client`. A code
    /// presented again ends the session it started (RFC 6749 §4.1.2).
    pub async fn redeem_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
        client: &Client,
    ) -> Result<TokenResponse, IdentityError> {
        let code = AuthorizationCode::parse(code).map_err(|_| invalid("the code is malformed"))?;
        if code.region() != &self.region {
            return Err(invalid("the code was not issued by this region"));
        }
        let now = self.now();
        let c = match self.store.redeem_code(&code.storage_hash(), now).await? {
            Redemption::First(c) => c,
            Redemption::Refused(c) => {
                if c.redeemed_at.is_some()
                    && self
                        .store
                        .revoke_session(&c.session_id, now, RevokeReason::CodeReplay)
                        .await?
                        .is_applied()
                {
                    tracing::warn!(session = %c.session_id, "authorization code replayed; session revoked");
                    self.audit_event(&c.user_id, AuditKind::CodeReplay, &c.session_id);
                }
                return Err(invalid("the code was already used or has expired"));
            }
            Redemption::Unknown => return Err(invalid("the code is unknown or has expired")),
        };
        if c.client_id != client.id {
            return Err(invalid("the code was issued to another client"));
        }
        if c.redirect_uri != redirect_uri {
            return Err(invalid("redirect_uri is not the authorization request's"));
        }
        match (&c.code_challenge, code_verifier) {
            (Some(challenge), Some(v)) if pkce::verify_s256(v, challenge) => {}
            (Some(_), Some(_)) => {
                return Err(invalid("code_verifier does not match the code_challenge"));
            }
            (Some(_), None) => return Err(invalid("code_verifier is required (PKCE)")),
            (None, Some(_)) => {
                return Err(invalid(
                    "code_verifier given, but the request had no code_challenge",
                ));
            }
            (None, None) if client.is_public() => {
                return Err(invalid("a public client must use PKCE"));
            }
            (None, None) => {}
        }
        let session = self.live_session(&c.session_id, now).await?;
        let refresh = session.client.as_ref().is_some_and(|g| g.refresh);
        let id = SessionId::parse(&session.session_id)
            .map_err(|e| IdentityError::internal("redeem code", e))?;
        let minted = self.mint(&c.user_id, &id, &session, refresh).await?;
        self.respond(&c.user_id, client, &session, c.nonce, c.auth_time, minted)
            .await
    }

    /// The `refresh_token` grant for an authenticated `client`: the token
    /// must be of a session started for this client; it rotates (a spent
    /// one presented again ends the session).
    pub async fn refresh_for(
        &self,
        token: &str,
        client: &Client,
    ) -> Result<TokenResponse, IdentityError> {
        let token =
            RefreshToken::parse(token).map_err(|_| invalid("the refresh token is malformed"))?;
        let (record, session) =
            self.rotate(&token, Some(&client.id))
                .await
                .map_err(|e| match e {
                    IdentityError::Unauthenticated(_) => {
                        invalid("the refresh token is invalid, expired or was used")
                    }
                    IdentityError::WrongRegion { .. } => {
                        invalid("the refresh token was not issued by this region")
                    }
                    other => other,
                })?;
        let minted = self
            .mint(&record.user_id, token.session(), &session, true)
            .await?;
        self.respond(
            &record.user_id,
            client,
            &session,
            None,
            session.created_at,
            minted,
        )
        .await
    }

    /// The claims of the bearer token's user that its scopes allow.
    pub async fn userinfo(&self, bearer: &str) -> Result<UserInfo, IdentityError> {
        let claims = self.authorize(bearer).await?;
        let user = self
            .store
            .get_user(&claims.sub)
            .await?
            .ok_or(crate::Unauthenticated::UserGone)?;
        let scopes: Vec<&str> = claims.scope.split(' ').collect();
        let (email, profile) = (scopes.contains(&"email"), scopes.contains(&"profile"));
        let phone = user.phone.clone().filter(|_| scopes.contains(&"phone"));
        let display = user.display_name.clone();
        Ok(UserInfo {
            sub: user.user_id.clone(),
            email: email.then(|| user.email.clone()),
            email_verified: email.then_some(user.email_verified),
            name: profile.then(|| claim(&display)).flatten(),
            given_name: profile.then(|| claim(&user.given_name)).flatten(),
            family_name: profile.then(|| claim(&user.family_name)).flatten(),
            locale: profile.then(|| claim(&user.locale)).flatten(),
            phone_number_verified: phone.as_ref().map(|_| true),
            phone_number: phone,
        })
    }

    /// What a token is, for an introspecting resource server: an access
    /// token of a live session (signature, lifetime, session), or a refresh
    /// token that is live, unspent, and of a live session.
    pub async fn introspect(&self, token: &str) -> Result<Introspection, IdentityError> {
        let now = self.now();
        if let Ok(rt) = RefreshToken::parse(token) {
            if rt.region() != &self.region {
                return Ok(Introspection::Inactive);
            }
            let Some(record) = self
                .store
                .get_refresh(rt.session().as_str(), &rt.storage_hash(), now)
                .await?
                .filter(|r| r.used_at.is_none())
            else {
                return Ok(Introspection::Inactive);
            };
            let Ok(session) = self.live_session(&record.session_id, now).await else {
                return Ok(Introspection::Inactive);
            };
            let (client_id, scope) = match &session.client {
                Some(g) => (g.client_id.clone(), g.scope.clone()),
                None => (
                    crate::sessions::CLIENT_ID.to_owned(),
                    crate::sessions::SCOPE.to_owned(),
                ),
            };
            return Ok(Introspection::Active {
                token_type: "refresh_token",
                client_id,
                sub: record.user_id,
                scope,
                exp: record.expires_at,
                iat: record.issued_at,
                sid: session.session_id,
            });
        }
        match self.authorize(token).await {
            Ok(c) => Ok(Introspection::Active {
                token_type: "access_token",
                client_id: c.client_id,
                sub: c.sub,
                scope: c.scope,
                exp: c.exp,
                iat: c.iat,
                sid: c.sid,
            }),
            Err(IdentityError::Unauthenticated(_) | IdentityError::WrongRegion { .. }) => {
                Ok(Introspection::Inactive)
            }
            Err(e) => Err(e),
        }
    }

    /// RFC 7009 revocation by `client`: a refresh or access token of one of
    /// the client's sessions ends that session (audited as a logout). A
    /// token that is unknown, invalid, expired, or another client's changes
    /// nothing and is not an error (the endpoint answers 200 either way).
    pub async fn revoke(&self, token: &str, client: &Client) -> Result<(), IdentityError> {
        let now = self.now();
        let session_id = if let Ok(rt) = RefreshToken::parse(token) {
            if rt.region() != &self.region {
                return Ok(());
            }
            self.store
                .get_refresh(rt.session().as_str(), &rt.storage_hash(), now)
                .await?
                .map(|r| r.session_id)
        } else {
            match self.authorize(token).await {
                Ok(c) => Some(c.sid),
                Err(IdentityError::Unauthenticated(_) | IdentityError::WrongRegion { .. }) => None,
                Err(e) => return Err(e),
            }
        };
        let Some(session_id) = session_id else {
            return Ok(());
        };
        let Some(session) = self.store.get_session(&session_id, now).await? else {
            return Ok(());
        };
        let owned = session
            .client
            .as_ref()
            .is_some_and(|g| g.client_id == client.id);
        if owned
            && self
                .store
                .revoke_session(&session_id, now, RevokeReason::Logout)
                .await?
                .is_applied()
            && session.revoked_at.is_none()
        {
            self.audit_event(&session.user_id, AuditKind::Logout, &session_id);
        }
        Ok(())
    }

    async fn live_session(
        &self,
        session_id: &str,
        now: domicile_core::UnixSeconds,
    ) -> Result<SessionRecord, IdentityError> {
        self.store
            .get_session(session_id, now)
            .await?
            .filter(|s| s.revoked_at.is_none())
            .ok_or_else(|| invalid("the session has ended"))
    }

    /// The token response for `minted`, with an ID token for `client`.
    async fn respond(
        &self,
        user_id: &str,
        client: &Client,
        session: &SessionRecord,
        nonce: Option<String>,
        auth_time: domicile_core::UnixSeconds,
        minted: Minted,
    ) -> Result<TokenResponse, IdentityError> {
        let scope = session
            .client
            .as_ref()
            .map(|g| g.scope.clone())
            .unwrap_or_default();
        let scopes: Vec<&str> = scope.split(' ').collect();
        let user = self
            .store
            .get_user(user_id)
            .await?
            .ok_or_else(|| invalid("the user no longer exists"))?;
        let (email, profile) = (scopes.contains(&"email"), scopes.contains(&"profile"));
        let phone = user.phone.clone().filter(|_| scopes.contains(&"phone"));
        let now = self.now();
        let fed = &self.topology.federation;
        let amr = crate::second_factor::amr_or_password(&session.amr);
        let claims = IdClaims {
            iss: fed.issuer.clone(),
            sub: user.user_id.clone(),
            aud: client.id.clone(),
            exp: now + minted.expires_in,
            iat: now,
            auth_time,
            nonce,
            at_hash: Some(domicile_oidc::at_hash(&minted.access_token)),
            acr: domicile_core::mfa::acr_of(&amr).to_owned(),
            amr,
            sid: session.session_id.clone(),
            email: email.then(|| user.email.clone()),
            email_verified: email.then_some(user.email_verified),
            name: profile.then(|| claim(&user.display_name)).flatten(),
            given_name: profile.then(|| claim(&user.given_name)).flatten(),
            family_name: profile.then(|| claim(&user.family_name)).flatten(),
            locale: profile.then(|| claim(&user.locale)).flatten(),
            phone_number_verified: phone.as_ref().map(|_| true),
            phone_number: phone,
        };
        Ok(TokenResponse {
            id_token: self.sign_id_token(&claims)?,
            access_token: minted.access_token,
            token_type: "Bearer",
            expires_in: minted.expires_in,
            refresh_token: minted.refresh.map(|(t, _)| t),
            scope,
        })
    }
}
