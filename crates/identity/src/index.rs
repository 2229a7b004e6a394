//! The home-region index as its host region serves it: lookups, claims,
//! confirmations and releases validated before they reach the index store,
//! and the index report (what the index holds, for compliance). The same
//! type is the [`HomeIndex`] of the host region's own use cases.

use crate::{Clock, IdentityError, ports::HomeIndex};
use async_trait::async_trait;
use domicile_core::{
    UnixSeconds,
    ids::UserId,
    index::{IdentifierKey, IndexEntry, IndexState},
    topology::Topology,
};
use domicile_store::{Claim, IndexStore};
use std::{collections::HashMap, sync::Arc};

/// The index, served by the region that hosts it.
#[derive(Clone)]
pub struct IndexHost {
    store: Arc<IndexStore>,
    clock: Arc<dyn Clock>,
    topology: Arc<Topology>,
}

/// What the index holds, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexReport {
    pub entries: u64,
    pub active_by_region: HashMap<String, u64>,
    pub pending: u64,
    /// Entries that contradict themselves: a region outside the federation,
    /// or a user id naming another region than the entry.
    pub malformed_keys: u64,
    /// Keys that read as an email address or a phone number in the clear
    /// instead of its keyed hash (a residency violation).
    pub plaintext_suspects: u64,
}

/// Whether `key` reads as a plaintext identifier: printable ASCII (or
/// ASCII padded with zeros) holding an `@`, or a `+` and seven or more
/// digits (a phone number). A keyed hash looks like either with a
/// probability far below 2^-50.
pub fn looks_like_plaintext(key: &[u8]) -> bool {
    let text: Vec<u8> = key.iter().copied().take_while(|b| *b != 0).collect();
    let padding_is_zero = key[text.len()..].iter().all(|b| *b == 0);
    let email = text.contains(&b'@') && text.iter().all(|b| b.is_ascii_graphic());
    let phone = text.first() == Some(&b'+')
        && text.len() > domicile_core::phone::MIN_DIGITS
        && text[1..].iter().all(u8::is_ascii_digit);
    padding_is_zero && (email || phone)
}

fn key_of(bytes: &[u8]) -> Result<IdentifierKey, IdentityError> {
    IdentifierKey::from_slice(bytes)
        .ok_or_else(|| IdentityError::invalid("key", "must be 32 bytes"))
}

fn user_of(s: &str) -> Result<UserId, IdentityError> {
    UserId::parse(s).map_err(|e| IdentityError::invalid("user_id", e))
}

impl IndexHost {
    pub fn new(store: Arc<IndexStore>, clock: Arc<dyn Clock>, topology: Arc<Topology>) -> Self {
        Self {
            store,
            clock,
            topology,
        }
    }

    fn now(&self) -> UnixSeconds {
        self.clock.now()
    }

    /// The live entry of a key given as bytes.
    pub async fn lookup_bytes(&self, key: &[u8]) -> Result<Option<IndexEntry>, IdentityError> {
        let key = key_of(key)?;
        Ok(self.store.lookup(&key, self.now()).await?)
    }

    /// A pending claim for `user_id` of `region`, as another region's node
    /// asks for it: the region must be the federation's and the user's, and
    /// so must `abandoned` (a non-empty user id whose pending claim the
    /// claimant may take over).
    pub async fn claim_for(
        &self,
        key: &[u8],
        region: &str,
        user_id: &str,
        abandoned: &str,
    ) -> Result<Claim, IdentityError> {
        let key = key_of(key)?;
        let user_id = user_of(user_id)?;
        let region = self.topology.known_region(region).cloned().ok_or_else(|| {
            IdentityError::invalid("region", format!("unknown region {region:?}"))
        })?;
        if user_id.region() != &region {
            return Err(IdentityError::invalid(
                "user_id",
                "user id and region disagree",
            ));
        }
        let abandoned = match abandoned {
            "" => None,
            a => {
                let a =
                    UserId::parse(a).map_err(|e| IdentityError::invalid("abandoned_user_id", e))?;
                if a.region() != &region {
                    return Err(IdentityError::invalid(
                        "abandoned_user_id",
                        "a region takes over only its own claims",
                    ));
                }
                Some(a)
            }
        };
        let now = self.now();
        let entry = IndexEntry {
            region,
            user_id,
            state: IndexState::Pending,
            created_at: now,
            expires_at: Some(now + self.topology.index.claim_ttl_seconds),
        };
        Ok(match abandoned {
            None => self.store.claim(&key, &entry, now).await?,
            Some(a) => self.store.take_over(&key, &entry, &a, now).await?,
        })
    }

