//! The identifiers aggregate: regional uniqueness of login identifiers.
//!
//! `users_by_identifier` (partition: identifier key) names the user holding
//! each key; `identifiers_by_user` (partition: user id, clustering:
//! identifier key) lists the keys a user holds, so a user's identifiers can
//! be exported and erased without a scan. The list entry is durable no
//! later than the identifier row (`append_then_put_if`) and trimmed after a
//! release, so it may name a key the
//! user no longer holds (never the reverse): export and erase check each key
//! against its row.
//!
//! It does not touch the global index (that is `index`'s).

use crate::{
    Applied, Key, RegionStore, Result, Row, Scope, Table,
    backend::{Change, Condition, Expiry},
};
use domicile_core::{ids::ArtifactKind, index::IdentifierKey};

pub const IDENTIFIERS: Table = Table::rows("users_by_identifier", Scope::Region);
pub const IDENTIFIERS_BY_USER: Table = Table::partitioned("identifiers_by_user", Scope::Region);
/// Where region-local identifiers (passkey user handles) of users who
/// moved away went: identifier key → the region code. No personal data.
pub const FORWARDS: Table = Table::rows("identifier_forwards", Scope::Region);

fn key(k: &IdentifierKey) -> Key {
    Key::row(k.0.to_vec())
}

/// The row of `identifiers_by_user` saying `user_id` may hold `k`.
fn link(k: &IdentifierKey, user_id: &str) -> Row {
    Row {
        key: Key::cell(user_id.as_bytes(), k.0.to_vec()),
        value: Vec::new(),
        expiry: Expiry::Never,
    }
}

impl RegionStore {
    /// `INSERT … IF NOT EXISTS`; when taken, returns the holder's user id
    /// as the store reported it.
    pub async fn insert_identifier(
        &self,
        k: &IdentifierKey,
        user_id: &str,
    ) -> Result<Applied<String>> {
        self.instrument
            .run("insert_identifier", async {
                self.check_id(&IDENTIFIERS, ArtifactKind::User, user_id)?;
                let user = user_id.to_owned();
                let listed = (&IDENTIFIERS_BY_USER, vec![link(k, user_id)]);
                let outcome = self
                    .insert_or_modify(
                        &IDENTIFIERS,
                        &key(k),
                        Some(listed),
                        |holder: Option<String>| {
                            Ok(match holder {
                                Some(h) => (Change::Keep, Applied::No(h)),
                                None => (
                                    Change::Put(self.encode(&IDENTIFIERS, &user)?, Expiry::Never),
                                    Applied::Yes,
                                ),
                            })
                        },
                    )
                    .await?;
                if let Applied::No(holder) = &outcome
                    && holder != user_id
                {
                    self.unlink_identifier(k, user_id).await?;
                }
                Ok(outcome)
            })
            .await
    }

    pub async fn get_identifier(&self, k: &IdentifierKey) -> Result<Option<String>> {
        self.instrument
            .run("get_identifier", self.read(&IDENTIFIERS, &key(k)))
            .await
    }

    /// `UPDATE … IF user_id = expected` (takes over an orphaned identifier).
    pub async fn replace_identifier(
        &self,
        k: &IdentifierKey,
        expected: &str,
        user_id: &str,
    ) -> Result<Applied> {
        self.instrument
            .run("replace_identifier", async {
                self.check_id(&IDENTIFIERS, ArtifactKind::User, user_id)?;
                let value = self.encode(&IDENTIFIERS, &user_id.to_owned())?;
                self.link_identifier(k, user_id).await?;
                // The outcome, and whether `user_id` holds the key afterwards.
                let (outcome, holds) = self
                    .modify(&IDENTIFIERS, &key(k), |holder: Option<String>| {
                        Ok(match holder {
                            Some(h) if h == expected => (
                                Change::Put(value.clone(), Expiry::Never),
                                (Applied::Yes, true),
                            ),
                            h => (
                                Change::Keep,
                                (Applied::No(()), h.as_deref() == Some(user_id)),
                            ),
                        })
                    })
                    .await?;
                if outcome.is_applied() && expected != user_id {
                    self.unlink_identifier(k, expected).await?;
                }
                if !holds {
                    self.unlink_identifier(k, user_id).await?;
                }
                Ok(outcome)
            })
            .await
    }

