//! Signing in with a passkey alone: no address typed, no password. The
//! browser discovers the credential (a resident key, with user
//! verification), so a passkey is two factors in one: `amr` is
//! `["pop", "user", "mfa"]` and the sign-in passes the second-step gate
//! without a further factor (risk is still computed and audited, and the
//! sign-in joins the user's history).
//!
//! The first half (`start_passkey_sign_in`) may be answered by any
//! region, since nobody is named yet: the ceremony's state (webauthn-rs's
//! `DiscoverableAuthentication`: the challenge and the policy, no personal
//! data) is sealed under a key every region derives from the federation
//! secret, valid five minutes, and travels with the page or the app; no
//! region stores it. The browser's answer carries the user handle, whose
//! first two bytes tag the home region (`domicile_core::passkey`), so the
//! edge routes it home without the index; the rest is a keyed hash of the
//! user id, resolved by a region-local identifier row written when the
//! passkey was registered (and erased with the user). The home region
//! checks the answer against the user's passkeys and spends the challenge
//! once in the same write that stores the credential's counter, so a
//! replayed answer is refused.
//!
//! Unknown handles, foreign credentials, forged or expired states and
//! failed signatures are all refused alike (`Unauthenticated::PasskeyRefused`);
//! the reason is logged without personal data. It does not register
//! passkeys (`passkeys` does).

use crate::{
    Identity, IdentityError, Unauthenticated,
    oidc::SignedIn,
    risk::Context,
    second_factor::{Concluded, End},
    sessions::Authenticated,
};
use domicile_core::{
    mfa::{AMR_MFA, AMR_PASSKEY, AMR_USER_PRESENCE},
    passkey::{UserHandle, handle_region},
};
use domicile_oidc::{authorize::AuthorizationRequest, sealed::Sealer};
use domicile_store::{AuditKind, PasskeyUse, UserRecord};
use sha2::Digest;
use std::sync::Arc;
use webauthn_rs::prelude::{DiscoverableAuthentication, Passkey, PublicKeyCredential};

/// How long a ceremony's state stays valid.
pub const CEREMONY_TTL_SECONDS: i64 = 300;
/// Longest sealed state accepted.
pub const MAX_STATE_BYTES: usize = 4 * 1024;

/// A discoverable ceremony: the options for `navigator.credentials.get`
/// (JSON, `{"publicKey": …}`, no credentials listed) and its sealed state,
/// to send back with the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyCeremony {
    pub options: String,
    pub state: String,
    pub expires_in: i64,
}

/// A browser's answer to a ceremony, checked for form (sizes, JSON), with
/// where the sign-in comes from. Errors name the field.
pub struct PasskeyAssertion {
    state: String,
    credential: PublicKeyCredential,
    pub context: Context,
}

impl std::fmt::Debug for PasskeyAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyAssertion").finish_non_exhaustive()
    }
}

impl PasskeyAssertion {
    pub fn new(state: &str, credential: &str) -> Result<Self, IdentityError> {
        if state.is_empty() {
            return Err(IdentityError::invalid("state", "must not be empty"));
        }
        if state.len() > MAX_STATE_BYTES {
            return Err(IdentityError::invalid(
                "state",
                format!("at most {MAX_STATE_BYTES} bytes"),
            ));
        }
        let max = crate::passkeys::MAX_CREDENTIAL_BYTES;
        if credential.len() > max {
            return Err(IdentityError::invalid(
                "credential",
                format!("at most {max} bytes"),
            ));
        }
        let credential: PublicKeyCredential = serde_json::from_str(credential)
            .map_err(|e| IdentityError::invalid("credential", e))?;
        Ok(Self {
            state: state.to_owned(),
            credential,
            context: Context::default(),
        })
    }
}

/// Why an answer was refused (logged, never shown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    State,
    Handle,
    UnknownHandle,
    UnknownCredential,
    Check,
    Replayed,
    Concurrent,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::State => "state forged, malformed or expired",
            Refusal::Handle => "no user handle of ours",
            Refusal::UnknownHandle => "no user holds this handle",
            Refusal::UnknownCredential => "not one of the user's passkeys",
            Refusal::Check => "the assertion failed its check",
            Refusal::Replayed => "the challenge was spent already",
            Refusal::Concurrent => "another sign-in used the passkey meanwhile",
        }
    }
}

