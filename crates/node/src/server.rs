//! Assembles and runs a node: opens the region's store (and the index on the
//! index host), loads the signing keys, serves gRPC and HTTP on one port.

use crate::admin::AdminService;
use crate::{
    error::NodeError,
    hashing::{HashPool, PoolHasher},
    http::{self, HttpState},
    index::{IndexService, RemoteIndex},
    metered::StoreMetrics,
    metrics::NodeMetrics,
    observe::ObserveLayer,
    service::IdentityService,
};
use domicile_core::{
    RegionCode,
    index::IndexSecret,
    topology::{StoreConfig, Topology},
};
use domicile_identity::{
    Clock, Entropy, Identity, Parts,
    audit::AuditLog,
    env::random,
    index::IndexHost,
    keys::{self, KeyRing},
    ports::HomeIndex,
};
use domicile_proto::v1::{
    admin_server::AdminServer, home_index_server::HomeIndexServer, identity_server::IdentityServer,
};
use domicile_store::{IndexStore, RegionStore, ScyllaRegion};
use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic_health::{ServingStatus, server::HealthReporter};

/// Largest gRPC request a node decodes (identity messages are small).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How often expired sessions and refresh tokens are swept.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// What a node needs to start.
#[derive(Clone)]
pub struct NodeOptions {
    pub topology: Arc<Topology>,
    pub region: RegionCode,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
}

pub struct Node;

/// A started node.
pub struct RunningNode {
    pub addr: SocketAddr,
    pub region: RegionCode,
    /// The region's store (for reports and tests; the node owns it).
    pub store: Arc<RegionStore>,
    identity: Arc<Identity>,
    draining: Arc<AtomicBool>,
    metrics: Arc<NodeMetrics>,
    health: HealthReporter,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    purge: JoinHandle<()>,
    audit: JoinHandle<()>,
}

/// How long the audit writer may take to write out its queue at exit.
const AUDIT_FLUSH: Duration = Duration::from_secs(5);

impl RunningNode {
    /// The region's use cases (for tests that call them without a
    /// transport; the node owns them).
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// Stops accepting, finishes in-flight calls, writes out the audit
    /// queue, and returns. No drain period: see `drain`.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        self.purge.abort();
        let _ = self.shutdown.send(());
        let served = Self::join(self.task).await;
        drop(self.identity);
        if tokio::time::timeout(AUDIT_FLUSH, self.audit).await.is_err() {
            tracing::warn!("audit events still queued at exit were not written");
        }
        served
    }

    /// Leaves the pool gracefully (SIGTERM): reports NOT_SERVING on gRPC
    /// health and fails `/readyz` while still serving every call, waits
    /// `grace` for the edge's health checks to move traffic away, then shuts
    /// down (in-flight calls finish).
    pub async fn drain(self, grace: Duration) -> Result<(), NodeError> {
        self.draining.store(true, Ordering::SeqCst);
        self.metrics.draining.set(1);
        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.health
            .set_not_serving::<IdentityServer<IdentityService>>()
            .await;
        self.health
            .set_not_serving::<HomeIndexServer<IndexService>>()
            .await;
        tracing::info!(region = %self.region, grace_ms = grace.as_millis() as u64, "draining: not ready, still serving");
        tokio::time::sleep(grace).await;
        tracing::info!(region = %self.region, "drained: finishing in-flight calls");
        self.shutdown().await
    }

    /// Resolves when the server stops by itself (an error); a signal
    /// handler races it and then calls `drain`.
    pub async fn failed(&mut self) -> Result<(), NodeError> {
        Self::outcome((&mut self.task).await)
    }

    async fn join(task: JoinHandle<Result<(), tonic::transport::Error>>) -> Result<(), NodeError> {
        Self::outcome(task.await)
    }

    fn outcome(
        joined: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
    ) -> Result<(), NodeError> {
        match joined {
            Ok(r) => r.map_err(|e| NodeError::start("server", e)),
            Err(e) => Err(NodeError::start("server task", e)),
        }
    }

    /// This node's metrics (the same text `/metrics` serves).
    pub fn metrics_text(&self) -> String {
        self.metrics.render()
    }
}

