//! Registration: check the residency rule, claim the identifier in the
//! home-region index (the uniqueness authority), hash the password, create
//! the user and its regional identifier row, confirm the claim, start a
//! session. Ordered so that a crash leaves nothing that blocks an email:
//! a retry finds what a cut-off registration left (a pending claim of this
//! region that no registration of this process is running) and completes
//! it, when it created its account and the retry knows the password, or
//! takes its claim over, when it created none; an orphaned identifier row
//! is taken over (see `docs/storage.md`, "Registration without
//! cross-partition transactions").

use crate::{
    Conflict, Identity, IdentityError,
    env::random,
    profile::ProfileChange,
    second_factor::{Concluded, End},
    sessions::Authenticated,
};
use domicile_core::{
    RegionCode,
    email::Email,
    ids::UserId,
    index::{IdentifierKey, IndexEntry, IndexState},
    password,
};
use domicile_store::{Applied, AuditKind, Claim, UserRecord};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

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

/// The registrations running in this process: identifier key → the user
/// id its claim names. Entries live exactly as long as their
/// registration's call ([`Running`] removes its own on drop).
#[derive(Default)]
pub(crate) struct InFlight(Mutex<HashMap<[u8; 32], UserId>>);

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], UserId>> {
        // A panic while holding the lock left the map consistent (every
        // critical section is one insert, get or remove).
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Enters `user_id`'s registration of `key`, or `None` when another
    /// registration of the same identifier already runs in this process.
    /// Entered before the claim, so that a claim of this process is never
    /// seen without its entry (which would make it look cut off).
    fn start<'a>(&'a self, key: &IdentifierKey, user_id: &UserId) -> Option<Running<'a>> {
        let mut map = self.lock();
        if map.contains_key(&key.0) {
            return None;
        }
        map.insert(key.0, user_id.clone());
        Some(Running {
            set: self,
            key: key.0,
            user_id: user_id.clone(),
        })
    }
}

/// One running registration in [`InFlight`].
struct Running<'a> {
    set: &'a InFlight,
    key: [u8; 32],
    user_id: UserId,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut map = self.set.lock();
        if map.get(&self.key) == Some(&self.user_id) {
            map.remove(&self.key);
        }
    }
}

/// How a registration ends once its account exists: a first-party session
/// with its tokens, or a session for an OpenID Connect client and an
/// authorization code for it.
pub(crate) enum Finish<'a> {
    FirstParty,
    Oidc(&'a domicile_oidc::authorize::AuthorizationRequest),
    /// The account only: sign-in waits for the email's verification.
    Unverified,
}

/// What a finished registration gives its caller.
pub(crate) enum Finished {
    Session(Authenticated),
    /// The authorization code and the browser session's cookie.
    Code(crate::oidc::SignedIn),
    /// The new account, signed in to nothing yet.
    Unverified {
        user_id: String,
    },
}

/// A new account's first sign-in: its password (it has no other factor).
fn password_amr() -> Vec<String> {
    vec![domicile_core::mfa::AMR_PASSWORD.to_owned()]
}

/// What a retry finds when a pending claim of this region holds its email.
enum CutOff {
    /// The claim's registration created its account and was cut off before
    /// confirming: it is confirmed now, and the retry, knowing the
    /// password, completes it.
    Completed(Finished),
    /// The claim's registration created no user: its claim is now this
    /// one's.
    TakenOver(UserId),
}

impl Identity {
    fn new_user_id(&self) -> UserId {
        UserId::new(&self.region, self.clock.now_ms(), self.random_u128())
    }

    /// A pending claim of this region for `user_id`.
    pub(crate) fn pending(&self, user_id: &UserId) -> IndexEntry {
        let now = self.now();
        IndexEntry {
            region: self.region.clone(),
            user_id: user_id.clone(),
            state: IndexState::Pending,
            created_at: now,
            expires_at: Some(now + self.topology.index.claim_ttl_seconds),
        }
    }

