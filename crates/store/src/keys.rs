//! The signing-keys aggregate: a region's Ed25519 keys in ONE partition
//! (partition: the region code; clustering: kid), so loading them is a
//! single-partition read, never a table scan. Keys are not per-user: there
//! is nothing of theirs in a user's export or erasure.
//!
//! It stores seeds; it does not generate, rotate or publish keys (the
//! node's `keys` module does).

use crate::{
    Applied, Key, RegionStore, Result, Scope, SigningKeyRecord, Table,
    backend::{Condition, Expiry},
};

pub const SIGNING_KEYS: Table = Table::partitioned("signing_keys", Scope::Region);

impl RegionStore {
    /// Every signing key of the region (one partition).
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.instrument
            .run("signing_keys", async {
                let rows = self
                    .backend
                    .rows(&SIGNING_KEYS, self.region.as_str().as_bytes(), usize::MAX)
                    .await?;
                rows.iter()
                    .map(|(_, v)| self.decode(&SIGNING_KEYS, v))
                    .collect()
            })
            .await
    }

    /// `INSERT … IF NOT EXISTS` by kid; a kid must name this region
    /// (`<region>-<n>`).
    pub async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<Applied> {
        self.instrument
            .run("insert_signing_key", async {
                let ours = key
                    .kid
                    .strip_prefix(self.region.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|n| !n.is_empty());
                if !ours {
                    return Err(self.foreign(&SIGNING_KEYS, &key.kid));
                }
                let value = self.encode(&SIGNING_KEYS, key)?;
                let at = Key::cell(self.region.as_str().as_bytes(), key.kid.as_bytes());
                Ok(
                    match self
                        .backend
                        .put_if(&SIGNING_KEYS, &at, Condition::Absent, value, Expiry::Never)
                        .await?
                    {
                        Applied::Yes => Applied::Yes,
                        Applied::No(_) => Applied::No(()),
                    },
                )
            })
            .await
    }
}
