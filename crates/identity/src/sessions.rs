//! Sessions and tokens: starting a session, issuing an access token and a
//! rotating refresh token, refreshing (with reuse detection: presenting a
//! rotated token again revokes the whole session), checking a bearer access
//! token against a live session, and logout.

use crate::{Identity, IdentityError, Unauthenticated, env::random};
use domicile_core::{
    RegionCode,
    ids::{RefreshToken, SessionId, ulid_ms},
    token::{AccessClaims, Expectations, TokenError},
};
use domicile_store::{AuditKind, RefreshRecord, RevokeReason, SessionClient, SessionRecord};

/// Scope of first-party access tokens.
pub(crate) const SCOPE: &str = "openid profile email";
/// `client_id` of tokens issued through the first-party API.
pub(crate) const CLIENT_ID: &str = "domicile";

/// A signed-in session's credentials. The tokens are secrets: `Debug`
/// shows only ids.
#[derive(Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user_id: String,
    pub region: RegionCode,
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: i64,
    pub refresh_token: String,
    /// Seconds.
    pub refresh_expires_in: i64,
    pub session_id: String,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("user_id", &self.user_id)
            .field("region", &self.region)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// How a logout names its session.
#[derive(Debug)]
pub enum LogoutBy<'a> {
    /// The session's refresh token.
    Refresh(RefreshToken),
    /// A bearer access token of the session.
    Bearer(&'a str),
}

/// A refresh token from its text: errors name the `refresh_token` field.
pub fn refresh_token(s: &str) -> Result<RefreshToken, IdentityError> {
    if s.is_empty() {
        return Err(IdentityError::invalid("refresh_token", "must not be empty"));
    }
    RefreshToken::parse(s).map_err(|e| IdentityError::invalid("refresh_token", e))
}

/// The tokens minted for a session: an access token, and a new refresh
/// token when the session may have one.
pub(crate) struct Minted {
    pub access_token: String,
    pub expires_in: i64,
    /// The token and its lifetime in seconds.
    pub refresh: Option<(String, i64)>,
}

impl Identity {
    /// A new session of `user_id`, for the first-party API (`client` is
    /// `None`) or an OpenID Connect client and its grant, started from the
    /// browser session `browser` when there is one; no tokens yet.
    pub(crate) async fn open_session(
        &self,
        user_id: &str,
        client: Option<SessionClient>,
        browser: Option<&str>,
        amr: &[String],
    ) -> Result<(SessionId, SessionRecord), IdentityError> {
        let id = SessionId::new(&self.region, self.clock.now_ms(), self.random_u128());
        let session = self
            .insert_session(&id, user_id, |s| {
                s.client = client;
                s.browser_session = browser.map(str::to_owned);
                s.amr = amr.to_vec();
            })
            .await?;
        Ok((id, session))
    }

    /// Stores a new session `id` of `user_id`, living the federation's
    /// session lifetime from now, as `shape` completes it.
    pub(crate) async fn insert_session(
        &self,
        id: &SessionId,
        user_id: &str,
        shape: impl FnOnce(&mut SessionRecord),
    ) -> Result<SessionRecord, IdentityError> {
        let now = self.now();
        let mut session = SessionRecord {
            session_id: id.to_string(),
            user_id: user_id.to_owned(),
            created_at: now,
            expires_at: now + self.topology.tokens.session_ttl_seconds,
            revoked_at: None,
            revoked_reason: None,
            client: None,
            browser_hash: None,
            browser_session: None,
            amr: Vec::new(),
        };
        shape(&mut session);
        if !self.store.insert_session(&session, now).await?.is_applied() {
            return Err(IdentityError::internal(
                "start session",
                "session id collision",
            ));
        }
        Ok(session)
    }

    /// A new first-party session for `user_id`, who authenticated by
    /// `amr`, with its first tokens.
    pub(crate) async fn start_session(
        &self,
        user_id: &str,
        amr: &[String],
    ) -> Result<Authenticated, IdentityError> {
        let (id, session) = self.open_session(user_id, None, None, amr).await?;
        self.issue(user_id.to_owned(), &id, &session).await
    }