    /// Registers a new user homed in this region and starts a session.
    pub async fn register(
        self: &Arc<Self>,
        input: Registration,
    ) -> Result<Authenticated, IdentityError> {
        match self.register_as(input, Finish::FirstParty).await? {
            Finished::Session(a) => Ok(a),
            Finished::Code(_) | Finished::Unverified { .. } => Err(IdentityError::internal(
                "register",
                "a first-party registration ended without a session",
            )),
        }
    }

    /// Ends a registration whose account exists (audited as `registered`)
    /// through the gate every sign-in passes: an app that requires two
    /// factors does not get a one-factor sign-in from a registration, and
    /// the retry of a cut-off registration whose account has a factor by
    /// now is asked for it.
    async fn finish(
        self: &Arc<Self>,
        user: &UserRecord,
        how: &Finish<'_>,
    ) -> Result<Finished, IdentityError> {
        let end = match how {
            Finish::FirstParty => End::FirstParty,
            Finish::Oidc(req) => End::Oidc(Box::new((*req).clone())),
            Finish::Unverified => {
                self.audit
                    .record(&user.user_id, AuditKind::Registered, None, String::new());
                return Ok(Finished::Unverified {
                    user_id: user.user_id.clone(),
                });
            }
        };
        Ok(
            match self
                .conclude(
                    user,
                    password_amr(),
                    end,
                    AuditKind::Registered,
                    &crate::risk::Context::default(),
                )
                .await?
            {
                Concluded::Session(a) => Finished::Session(a),
                Concluded::Code(signed_in, _) => Finished::Code(signed_in),
            },
        )
    }