/// The ceremony's sealed envelope.
#[derive(serde::Serialize, serde::Deserialize)]
struct Ceremony {
    state: DiscoverableAuthentication,
}

/// The sealer of ceremony states: its own key, so that no other sealed
/// text (a sign-in request) opens as one.
pub(crate) fn sealer(secret: &domicile_core::index::IndexSecret) -> Result<Sealer, IdentityError> {
    Sealer::new(&secret.derive("passkey ceremony v1"))
        .map_err(|e| IdentityError::internal("passkey sign-in", e))
}

impl Identity {
    /// Starts a discoverable ceremony (any region may): options without
    /// credentials, asking for user verification, and the sealed state.
    /// The options ask for a modal prompt; a page offering passkeys in its
    /// address field's autofill sets `mediation` itself.
    pub fn start_passkey_sign_in(&self) -> Result<PasskeyCeremony, IdentityError> {
        let fault = |e: &dyn std::fmt::Display| IdentityError::internal("passkey sign-in", e);
        let (options, state) = self
            .webauthn()?
            .start_discoverable_authentication()
            .map_err(|e| fault(&e))?;
        let mut options = serde_json::to_value(&options).map_err(|e| fault(&e))?;
        if let Some(o) = options.as_object_mut() {
            o.remove("mediation");
        }
        let now = self.now();
        let state = self
            .ceremony_sealer
            .seal_value(&Ceremony { state }, now + CEREMONY_TTL_SECONDS)
            .map_err(|e| fault(&e))?;
        Ok(PasskeyCeremony {
            options: options.to_string(),
            state,
            expires_in: CEREMONY_TTL_SECONDS,
        })
    }

    /// Signs in with a passkey over the API: a first-party session.
    pub async fn sign_in_with_passkey(
        self: &Arc<Self>,
        answer: PasskeyAssertion,
    ) -> Result<Authenticated, IdentityError> {
        let (user, amr) = self.passkey_user(&answer).await?;
        match self
            .conclude(
                &user,
                amr,
                End::FirstParty,
                AuditKind::SignInByPasskey,
                &answer.context,
            )
            .await?
        {
            Concluded::Session(a) => Ok(a),
            Concluded::Code(..) => Err(IdentityError::internal(
                "passkey sign-in",
                "a first-party sign-in ended without a session",
            )),
        }
    }

    /// Signs in with a passkey for `req` (the hosted sign-in page): a
    /// browser session and the request's code.
    pub async fn sign_in_with_passkey_for(
        self: &Arc<Self>,
        answer: PasskeyAssertion,
        req: &AuthorizationRequest,
    ) -> Result<SignedIn, IdentityError> {
        let client = self.client(&req.client_id)?;
        let (user, amr) = self.passkey_user(&answer).await?;
        if !user.email_verified && self.verification_required(client) {
            return Err(IdentityError::VerificationRequired {
                user_id: user.user_id,
            });
        }
        self.conclude_for(&user, amr, req, AuditKind::SignInByPasskey, &answer.context)
            .await
    }

    /// The user whose passkey answered, and the sign-in's `amr`; the
    /// challenge is spent and the credential's counter stored.
    async fn passkey_user(
        &self,
        answer: &PasskeyAssertion,
    ) -> Result<(UserRecord, Vec<String>), IdentityError> {
        match self.check_discoverable(answer).await? {
            Ok(user) => Ok((
                user,
                vec![AMR_PASSKEY.into(), AMR_USER_PRESENCE.into(), AMR_MFA.into()],
            )),
            Err(refusal) => {
                tracing::info!(reason = refusal.as_str(), "passkey sign-in refused");
                Err(Unauthenticated::PasskeyRefused.into())
            }
        }
    }

