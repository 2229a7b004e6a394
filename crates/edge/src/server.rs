//! Runs the edge: Pingora's HTTP proxy app driven from our own accept loop
//! (so tests bind `127.0.0.1:0` and the binary owns its runtime and
//! signals), plus the background health checks, JWKS refresh and the admin
//! listener (metrics).

use crate::{
    EdgeError, EdgeState, GeoIp, IndexCache, Live, jwks::FederationKeys, metrics::Metrics,
    pools::Pools, proxy::EdgeProxy,
};
use domicile_core::{index::IndexSecret, topology::Topology};
use pingora_core::{
    apps::{HttpServerOptions, ServerApp},
    protocols::{GetSocketDigest, SocketDigest, l4::stream::Stream as L4Stream},
    server::configuration::ServerConf,
};
use std::{
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

/// What the edge needs to start.
pub struct EdgeOptions {
    pub topology: Arc<Topology>,
    pub secret: IndexSecret,
    /// `None`: no GeoIP placement (the default region takes those users).
    pub geoip: Option<GeoIp>,
}

pub struct Edge;

/// A started edge.
pub struct RunningEdge {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<EdgeState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Client connections being served.
    open: Arc<AtomicUsize>,
}

impl RunningEdge {
    /// Stops accepting, lets in-flight requests finish, stops background work.
    /// Re-reads `regions.toml` (what SIGHUP does): see `EdgeState::reload`.
    pub async fn reload_from(
        &self,
        path: &std::path::Path,
    ) -> Result<crate::reload::Reloaded, EdgeError> {
        self.state.reload_from(path).await
    }

    pub async fn shutdown(self) {
        self.drain(Duration::ZERO).await;
    }

    /// Graceful exit (SIGTERM): stops accepting, tells open connections to
    /// finish (HTTP/1 closes after the current response, HTTP/2 sends
    /// GOAWAY), and waits up to `grace` for them to end.
    pub async fn drain(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.open.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.open.load(Ordering::SeqCst);
        if left > 0 && !grace.is_zero() {
            tracing::warn!(
                connections = left,
                "drain period over; closing what is left"
            );
        }
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Edge {
    pub async fn start(
        opts: EdgeOptions,
        listener: TcpListener,
        admin: TcpListener,
    ) -> Result<RunningEdge, EdgeError> {
        let topology = opts.topology;
        let metrics = Arc::new(Metrics::new().map_err(|e| EdgeError::Start(e.to_string()))?);
        let pools = Pools::new(&topology).map_err(EdgeError::Start)?;
        pools.start().await;
        let index = IndexCache::new(&topology, metrics.clone()).map_err(EdgeError::Start)?;
        let keys = FederationKeys::default();
        keys.refresh(&topology, &pools).await;
        let state = Arc::new(EdgeState {
            live: arc_swap::ArcSwap::from_pointee(Live {
                topology: topology.clone(),
                pools,
            }),
            secret: opts.secret,
            geoip: opts.geoip,
            index,
            keys,
            metrics,
        });
        state.publish_pool_health();

        let (shutdown, watch_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        // Health checks, node gauges.
        let s = state.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(topology.edge.health_check_interval);
            loop {
                tick.tick().await;
                s.live().pools.check().await;
                s.publish_pool_health();
            }
        }));
        // Federation JWKS.
        let s = state.clone();
        let every = state.topology().edge.jwks_refresh_interval;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let live = s.live();
                s.keys.refresh(&live.topology, &live.pools).await;
            }
        }));
        // Admin: metrics and the edge's own health.
        let admin_addr = admin
            .local_addr()
            .map_err(|e| EdgeError::Start(e.to_string()))?;
        let s = state.clone();
        let router = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || async move { s.metrics.render() }),
            )
            .route("/healthz", axum::routing::get(|| async { "ok\n" }));
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(admin, router).await {
                tracing::error!(error = %e, "admin listener failed");
            }
        }));

        // The public listener.
        // One try, plus one to follow a node's "homed elsewhere" answer.
        let conf = ServerConf {
            max_retries: 2,
            ..ServerConf::default()
        };
        let mut proxy = pingora_proxy::http_proxy(
            &Arc::new(conf),
            EdgeProxy {
                state: state.clone(),
            },
        );
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        proxy.server_options = Some(options);
        let app = Arc::new(proxy);
        let addr = listener
            .local_addr()
            .map_err(|e| EdgeError::Start(e.to_string()))?;
        let open = Arc::new(AtomicUsize::new(0));
        tasks.push(tokio::spawn(accept_loop(
            listener,
            app,
            watch_rx,
            open.clone(),
        )));
        tracing::info!(%addr, %admin_addr, "edge serving");
        Ok(RunningEdge {
            addr,
            admin_addr,
            state,
            shutdown,
            tasks,
            open,
        })
    }
}

async fn accept_loop<A: ServerApp + Send + Sync + 'static>(
    listener: TcpListener,
    app: Arc<A>,
    mut shutdown: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (tcp, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let digest = SocketDigest::from_raw_fd(tcp.as_raw_fd());
        let mut l4: L4Stream = tcp.into();
        l4.set_socket_digest(digest);
        let stream: pingora_core::protocols::Stream = Box::new(l4);
        let (app, shutdown, open) = (app.clone(), shutdown.clone(), open.clone());
        open.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let mut next = app.process_new(stream, &shutdown).await;
            while let Some(reused) = next {
                if *shutdown.borrow() {
                    break;
                }
                next = app.process_new(reused, &shutdown).await;
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}
