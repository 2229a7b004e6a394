//! The users aggregate: one row per user (partition: user id), holding the
//! versioned `UserRecord`. Optimistic concurrency is read → compare the
//! version → `put_if(Equals(old))`: a stale writer never overwrites.
//!
//! It does not touch identifiers, sessions or audit events of the user:
//! those are their aggregates' (see `RegionStore::erase_user`).

use crate::{
    Applied, Key, RegionStore, Result, Scope, Table, UserRecord,
    backend::{Change, Condition, Expiry},
};
use domicile_core::ids::ArtifactKind;

pub const USERS: Table = Table::rows("users", Scope::Region);

fn key(user_id: &str) -> Key {
    Key::row(user_id.as_bytes())
}

impl RegionStore {
    /// `INSERT … IF NOT EXISTS`. Acknowledged only once durable.
    pub async fn insert_user(&self, user: &UserRecord) -> Result<Applied> {
        self.instrument
            .run("insert_user", async {
                self.check_id(&USERS, ArtifactKind::User, &user.user_id)?;
                let value = self.encode(&USERS, user)?;
                let applied = self
                    .backend
                    .put_if(
                        &USERS,
                        &key(&user.user_id),
                        Condition::Absent,
                        value,
                        Expiry::Never,
                    )
                    .await?;
                Ok(match applied {
                    Applied::Yes => Applied::Yes,
                    Applied::No(_) => Applied::No(()),
                })
            })
            .await
    }

    pub async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        self.instrument
            .run("get_user", self.read(&USERS, &key(user_id)))
            .await
    }

    /// Writes `user` (which carries its new version) if the stored version
    /// is `expected_version`.
    pub async fn update_user(&self, user: &UserRecord, expected_version: u64) -> Result<Applied> {
        self.instrument
            .run("update_user", async {
                self.check_id(&USERS, ArtifactKind::User, &user.user_id)?;
                let value = self.encode(&USERS, user)?;
                self.modify(
                    &USERS,
                    &key(&user.user_id),
                    |current: Option<UserRecord>| {
                        Ok(match current {
                            Some(c) if c.version == expected_version => {
                                (Change::Put(value.clone(), Expiry::Never), Applied::Yes)
                            }
                            _ => (Change::Keep, Applied::No(())),
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Deletes a user row (undoing a failed registration); `No` when absent.
    pub async fn delete_user(&self, user_id: &str) -> Result<Applied> {
        self.instrument
            .run("delete_user", self.delete_user_row(user_id))
            .await
    }

    async fn delete_user_row(&self, user_id: &str) -> Result<Applied> {
        self.modify(&USERS, &key(user_id), |current: Option<UserRecord>| {
            Ok(match current {
                Some(_) => (Change::Delete, Applied::Yes),
                None => (Change::Keep, Applied::No(())),
            })
        })
        .await
    }

    /// Number of users (compliance reports; a key-only scan on Scylla).
    pub async fn count_users(&self) -> Result<u64> {
        self.instrument
            .run("count_users", self.backend.count(&USERS))
            .await
    }

    /// Every user (compliance reports and audits; a full scan, paged on Scylla).
    pub async fn scan_users(&self) -> Result<Vec<UserRecord>> {
        self.instrument
            .run("scan_users", async {
                let rows = self.backend.scan(&USERS).await?;
                rows.iter().map(|(_, v)| self.decode(&USERS, v)).collect()
            })
            .await
    }

    /// Writes a moved user's row as it arrives: where no row is, or over
    /// the arriving copy of the same move (`operation_id`, a re-run).
    /// Any other row (a user who settled, another user) is kept: `No`.
    pub async fn import_user_record(
        &self,
        user: &UserRecord,
        operation_id: &str,
    ) -> Result<Applied> {
        self.instrument
            .run("import_user_record", async {
                self.check_id(&USERS, ArtifactKind::User, &user.user_id)?;
                let value = self.encode(&USERS, user)?;
                self.modify(
                    &USERS,
                    &key(&user.user_id),
                    |current: Option<UserRecord>| {
                        let ours = match &current {
                            None => true,
                            Some(c) => c.moving.as_ref().is_some_and(|m| {
                                m.operation_id == operation_id && m.new_user_id == c.user_id
                            }),
                        };
                        Ok(if ours {
                            (Change::Put(value.clone(), Expiry::Never), Applied::Yes)
                        } else {
                            (Change::Keep, Applied::No(()))
                        })
                    },
                )
                .await
            })
            .await
    }

    /// The user's row, for a compliance export.
    pub async fn export_user_record(&self, user_id: &str) -> Result<Option<UserRecord>> {
        self.instrument
            .run("export_user_record", self.read(&USERS, &key(user_id)))
            .await
    }

    /// Erases the user's row (idempotent).
    pub async fn erase_user_record(&self, user_id: &str) -> Result<()> {
        self.instrument
            .run("erase_user_record", async {
                self.delete_user_row(user_id).await.map(|_| ())
            })
            .await
    }
}