    /// An access token of `session` (whose id is `id`), and a new refresh
    /// token in it when `with_refresh`. The token's `client_id` and
    /// `scope` are the session's client's (the first-party API's when it
    /// has none), and so is its lifetime when the client sets one.
    pub(crate) async fn mint(
        &self,
        user_id: &str,
        id: &SessionId,
        session: &SessionRecord,
        with_refresh: bool,
    ) -> Result<Minted, IdentityError> {
        let now = self.now();
        let refresh = if with_refresh {
            let token = RefreshToken::new(id, random::<32>(self.entropy.as_ref()));
            let refresh_expires =
                (now + self.topology.tokens.refresh_ttl_seconds).min(session.expires_at);
            let record = RefreshRecord {
                token_hash: token.storage_hash(),
                session_id: session.session_id.clone(),
                user_id: user_id.to_owned(),
                issued_at: now,
                expires_at: refresh_expires,
                used_at: None,
            };
            if !self.store.insert_refresh(&record, now).await?.is_applied() {
                return Err(IdentityError::internal(
                    "issue tokens",
                    "refresh token collision",
                ));
            }
            Some((token.expose().to_owned(), refresh_expires - now))
        } else {
            None
        };
        let (client_id, scope) = match &session.client {
            Some(c) => (c.client_id.as_str(), c.scope.as_str()),
            None => (CLIENT_ID, SCOPE),
        };
        let ttl = self
            .topology
            .clients
            .get(client_id)
            .and_then(|c| c.access_ttl_seconds)
            .unwrap_or(self.topology.tokens.access_ttl_seconds);
        let fed = &self.topology.federation;
        let amr = crate::second_factor::amr_or_password(&session.amr);
        let jti = ulid::Ulid::from_parts(ulid_ms(now, 0), self.random_u128());
        let claims = AccessClaims {
            iss: fed.issuer.clone(),
            sub: user_id.to_owned(),
            aud: fed.audience.clone(),
            exp: now + ttl,
            iat: now,
            nbf: now,
            jti: jti.to_string(),
            client_id: client_id.into(),
            scope: scope.into(),
            rgn: self.region.to_string(),
            sid: session.session_id.clone(),
            acr: domicile_core::mfa::acr_of(&amr).to_owned(),
            amr,
        };
        Ok(Minted {
            access_token: self.sign(&claims)?,
            expires_in: ttl,
            refresh,
        })
    }

    /// A new refresh token in `session` and an access token.
    async fn issue(
        &self,
        user_id: String,
        id: &SessionId,
        session: &SessionRecord,
    ) -> Result<Authenticated, IdentityError> {
        let m = self.mint(&user_id, id, session, true).await?;
        let (refresh_token, refresh_expires_in) = m.refresh.ok_or_else(|| {
            IdentityError::internal("issue tokens", "no refresh token was minted")
        })?;
        Ok(Authenticated {
            user_id,
            region: self.region.clone(),
            access_token: m.access_token,
            token_type: "Bearer",
            expires_in: m.expires_in,
            refresh_token,
            refresh_expires_in,
            session_id: session.session_id.clone(),
        })
    }

    /// The region a refresh token names must be this one.
    fn check_token_home(&self, token: &RefreshToken) -> Result<(), IdentityError> {
        self.check_home(token.region(), "refresh_token")
    }

    /// Exchanges a refresh token of the first-party API for new tokens. A
    /// token already exchanged is reuse: the session is revoked and audited.
    pub async fn refresh(&self, token: &RefreshToken) -> Result<Authenticated, IdentityError> {
        let (record, session) = self.rotate(token, None).await?;
        self.issue(record.user_id, token.session(), &session).await
    }

