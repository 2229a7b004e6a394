//! Setting up second factors for a signed-in user: an authenticator app
//! (TOTP: a new secret shown once as an `otpauth://` URI and in base32,
//! kept sealed in the home region, confirmed by a first code within ten
//! minutes), recovery codes (ten single-use codes, kept as keyed hashes,
//! shown once: when the first factor is confirmed and when regenerated,
//! which kills the last set), and removal. An app is added only while
//! none is set up (replacing one is removing it, then adding the new
//! one). Removing the app and regenerating the codes need the password
//! again and a sign-in that passed the second factor (a session, or an
//! access token, whose `amr` has `mfa`): a stolen one-factor session or
//! token cannot take the factor away. Each change is audited and the user
//! is told by email.
//!
//! Signing in with a factor is `second_factor`'s; passkeys are not here.

use crate::{Identity, IdentityError, Unauthenticated, env::random, messages::MessageKind};
use domicile_core::{
    UnixSeconds,
    mfa::{
        self, RECOVERY_CODE_BYTES, RECOVERY_CODES, RecoveryCode, TOTP_SECRET_LEN, TotpCode,
        TotpSecret,
    },
    password,
};
use domicile_store::{Activation, AuditKind, PendingTotp, UserRecord};
use std::sync::Arc;

/// How long an enrolment waits for its first code.
pub const ENROLMENT_TTL_SECONDS: i64 = 600;

/// A new authenticator-app secret to show the user. Secret: `Debug` shows
/// none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// Base32, for typing into the app.
    pub secret: String,
    /// `otpauth://totp/…`, for a QR code.
    pub otpauth_uri: String,
    pub expires_in: i64,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolment")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Recovery codes as shown once (`xxxx-xxxx-xxxx`). Secret: `Debug` shows
/// only how many.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCodes(pub Vec<String>);

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryCodes({})", self.0.len())
    }
}

/// What second factors a user has (no secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FactorStatus {
    pub totp: bool,
    pub totp_enrolled_at: Option<UnixSeconds>,
    /// An enrolment is waiting for its first code.
    pub totp_pending: bool,
    pub recovery_codes_left: usize,
}

/// Who is setting up factors: the bearer of an access token (the API), or
/// a browser session of the hosted pages (the account page).
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    Bearer(&'a str),
    Browser(&'a crate::browser::BrowserSession),
}

/// The password a sensitive change asks for again, checked for size only.
pub struct Reauthentication(String);

impl std::fmt::Debug for Reauthentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reauthentication(…)")
    }
}

impl Reauthentication {
    pub fn new(password: String) -> Result<Self, IdentityError> {
        if password.is_empty() {
            return Err(IdentityError::invalid(
                "password",
                "the current password is required for this change",
            ));
        }
        if password.len() > password::MAX_PASSWORD_BYTES {
            return Err(IdentityError::invalid(
                "password",
                password::PasswordError::TooLong,
            ));
        }
        Ok(Self(password))
    }
}

impl Identity {
    /// Whether the caller's sign-in passed a second factor.
    pub(crate) async fn caller_two_factors(
        &self,
        caller: Caller<'_>,
    ) -> Result<bool, IdentityError> {
        Ok(match caller {
            Caller::Bearer(token) => self
                .authorize(token)
                .await?
                .amr
                .iter()
                .any(|m| m == mfa::AMR_MFA),
            Caller::Browser(session) => session.two_factors(),
        })
    }

    /// The caller's user, as stored now.
    pub(crate) async fn caller_user(
        &self,
        caller: Caller<'_>,
    ) -> Result<UserRecord, IdentityError> {
        match caller {
            Caller::Bearer(token) => self.bearer_user(token).await,
            Caller::Browser(session) => self
                .store
                .get_user(&session.user_id)
                .await?
                .ok_or_else(|| Unauthenticated::UserGone.into()),
        }
    }

    /// The caller's factors.
    pub async fn factor_status(&self, caller: Caller<'_>) -> Result<FactorStatus, IdentityError> {
        let user = self.caller_user(caller).await?;
        self.status_of(&user.user_id).await
    }

