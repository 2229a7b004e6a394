//! Login with email and password. Unknown users and wrong passwords fail
//! alike, after a hash of the same cost; a user homed elsewhere is sent
//! there (the index says so); stored hashes weaker than policy are
//! replaced on a successful login.

use crate::{
    Identity, IdentityError, Unauthenticated,
    env::random,
    risk::Context,
    second_factor::{Concluded, End},
    sessions::Authenticated,
};
use domicile_core::{email::Email, index::IndexState, mfa::AMR_PASSWORD, password};
use domicile_store::{AuditKind, UserRecord};
use std::sync::Arc;

/// Validated login credentials, and where they come from (for the risk
/// of the sign-in; unknown by default). `Debug` hides the password and the
/// email's local part.
pub struct Credentials {
    pub email: Email,
    password: String,
    pub context: Context,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Errors name the field.
    pub fn new(email: &str, password: String) -> Result<Self, IdentityError> {
        let email = Email::parse(email).map_err(|e| IdentityError::invalid("email", e))?;
        if password.is_empty() {
            return Err(IdentityError::invalid("password", "must not be empty"));
        }
        if password.len() > password::MAX_PASSWORD_BYTES {
            return Err(IdentityError::invalid(
                "password",
                password::PasswordError::TooLong,
            ));
        }
        Ok(Self {
            email,
            password,
            context: Context::default(),
        })
    }
}

impl Identity {
    /// Signs a user in and starts a session.
    /// A user with a second factor gets `SecondFactorRequired` instead,
    /// and finishes with `complete_sign_in`.
    pub async fn login(
        self: &Arc<Self>,
        input: Credentials,
    ) -> Result<Authenticated, IdentityError> {
        let context = input.context.clone();
        let user = self.authenticate(input).await?;
        self.conclude_first_party(&user, AMR_PASSWORD, AuditKind::LoginSucceeded, &context)
            .await
    }

    /// `conclude` for the first-party API: a session, or the wait for a
    /// second factor.
    pub(crate) async fn conclude_first_party(
        self: &Arc<Self>,
        user: &UserRecord,
        method: &str,
        audit: AuditKind,
        context: &Context,
    ) -> Result<Authenticated, IdentityError> {
        match self
            .conclude(
                user,
                vec![method.to_owned()],
                End::FirstParty,
                audit,
                context,
            )
            .await?
        {
            Concluded::Session(a) => Ok(a),
            Concluded::Code(..) => Err(IdentityError::internal(
                "sign in",
                "a first-party sign-in ended without a session",
            )),
        }
    }

    /// Checks an email and password against this region's accounts: the
    /// user, rehashed when the stored hash is weaker than policy. A user
    /// homed elsewhere is `WrongRegion`; an unknown one fails like a wrong
    /// password, after a hash of the same cost; a wrong password is
    /// audited.
    pub(crate) async fn authenticate(
        &self,
        input: Credentials,
    ) -> Result<UserRecord, IdentityError> {
        let key = self.secret.email_key(&input.email);
        let user = match self.store.get_identifier(&key).await? {
            Some(id) => self.store.get_user(&id).await?,
            None => None,
        };
        let Some(user) = user else {
            if let Some(entry) = self.index.lookup(&key).await?
                && entry.region != self.region
                && entry.state == IndexState::Active
            {
                return Err(IdentityError::WrongRegion { home: entry.region });
            }
            self.hasher
                .verify(input.password, self.dummy_hash.clone())
                .await?;
            return Err(Unauthenticated::BadCredentials.into());
        };
        let user = self.settle(user).await?;
        match self
            .hasher
            .verify(input.password.clone(), user.password_hash.clone())
            .await?
        {
            password::Verified::No => {
                self.audit
                    .record(&user.user_id, AuditKind::LoginFailed, None, String::new());
                Err(Unauthenticated::BadCredentials.into())
            }
            password::Verified::Yes => Ok(user),
            password::Verified::YesRehash => {
                let mut updated = user.clone();
                let salt = random::<16>(self.entropy.as_ref());
                updated.password_hash = self.hasher.hash(input.password, salt).await?;
                updated.version += 1;
                updated.updated_at = self.now();
                // Best effort: a concurrent update wins and the next login retries.
                self.store.update_user(&updated, user.version).await?;
                Ok(updated)
            }
        }
    }
}
