//! The compliance operations aggregate (`compliance_operations`, one row
//! per user id of this region): the journal of a move or an erasure of
//! that user, written before the operation's first change and advanced
//! after each durable step, so a re-run finds where an interrupted one
//! stopped and finishes it; and, once done, its signed receipt.
//!
//! One operation per user id: `start_operation` is a conditional insert,
//! and a second caller gets the stored journal back. The row holds ids,
//! regions, counts and signatures, nothing personal, and does not expire
//! (it is the record of what was done). It does not decide the steps (the
//! use case does).

use crate::{
    Applied, Key, OperationRecord, RegionStore, Result, Scope, Table,
    backend::{Change, Expiry},
};
use domicile_core::ids::ArtifactKind;

pub const OPERATIONS: Table = Table::rows("compliance_operations", Scope::Region);

fn key(user_id: &str) -> Key {
    Key::row(user_id.as_bytes())
}

impl RegionStore {
    /// Journals `op` for its user unless one is journaled already: then
    /// `No` with the stored one.
    pub async fn start_operation(&self, op: &OperationRecord) -> Result<Applied<OperationRecord>> {
        self.instrument
            .run("start_operation", async {
                self.check_id(&OPERATIONS, ArtifactKind::User, &op.user_id)?;
                let value = self.encode(&OPERATIONS, op)?;
                self.insert_or_modify(
                    &OPERATIONS,
                    &key(&op.user_id),
                    None,
                    |current: Option<OperationRecord>| {
                        Ok(match current {
                            Some(stored) => (Change::Keep, Applied::No(stored)),
                            None => (Change::Put(value.clone(), Expiry::Never), Applied::Yes),
                        })
                    },
                )
                .await
            })
            .await
    }

    /// The operation journaled for `user_id`, if any.
    pub async fn get_operation(&self, user_id: &str) -> Result<Option<OperationRecord>> {
        self.instrument
            .run("get_operation", self.read(&OPERATIONS, &key(user_id)))
            .await
    }

    /// Drops the journal of `operation_id` (an aborted move that changed
    /// nothing for good); `No` when another operation's is stored.
    pub async fn drop_operation(&self, user_id: &str, operation_id: &str) -> Result<Applied> {
        self.instrument
            .run("drop_operation", async {
                self.modify(
                    &OPERATIONS,
                    &key(user_id),
                    |current: Option<OperationRecord>| {
                        Ok(match current {
                            Some(c) if c.operation_id == operation_id => {
                                (Change::Delete, Applied::Yes)
                            }
                            None => (Change::Keep, Applied::Yes),
                            Some(_) => (Change::Keep, Applied::No(())),
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Takes the abort mark off `operation_id`'s journal (an abort that can
    /// no longer finish: the move must); `No` when it is another's.
    pub async fn clear_abort(&self, user_id: &str, operation_id: &str) -> Result<Applied> {
        self.instrument
            .run("clear_abort", async {
                self.modify(
                    &OPERATIONS,
                    &key(user_id),
                    |current: Option<OperationRecord>| {
                        Ok(match current {
                            Some(mut c) if c.operation_id == operation_id => {
                                c.aborting = false;
                                let value = self.encode(&OPERATIONS, &c)?;
                                (Change::Put(value, Expiry::Never), Applied::Yes)
                            }
                            _ => (Change::Keep, Applied::No(())),
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Advances the journal of `op`'s operation to `op` (its step and
    /// what it learned); `No` when the stored journal is of another
    /// operation, already further, or being aborted (only the abort
    /// itself, `op.aborting`, may write it then).
    pub async fn advance_operation(&self, op: &OperationRecord) -> Result<Applied> {
        self.instrument
            .run("advance_operation", async {
                self.check_id(&OPERATIONS, ArtifactKind::User, &op.user_id)?;
                let value = self.encode(&OPERATIONS, op)?;
                self.modify(
                    &OPERATIONS,
                    &key(&op.user_id),
                    |current: Option<OperationRecord>| {
                        Ok(match current {
                            Some(c)
                                if c.operation_id == op.operation_id
                                    && c.step <= op.step
                                    && (!c.aborting || op.aborting) =>
                            {
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
}