    /// `DELETE … IF user_id = expected`.
    pub async fn delete_identifier(&self, k: &IdentifierKey, expected: &str) -> Result<Applied> {
        self.instrument
            .run("delete_identifier", self.delete_identifier_row(k, expected))
            .await
    }

    async fn delete_identifier_row(&self, k: &IdentifierKey, expected: &str) -> Result<Applied> {
        let outcome = self
            .modify(&IDENTIFIERS, &key(k), |holder: Option<String>| {
                Ok(match holder {
                    Some(h) if h == expected => (Change::Delete, Applied::Yes),
                    _ => (Change::Keep, Applied::No(())),
                })
            })
            .await?;
        if outcome.is_applied() {
            self.unlink_identifier(k, expected).await?;
        }
        Ok(outcome)
    }

    /// Remembers that the region-local identifier `k` (a passkey user
    /// handle) moved to `region` with its user (idempotent).
    pub async fn forward_identifier(&self, k: &IdentifierKey, region: &str) -> Result<()> {
        self.instrument
            .run("forward_identifier", async {
                let value = self.encode(&FORWARDS, &region.to_owned())?;
                self.modify(&FORWARDS, &key(k), |_: Option<String>| {
                    Ok((Change::Put(value.clone(), Expiry::Never), ()))
                })
                .await
            })
            .await
    }

    /// Forgets that `k` moved to `region` (an aborted move); a forward to
    /// another region stays.
    pub async fn unforward_identifier(&self, k: &IdentifierKey, region: &str) -> Result<()> {
        self.instrument
            .run("unforward_identifier", async {
                self.modify(&FORWARDS, &key(k), |current: Option<String>| {
                    Ok(match current {
                        Some(r) if r == region => (Change::Delete, ()),
                        _ => (Change::Keep, ()),
                    })
                })
                .await
            })
            .await
    }

    /// The region `k` moved to, if it did.
    pub async fn identifier_forward(&self, k: &IdentifierKey) -> Result<Option<String>> {
        self.instrument
            .run("identifier_forward", self.read(&FORWARDS, &key(k)))
            .await
    }

    /// The identifier keys this user holds here.
    pub async fn export_identifiers(&self, user_id: &str) -> Result<Vec<IdentifierKey>> {
        self.instrument
            .run("export_identifiers", async {
                let mut held = Vec::new();
                for k in self.linked_identifiers(user_id).await? {
                    let holder: Option<String> = self.read(&IDENTIFIERS, &key(&k)).await?;
                    if holder.as_deref() == Some(user_id) {
                        held.push(k);
                    }
                }
                Ok(held)
            })
            .await
    }

    /// Erases every identifier row this user holds, and their list.
    pub async fn erase_identifiers(&self, user_id: &str) -> Result<()> {
        self.instrument
            .run("erase_identifiers", async {
                for k in self.linked_identifiers(user_id).await? {
                    self.delete_identifier_row(&k, user_id).await?;
                }
                self.backend
                    .delete_partition(&IDENTIFIERS_BY_USER, user_id.as_bytes())
                    .await
            })
            .await
    }

    async fn linked_identifiers(&self, user_id: &str) -> Result<Vec<IdentifierKey>> {
        let rows = self
            .backend
            .rows(&IDENTIFIERS_BY_USER, user_id.as_bytes(), usize::MAX)
            .await?;
        rows.into_iter()
            .map(|(c, _)| {
                IdentifierKey::from_slice(&c).ok_or_else(|| {
                    self.corrupt(
                        &IDENTIFIERS_BY_USER,
                        "an identifier key is not 32 bytes".into(),
                    )
                })
            })
            .collect()
    }

    async fn link_identifier(&self, k: &IdentifierKey, user_id: &str) -> Result<()> {
        self.backend
            .append(&IDENTIFIERS_BY_USER, vec![link(k, user_id)])
            .await
    }

    async fn unlink_identifier(&self, k: &IdentifierKey, user_id: &str) -> Result<()> {
        self.backend
            .delete_if(
                &IDENTIFIERS_BY_USER,
                &Key::cell(user_id.as_bytes(), k.0.to_vec()),
                Condition::Any,
            )
            .await
            .map(|_| ())
    }
}