    async fn status_of(&self, user_id: &str) -> Result<FactorStatus, IdentityError> {
        let f = self.store.get_factors(user_id).await?;
        let now = self.now();
        Ok(FactorStatus {
            totp: f.as_ref().is_some_and(|f| f.totp.is_some()),
            totp_enrolled_at: f
                .as_ref()
                .and_then(|f| f.totp.as_ref().map(|t| t.enrolled_at)),
            totp_pending: f
                .as_ref()
                .and_then(|f| f.pending_totp.as_ref())
                .is_some_and(|p| now < p.expires_at),
            recovery_codes_left: f.as_ref().map_or(0, |f| f.recovery_left()),
        })
    }

    /// Starts setting up an authenticator app for the caller: a new secret,
    /// kept sealed until its first code confirms it (a later enrolment
    /// replaces an unconfirmed one; a confirmed app stays until then).
    /// The app shows the service as `client_id`'s brand (a registered
    /// client), or the federation's name.
    pub async fn enroll_totp(
        &self,
        caller: Caller<'_>,
        client_id: Option<&str>,
    ) -> Result<Enrolment, IdentityError> {
        let issuer = match client_id {
            Some(id) => self.client(id)?.branding.display_name.clone(),
            None => self.topology.federation.name.clone(),
        };
        let user = self.caller_user(caller).await?;
        self.no_app_yet(&user.user_id).await?;
        let secret = TotpSecret::new(random::<TOTP_SECRET_LEN>(self.entropy.as_ref()));
        let sealed = mfa::seal(
            &self.factor_key(),
            random::<12>(self.entropy.as_ref()),
            &user.user_id,
            &secret,
        )
        .map_err(|e| IdentityError::internal("enrol totp", e))?;
        let otpauth_uri = secret
            .otpauth_uri(&issuer, &user.email)
            .map_err(|e| IdentityError::internal("enrol totp", e))?;
        let now = self.now();
        self.store
            .put_pending_totp(
                &user.user_id,
                &PendingTotp {
                    sealed,
                    created_at: now,
                    expires_at: now + ENROLMENT_TTL_SECONDS,
                },
                now,
            )
            .await?;
        Ok(Enrolment {
            secret: secret.base32(),
            otpauth_uri,
            expires_in: ENROLMENT_TTL_SECONDS,
        })
    }

    /// Confirms the caller's waiting enrolment with a code from the app:
    /// the app is their second factor now. The first time, the answer
    /// carries the new recovery codes (shown once); when a live set exists
    /// it stays, and the answer carries none.
    pub async fn confirm_totp(
        self: &Arc<Self>,
        caller: Caller<'_>,
        code: &str,
    ) -> Result<Option<RecoveryCodes>, IdentityError> {
        let code = TotpCode::parse(code).map_err(|e| IdentityError::invalid("code", e))?;
        let user = self.caller_user(caller).await?;
        let now = self.now();
        let wrong = || IdentityError::invalid("code", "the code is not the app's current one");
        self.no_app_yet(&user.user_id).await?;
        let pending = self
            .store
            .get_factors(&user.user_id)
            .await?
            .and_then(|f| f.pending_totp)
            .filter(|p| now < p.expires_at)
            .ok_or_else(|| {
                IdentityError::invalid("code", "no authenticator app is waiting for its first code")
            })?;
        let secret = mfa::open(&self.factor_key(), &user.user_id, &pending.sealed)
            .map_err(|e| IdentityError::internal("confirm totp", e))?;
        let step = secret.matching_step(&code, now).ok_or_else(wrong)?;
        let (codes, hashes) = self.new_recovery_codes(&user.user_id)?;
        match self
            .store
            .activate_totp(&user.user_id, &pending.sealed, step, &hashes, now)
            .await?
        {
            Activation::NoEnrolment => Err(IdentityError::invalid(
                "code",
                "the enrolment was replaced or has expired; start again",
            )),
            Activation::Activated { recovery_installed } => Ok(self.factor_added(
                &user.user_id,
                AuditKind::TotpEnrolled,
                recovery_installed.then_some(codes),
            )),
        }
    }

