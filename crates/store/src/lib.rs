//! Domicile's per-region persistence: one region's store and the global
//! home-region index, each written once over a small storage primitive that
//! every backend implements (`backend`), plus the embedded and Scylla
//! backends and the conformance suite.
//!
//! The model is ScyllaDB's: every operation addresses one partition by its
//! key, uniqueness and every read-modify-write come from one conditional
//! write (`put_if`: LWT on Scylla, one serializable transaction in the
//! embedded backend), and sessions, refresh tokens, audit events and
//! pending index claims expire (TTL). Domain operations live in one module
//! per aggregate (`users`, `identifiers`, `sessions`, `keys`, `audit`,
//! `index`) as methods of the concrete [`RegionStore`] and [`IndexStore`];
//! adding an operation touches only its aggregate's module and the
//! conformance suite.
//!
//! This crate knows nothing of gRPC, tokens or routing; it never reads the
//! clock (`now` is passed in). A `RegionStore` belongs to exactly one region
//! and refuses any record whose id names another region.

#![forbid(unsafe_code)]

mod admin_log;
mod audit;
pub mod backend;
mod codec;
mod codes;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod embedded;
mod factors;
mod history;
mod identifiers;
mod index;
mod keys;
mod observe;
mod one_time;
mod operations;
mod records;
mod region;
pub mod scylla;
mod sessions;
mod users;

pub use backend::{Backend, Condition, Expiry, Key, Placement, Read, Row, Scope, Shape, Table};
pub use codes::Redemption;
pub use factors::{
    Activation, FactorAttempt, MAX_SPENT_CHALLENGES, PasskeyUse, PendingOutcome, RecoveryUse,
    StepUse,
};
pub use index::{Claim, IndexStore};
pub use observe::StoreObserver;
pub use one_time::{Presented, Spend};
pub use records::*;
pub use region::{RegionScan, RegionStore, TABLE_ROLES, TableRole, UserExport};

/// Bytes of an identifier key or a code hash used as a partition key.
pub(crate) const KEY_BYTES: usize = 32;
pub use scylla::ScyllaRegion;

/// A store error, with the store, table and operation it came from.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, driver, closed store).
    #[error("store {store}: {op} on {table}: {reason}")]
    Backend {
        store: String,
        table: &'static str,
        op: &'static str,
        reason: String,
    },
    /// The backend could not be reached or could not answer in time (a
    /// CQL cluster with no live replica, a timeout): retrying later may
    /// succeed. A plain write that timed out may have been applied.
    #[error("store {store}: {op} on {table}: unavailable: {reason}")]
    Unavailable {
        store: String,
        table: &'static str,
        op: &'static str,
        reason: String,
    },
    /// The store could not be opened or connected.
    #[error("store {store}: cannot open: {reason}")]
    Open { store: String, reason: String },
    /// A stored record could not be decoded (or a record could not be encoded).
    #[error("store {store}: {op} on {table}: corrupt record: {reason}")]
    Corrupt {
        store: String,
        table: &'static str,
        op: &'static str,
        reason: String,
    },
    /// A record whose id names another region (or no region): refused,
    /// nothing written.
    #[error("store {store}: {op} on {table}: {id:?} does not belong to region {region}")]
    ForeignRecord {
        store: String,
        region: String,
        table: &'static str,
        op: &'static str,
        id: String,
    },
    /// A conditional write kept losing to concurrent writers.
    #[error("store {store}: {op} on {table}: the row kept changing under a conditional write")]
    Contended {
        store: String,
        table: &'static str,
        op: &'static str,
    },
    #[error(
        "store {store}: stored format version {found} is newer than this build understands ({supported})"
    )]
    FutureFormat {
        store: String,
        found: u32,
        supported: u32,
    },
}

impl StoreError {
    /// Names the store operation during which the error happened (the
    /// backend knows only its primitive).
    pub(crate) fn during(mut self, operation: &'static str) -> Self {
        match &mut self {
            StoreError::Backend { op, .. }
            | StoreError::Unavailable { op, .. }
            | StoreError::Corrupt { op, .. }
            | StoreError::ForeignRecord { op, .. }
            | StoreError::Contended { op, .. } => *op = operation,
            StoreError::Open { .. } | StoreError::FutureFormat { .. } => {}
        }
        self
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Outcome of a conditional write, like Scylla's `[applied]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied<T = ()> {
    Yes,
    /// Not applied; carries what blocked it where that is useful.
    No(T),
}

impl<T> Applied<T> {
    pub fn is_applied(&self) -> bool {
        matches!(self, Applied::Yes)
    }
}
