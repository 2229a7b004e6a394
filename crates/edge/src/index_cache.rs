//! Home-region index lookups from the edge: a gRPC client to the index host's
//! nodes behind a moka cache. Positive answers ("homed in R") and negative
//! ones ("unknown") have their own TTLs; concurrent misses for one key share
//! one lookup. Keys are the keyed hashes, never the identifier itself.

use crate::metrics::Metrics;
use domicile_core::{RegionCode, index::IdentifierKey, topology::Topology};
use domicile_proto::v1::{self as pb, home_index_client::HomeIndexClient};
use moka::{Expiry, future::Cache};
use std::{sync::Arc, time::Duration};
use tonic::transport::Channel;

#[derive(Clone)]
pub struct IndexCache {
    cache: Cache<[u8; 32], Option<RegionCode>>,
    client: HomeIndexClient<Channel>,
    metrics: Arc<Metrics>,
}

struct Ttl {
    positive: Duration,
    negative: Duration,
}

impl Expiry<[u8; 32], Option<RegionCode>> for Ttl {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Option<RegionCode>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() {
            self.positive
        } else {
            self.negative
        })
    }
}

impl IndexCache {
    pub fn new(topology: &Topology, metrics: Arc<Metrics>) -> Result<Self, String> {
        let client = domicile_proto::home_index_client(
            &topology.index_host_addresses(),
            Duration::from_secs(1),
            Duration::from_secs(2),
        )
        .map_err(|e| e.to_string())?;
        let e = &topology.edge;
        let cache = Cache::builder()
            .max_capacity(e.index_cache_capacity)
            .expire_after(Ttl {
                positive: e.index_cache_positive,
                negative: e.index_cache_negative,
            })
            .build();
        Ok(Self {
            cache,
            client,
            metrics,
        })
    }

    /// The home region of a key, or `None` when the index does not know it
    /// or cannot be reached (routing then falls through to the next rule; the
    /// node still enforces residency).
    pub async fn lookup(&self, key: &IdentifierKey) -> Option<RegionCode> {
        if let Some(hit) = self.cache.get(&key.0).await {
            self.metrics.index_cache.with_label_values(&["hit"]).inc();
            return hit;
        }
        self.metrics.index_cache.with_label_values(&["miss"]).inc();
        let client = self.client.clone();
        let k = key.0;
        let loaded = self
            .cache
            .try_get_with(key.0, async move {
                let r = client
                    .clone()
                    .lookup(pb::IndexLookupRequest { key: k.to_vec() })
                    .await?;
                let region = r
                    .into_inner()
                    .entry
                    .and_then(|e| RegionCode::parse(&e.region).ok());
                Ok::<_, tonic::Status>(region)
            })
            .await;
        match loaded {
            Ok(r) => r,
            Err(e) => {
                self.metrics.index_cache.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "home-region index lookup failed; routing without it");
                None
            }
        }
    }

    /// Records a key's home region (a registration through the edge succeeded),
    /// replacing a negative entry the registration's own lookup left.
    pub async fn remember(&self, key: &IdentifierKey, region: RegionCode) {
        self.cache.insert(key.0, Some(region)).await;
    }

    /// Forgets a key (a node said the user lives elsewhere).
    pub async fn invalidate(&self, key: &IdentifierKey) {
        self.cache.invalidate(&key.0).await;
    }
}
