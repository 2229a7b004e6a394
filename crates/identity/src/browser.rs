//! Browser sessions of the hosted pages (single sign-on): one is opened
//! when a user signs in or signs up on a page, and its cookie
//! (`BrowserSecret`, region-tagged) lets the next authorization request,
//! from any client, be answered without a password while it lives and the
//! request's `max_age` allows. Ending one (RP-initiated logout) ends the
//! client sessions started from it.
//!
//! A browser session is a row of the region's sessions table with the
//! SHA-256 of its cookie and no tokens of its own; it is exported and
//! erased with the user's other sessions. No HTTP here: the node reads
//! and writes the cookie.

use crate::{Identity, IdentityError, env::random};
use domicile_core::{
    UnixSeconds,
    email::Email,
    ids::{BrowserSecret, SessionId},
    token::{IdClaims, TokenError},
};
use domicile_store::{AuditKind, RevokeReason, SessionRecord};

/// A new browser session's cookie value and how long it lives. A secret:
/// `Debug` shows only the session.
#[derive(Clone, PartialEq, Eq)]
pub struct BrowserCookie {
    pub value: String,
    /// Seconds.
    pub max_age: i64,
    pub session_id: String,
}

impl std::fmt::Debug for BrowserCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserCookie")
            .field("session_id", &self.session_id)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

/// A live browser session a cookie named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserSession {
    pub session_id: String,
    pub user_id: String,
    /// When the user signed in.
    pub auth_time: UnixSeconds,
    /// How they signed in (`amr`).
    pub amr: Vec<String>,
}

impl BrowserSession {
    /// Whether its sign-in took two factors.
    pub fn two_factors(&self) -> bool {
        self.amr.iter().any(|m| m == domicile_core::mfa::AMR_MFA)
    }
}

/// Whether a browser session may answer an authorization request without
/// a page: it must be younger than `max_age` (seconds since the password
/// was entered) when the request sets one.
pub fn fresh_enough(session: &BrowserSession, max_age: Option<i64>, now: UnixSeconds) -> bool {
    max_age.is_none_or(|m| now - session.auth_time <= m)
}

impl Identity {
    /// Opens a browser session of `user_id`: its record, and its cookie.
    pub(crate) async fn open_browser_session(
        &self,
        user_id: &str,
        amr: &[String],
    ) -> Result<(SessionRecord, BrowserCookie), IdentityError> {
        let id = SessionId::new(&self.region, self.clock.now_ms(), self.random_u128());
        let secret = BrowserSecret::new(&id, random::<32>(self.entropy.as_ref()));
        let session = self
            .insert_session(&id, user_id, |s| {
                s.browser_hash = Some(secret.storage_hash());
                s.amr = amr.to_vec();
            })
            .await?;
        let cookie = BrowserCookie {
            value: secret.expose().to_owned(),
            max_age: session.expires_at - session.created_at,
            session_id: session.session_id.clone(),
        };
        Ok((session, cookie))
    }

    /// The live browser session `cookie` names, if it is this region's and
    /// its secret is the session's. Anything else (malformed, another
    /// region's, unknown, expired, ended, forged) is `None`: the browser is
    /// simply not signed in here.
    pub async fn browser_session(
        &self,
        cookie: &str,
    ) -> Result<Option<BrowserSession>, IdentityError> {
        let Ok(secret) = BrowserSecret::parse(cookie) else {
            return Ok(None);
        };
        if secret.region() != &self.region {
            return Ok(None);
        }
        let now = self.now();
        let Some(s) = self
            .store
            .get_session(secret.session().as_str(), now)
            .await?
        else {
            return Ok(None);
        };
        // Hashes are compared, not secrets: timing reveals nothing usable.
        let matches = s.browser_hash == Some(secret.storage_hash());
        Ok(
            (matches && s.revoked_at.is_none()).then_some(BrowserSession {
                session_id: s.session_id,
                user_id: s.user_id,
                auth_time: s.created_at,
                amr: crate::second_factor::amr_or_password(&s.amr),
            }),
        )
    }

