//! Passwordless sign-in by email: asking for a sign-in code (answered
//! alike whether or not the account exists: `messages`), and signing in
//! with the code or the link for a pending authorization request. The
//! code proves the user receives the address's mail, so a sign-in by code
//! also marks the email verified. Offered unless
//! `accounts.passwordless_email` is off.

use crate::{
    Identity, IdentityError,
    messages::{Asked, MessageKind},
    oidc::SignedIn,
    one_time::Proof,
};
use domicile_oidc::authorize::AuthorizationRequest;
use domicile_store::{AuditKind, Purpose};
use std::sync::Arc;

impl Identity {
    /// Asks for a sign-in code for `email`.
    pub async fn request_sign_in_code(
        self: &Arc<Self>,
        email: &str,
        asked: &Asked,
    ) -> Result<(), IdentityError> {
        self.request_code(email, MessageKind::SignInCode, asked)
            .await
    }

    /// Signs in with a sign-in code or link (an app with its own UI, over
    /// the API): a first-party session, as `login` gives.
    pub async fn login_with_code(
        &self,
        proof: &Proof<'_>,
    ) -> Result<crate::sessions::Authenticated, IdentityError> {
        if !self.topology.accounts.passwordless_email {
            return Err(IdentityError::NotOffered("sign-in by email"));
        }
        let user = self.spend_proof(proof, Purpose::SignIn).await?;
        let user = self.mark_verified(user).await?;
        let r = self.start_session(&user).await?;
        self.audit_event(&user.user_id, AuditKind::SignInByCode, &r.session_id);
        Ok(r)
    }

    /// Signs in with a sign-in code or link for `req`: a browser session
    /// and an authorization code, as a password sign-in gives.
    pub async fn sign_in_with_code(
        &self,
        proof: &Proof<'_>,
        req: &AuthorizationRequest,
    ) -> Result<SignedIn, IdentityError> {
        if !self.topology.accounts.passwordless_email {
            return Err(IdentityError::NotOffered("sign-in by email"));
        }
        self.client(&req.client_id)?;
        let user = self.spend_proof(proof, Purpose::SignIn).await?;
        let user = self.mark_verified(user).await?;
        let (signed_in, session_id) = self.sign_in_browser(&user.user_id, req).await?;
        self.audit_event(&user.user_id, AuditKind::SignInByCode, &session_id);
        Ok(signed_in)
    }
}
