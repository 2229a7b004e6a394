//! Per-region node pools: weighted round robin (canary weights) over the
//! region's nodes, with active HTTP health checks (`GET /readyz`). A region's
//! pool only ever holds that region's nodes: there is no cross-region
//! fallback.

use domicile_core::{RegionCode, topology::Topology};
use pingora_load_balancing::{
    Backend, Backends, LoadBalancer, discovery::Static, health_check::HttpHealthCheck,
    selection::RoundRobin,
};
use std::{
    collections::BTreeMap, collections::BTreeSet, net::SocketAddr, sync::Arc, time::Duration,
};

pub struct Pools {
    regions: BTreeMap<RegionCode, Arc<LoadBalancer<RoundRobin>>>,
}

impl Pools {
    pub fn new(topology: &Topology) -> Result<Self, String> {
        let mut regions = BTreeMap::new();
        for (code, region) in &topology.regions {
            let mut set = BTreeSet::new();
            for node in region.nodes.iter().filter(|n| n.weight > 0) {
                let b = Backend::new_with_weight(&node.address.to_string(), node.weight as usize)
                    .map_err(|e| e.to_string())?;
                set.insert(b);
            }
            let mut backends = Backends::new(Static::new(set));
            let mut check = HttpHealthCheck::new("domicile-node", false);
            check.req = pingora_http::RequestHeader::build("GET", b"/readyz", None)
                .map_err(|e| e.to_string())?;
            check
                .req
                .insert_header("Host", "domicile-node")
                .map_err(|e| e.to_string())?;
            check.peer_template.options.connection_timeout = Some(Duration::from_millis(500));
            check.peer_template.options.read_timeout = Some(Duration::from_secs(1));
            backends.set_health_check(Box::new(check));
            let lb = LoadBalancer::from_backends(backends);
            regions.insert(code.clone(), Arc::new(lb));
        }
        Ok(Self { regions })
    }

    /// Loads the backends and runs a first round of checks.
    pub async fn start(&self) {
        for lb in self.regions.values() {
            if let Err(e) = lb.update().await {
                tracing::error!(error = %e, "cannot load region backends");
            }
        }
        self.check().await;
    }

    /// One round of health checks for every region.
    pub async fn check(&self) {
        for lb in self.regions.values() {
            lb.backends().run_health_check(true).await;
        }
    }

    /// A healthy node of `region`, by weight; `None` when the region has none.
    pub fn select(&self, region: &RegionCode) -> Option<SocketAddr> {
        let lb = self.regions.get(region)?;
        let backend = lb.select(b"", 256)?;
        backend.addr.as_inet().copied()
    }

    /// Healthy and configured node counts per region (for metrics).
    pub fn health(&self) -> Vec<(RegionCode, usize, usize)> {
        self.regions
            .iter()
            .map(|(code, lb)| {
                let all = lb.backends().get_backend();
                let healthy = all.iter().filter(|b| lb.backends().ready(b)).count();
                (code.clone(), healthy, all.len())
            })
            .collect()
    }
}