    /// Spends a refresh token of `client`'s session (`None`: the first-party
    /// API's): the token's record and its live session. A token of another
    /// client's session is refused as invalid; one already spent is reuse,
    /// and ends the session.
    pub(crate) async fn rotate(
        &self,
        token: &RefreshToken,
        client: Option<&str>,
    ) -> Result<(RefreshRecord, SessionRecord), IdentityError> {
        self.check_token_home(token)?;
        let now = self.now();
        let invalid = || IdentityError::from(Unauthenticated::InvalidRefreshToken);
        let record = self
            .store
            .get_refresh(token.session().as_str(), &token.storage_hash(), now)
            .await?
            .ok_or_else(invalid)?;
        let session = self
            .store
            .get_session(&record.session_id, now)
            .await?
            .ok_or_else(invalid)?;
        if session.revoked_at.is_some()
            || session.client.as_ref().map(|c| c.client_id.as_str()) != client
        {
            return Err(invalid());
        }
        let won = record.used_at.is_none()
            && self
                .store
                .mark_refresh_used(&record, now)
                .await?
                .is_applied();
        if !won {
            // Reuse of a rotated token: someone else holds the family. End it.
            self.store
                .revoke_session(&session.session_id, now, RevokeReason::RefreshReuse)
                .await?;
            tracing::warn!(session = %session.session_id, "refresh token reuse; session revoked");
            self.audit_event(
                &session.user_id,
                AuditKind::RefreshReuse,
                &session.session_id,
            );
            return Err(Unauthenticated::RefreshReused.into());
        }
        Ok((record, session))
    }

    /// Verifies a bearer access token issued by this region for a live
    /// session of its user.
    pub async fn authorize(&self, bearer: &str) -> Result<AccessClaims, IdentityError> {
        let fed = &self.topology.federation;
        let want = Expectations {
            issuer: &fed.issuer,
            audience: &fed.audience,
            region: Some(&self.region),
        };
        let now = self.now();
        let claims = self
            .keys
            .load()
            .verifier()
            .verify(bearer, &want, now)
            .map_err(|e| match e {
                TokenError::ForeignRegion(r) if self.topology.region(&r).is_some() => {
                    IdentityError::WrongRegion { home: r }
                }
                other => Unauthenticated::BadAccessToken(other.to_string()).into(),
            })?;
        match self.store.get_session(&claims.sid, now).await? {
            Some(s) if s.revoked_at.is_none() && s.user_id == claims.sub => Ok(claims),
            _ => Err(Unauthenticated::SessionEnded.into()),
        }
    }

    /// Ends a session; audited when this call ended it. Returns its id.
    pub async fn logout(&self, by: LogoutBy<'_>) -> Result<String, IdentityError> {
        let now = self.now();
        let (session_id, user_id) = match by {
            LogoutBy::Refresh(token) => {
                self.check_token_home(&token)?;
                let record = self
                    .store
                    .get_refresh(token.session().as_str(), &token.storage_hash(), now)
                    .await?
                    .ok_or(Unauthenticated::InvalidRefreshToken)?;
                (record.session_id, record.user_id)
            }
            LogoutBy::Bearer(bearer) => {
                let claims = self.authorize(bearer).await?;
                (claims.sid, claims.sub)
            }
        };
        if self
            .store
            .revoke_session(&session_id, now, RevokeReason::Logout)
            .await?
            .is_applied()
        {
            self.audit_event(&user_id, AuditKind::Logout, &session_id);
        }
        Ok(session_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_do_not_print_their_tokens() {
        let a = Authenticated {
            user_id: "usr_eu_01JD0000000000000000000001".into(),
            region: RegionCode::parse("eu").unwrap(),
            access_token: "eyJhbGciOiJFZERTQSJ9.secret-access".into(),
            token_type: "Bearer",
            expires_in: 900,
            refresh_token: "rt_eu_secret-refresh".into(),
            refresh_expires_in: 3600,
            session_id: "ses_eu_01JD0000000000000000000001".into(),
        };
        let shown = format!("{a:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("ses_eu_"), "{shown}");
    }
}
