//! What the use cases need from outside, as traits this crate owns: the
//! node provides them (a bounded hashing pool; the index in this region's
//! store or over the network; Prometheus counters). Nothing here knows how.

use crate::IdentityError;
use async_trait::async_trait;
use domicile_core::{
    ids::UserId,
    index::{IdentifierKey, IndexEntry},
    password::Verified,
};
use domicile_store::Claim;

/// Argon2id work, off the async runtime and bounded: an implementation
/// answers [`IdentityError::Busy`] at once when it is full.
#[async_trait]
pub trait Hasher: Send + Sync + 'static {
    /// A PHC string of `password` under the federation's parameters.
    async fn hash(&self, password: String, salt: [u8; 16]) -> Result<String, IdentityError>;
    /// Checks `password` against a stored PHC string; `YesRehash` when the
    /// stored parameters are weaker than the federation's.
    async fn verify(&self, password: String, phc: String) -> Result<Verified, IdentityError>;
}

/// The global home-region index, as a region's use cases reach it.
/// Failures are [`IdentityError::IndexUnavailable`].
#[async_trait]
pub trait HomeIndex: Send + Sync + 'static {
    async fn lookup(&self, key: &IdentifierKey) -> Result<Option<IndexEntry>, IdentityError>;
    /// A pending claim of `key` for `entry`'s user; `Held` names the live
    /// holder as the index stored it.
    async fn claim(&self, key: &IdentifierKey, entry: &IndexEntry) -> Result<Claim, IdentityError>;
    /// A claim that also takes over `abandoned`'s pending claim: the
    /// caller, of the same region, saw that its registration created no
    /// user. An active entry is never taken over.
    async fn take_over(
        &self,
        key: &IdentifierKey,
        entry: &IndexEntry,
        abandoned: &UserId,
    ) -> Result<Claim, IdentityError>;
    /// Makes the user's claim permanent; `false` when it was lost.
    async fn confirm(&self, key: &IdentifierKey, user_id: &UserId) -> Result<bool, IdentityError>;
    /// Gives the user's claim back; `false` when it held none.
    async fn release(&self, key: &IdentifierKey, user_id: &UserId) -> Result<bool, IdentityError>;
    /// Re-homes `from`'s entry to `to` (an active user of another region,
    /// a compliance move); `true` also when `to` holds it already, `false`
    /// when neither does.
    async fn switch(
        &self,
        key: &IdentifierKey,
        from: &UserId,
        to: &UserId,
    ) -> Result<bool, IdentityError>;
}

/// Counters the use cases report (the node exports them).
pub trait Meter: Send + Sync + 'static {
    /// `n` audit events ended as `result`: `written`, `dropped` or `failed`.
    fn audit_events(&self, result: &'static str, n: u64);
    /// One message of `kind` over `channel` ended as `result`: `sent`,
    /// `failed` (the sender gave up), or `refused` (a limit, or the
    /// sending queue full, before anything was sent).
    fn message(&self, kind: &'static str, channel: &'static str, result: &'static str);
}

/// The region's senders: a message in, delivered to the user's address
/// (with the sender's own bounded retries) or an error. The node renders
/// and sends (`domicile-messages`); nothing here knows SMTP or HTTP.
#[async_trait]
pub trait Courier: Send + Sync + 'static {
    /// Whether this region can send over `channel` at all.
    fn offers(&self, channel: crate::messages::Channel) -> bool;
    /// Delivers `message`; the error is for logs (no personal data in it).
    async fn deliver(&self, message: crate::messages::Message) -> Result<(), String>;
}

/// The other regions' nodes, as a region's compliance operations reach
/// them: a move hands the user's records to the target region. Nothing
/// here knows how (the node calls the target's internal Admin service).
#[async_trait]
pub trait Peers: Send + Sync + 'static {
    /// Has `region` import `bundle` (the moved user's records, in the
    /// versioned JSON of `compliance::MoveBundle`) under the authority of
    /// the operator who asked (`authority`: their admin token, passed on
    /// as it came); the target's signed receipt part.
    async fn import(
        &self,
        region: &domicile_core::RegionCode,
        bundle: &[u8],
        authority: &str,
    ) -> Result<String, IdentityError>;
    /// Has `region` delete the arriving copy `new_user_id` of operation
    /// `operation_id` (an aborted move); `Ok` also when there is none.
    async fn discard(
        &self,
        region: &domicile_core::RegionCode,
        new_user_id: &str,
        operation_id: &str,
        authority: &str,
    ) -> Result<(), IdentityError>;
}