/// Reads the federation's index secret; creates it first when allowed and absent.
pub fn load_or_create_secret(
    path: &Path,
    create: bool,
    entropy: &dyn Entropy,
) -> Result<IndexSecret, NodeError> {
    let fail =
        |what: String| NodeError::start("index secret", format!("{}: {what}", path.display()));
    if create && !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        }
        let hex: String = random::<32>(entropy)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        write_private(&tmp, hex.as_bytes()).map_err(|e| fail(e.to_string()))?;
        // A hard link never replaces an existing file: of several nodes
        // starting at once, one secret wins and all read it.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        if let Err(e) = linked
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(fail(e.to_string()));
        }
    }
    let bytes = std::fs::read(path).map_err(|e| {
        fail(format!(
            "{e} (provision it, or set index.create_secret for a local federation)"
        ))
    })?;
    let trimmed = String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec();
    IndexSecret::new(trimmed).map_err(|e| fail(e.to_string()))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Opens the region's store and, where this node can reach it directly, the
/// index: embedded, only on the index host; on Scylla, every node reaches
/// the index keyspace in its own datacenter.
async fn open_stores(
    topology: &Topology,
    region: &RegionCode,
) -> Result<(RegionStore, Option<IndexStore>), NodeError> {
    let region_cfg = topology.region(region).ok_or_else(|| {
        NodeError::start(
            "region",
            format!("region {region} is not in {}", topology.source.display()),
        )
    })?;
    let hosts_index = &topology.index.host_region == region;
    match (&region_cfg.store, &topology.index.store) {
        (StoreConfig::Embedded { path }, index) => {
            let store = RegionStore::open_embedded(path, region)?;
            let local_index = match index {
                StoreConfig::Embedded { path } if hosts_index => {
                    Some(IndexStore::open_embedded(path)?)
                }
                _ => None,
            };
            Ok((store, local_index))
        }
        (StoreConfig::Scylla(cfg), index) => {
            let scylla = ScyllaRegion::connect(cfg, region).await?;
            let local_index = match index {
                StoreConfig::Scylla(ix) => Some(scylla.index(ix).await?),
                StoreConfig::Embedded { path } if hosts_index => {
                    Some(IndexStore::open_embedded(path)?)
                }
                StoreConfig::Embedded { .. } => None,
            };
            Ok((scylla.store(), local_index))
        }
    }
}

