//! The second step of a sign-in: the one gate every sign-in passes once its
//! first factor did (`conclude`), and finishing a sign-in that waits for a
//! second factor (`complete_sign_in`).
//!
//! A second factor is asked when the user has one, when the client's
//! policy requires one, or when the authorization request asks for two
//! factors (`acr_values`). The half-finished sign-in is a pending sign-in
//! (`mfa_<region>_…`, five minutes, five wrong attempts, single use;
//! and ten wrong factors a quarter hour per account, across its sign-ins) in
//! the user's home region, whatever node of the region receives its second
//! half; the same state serves the API (`CompleteSignIn`) and the hosted
//! pages. A TOTP code is accepted once (the store keeps the last step), a
//! recovery code is spent once and the user is told. The reasons a second
//! factor was asked are audited by name, with no personal data.
//!
//! A sign-in unlike the user's others (`risk`: a new country, a new
//! device, impossible travel) asks for the user's second factor; a user
//! without one who signed in with the password is sent a code by email
//! instead (a sign-in check: `amr` gains `otp`, not `mfa`, since the
//! mailbox is what a password reset trusts already). A sign-in whose first
//! factor was a code is not checked again by email: the signals are only
//! audited. Every finished sign-in is added to the user's history.
//!
//! It does not enrol a factor during sign-in (`mfa` does enrolment for a
//! signed-in user), and it remembers no device as trusted: a user with a
//! second factor is asked for it at every sign-in.

use crate::{
    Identity, IdentityError,
    env::random,
    messages::{Asked, Channel, MessageKind},
    oidc::SignedIn,
    risk::Context,
    sessions::Authenticated,
};
use domicile_core::{
    clients::MfaPolicy,
    ids::{PendingSignIn, UserId},
    mfa::{self, RecoveryCode, TotpCode},
    risk::{Seen, Signal},
};
use domicile_oidc::authorize::AuthorizationRequest;
use domicile_store::{
    AuditKind, FactorAttempt, PendingOutcome, PendingSignInRecord, Purpose, RecoveryUse, StepUse,
    UserRecord,
};
use std::sync::Arc;

/// How long a sign-in waits for its second factor.
pub const PENDING_TTL_SECONDS: i64 = 300;
/// Wrong second factors a pending sign-in survives.
pub const PENDING_ATTEMPTS: u32 = 5;
/// Wrong second factors an account allows in `FAILURE_WINDOW_SECONDS`,
/// across all its pending sign-ins; beyond them every factor is refused
/// until the window ends. Someone who knows the password can start any
/// number of sign-ins, so the account, not the sign-in, bounds guessing:
/// ten guesses per quarter hour give a six-digit code (three live at a
/// time) about a 0.3% chance a day.
pub const MAX_FAILURES: u32 = 10;
pub const FAILURE_WINDOW_SECONDS: i64 = 900;

/// What a sign-in ends in once every factor it needs has passed.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum End {
    /// A first-party session with tokens (the API).
    FirstParty,
    /// A browser session and an authorization code for the request.
    Oidc(Box<AuthorizationRequest>),
}

/// Where a second factor is presented: the API (`CompleteSignIn`), or the
/// hosted pages (`POST /mfa`). A pending sign-in finishes only where it
/// started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    Api,
    HostedPages,
}

/// What the pending record keeps of its sign-in's end.
#[derive(serde::Serialize, serde::Deserialize)]
struct Target {
    end: End,
    /// The audit event of the finished sign-in.
    audit: AuditKind,
    /// Where the sign-in came from, for the history once it finishes.
    #[serde(default)]
    seen: Seen,
    /// The second step is the code emailed to the user (a sign-in check),
    /// not an authenticator app or recovery code.
    #[serde(default)]
    by_email: bool,
    /// The passkey ceremony's state (webauthn-rs's, JSON) when the user
    /// has passkeys: its challenge, the credentials allowed.
    #[serde(default)]
    passkey: Option<String>,
}

