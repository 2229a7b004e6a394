//! The ScyllaDB backend: a region's data in a keyspace replicated only in the
//! region's datacenter, and the global index in a keyspace replicated to
//! every datacenter.
//!
//! One job per module: `session` connects (profiles, DC-aware load balancing
//! without failover, error classification), `tables` implements the storage
//! primitive with LWT, `lwt` decodes `[applied]` results, `cql` generates the
//! statements from the table descriptors, `schema` renders and applies the
//! versioned schema, `config` validates keyspace names and renders
//! replication. This module wires them into region and index stores.

mod config;
mod cql;
mod lwt;
pub mod schema;
mod session;
mod tables;

pub use config::{replication_cql, valid_cql_name, validate};
pub use cql::TableCql;
pub use session::{Failure, classify, connect, profile, ttl};
pub use tables::ScyllaBackend;

use crate::{IndexStore, RegionStore, Result};
use domicile_core::{RegionCode, topology::ScyllaConfig};
use scylla::{client::session::Session, statement::SerialConsistency};
use std::sync::Arc;

/// A region's connection to its datacenter: its region store and, through
/// the same session, the index.
pub struct ScyllaRegion {
    session: Arc<Session>,
    cfg: ScyllaConfig,
    store: RegionStore,
}

impl ScyllaRegion {
    /// Connects to the region's datacenter and prepares every statement.
    pub async fn connect(cfg: &ScyllaConfig, region: &RegionCode) -> Result<Self> {
        let session = connect(cfg).await?;
        Self::with_session(session, cfg, region).await
    }

    pub async fn with_session(
        session: Arc<Session>,
        cfg: &ScyllaConfig,
        region: &RegionCode,
    ) -> Result<Self> {
        let backend = ScyllaBackend::prepare(
            session.clone(),
            &cfg.keyspace,
            format!(
                "scylla keyspace {} of region {region} (datacenter {})",
                cfg.keyspace, cfg.datacenter
            ),
            crate::region::REGION_TABLES,
            &profile(&cfg.datacenter, SerialConsistency::LocalSerial, cfg),
        )
        .await?;
        Ok(Self {
            session,
            cfg: cfg.clone(),
            store: RegionStore::new(Arc::new(backend), region.clone()),
        })
    }

    /// The region's store (cheap to clone).
    pub fn store(&self) -> RegionStore {
        self.store.clone()
    }

    /// The index, reached through this region's session (its datacenter is
    /// preferred; claims are SERIAL across every datacenter).
    pub async fn index(&self, index: &ScyllaConfig) -> Result<IndexStore> {
        let timeouts = ScyllaConfig {
            request_timeout: index.request_timeout,
            ..self.cfg.clone()
        };
        let backend = ScyllaBackend::prepare(
            self.session.clone(),
            &index.keyspace,
            format!("scylla home-region index {}", index.keyspace),
            crate::index::INDEX_TABLES,
            &profile(&self.cfg.datacenter, SerialConsistency::Serial, &timeouts),
        )
        .await?;
        Ok(IndexStore::new(Arc::new(backend)))
    }
}