impl Node {
    /// Starts a node of `opts.region` on an already bound listener.
    pub async fn start(opts: NodeOptions, listener: TcpListener) -> Result<RunningNode, NodeError> {
        let NodeOptions {
            topology,
            region,
            clock,
            entropy,
        } = opts;
        let metrics = Arc::new(
            NodeMetrics::new(region.as_str()).map_err(|e| NodeError::start("metrics", e))?,
        );
        let (raw_store, index_store) = open_stores(&topology, &region).await?;
        // Every store call is timed and a child span of its RPC (the store
        // opens the span; `StoreMetrics` records the time).
        let observer = Arc::new(StoreMetrics(metrics.clone()));
        let store = Arc::new(raw_store.with_observer(observer.clone()));
        let index_store = index_store.map(|ix| Arc::new(ix.with_observer(observer)));
        let secret = load_or_create_secret(
            &topology.index.secret_file,
            topology.index.create_secret,
            entropy.as_ref(),
        )?;
        // Every region derives the same sealing key, so a sign-in page
        // rendered by one region can be answered in another.
        let sealer = domicile_oidc::sealed::Sealer::new(&secret.derive("oidc sealed request v1"))
            .map_err(|e| NodeError::start("oidc sealing key", e))?;
        let operators = crate::admin::operators(&topology, &secret);
        let hosts_index = topology.index.host_region == region;
        let local_index = index_store.map(|ix| IndexHost::new(ix, clock.clone(), topology.clone()));
        let index: Arc<dyn HomeIndex> = match &local_index {
            Some(host) => Arc::new(host.clone()),
            None => Arc::new(RemoteIndex::new(&topology.index_host_addresses())?),
        };
        // A node that reaches the index directly serves it (the edge's
        // lookups, and the other regions' nodes when it is embedded): the
        // embedded index host's nodes, and on Scylla every node
        // (`Topology::index_servers`).
        let index_service = local_index.clone().map(IndexService);
        let access_ttl = topology.tokens.access_ttl_seconds;
        let keys = KeyRing::load_or_create(
            store.as_ref(),
            &region,
            entropy.as_ref(),
            clock.now(),
            access_ttl,
        )
        .await?;
        let pool = HashPool::new(
            topology.passwords.hash_workers,
            topology.passwords.hash_queue,
            metrics.clone(),
        )?;
        let (audit, audit_writer) = AuditLog::start(
            store.clone(),
            topology.audit,
            metrics.clone(),
            clock.clone(),
            entropy.clone(),
        );
        let here = topology.region(&region).ok_or_else(|| {
            NodeError::start("region", format!("{region} is not in the topology"))
        })?;
        let courier = Arc::new(
            domicile_messages::Senders::new(
                here,
                topology.clone(),
                &|var| std::env::var(var).ok(),
                clock.clone(),
                entropy.clone(),
            )
            .map_err(|e| NodeError::start("message senders", e))?,
        );
        let identity = Arc::new(
            Identity::new(Parts {
                region: region.clone(),
                topology: topology.clone(),
                store: store.clone(),
                index: index.clone(),
                secret,
                hasher: Arc::new(PoolHasher {
                    pool,
                    params: topology.passwords.params,
                }),
                clock: clock.clone(),
                entropy: entropy.clone(),
                audit,
                keys,
                courier,
                meter: metrics.clone(),
                peers: Arc::new(crate::peers::PeerRegions::new(&topology, &region)?),
            })
            .await?,
        );
        let draining = Arc::new(AtomicBool::new(false));

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<IdentityServer<IdentityService>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(domicile_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| NodeError::start("reflection", e))?;
        let identity_server = IdentityServer::new(IdentityService(identity.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        let http_state = Arc::new(HttpState {
            identity: identity.clone(),
            index,
            draining: draining.clone(),
            metrics: metrics.clone(),
        });
        let oidc_state = Arc::new(crate::oidc::OidcState {
            identity: identity.clone(),
            sealer,
            clock: clock.clone(),
            entropy: entropy.clone(),
        });
        let web = http::router(http_state).merge(crate::oidc::router(oidc_state));
        let mut routes = tonic::service::Routes::from(web)
            .add_service(identity_server)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                AdminServer::new(AdminService {
                    identity: identity.clone(),
                    index: local_index,
                    operators,
                    clock: clock.clone(),
                })
                // A move's bundle (a user's records) may be larger than an
                // API request; the Admin service is internal.
                .max_decoding_message_size(domicile_identity::compliance::MAX_BUNDLE + 1024),
            );
        if let Some(svc) = index_service {
            health.set_serving::<HomeIndexServer<IndexService>>().await;
            routes = routes.add_service(
                HomeIndexServer::new(svc).max_decoding_message_size(MAX_REQUEST_BYTES),
            );
        }

        let addr = listener
            .local_addr()
            .map_err(|e| NodeError::start("listener", e))?;
        let (tx, rx) = oneshot::channel::<()>();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let stopping = health.clone();
        let server = tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(ObserveLayer {
                metrics: metrics.clone(),
            })
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = rx.await;
                stopping
                    .set_not_serving::<IdentityServer<IdentityService>>()
                    .await;
            });
        let task = tokio::spawn(server);
        let purge_store = store.clone();
        let key_identity = identity.clone();
        let purge = tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            let mut keys_tick = tokio::time::interval(keys::RELOAD_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = keys_tick.tick() => {
                        // Keys another node of the region created (rotation).
                        if let Err(e) = key_identity.reload_keys().await {
                            tracing::warn!(error = %e, "could not reload signing keys; keeping the loaded ones");
                        }
                        continue;
                    }
                }
                match purge_store.purge_expired(clock.now()).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(removed = n, "purged expired sessions and refresh tokens")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "purge failed"),
                }
            }
        });
        tracing::info!(%region, %addr, index_host = hosts_index, "node serving");
        Ok(RunningNode {
            addr,
            region,
            store,
            identity,
            draining,
            metrics,
            health,
            shutdown: tx,
            task,
            purge,
            audit: audit_writer,
        })
    }
}