    async fn check_discoverable(
        &self,
        answer: &PasskeyAssertion,
    ) -> Result<Result<UserRecord, Refusal>, IdentityError> {
        let now = self.now();
        let Ok((Ceremony { state }, expires_at)) = self
            .ceremony_sealer
            .open_value::<Ceremony>(&answer.state, now)
        else {
            return Ok(Err(Refusal::State));
        };
        let webauthn = self.webauthn()?;
        let Ok((uuid, credential_id)) =
            webauthn.identify_discoverable_authentication(&answer.credential)
        else {
            return Ok(Err(Refusal::Handle));
        };
        let handle = UserHandle(*uuid.as_bytes());
        let key = self.secret.passkey_handle_key(&handle);
        let held_here = self.store.get_identifier(&key).await?;
        if held_here.is_none()
            && let Some(home) = self
                .store
                .identifier_forward(&key)
                .await?
                .and_then(|r| self.topology.known_region(&r).cloned())
        {
            // The handle's user moved away from here: sent on.
            return Err(IdentityError::WrongRegion { home });
        }
        match handle_region(&self.topology, &handle) {
            Some(home) if home == self.region => {}
            // A passkey that moved here with its user keeps its old tag.
            Some(_) if held_here.is_some() => {}
            Some(home) => return Err(IdentityError::WrongRegion { home }),
            None => return Ok(Err(Refusal::Handle)),
        }
        let Some(user_id) = held_here else {
            return Ok(Err(Refusal::UnknownHandle));
        };
        let Some(user) = self.store.get_user(&user_id).await? else {
            return Ok(Err(Refusal::UnknownHandle));
        };
        let id = crate::passkeys::base64_url(credential_id);
        let factors = self.store.get_factors(&user_id).await?;
        let Some(stored) = factors
            .as_ref()
            .and_then(|f| f.passkeys.iter().find(|k| k.id == id))
        else {
            return Ok(Err(Refusal::UnknownCredential));
        };
        let mut passkey: Passkey = serde_json::from_str(&stored.credential)
            .map_err(|e| IdentityError::internal("passkey sign-in", e))?;
        // The state names its challenge: its hash is what is spent.
        let challenge: [u8; 32] = sha2::Sha256::digest(
            serde_json::to_vec(&state)
                .map_err(|e| IdentityError::internal("passkey sign-in", e))?,
        )
        .into();
        let result = match webauthn.finish_discoverable_authentication_v2(
            &answer.credential,
            state,
            &passkey,
        ) {
            Ok(r) if r.user_verified() => r,
            _ => {
                self.audit
                    .record(&user_id, AuditKind::LoginFailed, None, "passkey".to_owned());
                return Ok(Err(Refusal::Check));
            }
        };
        passkey.update_credential(&result);
        let credential = serde_json::to_string(&passkey)
            .map_err(|e| IdentityError::internal("passkey sign-in", e))?;
        // Spent for as long as the state opens, by the clock of the region
        // that sealed it (which may run ahead of this one's).
        let spend = Some((challenge, expires_at));
        match self
            .store
            .touch_passkey(&user_id, &id, &stored.credential, &credential, spend, now)
            .await?
        {
            PasskeyUse::Used => Ok(Ok(user)),
            PasskeyUse::Replayed => Ok(Err(Refusal::Replayed)),
            PasskeyUse::Gone => Ok(Err(Refusal::UnknownCredential)),
            PasskeyUse::Changed => Ok(Err(Refusal::Concurrent)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PasskeyAssertion;

    #[test]
    fn answers_are_checked_for_form_first() {
        let big = "x".repeat(crate::passkeys::MAX_CREDENTIAL_BYTES + 1);
        let long_state = "s".repeat(super::MAX_STATE_BYTES + 1);
        for (state, credential, field) in [
            ("", "{}", "state"),
            (long_state.as_str(), "{}", "state"),
            ("s", big.as_str(), "credential"),
            ("s", "not json", "credential"),
            ("s", "{\"id\":1}", "credential"),
        ] {
            match PasskeyAssertion::new(state, credential) {
                Err(crate::IdentityError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
