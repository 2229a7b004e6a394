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
    /// Replaced when a reload moves the index host's nodes.
    client: Arc<arc_swap::ArcSwap<HomeIndexClient<Channel>>>,
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
    fn client(topology: &Topology) -> Result<HomeIndexClient<Channel>, String> {
        domicile_proto::home_index_client(
            &topology.index_host_addresses(),
            Duration::from_secs(1),
            Duration::from_secs(2),
        )
        .map_err(|e| e.to_string())
    }

    /// Points lookups at the index host's nodes in `topology` (cached
    /// answers stay: the index itself did not change).
    pub fn retarget(&self, topology: &Topology) -> Result<(), String> {
        self.client.store(Arc::new(Self::client(topology)?));
        Ok(())
    }

    pub fn new(topology: &Topology, metrics: Arc<Metrics>) -> Result<Self, String> {
        let client = Arc::new(arc_swap::ArcSwap::from_pointee(Self::client(topology)?));
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
        let client = HomeIndexClient::clone(&self.client.load());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tonic::{Request, Response, Status};

    /// A real HomeIndex server that counts lookups and knows one key.
    struct Counting {
        lookups: Arc<AtomicUsize>,
    }

    #[tonic::async_trait]
    impl pb::home_index_server::HomeIndex for Counting {
        async fn lookup(
            &self,
            req: Request<pb::IndexLookupRequest>,
        ) -> Result<Response<pb::IndexLookupResponse>, Status> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            let entry = (req.get_ref().key == [7; 32]).then(|| pb::IndexEntry {
                region: "us".into(),
                user_id: "usr_us_01JD0000000000000000000000".into(),
                state: pb::IndexState::Active as i32,
                created_at: 1,
                expires_at: 0,
            });
            Ok(Response::new(pb::IndexLookupResponse { entry }))
        }
        async fn claim(
            &self,
            _: Request<pb::IndexClaimRequest>,
        ) -> Result<Response<pb::IndexClaimResponse>, Status> {
            Err(Status::unimplemented("read-only test index"))
        }
        async fn confirm(
            &self,
            _: Request<pb::IndexConfirmRequest>,
        ) -> Result<Response<pb::IndexConfirmResponse>, Status> {
            Err(Status::unimplemented("read-only test index"))
        }
        async fn release(
            &self,
            _: Request<pb::IndexReleaseRequest>,
        ) -> Result<Response<pb::IndexReleaseResponse>, Status> {
            Err(Status::unimplemented("read-only test index"))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_lookup_and_ttls_apply() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lookups = Arc::new(AtomicUsize::new(0));
        let svc = pb::home_index_server::HomeIndexServer::new(Counting {
            lookups: lookups.clone(),
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream_listener(listener)),
        );
        let text = format!(
            "[federation]\nname = \"t\"\nissuer = \"https://id.example\"\ndefault_region = \"us\"\n\
             [index]\nhost_region = \"us\"\nsecret_file = \"k\"\nstore = {{ backend = \"embedded\", path = \"i\" }}\n\
             [edge]\nindex_cache_negative_seconds = 1\nindex_cache_positive_seconds = 60\n\
             [regions.us]\nresidency = \"US\"\nnodes = [{{ address = \"{addr}\" }}]\nstore = {{ backend = \"embedded\", path = \"us\" }}\n"
        );
        let t = Topology::parse(std::path::Path::new("t.toml"), &text).unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let cache = IndexCache::new(&t, metrics).unwrap();
        let known = IdentifierKey([7; 32]);
        let unknown = IdentifierKey([8; 32]);

        let answers = futures_join(&cache, known, 50).await;
        assert!(
            answers
                .iter()
                .all(|r| r.as_ref().map(RegionCode::as_str) == Some("us")),
            "{answers:?}"
        );
        assert_eq!(
            lookups.load(Ordering::SeqCst),
            1,
            "50 concurrent misses, one lookup"
        );
        assert_eq!(
            cache.lookup(&known).await.map(|r| r.to_string()).as_deref(),
            Some("us")
        );
        assert_eq!(
            lookups.load(Ordering::SeqCst),
            1,
            "positive answers are cached"
        );

        assert_eq!(cache.lookup(&unknown).await, None);
        assert_eq!(cache.lookup(&unknown).await, None);
        assert_eq!(
            lookups.load(Ordering::SeqCst),
            2,
            "negative answers are cached too"
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(cache.lookup(&unknown).await, None);
        assert_eq!(lookups.load(Ordering::SeqCst), 3, "…for their shorter TTL");

        cache.invalidate(&known).await;
        cache.lookup(&known).await;
        assert_eq!(
            lookups.load(Ordering::SeqCst),
            4,
            "invalidation forces a lookup"
        );
    }

    async fn futures_join(
        cache: &IndexCache,
        key: IdentifierKey,
        n: usize,
    ) -> Vec<Option<RegionCode>> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.lookup(&key).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    fn tokio_stream_listener(
        l: tokio::net::TcpListener,
    ) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
        tokio_stream::wrappers::TcpListenerStream::new(l)
    }
}
