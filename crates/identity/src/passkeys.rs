//! Passkeys (WebAuthn, by `webauthn-rs`) for a signed-in user: registering
//! one (the options for the browser's `navigator.credentials.create`, kept
//! as a waiting registration in the home region's store so that the answer
//! may reach any node of the region, then the browser's answer checked
//! against them), listing, renaming and removing them.
//!
//! The relying party is the issuer: its host is the RP ID and its origin
//! the only origin accepted, so a passkey works on the one public hostname
//! and nowhere else. Passkeys are discoverable (a resident key is
//! required) and need user verification; registering one needs the
//! password again. The user handle is the home
//! region's tag and a keyed hash of the user id, so the authenticator
//! learns nothing of the user. Adding a
//! passkey beside a second factor needs a sign-in that passed one (as
//! removing one does, with the password): a stolen one-factor session
//! cannot add the thief's key. The first factor of an account brings the
//! recovery codes, as an authenticator app's does.
//!
//! As a second factor (`second_factor`), the pending sign-in keeps a
//! passkey ceremony over the user's passkeys (`passkey_challenge`), and
//! the answer is checked here (`check_passkey`): origin, RP ID, challenge,
//! user verification, signature, and a counter that must not go back; the
//! credential's new counter is stored. Signing in with a passkey alone
//! (discoverable, passwordless) is `passkey_sign_in`'s; the handle's
//! region-local identifier row it resolves is written here, before the
//! passkey.

use crate::{
    Identity, IdentityError,
    messages::MessageKind,
    mfa::{Caller, Reauthentication, RecoveryCodes},
};
use domicile_core::{UnixSeconds, passkey::UserHandle};
use domicile_store::{Activation, Applied, AuditKind, PasskeyFactor, PasskeyUse, PendingPasskey};
use std::sync::Arc;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

/// How long a registration waits for the browser's answer.
pub const REGISTRATION_TTL_SECONDS: i64 = 300;
/// Passkeys an account may have.
pub const MAX_PASSKEYS: usize = 20;
/// Characters of a passkey's name.
pub const MAX_NAME_CHARS: usize = 64;
/// Bytes of a browser's answer (a credential with its attestation).
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// A registered passkey as its owner sees it (no key material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyInfo {
    /// The credential id (base64url).
    pub id: String,
    pub name: String,
    pub created_at: UnixSeconds,
    pub last_used_at: Option<UnixSeconds>,
}

impl From<&PasskeyFactor> for PasskeyInfo {
    fn from(k: &PasskeyFactor) -> Self {
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// A passkey's name: trimmed, 1 to 64 characters, no control characters.
fn checked_name(name: &str) -> Result<String, IdentityError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(IdentityError::invalid(
            "name",
            format!("a passkey's name is 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(IdentityError::invalid(
            "name",
            "a passkey's name has no control characters",
        ));
    }
    Ok(name.to_owned())
}

/// The relying party of `topology`'s issuer: its host as RP ID, its
/// origin as the only origin; or why the issuer cannot have one.
pub(crate) fn relying_party(
    topology: &domicile_core::topology::Topology,
) -> Result<Webauthn, String> {
    let fed = &topology.federation;
    let issuer = Url::parse(&fed.issuer).map_err(|e| e.to_string())?;
    let rp_id = issuer
        .host_str()
        .ok_or("the issuer has no host")?
        .to_owned();
    let origin = Url::parse(&issuer.origin().ascii_serialization()).map_err(|e| e.to_string())?;
    WebauthnBuilder::new(&rp_id, &origin)
        .and_then(|b| b.rp_name(&fed.name).build())
        .map_err(|e| e.to_string())
}

impl Identity {
    /// The relying party (built once, with the use cases).
    pub(crate) fn webauthn(&self) -> Result<&Webauthn, IdentityError> {
        self.relying_party
            .as_ref()
            .map_err(|e| IdentityError::internal("passkeys", e))
    }

    /// The user handle passkeys of `user_id` carry: this region's tag and
    /// a keyed hash of the id (`domicile_core::passkey`).
    pub(crate) fn passkey_user_handle(&self, user_id: &str) -> Result<UserHandle, IdentityError> {
        use hmac::Mac;
        let key = self.secret.derive("passkey user handles");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key)
            .map_err(|e| IdentityError::internal("passkeys", e))?;
        mac.update(user_id.as_bytes());
        Ok(UserHandle::new(
            &self.region,
            &mac.finalize().into_bytes().into(),
        ))
    }

    /// A passkey ceremony over `passkeys`: the options for
    /// `navigator.credentials.get` and the state to check the answer
    /// against (both JSON).
    pub(crate) fn passkey_challenge(
        &self,
        passkeys: &[PasskeyFactor],
    ) -> Result<(String, String), IdentityError> {
        let keys: Vec<Passkey> = passkeys
            .iter()
            .filter_map(|k| serde_json::from_str(&k.credential).ok())
            .collect();
        let (options, state) = self
            .webauthn()?
            .start_passkey_authentication(&keys)
            .map_err(|e| IdentityError::internal("passkey challenge", e))?;
        let fault = |e: serde_json::Error| IdentityError::internal("passkey challenge", e);
        Ok((
            serde_json::to_string(&options).map_err(fault)?,
            serde_json::to_string(&state).map_err(fault)?,
        ))
    }