/// A finished sign-in: a first-party session, or a browser sign-in with
/// its code and the authorization request it answers.
#[derive(Debug)]
pub enum Concluded {
    Session(Authenticated),
    Code(SignedIn, Box<AuthorizationRequest>),
}

/// What a sign-in waiting for its second factor hands the caller: the
/// pending token to present with it, and the factors the user can use.
/// The token is a secret: `Debug` shows none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge {
    pub token: String,
    /// What the user has of `totp`, `passkey` and `recovery_code`, or
    /// `email_code` alone (a sign-in check: the six digits go where a TOTP
    /// code would).
    pub methods: Vec<&'static str>,
    /// With `passkey`: the options for `navigator.credentials.get` (JSON,
    /// `{"publicKey": …}`).
    pub passkey_options: Option<String>,
    pub expires_in: i64,
}

impl Challenge {
    /// Whether the code asked for is the one emailed (a sign-in check).
    pub fn by_email(&self) -> bool {
        self.methods == ["email_code"]
    }
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

/// A presented second factor, validated. Six digits are checked against
/// what the pending sign-in asked for: the authenticator app's code, or the
/// code emailed for a sign-in check.
#[derive(Debug)]
pub enum Factor {
    Totp(TotpCode),
    Recovery(RecoveryCode),
    /// The browser's answer to the passkey options (`PublicKeyCredential`
    /// JSON, checked for size and shape).
    Passkey(Box<webauthn_rs::prelude::PublicKeyCredential>),
}

impl Factor {
    /// Exactly one of a TOTP code and a recovery code; errors name the
    /// field.
    pub fn new(totp: &str, recovery: &str) -> Result<Self, IdentityError> {
        match (totp.trim().is_empty(), recovery.trim().is_empty()) {
            (false, true) => TotpCode::parse(totp)
                .map(Factor::Totp)
                .map_err(|e| IdentityError::invalid("totp_code", e)),
            (true, false) => RecoveryCode::parse(recovery)
                .map(Factor::Recovery)
                .map_err(|e| IdentityError::invalid("recovery_code", e)),
            _ => Err(IdentityError::invalid(
                "totp_code",
                "give exactly one of totp_code and recovery_code",
            )),
        }
    }

    /// Exactly one of a TOTP code, a recovery code and a passkey's answer
    /// (the API's fields); errors name the field.
    pub fn from_fields(totp: &str, recovery: &str, passkey: &str) -> Result<Self, IdentityError> {
        match passkey {
            "" => Self::new(totp, recovery),
            answer if totp.trim().is_empty() && recovery.trim().is_empty() => {
                Self::passkey(answer, "passkey_credential")
            }
            _ => Err(IdentityError::invalid(
                "passkey_credential",
                "give exactly one of totp_code, recovery_code and passkey_credential",
            )),
        }
    }

    /// A passkey's answer (`PublicKeyCredential` JSON); errors name
    /// `field`.
    pub fn passkey(json: &str, field: &'static str) -> Result<Self, IdentityError> {
        if json.len() > crate::passkeys::MAX_CREDENTIAL_BYTES {
            return Err(IdentityError::invalid(
                field,
                format!("at most {} bytes", crate::passkeys::MAX_CREDENTIAL_BYTES),
            ));
        }
        serde_json::from_str(json)
            .map(|c| Factor::Passkey(Box::new(c)))
            .map_err(|e| IdentityError::invalid(field, e))
    }
}

/// Why a second factor was refused. The texts are what clients see.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FactorRefused {
    #[error("the code is wrong or was already used; {attempts_left} attempt(s) left")]
    Wrong { attempts_left: u32 },
    #[error("this sign-in has expired or ended; sign in again")]
    Expired,
}