    /// Confirms a claim given as bytes and text.
    pub async fn confirm_for(&self, key: &[u8], user_id: &str) -> Result<bool, IdentityError> {
        self.confirm(&key_of(key)?, &user_of(user_id)?).await
    }

    /// Releases a claim given as bytes and text.
    pub async fn release_for(&self, key: &[u8], user_id: &str) -> Result<bool, IdentityError> {
        self.release(&key_of(key)?, &user_of(user_id)?).await
    }

    /// Re-homes a key given as bytes and text (another region's move).
    pub async fn switch_for(
        &self,
        key: &[u8],
        from: &str,
        to: &str,
    ) -> Result<bool, IdentityError> {
        let to = user_of(to)?;
        if self.topology.region(to.region()).is_none() {
            return Err(IdentityError::invalid("to_user_id", "unknown region"));
        }
        self.switch(&key_of(key)?, &user_of(from)?, &to).await
    }

    /// Counts what the index holds.
    pub async fn report(&self) -> Result<IndexReport, IdentityError> {
        let entries = self.store.scan(self.now()).await?;
        let mut report = IndexReport {
            entries: entries.len() as u64,
            ..IndexReport::default()
        };
        for (key, e) in &entries {
            if self.topology.region(&e.region).is_none() || e.user_id.region() != &e.region {
                report.malformed_keys += 1;
            }
            if looks_like_plaintext(&key.0) {
                report.plaintext_suspects += 1;
            }
            match e.state {
                IndexState::Active => {
                    *report
                        .active_by_region
                        .entry(e.region.to_string())
                        .or_default() += 1
                }
                IndexState::Pending => report.pending += 1,
            }
        }
        Ok(report)
    }
}

#[async_trait]
impl HomeIndex for IndexHost {
    async fn lookup(&self, key: &IdentifierKey) -> Result<Option<IndexEntry>, IdentityError> {
        Ok(self.store.lookup(key, self.now()).await?)
    }

    async fn claim(&self, key: &IdentifierKey, entry: &IndexEntry) -> Result<Claim, IdentityError> {
        Ok(self.store.claim(key, entry, self.now()).await?)
    }

    async fn take_over(
        &self,
        key: &IdentifierKey,
        entry: &IndexEntry,
        abandoned: &UserId,
    ) -> Result<Claim, IdentityError> {
        Ok(self
            .store
            .take_over(key, entry, abandoned, self.now())
            .await?)
    }

    async fn confirm(&self, key: &IdentifierKey, user_id: &UserId) -> Result<bool, IdentityError> {
        Ok(self
            .store
            .confirm(key, user_id.as_str(), self.now())
            .await?
            .is_applied())
    }

    async fn release(&self, key: &IdentifierKey, user_id: &UserId) -> Result<bool, IdentityError> {
        Ok(self
            .store
            .release(key, user_id.as_str())
            .await?
            .is_applied())
    }

    async fn switch(
        &self,
        key: &IdentifierKey,
        from: &UserId,
        to: &UserId,
    ) -> Result<bool, IdentityError> {
        let entry = IndexEntry {
            region: to.region().clone(),
            user_id: to.clone(),
            state: IndexState::Active,
            created_at: self.now(),
            expires_at: None,
        };
        Ok(self
            .store
            .switch(key, from.as_str(), &entry)
            .await?
            .is_applied())
    }
}

#[cfg(test)]
mod tests {
    use super::looks_like_plaintext;

    #[test]
    fn plaintext_identifiers_are_recognised() {
        let mut padded = [0u8; 32];
        padded[..15].copy_from_slice(b"ada@example.net");
        let full = *b"ada.lovelace@analytical-engine.x";
        let mut phone = [0u8; 32];
        phone[..14].copy_from_slice(b"+4915112345678");
        let mut hashed = [0u8; 32];
        for (i, b) in hashed.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(7);
        }
        hashed[3] = b'@';
        for (key, plain) in [
            (&padded[..], true),
            (&full[..], true),
            (&phone[..], true),
            (&phone[1..], false),
            (&hashed[..], false),
            (&[0u8; 32][..], false),
            (&b"no-at-sign-here-just-text-000000"[..], false),
        ] {
            assert_eq!(looks_like_plaintext(key), plain, "{key:?}");
        }
    }
}
