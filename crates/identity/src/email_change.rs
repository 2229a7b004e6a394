//! Changing a signed-in user's email address. The new address is claimed
//! in the home-region index first (pending, like a registration's claim:
//! one address, one account, federation-wide), kept on the user as
//! `pending_email`, and sent a code and link (`change_email`). Spending it
//! confirms the new claim, adds the new identifier row, makes the new
//! address the account's (verified), and only then deletes the old row and
//! releases the old claim; the old address is told. Until the code is
//! spent nothing about the account's address changes.
//!
//! A domain rule that homes the new address in another region refuses the
//! change: moving an account between regions is a compliance operation,
//! never a side effect.

use crate::{
    Identity, IdentityError,
    messages::{Asked, Channel, Login, MessageKind},
    one_time::{CodeRefused, Proof},
    profile::Profile,
};
use domicile_core::email::Email;
use domicile_store::{AuditKind, Purpose};
use std::sync::Arc;

impl Identity {
    /// Asks to change the bearer's address to `new_email`: claimed, kept
    /// pending, and sent a code (within the limits).
    pub async fn request_email_change(
        self: &Arc<Self>,
        bearer: &str,
        new_email: &str,
        asked: &Asked,
    ) -> Result<(), IdentityError> {
        let email = Email::parse(new_email).map_err(|e| IdentityError::invalid("email", e))?;
        let user = self.bearer_user(bearer).await?;
        if user.email == email.as_str() {
            return Err(IdentityError::invalid(
                "email",
                "is already the account's address",
            ));
        }
        match self.check_placement(&email, None) {
            Err(IdentityError::WrongRegion { home }) => {
                return Err(IdentityError::invalid(
                    "email",
                    format!(
                        "a compliance rule keeps accounts of this domain in region {home}; moving an account is a compliance operation"
                    ),
                ));
            }
            other => {
                other?;
            }
        }
        let key = self.secret.email_key(&email);
        self.admit_request(key.0, Channel::Email, asked.address)?;
        self.claim_for_change(&user, &key, || IdentityError::EmailTaken)
            .await?;
        self.save_user(&user, |u| u.pending_email = Some(email.as_str().to_owned()))
            .await?;
        // The code is bound to this address when it is issued (in the
        // background): a code sent to an earlier pending address, or one
        // issued before a later change, does not confirm this one.
        self.send_in_background(&user.user_id, MessageKind::ConfirmNewEmail, asked)
    }

    /// Spends an email change's code or link: the account, now with its
    /// new, verified address.
    pub async fn confirm_email_change(
        self: &Arc<Self>,
        proof: &Proof<'_>,
    ) -> Result<Profile, IdentityError> {
        let (user, subject) = self.spend_proof_with(proof, Purpose::ChangeEmail).await?;
        let Some(new) = user.pending_email.clone() else {
            return Err(IdentityError::CodeRefused(CodeRefused::Dead));
        };
        let new = Email::parse(&new).map_err(|e| IdentityError::internal("email change", e))?;
        // The code must be the one sent to this pending address, not to an
        // address asked for earlier.
        if subject != Some(self.secret.email_key(&new).0) {
            return Err(IdentityError::CodeRefused(CodeRefused::Dead));
        }
        let old =
            Email::parse(&user.email).map_err(|e| IdentityError::internal("email change", e))?;
        let (new_key, old_key) = (self.secret.email_key(&new), self.secret.email_key(&old));
        let updated = self
            .switch_identifier(
                &user,
                &new_key,
                Some(&old_key),
                || IdentityError::EmailTaken,
                |u| {
                    u.email = new.as_str().to_owned();
                    u.email_verified = true;
                    u.pending_email = None;
                },
            )
            .await?;
        // Codes and links sent to the old address stop working.
        self.store.erase_one_time(&user.user_id).await?;
        self.audit
            .record(&user.user_id, AuditKind::EmailChanged, None, String::new());
        self.notify(
            &user.user_id,
            MessageKind::EmailChanged,
            Some(user.email.clone()),
        );
        Ok(self.profile(&updated))
    }

    /// Spends an email change's code typed by the signed-in user (the
    /// bearer names whose code it is).
    pub async fn confirm_email_change_by_code(
        self: &Arc<Self>,
        bearer: &str,
        code: &str,
    ) -> Result<Profile, IdentityError> {
        let user = self.bearer_user(bearer).await?;
        self.confirm_email_change(&Proof::Code {
            login: Login::Email(&user.email),
            code,
        })
        .await
    }
}