/// Why a sign-in asks for a second factor (audited by these names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    /// The user has set one up.
    Enrolled,
    /// The client's policy requires one.
    ClientPolicy,
    /// The request asked for two factors (`acr_values`).
    Requested,
    /// The sign-in looks unlike the user's others.
    Risk(Signal),
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Enrolled => "factor_enrolled",
            Reason::ClientPolicy => "client_policy",
            Reason::Requested => "acr_requested",
            Reason::Risk(s) => s.as_str(),
        }
    }

    /// Whether only a second factor answers this reason (an emailed code
    /// answers risk alone).
    fn needs_factor(self) -> bool {
        !matches!(self, Reason::Risk(_))
    }
}

/// What a sign-in with `reasons` to be checked does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Nothing to check: it finishes.
    Finish,
    /// The user's second factor.
    Factor,
    /// A code emailed to the user.
    EmailCode,
    /// The app needs a second factor the user has not set up.
    Unavailable,
    /// Risk alone, after a first factor that was a code already (the
    /// mailbox or phone proven): finished, and audited.
    FinishNoted,
    /// Risk alone, in a region that sends no email: finished, and audited.
    FinishNoEmail,
    /// The first factor was two in one (a passkey with user
    /// verification): finished, whatever the reasons (risk is audited).
    FinishMultiFactor,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Finish => "none",
            Step::Factor => "second_factor",
            Step::EmailCode => "email_code",
            Step::Unavailable => "refused",
            Step::FinishNoted => "none_code_sign_in",
            Step::FinishNoEmail => "none_no_email",
            Step::FinishMultiFactor => "none_multi_factor",
        }
    }
}

/// The step for `reasons`, given whether the user has a second factor,
/// the first factor's `amr`, and whether the region sends email.
fn step(reasons: &[Reason], enrolled: bool, amr: &[String], emails: bool) -> Step {
    if reasons.is_empty() {
        Step::Finish
    } else if amr.iter().any(|m| m == mfa::AMR_MFA) {
        Step::FinishMultiFactor
    } else if enrolled {
        Step::Factor
    } else if reasons.iter().any(|r| r.needs_factor()) {
        Step::Unavailable
    } else if !amr.iter().all(|m| m == mfa::AMR_PASSWORD) {
        Step::FinishNoted
    } else if !emails {
        Step::FinishNoEmail
    } else {
        Step::EmailCode
    }
}

/// The `amr` of a session whose record kept none (stored before it was
/// kept): a password.
pub(crate) fn amr_or_password(amr: &[String]) -> Vec<String> {
    if amr.is_empty() {
        vec![mfa::AMR_PASSWORD.to_owned()]
    } else {
        amr.to_vec()
    }
}

impl Identity {
    /// Whether `req` takes two factors whoever signs in: its client's
    /// policy requires them or it asked for them (`acr_values`). A browser
    /// session of one factor does not answer such a request (single
    /// sign-on steps up through a sign-in).
    pub fn request_needs_two_factors(&self, req: &AuthorizationRequest) -> bool {
        req.asks_two_factors()
            || self
                .client(&req.client_id)
                .is_ok_and(|c| c.mfa == MfaPolicy::Required)
    }

    /// Whether a browser session may answer `req` without a sign-in
    /// (single sign-on): one that passed a second factor may; one of a
    /// single factor may not when the request needs two, nor once the
    /// user has set up a second factor since (a session from before it,
    /// or the one a refusal for a missing factor opened, does not outlive
    /// the factor's arrival).
    pub async fn session_suffices(
        &self,
        session: &crate::browser::BrowserSession,
        req: &AuthorizationRequest,
    ) -> Result<bool, IdentityError> {
        if session.two_factors() {
            return Ok(true);
        }
        if self.request_needs_two_factors(req) {
            return Ok(false);
        }
        Ok(!self
            .store
            .get_factors(&session.user_id)
            .await?
            .is_some_and(|f| f.has_second_factor()))
    }

