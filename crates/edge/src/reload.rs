//! Reloading `regions.toml` in place (SIGHUP): the new file is read and
//! validated, its region pools are built and health-checked, and only then
//! swapped in. Connections, in-flight requests and the index cache are
//! untouched; a refused file changes nothing.
//!
//! A reload changes what routing and pools read: nodes and weights (canary
//! shifts), country and domain rules, the default region, trusted proxies,
//! retry hints, the index host's node addresses. It refuses changes that
//! need the whole federation to agree or a new process: the set of regions,
//! the index host region, the issuer and audience. Listen addresses, cache
//! sizes, check intervals and the GeoIP database keep their running values
//! (logged as such).

use crate::{EdgeError, EdgeState, Live, pools::Pools};
use domicile_core::topology::Topology;
use std::{path::Path, sync::Arc};

/// What a reload changed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// `region: node=weight, …` for each region whose pool changed.
    pub changed_pools: Vec<String>,
    /// Settings that differ but apply only after a restart.
    pub needs_restart: Vec<&'static str>,
}

fn refuse(running: &Topology, next: &Topology) -> Option<String> {
    let regions = |t: &Topology| t.regions.keys().cloned().collect::<Vec<_>>();
    if regions(running) != regions(next) {
        return Some("the set of regions changed (adding or removing a region needs a restart of every edge and node)".into());
    }
    if running.index.host_region != next.index.host_region {
        return Some("index.host_region changed (needs a restart)".into());
    }
    if running.federation.issuer != next.federation.issuer
        || running.federation.audience != next.federation.audience
    {
        return Some("federation.issuer or audience changed (tokens would stop verifying)".into());
    }
    None
}

fn restart_only(running: &Topology, next: &Topology) -> Vec<&'static str> {
    let (a, b) = (&running.edge, &next.edge);
    [
        ("edge.listen", a.listen != b.listen),
        ("edge.admin_listen", a.admin_listen != b.admin_listen),
        (
            "edge.index_cache_*",
            a.index_cache_capacity != b.index_cache_capacity
                || a.index_cache_positive != b.index_cache_positive
                || a.index_cache_negative != b.index_cache_negative,
        ),
        (
            "edge.health_check_seconds",
            a.health_check_interval != b.health_check_interval,
        ),
        (
            "edge.jwks_refresh_seconds",
            a.jwks_refresh_interval != b.jwks_refresh_interval,
        ),
        (
            "federation.geoip_database",
            running.federation.geoip_database != next.federation.geoip_database,
        ),
    ]
    .into_iter()
    .filter_map(|(k, differs)| differs.then_some(k))
    .collect()
}

fn pool_line(t: &Topology, code: &domicile_core::RegionCode) -> String {
    t.region(code).map_or_else(String::new, |r| {
        let nodes: Vec<String> = r
            .nodes
            .iter()
            .map(|n| format!("{}={}", n.address, n.weight))
            .collect();
        format!("{code}: {}", nodes.join(", "))
    })
}

impl EdgeState {
    /// Applies `next` if it is compatible with the running federation.
    pub async fn reload(&self, next: Topology) -> Result<Reloaded, EdgeError> {
        let running = self.live();
        if let Some(why) = refuse(&running.topology, &next) {
            return Err(EdgeError::Reload(why));
        }
        let pools = Pools::new(&next).map_err(EdgeError::Reload)?;
        // Health-checked before it takes traffic: a new node that is not up
        // yet gets none.
        pools.start().await;
        if running.topology.index_servers() != next.index_servers() {
            self.index.retarget(&next).map_err(EdgeError::Reload)?;
        }
        let changed_pools = next
            .regions
            .keys()
            .map(|c| (pool_line(&running.topology, c), pool_line(&next, c)))
            .filter(|(a, b)| a != b)
            .map(|(_, b)| b)
            .collect();
        let needs_restart = restart_only(&running.topology, &next);
        self.live.store(Arc::new(Live {
            topology: Arc::new(next),
            pools,
        }));
        self.publish_pool_health();
        Ok(Reloaded {
            changed_pools,
            needs_restart,
        })
    }

    /// Reads, validates and applies `path`; logs and counts the outcome.
    /// On any error the running configuration stays in force.
    pub async fn reload_from(&self, path: &Path) -> Result<Reloaded, EdgeError> {
        let result = match std::fs::read_to_string(path) {
            Err(e) => Err(EdgeError::Reload(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
            Ok(text) => match Topology::parse(path, &text) {
                Err(e) => Err(EdgeError::Reload(e.to_string())),
                Ok(next) => self.reload(next).await,
            },
        };
        let outcome = if result.is_ok() { "applied" } else { "refused" };
        self.metrics.reloads.with_label_values(&[outcome]).inc();
        match &result {
            Ok(r) => {
                tracing::info!(file = %path.display(), pools = ?r.changed_pools, "configuration reloaded");
                if !r.needs_restart.is_empty() {
                    tracing::warn!(settings = ?r.needs_restart, "changed settings keep their running values until a restart");
                }
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "reload refused; the running configuration stays");
            }
        }
        result
    }

    /// `domicile_edge_region_nodes{region, state}` from the live pools.
    pub(crate) fn publish_pool_health(&self) {
        for (region, healthy, all) in self.live().pools.health() {
            self.metrics
                .region_nodes
                .with_label_values(&[region.as_str(), "healthy"])
                .set(healthy as i64);
            self.metrics
                .region_nodes
                .with_label_values(&[region.as_str(), "configured"])
                .set(all as i64);
        }
    }
}
