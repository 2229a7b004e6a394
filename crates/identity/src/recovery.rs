//! Password reset and account recovery: asking for a reset code by email
//! or, for an account with a verified phone number, by text message
//! (answered alike whether or not the account exists: `messages`), and
//! choosing a new password with the code or the link. A completed reset
//! replaces the password (the old one stops working at once), marks the
//! email verified when the code came by email (the user just proved they
//! receive its mail), ends every
//! session of the user when `accounts.reset_revokes_sessions` says so
//! (the default), is audited, and tells the user by email. With a pending
//! authorization request it also signs the user in for it.

use crate::{
    Identity, IdentityError,
    env::random,
    messages::{Asked, Channel, Login, MessageKind},
    oidc::SignedIn,
    one_time::Proof,
};
use domicile_core::password;
use domicile_oidc::authorize::AuthorizationRequest;
use domicile_store::{AuditKind, Purpose, RevokeReason};
use std::sync::Arc;

/// What a completed reset did.
#[derive(Debug)]
pub struct Reset {
    pub user_id: String,
    /// Sessions it ended.
    pub sessions_ended: usize,
    /// The sign-in for the pending request, when there was one.
    pub signed_in: Option<SignedIn>,
    /// The sign-in for the pending request waits for a second factor (the
    /// reset stands either way).
    pub second_factor: Option<crate::second_factor::Challenge>,
}

impl Identity {
    /// Asks for a password reset code for an address or a verified number
    /// (see [`Identity::request_code`]: the same answer for every one).
    pub async fn request_password_reset(
        self: &Arc<Self>,
        login: Login<'_>,
        asked: &Asked,
    ) -> Result<(), IdentityError> {
        self.request_code(login, MessageKind::ResetPassword, asked)
            .await
    }

    /// Replaces the password of the user `proof` names with
    /// `new_password`. The new password is checked before the code is
    /// spent, so a refused password leaves the code usable.
    pub async fn reset_password(
        self: &Arc<Self>,
        proof: &Proof<'_>,
        new_password: String,
        req: Option<&AuthorizationRequest>,
        asked: &Asked,
    ) -> Result<Reset, IdentityError> {
        password::check_policy(&new_password).map_err(|e| IdentityError::invalid("password", e))?;
        let client = req.map(|r| self.client(&r.client_id)).transpose()?;
        // Hashed before the code is spent, so that a full hashing pool
        // (`Busy`) leaves the code usable.
        let salt = random::<16>(self.entropy.as_ref());
        let hash = self.hasher.hash(new_password, salt).await?;
        let user = self.spend_proof(proof, Purpose::ResetPassword).await?;
        let by_email = proof.channel() == Channel::Email;
        self.save_user(&user, |u| {
            u.password_hash = hash;
            u.email_verified |= by_email;
        })
        .await?;
        // A sign-in begun with the old password waits for its second step
        // no more.
        self.store.end_pending_sign_ins(&user.user_id).await?;
        let mut sessions_ended = 0;
        if self.topology.accounts.reset_revokes_sessions {
            let now = self.now();
            for s in self.store.live_sessions(&user.user_id, now).await? {
                if self
                    .store
                    .revoke_session(&s.session_id, now, RevokeReason::PasswordReset)
                    .await?
                    .is_applied()
                {
                    sessions_ended += 1;
                }
            }
        }
        self.audit.record(
            &user.user_id,
            AuditKind::PasswordReset,
            None,
            format!("sessions_ended={sessions_ended}"),
        );
        if let Err(e) = self.send_in_background(&user.user_id, MessageKind::PasswordChanged, asked)
        {
            tracing::warn!(user_id = %user.user_id, error = %e, "password-changed notice not sent");
        }
        // A reset by a texted code does not verify the email: an app that
        // needs a verified one gets no sign-in from it (the reset stands).
        let verified = user.email_verified || by_email;
        // A reset proves a code, not a second factor: a user who has one
        // still gives it before the app gets a sign-in.
        let (mut signed_in, mut second_factor) = (None, None);
        match req {
            Some(_) if !verified && client.is_some_and(|c| self.verification_required(c)) => {}
            Some(r) => {
                let amr = vec![domicile_core::mfa::AMR_OTP.to_owned()];
                match self
                    .conclude_for(
                        &user,
                        amr,
                        r,
                        AuditKind::LoginSucceeded,
                        &crate::risk::Context::default(),
                    )
                    .await
                {
                    Ok(s) => signed_in = Some(s),
                    Err(IdentityError::SecondFactorRequired(c)) => second_factor = Some(c),
                    Err(IdentityError::SecondFactorUnavailable(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            None => {}
        }
        Ok(Reset {
            user_id: user.user_id,
            sessions_ended,
            signed_in,
            second_factor,
        })
    }
}