    /// Why `end` needs a second factor from a user with `factors`, if it
    /// does; with whether the user has one. `signals` are the sign-in's
    /// risk.
    fn reasons(
        &self,
        factors: Option<&domicile_store::FactorsRecord>,
        end: &End,
        signals: &[Signal],
    ) -> Result<(Vec<Reason>, bool), IdentityError> {
        let enrolled = factors.is_some_and(|f| f.has_second_factor());
        let mut reasons = Vec::new();
        if enrolled {
            reasons.push(Reason::Enrolled);
        }
        if let End::Oidc(req) = end {
            if self.client(&req.client_id)?.mfa == MfaPolicy::Required {
                reasons.push(Reason::ClientPolicy);
            }
            if req.asks_two_factors() {
                reasons.push(Reason::Requested);
            }
        }
        reasons.extend(signals.iter().copied().map(Reason::Risk));
        Ok((reasons, enrolled))
    }

    /// The gate after a first factor (`amr`) passed for `user`, from
    /// `context`: the sign-in ends in `end` (audited as `audit`), or waits
    /// for a second factor or an emailed code (`SecondFactorRequired`, with
    /// the pending token), or cannot finish because the app needs a second
    /// factor the user has not set up.
    pub(crate) async fn conclude(
        self: &Arc<Self>,
        user: &UserRecord,
        amr: Vec<String>,
        end: End,
        audit: AuditKind,
        context: &Context,
    ) -> Result<Concluded, IdentityError> {
        // No sign-in of an account a move touches (leaving, or a copy that
        // has not arrived yet), whatever its first factor was.
        self.settle(user.clone()).await?;
        let now = self.now();
        let seen = self.seen(&user.user_id, context)?;
        let signals = self.signals(&user.user_id, &seen, now).await?;
        let factors = self.store.get_factors(&user.user_id).await?;
        let (reasons, enrolled) = self.reasons(factors.as_ref(), &end, &signals)?;
        let step = step(&reasons, enrolled, &amr, self.sends(Channel::Email));
        if !signals.is_empty() {
            let names: Vec<&str> = signals.iter().map(|s| s.as_str()).collect();
            self.audit.record(
                &user.user_id,
                AuditKind::SignInRisk,
                None,
                format!("signals={} step={}", names.join(","), step.as_str()),
            );
        }
        match step {
            Step::Finish | Step::FinishNoted | Step::FinishNoEmail | Step::FinishMultiFactor => {
                return self
                    .finish_sign_in(&user.user_id, &amr, &end, audit, &seen)
                    .await;
            }
            Step::Unavailable => {
                // Nothing for the app; on the hosted pages, a browser
                // session of this one factor, to reach the account page and
                // set one up.
                let browser = match &end {
                    End::Oidc(_) => {
                        let (session, cookie) =
                            self.open_browser_session(&user.user_id, &amr).await?;
                        self.audit_event(&user.user_id, audit, &session.session_id);
                        Some(cookie)
                    }
                    End::FirstParty => None,
                };
                return Err(IdentityError::SecondFactorUnavailable(browser));
            }
            Step::Factor | Step::EmailCode => {}
        }
        let by_email = step == Step::EmailCode;
        let factors = factors.filter(|_| !by_email);
        let (passkey_options, passkey_state) = match &factors {
            Some(f) if !f.passkeys.is_empty() => {
                let (options, state) = self.passkey_challenge(&f.passkeys)?;
                (Some(options), Some(state))
            }
            _ => (None, None),
        };
        let mut methods = Vec::new();
        if by_email {
            methods.push("email_code");
        }
        if let Some(f) = &factors {
            if f.totp.is_some() {
                methods.push("totp");
            }
            if !f.passkeys.is_empty() {
                methods.push("passkey");
            }
            if f.recovery_left() > 0 {
                methods.push("recovery_code");
            }
        }
        let owner = UserId::parse(&user.user_id)
            .map_err(|e| IdentityError::internal("second factor", e))?;
        let token = PendingSignIn::new(&owner, random::<32>(self.entropy.as_ref()));
        let client_id = match &end {
            End::Oidc(req) => Some(req.client_id.clone()),
            End::FirstParty => None,
        };
        let target = serde_json::to_string(&Target {
            end,
            audit,
            seen,
            by_email,
            passkey: passkey_state,
        })
        .map_err(|e| IdentityError::internal("second factor", e))?;
        let names: Vec<String> = reasons.iter().map(|r| r.as_str().to_owned()).collect();
        let record = PendingSignInRecord {
            user_id: user.user_id.clone(),
            token_hash: token.storage_hash(),
            amr,
            auth_time: now,
            created_at: now,
            expires_at: now + PENDING_TTL_SECONDS,
            attempts_left: PENDING_ATTEMPTS,
            target,
            reasons: names.clone(),
            finished_at: None,
        };
        if !self
            .store
            .insert_pending_sign_in(&record, now)
            .await?
            .is_applied()
        {
            return Err(IdentityError::internal(
                "second factor",
                "pending sign-in collision",
            ));
        }
        if by_email {
            // The code is bound to this pending sign-in: it finishes no
            // other, and a newer check's code replaces it.
            let asked = Asked {
                client_id,
                bound_to: Some(record.token_hash),
                ..Asked::default()
            };
            self.send_in_background(&user.user_id, MessageKind::SignInCheck, &asked)?;
        }
        self.audit.record(
            &user.user_id,
            AuditKind::SecondFactorAsked,
            None,
            format!("reasons={}", names.join(",")),
        );
        Err(IdentityError::SecondFactorRequired(Challenge {
            token: token.expose().to_owned(),
            methods,
            passkey_options,
            expires_in: PENDING_TTL_SECONDS,
        }))
    }

