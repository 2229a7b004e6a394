//! Passwordless sign-in by email or text message: asking for a sign-in
//! code (answered alike whether or not the account exists: `messages`),
//! and signing in with the code or the link for a pending authorization
//! request. An emailed code proves the user receives the address's mail,
//! so a sign-in by it also marks the email verified; a code by text
//! message goes only to a verified number. Offered unless
//! `accounts.passwordless_email` (or `passwordless_sms`) is off, and by
//! text message only in regions with an SMS sender.

use crate::{
    Identity, IdentityError,
    messages::{Asked, Login, MessageKind},
    oidc::SignedIn,
    one_time::Proof,
    risk::Context,
};
use domicile_core::mfa::AMR_OTP;
use domicile_oidc::authorize::AuthorizationRequest;
use domicile_store::{AuditKind, Purpose};
use std::sync::Arc;

impl Identity {
    /// Asks for a sign-in code for an address or a verified number.
    pub async fn request_sign_in_code(
        self: &Arc<Self>,
        login: Login<'_>,
        asked: &Asked,
    ) -> Result<(), IdentityError> {
        self.request_code(login, MessageKind::SignInCode, asked)
            .await
    }

    /// Signs in with a sign-in code or link (an app with its own UI, over
    /// the API): a first-party session, as `login` gives.
    pub async fn login_with_code(
        self: &Arc<Self>,
        proof: &Proof<'_>,
        context: &Context,
    ) -> Result<crate::sessions::Authenticated, IdentityError> {
        self.answerable(MessageKind::SignInCode, proof.channel())?;
        let user = self.spend_proof(proof, Purpose::SignIn).await?;
        let user = self.mark_verified(user, proof).await?;
        self.conclude_first_party(&user, AMR_OTP, AuditKind::SignInByCode, context)
            .await
    }

    /// Signs in with a sign-in code or link for `req`: a browser session
    /// and an authorization code, as a password sign-in gives.
    pub async fn sign_in_with_code(
        self: &Arc<Self>,
        proof: &Proof<'_>,
        req: &AuthorizationRequest,
        context: &Context,
    ) -> Result<SignedIn, IdentityError> {
        self.answerable(MessageKind::SignInCode, proof.channel())?;
        let client = self.client(&req.client_id)?;
        let user = self.spend_proof(proof, Purpose::SignIn).await?;
        let user = self.mark_verified(user, proof).await?;
        // A texted code proves the number only: an app that needs a
        // verified email still waits for one.
        if !user.email_verified && self.verification_required(client) {
            return Err(IdentityError::VerificationRequired {
                user_id: user.user_id,
            });
        }
        self.conclude_for(
            &user,
            vec![AMR_OTP.into()],
            req,
            AuditKind::SignInByCode,
            context,
        )
        .await
    }
}
