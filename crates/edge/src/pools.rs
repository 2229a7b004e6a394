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
        self.load().await;
        self.check().await;
    }

    async fn load(&self) {
        for lb in self.regions.values() {
            if let Err(e) = lb.update().await {
                tracing::error!(error = %e, "cannot load region backends");
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[tokio::test]
    async fn canary_weights_split_traffic_and_drained_nodes_get_none() {
        let text = r#"
[federation]
name = "t"
issuer = "https://id.example"
default_region = "eu"
[index]
host_region = "eu"
secret_file = "k"
store = { backend = "embedded", path = "i" }
[regions.eu]
residency = "EU"
nodes = [
  { name = "stable", address = "127.0.0.1:1001", weight = 95 },
  { name = "canary", address = "127.0.0.1:1002", weight = 5 },
  { name = "drained", address = "127.0.0.1:1003", weight = 0 },
]
store = { backend = "embedded", path = "eu" }
"#;
        let t = Topology::parse(Path::new("t.toml"), text).unwrap();
        let pools = Pools::new(&t).unwrap();
        // Backends start healthy until a check says otherwise.
        pools.load().await;
        let eu = RegionCode::parse("eu").unwrap();
        let mut counts = BTreeMap::new();
        for _ in 0..2000 {
            *counts.entry(pools.select(&eu).unwrap().port()).or_insert(0) += 1;
        }
        assert_eq!(counts.get(&1003), None, "weight 0 drains a node");
        assert_eq!(counts[&1001] + counts[&1002], 2000);
        assert_eq!(counts[&1002], 100, "5% to the canary: {counts:?}");
        assert_eq!(
            pools.select(&RegionCode::parse("us").unwrap()),
            None,
            "no pool, no node"
        );
        // Health checks against closed ports take both out: the region is down.
        pools.check().await;
        assert_eq!(pools.select(&eu), None);
    }
}