    /// Ends a sign-in whose factors (`amr`) all passed, from where `seen`
    /// says (added to the user's history).
    async fn finish_sign_in(
        &self,
        user_id: &str,
        amr: &[String],
        end: &End,
        audit: AuditKind,
        seen: &Seen,
    ) -> Result<Concluded, IdentityError> {
        let concluded = match end {
            End::FirstParty => {
                let r = self.start_session(user_id, amr).await?;
                self.audit_event(user_id, audit, &r.session_id);
                Concluded::Session(r)
            }
            End::Oidc(req) => {
                let (signed_in, session_id) = self.sign_in_browser(user_id, req, amr).await?;
                self.audit_event(user_id, audit, &session_id);
                Concluded::Code(signed_in, req.clone())
            }
        };
        self.remember_sign_in(user_id, seen).await;
        Ok(concluded)
    }

    /// Finishes a sign-in waiting for its second factor: the pending token
    /// and a TOTP or recovery code, or the emailed code of a sign-in
    /// check. A wrong, replayed or spent code counts
    /// against the pending sign-in; after its last attempt, or its five
    /// minutes, the sign-in must start again.
    pub async fn complete_sign_in(
        self: &Arc<Self>,
        token: &str,
        factor: &Factor,
        surface: Surface,
    ) -> Result<Concluded, IdentityError> {
        let token =
            PendingSignIn::parse(token).map_err(|e| IdentityError::invalid("mfa_token", e))?;
        if token.region() != &self.region {
            return Err(IdentityError::WrongRegion {
                home: token.region().clone(),
            });
        }
        let user_id = token.user().to_string();
        let hash = token.storage_hash();
        let now = self.now();
        let expired = || IdentityError::SecondFactorRefused(FactorRefused::Expired);
        let Some(pending) = self.store.get_pending_sign_in(&user_id, &hash, now).await? else {
            return Err(expired());
        };
        let target: Target = serde_json::from_str(&pending.target)
            .map_err(|e| IdentityError::internal("second factor", e))?;
        // A sign-in started on the hosted pages finishes there, one of the
        // API over the API: nothing is spent for the wrong surface.
        if matches!(target.end, End::FirstParty) != (surface == Surface::Api) {
            return Err(expired());
        }
        // The attempt is taken before the factor is checked, so that
        // concurrent guesses cannot all pass one read of the count.
        let taken = match self
            .store
            .take_factor_attempt(&user_id, MAX_FAILURES, FAILURE_WINDOW_SECONDS, now)
            .await?
        {
            FactorAttempt::Taken { taken } => taken,
            FactorAttempt::Refused { retry_after } => {
                return Err(IdentityError::Throttled { retry_after });
            }
        };
        let factors = self.store.get_factors(&user_id).await?;
        let checked = if target.by_email {
            self.check_emailed_code(&user_id, &hash, factor).await?
        } else {
            self.check_factor(&user_id, factors, factor, target.passkey.as_deref(), now)
                .await?
        };
        let method = match checked {
            Some(m) => {
                self.store.clear_factor_failures(&user_id, now).await?;
                m
            }
            None => {
                self.audit
                    .record(&user_id, AuditKind::SecondFactorFailed, None, String::new());
                if taken == MAX_FAILURES {
                    self.audit.record(
                        &user_id,
                        AuditKind::SecondFactorLocked,
                        None,
                        format!("window_seconds={FAILURE_WINDOW_SECONDS}"),
                    );
                }
                return match self
                    .store
                    .settle_pending_sign_in(&user_id, &hash, false, now)
                    .await?
                {
                    PendingOutcome::Counted { attempts_left } => {
                        Err(IdentityError::SecondFactorRefused(FactorRefused::Wrong {
                            attempts_left,
                        }))
                    }
                    _ => Err(expired()),
                };
            }
        };
        let PendingOutcome::Finished(_) = self
            .store
            .settle_pending_sign_in(&user_id, &hash, true, now)
            .await?
        else {
            // Finished concurrently, or died, after the factor was checked.
            return Err(expired());
        };
        let mut amr = amr_or_password(&pending.amr);
        // An emailed code checks that it is the user; it is not a second
        // factor (the mailbox is what a password reset trusts already).
        let added: &[&str] = if target.by_email {
            &[method]
        } else {
            &[method, mfa::AMR_MFA]
        };
        for m in added {
            if !amr.iter().any(|a| a == m) {
                amr.push((*m).to_owned());
            }
        }
        self.finish_sign_in(&user_id, &amr, &target.end, target.audit, &target.seen)
            .await
    }

