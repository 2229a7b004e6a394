//! Email verification: a code and link sent at sign-up (and on demand),
//! and spending one to mark the address verified (`email_verified` in the
//! profile, the ID token and userinfo). When verification is required
//! (`accounts.require_verified_email`, or the client's own setting), a
//! sign-in or sign-up for that client ends in
//! [`IdentityError::VerificationRequired`] instead of a code, and
//! [`Identity::verify_and_sign_in`] completes it.

use crate::{
    Identity, IdentityError,
    messages::{Asked, Channel, MessageKind},
    oidc::SignedIn,
    one_time::Proof,
};
use domicile_core::{clients::Client, ids::UserId};
use domicile_oidc::authorize::AuthorizationRequest;
use domicile_store::{AuditKind, Purpose};
use std::sync::Arc;

impl Identity {
    /// Whether sign-in for `client` waits for a verified email.
    pub fn verification_required(&self, client: &Client) -> bool {
        client
            .require_verified_email
            .unwrap_or(self.topology.accounts.require_verified_email)
    }

    /// Sends `user_id` (homed here) a verification code and link, within
    /// the per-identifier and per-address limits.
    pub async fn send_verification(
        self: &Arc<Self>,
        user_id: &str,
        asked: &Asked,
    ) -> Result<(), IdentityError> {
        let user = UserId::parse(user_id).map_err(|e| IdentityError::invalid("user_id", e))?;
        self.check_home(user.region(), "user_id")?;
        self.admit_request(self.account_counter(user_id), Channel::Email, asked.address)?;
        self.send_in_background(user_id, MessageKind::VerifyEmail, asked)
    }

    /// Spends a verification code or link: the user, now verified.
    pub async fn verify_email(
        &self,
        proof: &Proof<'_>,
    ) -> Result<domicile_store::UserRecord, IdentityError> {
        let user = self.spend_proof(proof, Purpose::VerifyEmail).await?;
        self.mark_verified(user, proof).await
    }

    /// Spends a verification code or link and signs the user in for
    /// `req`: how a sign-in that waited for verification ends.
    pub async fn verify_and_sign_in(
        self: &Arc<Self>,
        proof: &Proof<'_>,
        req: &AuthorizationRequest,
    ) -> Result<SignedIn, IdentityError> {
        self.client(&req.client_id)?;
        let user = self.spend_proof(proof, Purpose::VerifyEmail).await?;
        // A verification code signs in only the sign-in that waited for it
        // (an unverified account), unless emailed codes are a way to sign
        // in anyway (`accounts.passwordless_email`).
        if user.email_verified && !self.topology.accounts.passwordless_email {
            return Err(IdentityError::CodeRefused(
                crate::one_time::CodeRefused::Dead,
            ));
        }
        let user = self.mark_verified(user, proof).await?;
        // The password was entered before the sign-in waited for this code.
        let amr = vec![
            domicile_core::mfa::AMR_PASSWORD.to_owned(),
            domicile_core::mfa::AMR_OTP.to_owned(),
        ];
        // The address was just proven: a sign-in check would ask for it
        // again.
        self.conclude_for(
            &user,
            amr,
            req,
            AuditKind::LoginSucceeded,
            &crate::risk::Context::default(),
        )
        .await
    }
}