    /// Whether the browser session's user is the one `login_hint` names
    /// (a hint naming someone else means the page must be shown).
    pub async fn is_hinted_user(
        &self,
        session: &BrowserSession,
        login_hint: &Email,
    ) -> Result<bool, IdentityError> {
        Ok(self
            .store
            .get_user(&session.user_id)
            .await?
            .is_some_and(|u| u.email == login_hint.as_str()))
    }

    /// The claims of an `id_token_hint`: an ID token this region signed
    /// for this issuer (it may have expired). A hint signed by another
    /// region of the federation is `WrongRegion` (the edge routes by its
    /// key id); anything else that does not verify is invalid.
    pub fn id_token_hint(&self, token: &str) -> Result<IdClaims, IdentityError> {
        let now = self.now();
        self.keys
            .load()
            .verifier()
            .verify_id_token_hint(
                token,
                &self.topology.federation.issuer,
                Some(&self.region),
                now,
            )
            .map_err(|e| match e {
                TokenError::ForeignRegion(r) if self.topology.region(&r).is_some() => {
                    IdentityError::WrongRegion { home: r }
                }
                other => IdentityError::invalid("id_token_hint", other),
            })
    }

    /// RP-initiated logout: ends the browser's session (`browser`) and the
    /// session the verified `hint` names (for a client session started
    /// from a browser session: that whole browser session), each with the
    /// client sessions started from it. Returns how many sessions ended.
    pub async fn log_out(
        &self,
        browser: Option<&BrowserSession>,
        hint: Option<&IdClaims>,
    ) -> Result<usize, IdentityError> {
        let mut ended = 0;
        if let Some(b) = browser {
            ended += self.end_browser_session(&b.user_id, &b.session_id).await?;
        }
        if let Some(h) = hint {
            let now = self.now();
            let root = match self.store.get_session(&h.sid, now).await? {
                Some(s) if s.user_id == h.sub => s.browser_session.unwrap_or(s.session_id),
                // Gone, or not the hint's user's: nothing of the hint to end.
                _ => return Ok(ended),
            };
            if browser.is_none_or(|b| b.session_id != root) {
                ended += self.end_browser_session(&h.sub, &root).await?;
            }
        }
        Ok(ended)
    }

    /// Ends the browser session `session_id` of `user_id` and every live
    /// client session started from it; audited as one logout per session
    /// this call ended. Returns how many sessions it ended.
    pub async fn end_browser_session(
        &self,
        user_id: &str,
        session_id: &str,
    ) -> Result<usize, IdentityError> {
        let now = self.now();
        let mut ended = 0;
        let family = self.store.live_sessions(user_id, now).await?;
        for s in family.iter().filter(|s| {
            s.session_id == session_id || s.browser_session.as_deref() == Some(session_id)
        }) {
            if self
                .store
                .revoke_session(&s.session_id, now, RevokeReason::Logout)
                .await?
                .is_applied()
            {
                self.audit_event(user_id, AuditKind::Logout, &s.session_id);
                ended += 1;
            }
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_measured_from_the_password() {
        let s = BrowserSession {
            session_id: "ses_eu_01JD0000000000000000000001".into(),
            user_id: "usr_eu_01JD0000000000000000000001".into(),
            auth_time: 1_000,
            amr: vec![],
        };
        for (max_age, now, fresh) in [
            (None, 1_000_000, true),
            (Some(0), 1_000, true),
            (Some(0), 1_001, false),
            (Some(60), 1_060, true),
            (Some(60), 1_061, false),
        ] {
            assert_eq!(
                fresh_enough(&s, max_age, now),
                fresh,
                "{max_age:?} at {now}"
            );
        }
    }

    #[test]
    fn cookies_do_not_print_their_secret() {
        let c = BrowserCookie {
            value: "bs_eu_secret".into(),
            max_age: 60,
            session_id: "ses_eu_x".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
    }
}
