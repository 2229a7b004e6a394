//! Home-region index lookups from the edge: gRPC clients of the nodes that
//! serve the index (`Topology::index_servers`: the host region's, and on the
//! Scylla backend every region's, asked in that order until one answers)
//! behind a moka cache. Positive answers ("homed in R") and negative ones
//! ("unknown") have their own TTLs; concurrent misses for one key share one
//! lookup. Keys are the keyed hashes, never the identifier itself.

use crate::metrics::Metrics;
use domicile_core::{RegionCode, index::IdentifierKey, topology::Topology};
use domicile_proto::v1::{self as pb, home_index_client::HomeIndexClient};
use moka::{Expiry, future::Cache};
use std::{sync::Arc, time::Duration};
use tonic::transport::Channel;

/// The clients of the regions that serve the index, in the order to ask.
type IndexClients = Vec<(RegionCode, HomeIndexClient<Channel>)>;

#[derive(Clone)]
pub struct IndexCache {
    cache: Cache<[u8; 32], Option<RegionCode>>,
    /// One client per region that serves the index, in the order to ask
    /// them; replaced when a reload moves those nodes.
    clients: Arc<arc_swap::ArcSwap<IndexClients>>,
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
    fn clients(topology: &Topology) -> Result<Vec<(RegionCode, HomeIndexClient<Channel>)>, String> {
        topology
            .index_servers()
            .into_iter()
            .map(|(region, addresses)| {
                domicile_proto::home_index_client(
                    &addresses,
                    Duration::from_secs(1),
                    Duration::from_secs(2),
                )
                .map(|c| (region, c))
                .map_err(|e| e.to_string())
            })
            .collect()
    }

    /// Points lookups at the nodes that serve the index in `topology`
    /// (cached answers stay: the index itself did not change).
    pub fn retarget(&self, topology: &Topology) -> Result<(), String> {
        self.clients.store(Arc::new(Self::clients(topology)?));
        Ok(())
    }

    /// Asks each region's index servers in turn; the first answer wins,
    /// and the last error is returned when none answers.
    async fn ask(
        clients: &IndexClients,
        key: [u8; 32],
    ) -> Result<Option<RegionCode>, tonic::Status> {
        let mut last = tonic::Status::unavailable("no node serves the index");
        for (region, client) in clients {
            match client
                .clone()
                .lookup(pb::IndexLookupRequest { key: key.to_vec() })
                .await
            {
                Ok(r) => {
                    return Ok(r
                        .into_inner()
                        .entry
                        .and_then(|e| RegionCode::parse(&e.region).ok()));
                }
                Err(e) => {
                    tracing::debug!(%region, error = %e, "index lookup failed; asking the next region");
                    last = e;
                }
            }
        }
        Err(last)
    }

    pub fn new(topology: &Topology, metrics: Arc<Metrics>) -> Result<Self, String> {
        let clients = Arc::new(arc_swap::ArcSwap::from_pointee(Self::clients(topology)?));
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
            clients,
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
        let clients = self.clients.load_full();
        let k = key.0;
        let loaded = self
            .cache
            .try_get_with(key.0, async move { Self::ask(&clients, k).await })
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

    /// A real HomeIndex server that counts lookups and knows one key, or
    /// (`failing`) answers every lookup UNAVAILABLE, like a node whose
    /// store is down.
    struct Counting {
        lookups: Arc<AtomicUsize>,
        failing: bool,
    }

    #[tonic::async_trait]
    impl pb::home_index_server::HomeIndex for Counting {
        async fn lookup(
            &self,
            req: Request<pb::IndexLookupRequest>,
        ) -> Result<Response<pb::IndexLookupResponse>, Status> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.failing {
                return Err(Status::unavailable("the store is down"));
            }
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
        async fn switch(
            &self,
            _: Request<pb::IndexSwitchRequest>,
        ) -> Result<Response<pb::IndexSwitchResponse>, Status> {
            Err(Status::unimplemented("read-only test index"))
        }
    }

    /// Serves a `Counting` index on a fresh port; its address and count.
    async fn serve(failing: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lookups = Arc::new(AtomicUsize::new(0));
        let svc = pb::home_index_server::HomeIndexServer::new(Counting {
            lookups: lookups.clone(),
            failing,
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream_listener(listener)),
        );
        (addr, lookups)
    }

    /// On the Scylla backend a region whose index answers fail (its store
    /// is down) does not take lookups with it: the next region answers.
    /// The embedded index has only its host to ask.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_go_on_to_the_next_region_when_the_first_fails() {
        let (eu, eu_lookups) = serve(true).await;
        let (us, us_lookups) = serve(false).await;
        let store = |dc: &str, backend: &str| match backend {
            "scylla" => format!(
                "{{ backend = \"scylla\", nodes = [\"127.0.0.1:9\"], datacenter = \"{dc}\" }}"
            ),
            _ => format!("{{ backend = \"embedded\", path = \"{dc}\" }}"),
        };
        for (backend, want) in [("scylla", Some("us")), ("embedded", None)] {
            let text = format!(
                "[federation]\nname = \"t\"\nissuer = \"https://id.example\"\ndefault_region = \"eu\"\n\
                 [index]\nhost_region = \"eu\"\nsecret_file = \"k\"\nstore = {}\n\
                 [regions.eu]\nresidency = \"EU\"\nnodes = [{{ address = \"{eu}\" }}]\nstore = {}\n\
                 [regions.us]\nresidency = \"US\"\nnodes = [{{ address = \"{us}\" }}]\nstore = {}\n",
                match backend {
                    "scylla" => "{ backend = \"scylla\" }".to_owned(),
                    _ => store("index", backend),
                },
                store("eu", backend),
                store("us", backend),
            );
            let t = Topology::parse(std::path::Path::new("t.toml"), &text).unwrap();
            let cache = IndexCache::new(&t, Arc::new(Metrics::new().unwrap())).unwrap();
            let (eu_before, us_before) = (
                eu_lookups.load(Ordering::SeqCst),
                us_lookups.load(Ordering::SeqCst),
            );
            let got = cache.lookup(&IdentifierKey([7; 32])).await;
            assert_eq!(got.as_ref().map(RegionCode::as_str), want, "{backend}");
            assert_eq!(
                (
                    eu_lookups.load(Ordering::SeqCst) - eu_before,
                    us_lookups.load(Ordering::SeqCst) - us_before
                ),
                (1, usize::from(backend == "scylla")),
                "{backend}: the host is asked first, the next region only on Scylla"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_lookup_and_ttls_apply() {
        let (addr, lookups) = serve(false).await;
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
