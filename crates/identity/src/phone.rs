//! A signed-in user's phone number: adding or replacing it, proved by a
//! code by text message, and removing it. A verified number is a login
//! identifier (its keyed hash in the home-region index and in the
//! region's identifier rows, like an email address), so codes for a
//! sign-in or a password reset can go to it. A number waiting for its code
//! is claimed in the index (no other account can take it meanwhile) and
//! kept as `pending_phone`; nothing about the account's number changes
//! until the code is spent (`identifiers` has the order of the steps).
//! Every change is audited and told to the account's email address.
//!
//! Not here: re-authentication before a change (issue 15's step-up); for
//! now the bearer token is the authority, as for an email change.

use crate::{
    Identity, IdentityError, Unauthenticated,
    messages::{Asked, Channel, MessageKind},
    one_time::CodeRefused,
    profile::Profile,
};
use domicile_core::phone::Phone;
use domicile_store::{AuditKind, Purpose, UserRecord};
use std::sync::Arc;

impl Identity {
    async fn bearer_user(&self, bearer: &str) -> Result<UserRecord, IdentityError> {
        let claims = self.authorize(bearer).await?;
        self.store
            .get_user(&claims.sub)
            .await?
            .ok_or_else(|| Unauthenticated::UserGone.into())
    }

    /// Asks to make `phone` the bearer's number: validated, claimed, kept
    /// pending and sent a code by text message (within the limits). The
    /// number, masked, for the app to show where the code went.
    pub async fn request_phone(
        self: &Arc<Self>,
        bearer: &str,
        phone: &str,
        asked: &Asked,
    ) -> Result<String, IdentityError> {
        let phone = Phone::parse(phone).map_err(|e| IdentityError::invalid("phone", e))?;
        self.offered(MessageKind::VerifyPhone, Channel::Sms)?;
        let user = self.bearer_user(bearer).await?;
        if user.phone.as_deref() == Some(phone.as_str()) {
            return Err(IdentityError::invalid(
                "phone",
                "is already the account's number",
            ));
        }
        let key = self.secret.phone_key(&phone);
        self.admit_request(key.0, Channel::Sms, asked.address)?;
        self.claim_for_change(&user, &key, || IdentityError::PhoneTaken)
            .await?;
        let earlier = user.pending_phone.clone();
        let saved = self
            .save_user(&user, |u| u.pending_phone = Some(phone.as_str().to_owned()))
            .await?;
        // A number asked for earlier and never confirmed is let go.
        if let Some(earlier) = earlier.as_deref().and_then(|p| Phone::parse(p).ok())
            && earlier != phone
        {
            self.drop_identifier(&saved, &self.secret.phone_key(&earlier))
                .await?;
        }
        // The code is bound to this number when it is issued.
        self.send_in_background(&user.user_id, MessageKind::VerifyPhone, asked)?;
        Ok(phone.masked())
    }

    /// Spends the code sent to the bearer's pending number: the profile,
    /// with the number now the account's (and its last one let go).
    pub async fn confirm_phone(
        self: &Arc<Self>,
        bearer: &str,
        code: &str,
    ) -> Result<Profile, IdentityError> {
        let user = self.bearer_user(bearer).await?;
        let Some(pending) = user.pending_phone.as_deref() else {
            return Err(IdentityError::CodeRefused(CodeRefused::Dead));
        };
        let new = Phone::parse(pending).map_err(|e| IdentityError::internal("phone change", e))?;
        let record = self
            .spend_code(&user.user_id, Purpose::VerifyPhone, Channel::Sms, code)
            .await?
            .map_err(IdentityError::CodeRefused)?;
        let new_key = self.secret.phone_key(&new);
        // The code must be the one sent to this pending number.
        if record.subject != Some(new_key.0) {
            return Err(IdentityError::CodeRefused(CodeRefused::Dead));
        }
        let old_key = user
            .phone
            .as_deref()
            .and_then(|p| Phone::parse(p).ok())
            .map(|p| self.secret.phone_key(&p));
        let updated = self
            .switch_identifier(
                &user,
                &new_key,
                old_key.as_ref(),
                || IdentityError::PhoneTaken,
                |u| {
                    u.phone = Some(new.as_str().to_owned());
                    u.pending_phone = None;
                },
            )
            .await?;
        self.audit.record(
            &user.user_id,
            AuditKind::PhoneVerified,
            None,
            format!("country_code={}", new.country_code()),
        );
        self.notify(&user.user_id, MessageKind::PhoneChanged, None);
        Ok(self.profile(&updated))
    }

    /// Removes the bearer's number (and any number waiting for its code):
    /// codes by text message no longer reach the account.
    pub async fn remove_phone(self: &Arc<Self>, bearer: &str) -> Result<Profile, IdentityError> {
        let user = self.bearer_user(bearer).await?;
        if user.phone.is_none() && user.pending_phone.is_none() {
            return Err(IdentityError::invalid(
                "phone",
                "the account has no phone number",
            ));
        }
        let updated = self
            .save_user(&user, |u| {
                u.phone = None;
                u.pending_phone = None;
            })
            .await?;
        for number in [&user.phone, &user.pending_phone].into_iter().flatten() {
            if let Ok(p) = Phone::parse(number) {
                self.drop_identifier(&updated, &self.secret.phone_key(&p))
                    .await?;
            }
        }
        if user.phone.is_some() {
            self.audit
                .record(&user.user_id, AuditKind::PhoneRemoved, None, String::new());
            self.notify(&user.user_id, MessageKind::PhoneChanged, None);
        }
        Ok(self.profile(&updated))
    }
}
