//! Domicile's edge router: one public hostname, every request proxied to a
//! healthy node of its user's home region.
//!
//! The decision is a pure function (`routing::route`) over facts the proxy
//! gathers: region-tagged artifacts, the home-region index (cached), email
//! domain rules, the user's preference, GeoIP. The Pingora glue (`proxy`)
//! only gathers facts and applies the decision. The edge holds no personal
//! data: identifiers are read from requests in memory, hashed for the index,
//! and never stored or logged. It depends on `core` and `proto`, never on
//! `store`; only this crate knows Pingora.

#![forbid(unsafe_code)]

pub mod client_ip;
pub mod extract;
pub mod geoip;
mod index_cache;
mod jwks;
mod metrics;
mod pools;
mod proxy;
mod reload;
pub mod routing;
mod server;

pub use geoip::{GeoIp, Schema};
pub use index_cache::IndexCache;
pub use reload::Reloaded;
pub use server::{Edge, EdgeOptions, RunningEdge};

use arc_swap::ArcSwap;
use domicile_core::{index::IndexSecret, topology::Topology};
use std::sync::Arc;

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("edge cannot start: {0}")]
    Start(String),
    /// A new `regions.toml` was refused; the running configuration stays.
    #[error("configuration not reloaded: {0}")]
    Reload(String),
}

/// The part of the configuration a reload replaces: the topology (routing
/// rules) and the region pools built from it. A request reads one snapshot
/// from start to end.
pub struct Live {
    pub topology: Arc<Topology>,
    pools: pools::Pools,
}

/// Everything a request handler reads, shared by all connections.
pub struct EdgeState {
    live: ArcSwap<Live>,
    secret: IndexSecret,
    geoip: Option<GeoIp>,
    index: IndexCache,
    keys: jwks::FederationKeys,
    metrics: Arc<metrics::Metrics>,
}

impl EdgeState {
    /// The configuration in force now.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// The topology in force now.
    pub fn topology(&self) -> Arc<Topology> {
        self.live().topology.clone()
    }
}