    /// Removes the caller's authenticator app, after their password (and
    /// with it the recovery codes: no second factor is left to back up):
    /// the factors left.
    pub async fn remove_totp(
        self: &Arc<Self>,
        caller: Caller<'_>,
        password: Reauthentication,
    ) -> Result<FactorStatus, IdentityError> {
        let user = self.reauthenticated(caller, password).await?;
        if !self.store.remove_totp(&user.user_id, self.now()).await? {
            return Err(IdentityError::invalid(
                "totp",
                "no authenticator app is set up",
            ));
        }
        self.audit
            .record(&user.user_id, AuditKind::TotpRemoved, None, String::new());
        self.notify(&user.user_id, MessageKind::SecondFactorChanged, None);
        self.status_of(&user.user_id).await
    }

    /// Replaces the caller's recovery codes with ten new ones (shown once;
    /// the old ones stop working), after their password.
    pub async fn regenerate_recovery_codes(
        self: &Arc<Self>,
        caller: Caller<'_>,
        password: Reauthentication,
    ) -> Result<RecoveryCodes, IdentityError> {
        let user = self.reauthenticated(caller, password).await?;
        let (codes, hashes) = self.new_recovery_codes(&user.user_id)?;
        if !self
            .store
            .replace_recovery(&user.user_id, &hashes, self.now())
            .await?
        {
            return Err(IdentityError::invalid(
                "recovery_codes",
                "recovery codes back up a second factor: set up an authenticator app first",
            ));
        }
        self.audit.record(
            &user.user_id,
            AuditKind::RecoveryCodesGenerated,
            None,
            String::new(),
        );
        self.notify(&user.user_id, MessageKind::SecondFactorChanged, None);
        Ok(codes)
    }

    /// Audits and tells of a factor added to `user_id` (`kind`), with the
    /// recovery codes it brought, if any: those codes.
    pub(crate) fn factor_added(
        self: &Arc<Self>,
        user_id: &str,
        kind: AuditKind,
        codes: Option<RecoveryCodes>,
    ) -> Option<RecoveryCodes> {
        self.audit.record(user_id, kind, None, String::new());
        if codes.is_some() {
            self.audit.record(
                user_id,
                AuditKind::RecoveryCodesGenerated,
                None,
                String::new(),
            );
        }
        self.notify(user_id, MessageKind::SecondFactorChanged, None);
        codes
    }

    /// Refuses to add an app beside a confirmed one: replacing the
    /// factor takes what removing it takes.
    async fn no_app_yet(&self, user_id: &str) -> Result<(), IdentityError> {
        match self.store.get_factors(user_id).await? {
            Some(f) if f.totp.is_some() => Err(IdentityError::invalid(
                "totp",
                "an authenticator app is set up already: remove it first to set up another",
            )),
            _ => Ok(()),
        }
    }

    /// The caller's user, if their sign-in passed the second factor and
    /// `password` is theirs (a wrong one is audited as a failed login and
    /// refused as one).
    pub(crate) async fn reauthenticated(
        &self,
        caller: Caller<'_>,
        password: Reauthentication,
    ) -> Result<UserRecord, IdentityError> {
        let user = self.caller_user(caller).await?;
        // Without a second factor there is none to take away (the change
        // itself says so); with one, only a sign-in that passed it may.
        let has_factor = self
            .store
            .get_factors(&user.user_id)
            .await?
            .is_some_and(|f| f.has_second_factor());
        if has_factor && !self.caller_two_factors(caller).await? {
            return Err(IdentityError::StepUpRequired);
        }
        match self
            .hasher
            .verify(password.0, user.password_hash.clone())
            .await?
        {
            password::Verified::No => {
                self.audit
                    .record(&user.user_id, AuditKind::LoginFailed, None, String::new());
                Err(Unauthenticated::BadCredentials.into())
            }
            password::Verified::Yes | password::Verified::YesRehash => Ok(user),
        }
    }

    /// Ten new recovery codes of `user_id`: as shown, and as kept.
    pub(crate) fn new_recovery_codes(
        &self,
        user_id: &str,
    ) -> Result<(RecoveryCodes, Vec<[u8; 32]>), IdentityError> {
        let mut shown = Vec::with_capacity(RECOVERY_CODES);
        let mut kept = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let code = RecoveryCode::new(random::<RECOVERY_CODE_BYTES>(self.entropy.as_ref()));
            kept.push(self.recovery_hash(user_id, &code)?);
            shown.push(code.display());
        }
        Ok((RecoveryCodes(shown), kept))
    }
}
