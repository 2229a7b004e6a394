//! A signed-in user's phone number: adding or replacing it, proved by a
//! code by text message, and removing it. A verified number is a login
//! identifier (its keyed hash in the home-region index and in the
//! region's identifier rows, like an email address), so codes for a
//! sign-in or a password reset can go to it. A number waiting for its code
//! is kept as `pending_phone` only: it is claimed in the index when the
//! code is spent (`identifiers` has the order of the steps), so asking for
//! a number neither tells whether another account has it nor holds it
//! against its owner; whoever proves the number first gets it, and a
//! number another account has is refused only to the one who proved they
//! receive its texts. Nothing about the account's number changes until
//! the code is spent. Every change is audited and told to the account's
//! email address.
//!
//! Not here: re-authentication before a change (issue 15's step-up); for
//! now the bearer token is the authority, as for an email change.

use crate::{
    Identity, IdentityError,
    messages::{Asked, Channel, MessageKind},
    one_time::CodeRefused,
    profile::Profile,
};
use domicile_core::phone::Phone;
use domicile_store::{AuditKind, Purpose};
use std::sync::Arc;

impl Identity {
    /// Asks to make `phone` the bearer's number: validated, kept pending
    /// and sent a code by text message, within the limits (per number, per
    /// account and per client address: one account cannot text numbers
    /// without bound). The number, masked, for the app to show where the
    /// code went.
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
        self.admit_requests(
            &[key.0, self.account_counter(&user.user_id)],
            Channel::Sms,
            asked.address,
        )?;
        self.save_user(&user, |u| u.pending_phone = Some(phone.as_str().to_owned()))
            .await?;
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
        let new_key = self.secret.phone_key_e164(pending);
        let record = self
            .spend_code(&user.user_id, Purpose::VerifyPhone, Channel::Sms, code)
            .await?
            .map_err(IdentityError::CodeRefused)?;
        // The code must be the one sent to this pending number.
        if record.subject != Some(new_key.0) {
            return Err(IdentityError::CodeRefused(CodeRefused::Dead));
        }
        let old_key = user.phone.as_deref().map(|p| self.secret.phone_key_e164(p));
        let new = pending.to_owned();
        let updated = self
            .switch_identifier(
                &user,
                &new_key,
                old_key.as_ref(),
                || IdentityError::PhoneTaken,
                |u| {
                    u.phone = Some(new.clone());
                    u.pending_phone = None;
                },
            )
            .await?;
        let country = Phone::parse(&new).map_or(0, |p| p.country_code());
        self.audit.record(
            &user.user_id,
            AuditKind::PhoneVerified,
            None,
            format!("country_code={country}"),
        );
        self.notify(&user.user_id, MessageKind::PhoneChanged, None);
        Ok(self.profile(&updated))
    }

    /// Removes the bearer's number (and any number waiting for its code):
    /// codes by text message no longer reach the account. The number's row
    /// and index entry go first, so a failure after them leaves a record
    /// that a retry finishes, never a number held by nobody's record.
    pub async fn remove_phone(self: &Arc<Self>, bearer: &str) -> Result<Profile, IdentityError> {
        let user = self.bearer_user(bearer).await?;
        if user.phone.is_none() && user.pending_phone.is_none() {
            return Err(IdentityError::invalid(
                "phone",
                "the account has no phone number",
            ));
        }
        if let Some(number) = &user.phone {
            self.drop_identifier(&user, &self.secret.phone_key_e164(number))
                .await?;
        }
        let updated = self
            .save_user(&user, |u| {
                u.phone = None;
                u.pending_phone = None;
            })
            .await?;
        if user.phone.is_some() {
            self.audit
                .record(&user.user_id, AuditKind::PhoneRemoved, None, String::new());
            self.notify(&user.user_id, MessageKind::PhoneChanged, None);
        }
        Ok(self.profile(&updated))
    }
}
