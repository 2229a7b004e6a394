//! A signed-in user's login identifiers after registration (the email
//! address of an email change, a phone number): the steps every such
//! change takes in the home-region index and the region's identifier rows,
//! in the order that keeps one identifier, one account, federation-wide.
//!
//! 1. When the change is asked for, the new identifier is claimed in the
//!    index (pending, like a registration's claim), so no other account
//!    can take it while the code travels.
//! 2. When the code is spent, the claim is renewed and made permanent, the
//!    new identifier row is added, the user record changes, and only then
//!    is the old row deleted and the old claim released.
//!
//! A crash between the steps leaves at worst an identifier that names the
//! user while the record does not show it yet (a code asked for by it goes
//! nowhere; confirming a new code finishes the change, every step being
//! idempotent), or an old identifier still held (never two accounts with
//! one identifier).
//!
//! The use cases (`email_change`, `phone`) decide what the record holds and
//! whom to tell; the code itself is `one_time`'s.

use crate::{Conflict, Identity, IdentityError};
use domicile_core::{ids::UserId, index::IdentifierKey};
use domicile_store::{Applied, Claim, UserRecord};

fn user_id_of(user: &UserRecord) -> Result<UserId, IdentityError> {
    UserId::parse(&user.user_id).map_err(|e| IdentityError::internal("identifier change", e))
}

impl Identity {
    /// Claims `key` for `user` (pending, or renewed if it is already the
    /// user's); `taken()` when another account holds it.
    pub(crate) async fn claim_for_change(
        &self,
        user: &UserRecord,
        key: &IdentifierKey,
        taken: fn() -> IdentityError,
    ) -> Result<(), IdentityError> {
        let user_id = user_id_of(user)?;
        if let Claim::Held(holder) = self.index.claim(key, &self.pending(&user_id)).await?
            && holder.user_id != user_id
        {
            return Err(taken());
        }
        Ok(())
    }

    /// Makes `new` one of `user`'s identifiers in place of `old` (if
    /// any), applying `change` to the record: claimed (or the claim
    /// renewed: it may have expired while the code travelled) and made
    /// permanent, the new row added, the record saved (on failure the new
    /// row and claim are given back and nothing changed), then the old row
    /// and claim let go.
    pub(crate) async fn switch_identifier(
        &self,
        user: &UserRecord,
        new: &IdentifierKey,
        old: Option<&IdentifierKey>,
        taken: fn() -> IdentityError,
        change: impl FnOnce(&mut UserRecord),
    ) -> Result<UserRecord, IdentityError> {
        let user_id = user_id_of(user)?;
        self.claim_for_change(user, new, taken).await?;
        if !self.index.confirm(new, &user_id).await? {
            return Err(Conflict::ClaimLost.into());
        }
        if let Applied::No(holder) = self.store.insert_identifier(new, &user.user_id).await?
            && holder != user.user_id
        {
            return Err(IdentityError::internal(
                "identifier change",
                "the new identifier's row names another user",
            ));
        }
        let updated = match self.save_user(user, change).await {
            Ok(u) => u,
            Err(e) => {
                self.drop_identifier(user, new).await?;
                return Err(e);
            }
        };
        if let Some(old) = old {
            self.drop_identifier(user, old).await?;
        }
        Ok(updated)
    }

    /// Lets `key` go from `user`: its row here, then its index entry.
    pub(crate) async fn drop_identifier(
        &self,
        user: &UserRecord,
        key: &IdentifierKey,
    ) -> Result<(), IdentityError> {
        self.store.delete_identifier(key, &user.user_id).await?;
        self.index.release(key, &user_id_of(user)?).await?;
        Ok(())
    }
}