    /// Checks a passkey's answer to the ceremony whose state is `state`
    /// against the user's passkeys: `pop` when it passes (the credential's
    /// new counter is stored), `None` when it is refused (logged by reason,
    /// without personal data).
    pub(crate) async fn check_passkey(
        &self,
        user_id: &str,
        factors: &domicile_store::FactorsRecord,
        answer: &PublicKeyCredential,
        state: &str,
        now: UnixSeconds,
    ) -> Result<Option<&'static str>, IdentityError> {
        let state: PasskeyAuthentication =
            serde_json::from_str(state).map_err(|e| IdentityError::internal("passkey check", e))?;
        let result = match self
            .webauthn()?
            .finish_passkey_authentication(answer, &state)
        {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(user_id, reason = %e, "passkey refused");
                return Ok(None);
            }
        };
        let id = base64_url(result.cred_id());
        let Some(stored) = factors.passkeys.iter().find(|k| k.id == id) else {
            return Ok(None);
        };
        let mut passkey: Passkey = serde_json::from_str(&stored.credential)
            .map_err(|e| IdentityError::internal("passkey check", e))?;
        passkey.update_credential(&result);
        let credential = serde_json::to_string(&passkey)
            .map_err(|e| IdentityError::internal("passkey check", e))?;
        if self
            .store
            .touch_passkey(user_id, &id, &stored.credential, &credential, None, now)
            .await?
            != PasskeyUse::Used
        {
            // Removed meanwhile, or used by another sign-in since it was read.
            return Ok(None);
        }
        Ok(Some(domicile_core::mfa::AMR_PASSKEY))
    }

    /// The caller's passkeys.
    pub async fn list_passkeys(
        &self,
        caller: Caller<'_>,
    ) -> Result<Vec<PasskeyInfo>, IdentityError> {
        let user = self.caller_user(caller).await?;
        self.passkeys_of(&user.user_id).await
    }

    async fn passkeys_of(&self, user_id: &str) -> Result<Vec<PasskeyInfo>, IdentityError> {
        Ok(self
            .store
            .get_factors(user_id)
            .await?
            .map(|f| f.passkeys.iter().map(PasskeyInfo::from).collect())
            .unwrap_or_default())
    }

    /// Starts registering a passkey named `name` for the caller, who
    /// enters the password again: the
    /// options for `navigator.credentials.create` (JSON, as webauthn-rs
    /// writes them: `{"publicKey": …}`), waiting five minutes in the home
    /// region for the browser's answer (a new start replaces it).
    pub async fn start_passkey_registration(
        &self,
        caller: Caller<'_>,
        name: &str,
        password: Reauthentication,
    ) -> Result<String, IdentityError> {
        let name = checked_name(name)?;
        // The password again, and beside a second factor a sign-in that
        // passed it: a passkey signs in alone, so a stolen session must
        // not be able to add one.
        let user = self.reauthenticated(caller, password).await?;
        let factors = self.store.get_factors(&user.user_id).await?;
        if let Some(f) = &factors
            && f.passkeys.len() >= MAX_PASSKEYS
        {
            return Err(IdentityError::invalid(
                "name",
                format!("an account has at most {MAX_PASSKEYS} passkeys"),
            ));
        }
        let exclude: Vec<_> = factors
            .iter()
            .flat_map(|f| f.passkeys.iter())
            .filter_map(|k| serde_json::from_str::<Passkey>(&k.credential).ok())
            .map(|p| p.cred_id().clone())
            .collect();
        let handle = self.passkey_user_handle(&user.user_id)?;
        let (options, state) = self
            .webauthn()?
            .start_passkey_registration(
                Uuid::from_bytes(handle.0),
                &user.email,
                &user.email,
                Some(exclude),
            )
            .map_err(|e| IdentityError::internal("passkey registration", e))?;
        // Discoverable: a passkey signs in without a typed address.
        let mut options = serde_json::to_value(&options)
            .map_err(|e| IdentityError::internal("passkey registration", e))?;
        if let Some(selection) = options
            .pointer_mut("/publicKey/authenticatorSelection")
            .and_then(|v| v.as_object_mut())
        {
            selection.insert("residentKey".into(), "required".into());
            selection.insert("requireResidentKey".into(), true.into());
        }
        let state = serde_json::to_string(&state)
            .map_err(|e| IdentityError::internal("passkey registration", e))?;
        let now = self.now();
        self.store
            .put_pending_passkey(
                &user.user_id,
                &PendingPasskey {
                    name,
                    state,
                    created_at: now,
                    expires_at: now + REGISTRATION_TTL_SECONDS,
                },
                now,
            )
            .await?;
        serde_json::to_string(&options)
            .map_err(|e| IdentityError::internal("passkey registration", e))
    }

    /// Finishes the caller's waiting registration with the browser's
    /// answer (`RegisterPublicKeyCredential` JSON). Refused, naming why,
    /// when the answer is malformed, for another challenge, origin or RP
    /// ID, without user verification, or for a credential registered
    /// already. The first factor of the account brings the recovery codes
    /// (shown once).
    pub async fn finish_passkey_registration(
        self: &Arc<Self>,
        caller: Caller<'_>,
        credential: &str,
    ) -> Result<(PasskeyInfo, Option<RecoveryCodes>), IdentityError> {
        if credential.len() > MAX_CREDENTIAL_BYTES {
            return Err(IdentityError::invalid(
                "credential",
                format!("at most {MAX_CREDENTIAL_BYTES} bytes"),
            ));
        }
        let answer: RegisterPublicKeyCredential = serde_json::from_str(credential)
            .map_err(|e| IdentityError::invalid("credential", e))?;
        let user = self.caller_user(caller).await?;
        let now = self.now();
        let waiting = || {
            IdentityError::invalid(
                "credential",
                "no passkey registration is waiting; start again",
            )
        };
        let pending = self
            .store
            .get_factors(&user.user_id)
            .await?
            .and_then(|f| f.pending_passkey)
            .filter(|p| now < p.expires_at)
            .ok_or_else(waiting)?;
        let state: PasskeyRegistration = serde_json::from_str(&pending.state)
            .map_err(|e| IdentityError::internal("passkey registration", e))?;
        let passkey = self
            .webauthn()?
            .finish_passkey_registration(&answer, &state)
            .map_err(|e| IdentityError::invalid("credential", e))?;
        let id = base64_url(passkey.cred_id());
        let factor = PasskeyFactor {
            id,
            name: pending.name.clone(),
            credential: serde_json::to_string(&passkey)
                .map_err(|e| IdentityError::internal("passkey registration", e))?,
            created_at: now,
            last_used_at: None,
        };
        // The handle's row first: a passkey is never without it (it signs
        // in without a typed address), while a row without a passkey
        // resolves to a user with nothing to check.
        let handle = self.passkey_user_handle(&user.user_id)?;
        let key = self.secret.passkey_handle_key(&handle);
        if let Applied::No(holder) = self.store.insert_identifier(&key, &user.user_id).await?
            && holder != user.user_id
        {
            return Err(IdentityError::internal(
                "passkey registration",
                "a user handle collision",
            ));
        }
        let (codes, hashes) = self.new_recovery_codes(&user.user_id)?;
        match self
            .store
            .add_passkey(
                &user.user_id,
                &pending.state,
                &factor,
                &hashes,
                MAX_PASSKEYS,
                now,
            )
            .await?
        {
            Activation::NoEnrolment => Err(IdentityError::invalid(
                "credential",
                "this passkey is registered already, or the registration was replaced",
            )),
            Activation::Activated { recovery_installed } => Ok((
                PasskeyInfo::from(&factor),
                self.factor_added(
                    &user.user_id,
                    AuditKind::PasskeyAdded,
                    recovery_installed.then_some(codes),
                ),
            )),
        }
    }

    /// Renames the caller's passkey `id`: the passkeys now.
    pub async fn rename_passkey(
        &self,
        caller: Caller<'_>,
        id: &str,
        name: &str,
    ) -> Result<Vec<PasskeyInfo>, IdentityError> {
        let name = checked_name(name)?;
        let user = self.caller_user(caller).await?;
        if !self
            .store
            .rename_passkey(&user.user_id, id, &name, self.now())
            .await?
        {
            return Err(IdentityError::invalid("id", "no such passkey"));
        }
        self.passkeys_of(&user.user_id).await
    }

    /// Removes the caller's passkey `id`, after the password and from a
    /// sign-in that passed a second factor (the recovery codes go with the
    /// last factor): the passkeys left.
    pub async fn remove_passkey(
        self: &Arc<Self>,
        caller: Caller<'_>,
        id: &str,
        password: Reauthentication,
    ) -> Result<Vec<PasskeyInfo>, IdentityError> {
        let user = self.reauthenticated(caller, password).await?;
        if !self
            .store
            .remove_passkey(&user.user_id, id, self.now())
            .await?
        {
            return Err(IdentityError::invalid("id", "no such passkey"));
        }
        self.audit.record(
            &user.user_id,
            AuditKind::PasskeyRemoved,
            None,
            String::new(),
        );
        self.notify(&user.user_id, MessageKind::SecondFactorChanged, None);
        self.passkeys_of(&user.user_id).await
    }
}

pub(crate) fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::checked_name;

    #[test]
    fn names_are_short_and_printable() {
        assert_eq!(checked_name("  Laptop ").unwrap(), "Laptop");
        assert_eq!(checked_name(&"é".repeat(64)).unwrap().chars().count(), 64);
        for bad in ["", "   ", "a\u{7}b", &"x".repeat(65)] {
            assert!(checked_name(bad).is_err(), "{bad:?}");
        }
    }
}
