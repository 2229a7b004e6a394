//! Registration: check the residency rule, claim the identifier in the
//! home-region index (the uniqueness authority), hash the password, create
//! the user and its regional identifier row, confirm the claim, start a
//! session. Ordered so that a crash leaves nothing that blocks an email
//! forever: a claim left behind expires, an orphaned identifier row is
//! taken over (see `docs/storage.md`).

use crate::{
    Conflict, Identity, IdentityError, env::random, profile::ProfileChange, sessions::Authenticated,
};
use domicile_core::{
    email::Email,
    ids::UserId,
    index::{IdentifierKey, IndexEntry, IndexState},
    password,
};
use domicile_store::{Applied, AuditKind, Claim, UserRecord};

/// A validated registration. The password is a secret: `Debug` hides it
/// and the email's local part.
pub struct Registration {
    pub email: Email,
    password: String,
    pub profile: ProfileChange,
    /// A region the user chose, as given (checked by the residency rule).
    pub preference: Option<String>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("email", &self.email)
            .field("preference", &self.preference)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// Validates every field; errors name the field. An empty preference is
    /// no preference.
    pub fn new(
        email: &str,
        password: String,
        profile: ProfileChange,
        preference: &str,
    ) -> Result<Self, IdentityError> {
        let email = Email::parse(email).map_err(|e| IdentityError::invalid("email", e))?;
        password::check_policy(&password).map_err(|e| IdentityError::invalid("password", e))?;
        let preference = match preference.trim() {
            "" => None,
            code => {
                domicile_core::RegionCode::parse(code)
                    .map_err(|e| IdentityError::invalid("region_preference", e))?;
                Some(code.to_owned())
            }
        };
        Ok(Self {
            email,
            password,
            profile,
            preference,
        })
    }
}

impl Identity {
    fn new_user_id(&self) -> UserId {
        UserId::new(&self.region, self.clock.now_ms(), self.random_u128())
    }

    /// Registers a new user homed in this region and starts a session.
    pub async fn register(&self, input: Registration) -> Result<Authenticated, IdentityError> {
        self.check_placement(&input.email, input.preference.as_deref())?;
        let key = self.secret.email_key(&input.email);
        let user_id = self.new_user_id();
        let now = self.now();
        let pending = IndexEntry {
            region: self.region.clone(),
            user_id: user_id.clone(),
            state: IndexState::Pending,
            created_at: now,
            expires_at: Some(now + self.topology.index.claim_ttl_seconds),
        };
        // 1. Claim the identifier federation-wide (the uniqueness authority).
        if let Claim::Held(holder) = self.index.claim(&key, &pending).await? {
            return Err(if holder.region != self.region {
                IdentityError::WrongRegion {
                    home: holder.region,
                }
            } else {
                IdentityError::EmailTaken
            });
        }
        match self.create_user(&key, &user_id, input).await {
            Ok(user) => {
                // 3. Make the claim permanent. If it was lost (the claim
                //    expired and another registration took it), undo.
                if !self.index.confirm(&key, &user_id).await? {
                    self.store.delete_identifier(&key, user_id.as_str()).await?;
                    self.store.delete_user(user_id.as_str()).await?;
                    return Err(Conflict::ClaimLost.into());
                }
                let r = self.start_session(&user).await?;
                self.audit_event(&user.user_id, AuditKind::Registered, &r.session_id);
                Ok(r)
            }
            Err(e) => {
                // Give the identifier back; if this fails the claim expires.
                if let Err(release) = self.index.release(&key, &user_id).await {
                    tracing::warn!(error = %release, "could not release index claim; it will expire");
                }
                Err(e)
            }
        }
    }

    /// 2. Hash, then create the user and its regional identifier row.
    async fn create_user(
        &self,
        key: &IdentifierKey,
        user_id: &UserId,
        input: Registration,
    ) -> Result<UserRecord, IdentityError> {
        let salt = random::<16>(self.entropy.as_ref());
        let password_hash = self.hasher.hash(input.password, salt).await?;
        let now = self.now();
        let p = input.profile;
        let user = UserRecord {
            user_id: user_id.to_string(),
            email: input.email.as_str().to_owned(),
            email_verified: false,
            password_hash,
            given_name: p.given_name.unwrap_or_default(),
            family_name: p.family_name.unwrap_or_default(),
            display_name: p.display_name.unwrap_or_default(),
            locale: p.locale.unwrap_or_default(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        if let Applied::No(holder) = self.store.insert_identifier(key, user_id.as_str()).await? {
            // A row left by a registration that crashed before creating its
            // user may be taken over; a row with a live user may not.
            let orphan = self.store.get_user(&holder).await?.is_none();
            if !orphan
                || !self
                    .store
                    .replace_identifier(key, &holder, user_id.as_str())
                    .await?
                    .is_applied()
            {
                return Err(IdentityError::EmailTaken);
            }
        }
        if !self.store.insert_user(&user).await?.is_applied() {
            self.store.delete_identifier(key, user_id.as_str()).await?;
            return Err(IdentityError::internal("register", "user id collision"));
        }
        Ok(user)
    }
}