    /// Registers a new user homed in this region and ends `how`.
    pub(crate) async fn register_as(
        self: &Arc<Self>,
        input: Registration,
        how: Finish<'_>,
    ) -> Result<Finished, IdentityError> {
        self.check_placement(&input.email, input.preference.as_deref())?;
        let key = self.secret.email_key(&input.email);
        let user_id = self.new_user_id();
        let pending = self.pending(&user_id);
        // 1. Claim the identifier federation-wide (the uniqueness authority).
        //    A pending claim of this region may be a registration that was
        //    cut off (a node killed, an index unreachable before confirming):
        //    look at what it left before refusing.
        //    A registration of this email that runs in this process is not
        //    cut off: this one is refused before it claims anything.
        let Some(_running) = self.registering.start(&key, &user_id) else {
            return Err(IdentityError::EmailTaken);
        };
        let mut taken_from = None;
        if let Claim::Held(holder) = self.index.claim(&key, &pending).await? {
            if let Some(refusal) = Self::refusal(&holder, &self.region) {
                return Err(refusal);
            }
            // No registration of this email runs here (this one holds the
            // entry): the pending claim is another process's or cut off.
            match self
                .resume_cut_off(&key, &holder.user_id, &pending, &input, &how)
                .await?
            {
                CutOff::Completed(r) => return Ok(r),
                CutOff::TakenOver(from) => taken_from = Some(from),
            }
        }
        match self
            .create_user(&key, &user_id, taken_from.as_ref(), input)
            .await
        {
            Ok(user) => {
                // 3. Make the claim permanent. If it was lost (the claim
                //    expired and another registration took it), undo.
                if !self.index.confirm(&key, &user_id).await? {
                    self.store.delete_identifier(&key, user_id.as_str()).await?;
                    self.store.delete_user(user_id.as_str()).await?;
                    return Err(Conflict::ClaimLost.into());
                }
                self.finish(&user, &how).await
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

    /// Why a live holder refuses a claim outright: it is homed in another
    /// region, or it is an account. `None` for a pending claim of `region`.
    fn refusal(holder: &IndexEntry, region: &RegionCode) -> Option<IdentityError> {
        if holder.region != *region {
            Some(IdentityError::WrongRegion {
                home: holder.region.clone(),
            })
        } else if holder.state == IndexState::Active {
            Some(IdentityError::EmailTaken)
        } else {
            None
        }
    }

    /// A pending claim of this region holds the email: another
    /// registration, cut off or still running. Its user decides.
    /// - Its user and identifier row exist: that registration got as far as
    ///   creating the account. The account is confirmed in the index (what
    ///   the registration would have done next), and if this retry's
    ///   password is the account's, the registration completes with a
    ///   session; otherwise the email is taken.
    /// - No user: the claim is taken over. (A registration still running in
    ///   another process of this region, which the caller cannot see, then
    ///   loses at its confirmation and answers ABORTED.)
    async fn resume_cut_off(
        self: &Arc<Self>,
        key: &IdentifierKey,
        holder: &UserId,
        pending: &IndexEntry,
        input: &Registration,
        how: &Finish<'_>,
    ) -> Result<CutOff, IdentityError> {
        if let Some(user) = self.store.get_user(holder.as_str()).await? {
            let owns_row =
                self.store.get_identifier(key).await?.as_deref() == Some(holder.as_str());
            if !owns_row || !self.index.confirm(key, holder).await? {
                return Err(IdentityError::EmailTaken);
            }
            return match self
                .hasher
                .verify(input.password.clone(), user.password_hash.clone())
                .await?
            {
                password::Verified::No => Err(IdentityError::EmailTaken),
                password::Verified::Yes | password::Verified::YesRehash => {
                    Ok(CutOff::Completed(self.finish(&user, how).await?))
                }
            };
        }
        match self.index.take_over(key, pending, holder).await? {
            Claim::Applied => Ok(CutOff::TakenOver(holder.clone())),
            Claim::Held(h) => {
                Err(Self::refusal(&h, &self.region).unwrap_or(IdentityError::EmailTaken))
            }
        }
    }

    /// Whether `user_id` holds the email's claim now: claiming it again is
    /// a conditional write (SERIAL on Scylla), so the answer is the
    /// index's, not a stale replica's. (A claim that had expired with the
    /// key still free is simply renewed.)
    async fn still_holds_claim(
        &self,
        key: &IdentifierKey,
        user_id: &UserId,
    ) -> Result<bool, IdentityError> {
        Ok(matches!(
            self.index.claim(key, &self.pending(user_id)).await?,
            Claim::Applied
        ))
    }

    /// Step 2: hash, then create the user and its regional identifier row.
    /// `taken_from` is the registration whose claim this one took over.
    async fn create_user(
        &self,
        key: &IdentifierKey,
        user_id: &UserId,
        taken_from: Option<&UserId>,
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
            pending_email: None,
            phone: None,
            pending_phone: None,
            pin: None,
            moving: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        if let Applied::No(holder) = self.store.insert_identifier(key, user_id.as_str()).await? {
            // A row with a live user is an account (or a registration that
            // will confirm or undo itself), unless it is the registration
            // whose claim this one took over: that one can never confirm.
            let lost_its_claim = taken_from.is_some_and(|t| t.as_str() == holder);
            if !lost_its_claim && self.store.get_user(&holder).await?.is_some() {
                return Err(IdentityError::EmailTaken);
            }
            // A row left by a registration that was cut off (before creating
            // its user, or after losing its claim) is taken over, but only
            // while this registration holds the claim: one that lost it must
            // not displace the winner's row.
            if !self.still_holds_claim(key, user_id).await? {
                return Err(Conflict::ClaimLost.into());
            }
            if !self
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

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u128) -> UserId {
        UserId::new(&RegionCode::parse("eu").unwrap(), 1, n)
    }

    #[test]
    fn one_registration_of_an_identifier_runs_per_process() {
        let set = InFlight::default();
        let (a, b) = (IdentifierKey([1; 32]), IdentifierKey([2; 32]));
        let first = set.start(&a, &user(1)).expect("a free identifier");
        assert!(set.start(&a, &user(2)).is_none(), "a second one is refused");
        let other = set.start(&b, &user(3)).expect("another identifier is free");
        drop(first);
        assert!(
            set.start(&a, &user(4)).is_some(),
            "free again once it ended"
        );
        drop(other);
        assert!(set.lock().is_empty());
    }
}