    /// Checks the code emailed for the sign-in check whose pending token
    /// hashes to `pending_hash`: `otp`, or `None` when it is wrong, spent,
    /// or was sent for another sign-in. A recovery code is no answer to it.
    async fn check_emailed_code(
        &self,
        user_id: &str,
        pending_hash: &[u8; 32],
        factor: &Factor,
    ) -> Result<Option<&'static str>, IdentityError> {
        let Factor::Totp(code) = factor else {
            return Ok(None);
        };
        // (A passkey or recovery code is no answer to an emailed check.)
        Ok(
            match self
                .spend_code(user_id, Purpose::SignInCheck, Channel::Email, code.digits())
                .await?
            {
                Ok(record) if record.subject.as_ref() == Some(pending_hash) => Some(mfa::AMR_OTP),
                _ => None,
            },
        )
    }

    /// Checks a second factor of `user_id`: the `amr` value it adds, or
    /// `None` when it is wrong, replayed or spent.
    async fn check_factor(
        self: &Arc<Self>,
        user_id: &str,
        factors: Option<domicile_store::FactorsRecord>,
        factor: &Factor,
        passkey_state: Option<&str>,
        now: domicile_core::UnixSeconds,
    ) -> Result<Option<&'static str>, IdentityError> {
        let Some(factors) = factors else {
            return Ok(None);
        };
        match factor {
            Factor::Passkey(answer) => {
                let Some(state) = passkey_state else {
                    return Ok(None);
                };
                self.check_passkey(user_id, &factors, answer, state, now)
                    .await
            }
            Factor::Totp(code) => {
                let Some(totp) = &factors.totp else {
                    return Ok(None);
                };
                let secret = mfa::open(&self.factor_key(), user_id, &totp.sealed)
                    .map_err(|e| IdentityError::internal("second factor", e))?;
                let Some(step) = secret.matching_step(code, now) else {
                    return Ok(None);
                };
                Ok(match self.store.use_totp_step(user_id, step, now).await? {
                    StepUse::Accepted => Some(mfa::AMR_OTP),
                    StepUse::Replayed | StepUse::NoFactor => None,
                })
            }
            Factor::Recovery(code) => {
                // A moved user's codes were hashed for their old id.
                let bound_to = factors.recovery_user_id.as_deref().unwrap_or(user_id);
                let hash = self.recovery_hash(bound_to, code)?;
                match self.store.use_recovery_code(user_id, &hash, now).await? {
                    RecoveryUse::Accepted { left } => {
                        self.audit.record(
                            user_id,
                            AuditKind::RecoveryCodeUsed,
                            None,
                            format!("left={left}"),
                        );
                        self.notify(user_id, MessageKind::RecoveryCodeUsed, None);
                        Ok(Some(mfa::AMR_RECOVERY))
                    }
                    RecoveryUse::Refused => Ok(None),
                }
            }
        }
    }

    /// The key TOTP secrets are sealed under in this region's store.
    pub(crate) fn factor_key(&self) -> [u8; 32] {
        self.factor_key_of(&self.region)
    }

    /// The key `region` seals TOTP secrets under (a move opens the
    /// source's seal in the target).
    pub(crate) fn factor_key_of(&self, region: &domicile_core::RegionCode) -> [u8; 32] {
        self.secret.derive(&format!("mfa factor secrets {region}"))
    }

    /// The keyed hash a recovery code of `user_id` is kept as.
    pub(crate) fn recovery_hash(
        &self,
        user_id: &str,
        code: &RecoveryCode,
    ) -> Result<[u8; 32], IdentityError> {
        use hmac::Mac;
        let key = self.secret.derive("mfa recovery codes");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key)
            .map_err(|e| IdentityError::internal("recovery code", e))?;
        for part in [user_id, code.normalized()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        Ok(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::{Reason, Step, step};
    use domicile_core::risk::Signal;

    #[test]
    fn each_reason_leads_to_its_step() {
        let pwd = vec!["pwd".to_owned()];
        let code = vec!["otp".to_owned()];
        let passkey: Vec<String> = ["pop", "user", "mfa"].map(String::from).to_vec();
        let risk = Reason::Risk(Signal::NewCountry);
        use Reason::*;
        #[rustfmt::skip]
        type Case<'a> = (&'a [Reason], bool, &'a Vec<String>, bool, Step);
        let cases: &[Case] = &[
            (&[], false, &pwd, true, Step::Finish),
            (&[Enrolled], true, &pwd, true, Step::Factor),
            (&[Enrolled, risk], true, &code, true, Step::Factor),
            (&[ClientPolicy], false, &pwd, true, Step::Unavailable),
            (&[Requested, risk], false, &pwd, true, Step::Unavailable),
            (&[risk], false, &pwd, true, Step::EmailCode),
            (&[risk], false, &pwd, false, Step::FinishNoEmail),
            (&[risk], false, &code, true, Step::FinishNoted),
            (
                &[Enrolled, ClientPolicy, Requested, risk],
                true,
                &passkey,
                true,
                Step::FinishMultiFactor,
            ),
            (&[], true, &passkey, true, Step::Finish),
        ];
        for (reasons, enrolled, amr, emails, expected) in cases {
            assert_eq!(
                step(reasons, *enrolled, amr, *emails),
                *expected,
                "{reasons:?} enrolled={enrolled} amr={amr:?} emails={emails}"
            );
        }
    }
}
