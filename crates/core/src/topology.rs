//! The federation topology: `regions.toml`, parsed once into a validated
//! [`Topology`].
//!
//! Every error names the file, the key (a dotted path such as
//! `regions.eu.nodes[0].address`) and the reason. The caller reads the file;
//! this module only parses text, so it does no I/O. Relative paths in the file
//! are resolved against the file's directory.

use crate::{RegionCode, email::normalize_domain, password::HashParams};
use ipnet::IpNet;
use serde::Deserialize;
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

/// A configuration error: file, key and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {key}: {reason}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

// ---- The file as written (every field documented; unknown fields refused) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Federation-wide settings.
    federation: RawFederation,
    /// The global home-region index.
    index: RawIndex,
    /// Token lifetimes.
    #[serde(default)]
    tokens: RawTokens,
    /// Password hashing policy.
    #[serde(default)]
    passwords: RawPasswords,
    /// The edge router.
    #[serde(default)]
    edge: RawEdge,
    /// Each region's audit trail.
    #[serde(default)]
    audit: RawAudit,
    /// The regions, by region code.
    regions: BTreeMap<String, RawRegion>,
    /// OpenID Connect clients, by client id (`crate::clients`).
    #[serde(default)]
    clients: BTreeMap<String, crate::clients::RawClient>,
    /// Account verification and recovery policy (`crate::messaging`).
    #[serde(default)]
    accounts: crate::messaging::RawAccounts,
    /// Who may call the Admin service (`crate::admin`).
    #[serde(default)]
    admin: crate::admin::RawAdmin,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    /// Human name of the federation.
    name: String,
    /// Public issuer URL (the one hostname apps use); `iss` of every token.
    issuer: String,
    /// Region for users nothing else places.
    default_region: String,
    /// Audience of access tokens; defaults to the issuer.
    #[serde(default)]
    audience: Option<String>,
    /// Whether a user may choose their region at registration.
    #[serde(default = "yes")]
    allow_region_preference: bool,
    /// MaxMind-format country database for GeoIP placement.
    #[serde(default)]
    geoip_database: Option<PathBuf>,
    /// Peers whose X-Forwarded-For / Forwarded headers are believed (CIDRs).
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIndex {
    /// Region whose nodes serve the index in an embedded deployment.
    host_region: String,
    /// File holding the federation's index secret (≥ 32 bytes).
    secret_file: PathBuf,
    /// Create the secret file with random bytes if it does not exist
    /// (for local federations; production provisions it).
    #[serde(default)]
    create_secret: bool,
    /// Seconds a registration's pending claim holds an identifier.
    #[serde(default = "default_claim_ttl")]
    claim_ttl_seconds: u64,
    /// Where the index is stored.
    store: RawStore,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    /// Access token lifetime in seconds.
    #[serde(default = "default_access_ttl")]
    access_ttl_seconds: u64,
    /// Refresh token idle lifetime in seconds (each rotation starts it again).
    #[serde(default = "default_refresh_ttl")]
    refresh_ttl_seconds: u64,
    /// Absolute session lifetime in seconds.
    #[serde(default = "default_session_ttl")]
    session_ttl_seconds: u64,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            access_ttl_seconds: default_access_ttl(),
            refresh_ttl_seconds: default_refresh_ttl(),
            session_ttl_seconds: default_session_ttl(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPasswords {
    /// Argon2id memory in KiB.
    #[serde(default = "default_memory")]
    memory_kib: u32,
    /// Argon2id passes.
    #[serde(default = "default_iterations")]
    iterations: u32,
    /// Argon2id lanes.
    #[serde(default = "default_parallelism")]
    parallelism: u32,
    /// Hashes run at once; 0 = one per CPU core.
    #[serde(default)]
    hash_workers: usize,
    /// Hash requests allowed to wait; beyond that RESOURCE_EXHAUSTED.
    #[serde(default = "default_hash_queue")]
    hash_queue: usize,
}

impl Default for RawPasswords {
    fn default() -> Self {
        Self {
            memory_kib: default_memory(),
            iterations: default_iterations(),
            parallelism: default_parallelism(),
            hash_workers: 0,
            hash_queue: default_hash_queue(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    /// Events waiting to be written; when full, new events are dropped and counted.
    #[serde(default = "default_audit_queue")]
    queue: usize,
    /// How long events are kept (Scylla TTL; the embedded store sweeps them).
    #[serde(default = "default_audit_retention")]
    retention_days: u64,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            queue: default_audit_queue(),
            retention_days: default_audit_retention(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdge {
    /// The public listener: HTTP/1.1 and h2c on one port.
    #[serde(default = "default_edge_listen")]
    listen: String,
    /// Metrics and the edge's own health, never public.
    #[serde(default = "default_edge_admin")]
    admin_listen: String,
    /// Seconds an index answer "homed in R" is cached.
    #[serde(default = "default_positive_ttl")]
    index_cache_positive_seconds: u64,
    /// Seconds an index answer "not found" is cached.
    #[serde(default = "default_negative_ttl")]
    index_cache_negative_seconds: u64,
    /// Entries in the index cache.
    #[serde(default = "default_cache_capacity")]
    index_cache_capacity: u64,
    /// Seconds between active health checks of each node.
    #[serde(default = "default_health_interval")]
    health_check_seconds: u64,
    /// Seconds between refreshes of the regions' JWKS.
    #[serde(default = "default_jwks_refresh")]
    jwks_refresh_seconds: u64,
    /// `retry-after` sent when a region has no healthy node.
    #[serde(default = "default_retry_after")]
    retry_after_seconds: u64,
}

impl Default for RawEdge {
    fn default() -> Self {
        Self {
            listen: default_edge_listen(),
            admin_listen: default_edge_admin(),
            index_cache_positive_seconds: default_positive_ttl(),
            index_cache_negative_seconds: default_negative_ttl(),
            index_cache_capacity: default_cache_capacity(),
            health_check_seconds: default_health_interval(),
            jwks_refresh_seconds: default_jwks_refresh(),
            retry_after_seconds: default_retry_after(),
        }
    }
}

fn default_edge_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_edge_admin() -> String {
    "127.0.0.1:9090".into()
}
fn default_positive_ttl() -> u64 {
    300
}
fn default_negative_ttl() -> u64 {
    5
}
fn default_cache_capacity() -> u64 {
    100_000
}
fn default_health_interval() -> u64 {
    2
}
fn default_jwks_refresh() -> u64 {
    60
}
fn default_retry_after() -> u64 {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    /// Legal residency label shown to compliance (e.g. "EU").
    residency: String,
    /// ISO 3166-1 alpha-2 countries whose new users are homed here.
    #[serde(default)]
    countries: Vec<String>,
    /// Email domains pinned here (`example.de`, or `*.example.de` for subdomains).
    #[serde(default)]
    email_domains: Vec<String>,
    /// The region's nodes.
    nodes: Vec<RawNode>,
    /// The region's store.
    store: RawStore,
    /// Where the region's email leaves (`crate::messaging`); none: no
    /// journey that needs email is offered.
    #[serde(default)]
    email: Option<crate::messaging::RawEmail>,
    /// Where the region's SMS leave; none: no SMS journey.
    #[serde(default)]
    sms: Option<crate::messaging::RawSms>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    /// Name of the node, unique in the region (defaults to `<region>-<i>`).
    #[serde(default)]
    name: Option<String>,
    /// gRPC and HTTP address (host:port).
    address: String,
    /// Share of traffic (canary weights); 0 = drained.
    #[serde(default = "default_weight")]
    weight: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    /// `embedded` (one process, a data directory) or `scylla`.
    backend: String,
    /// embedded: the data directory.
    #[serde(default)]
    path: Option<PathBuf>,
    /// scylla: contact points (host:port) in this region's datacenter.
    #[serde(default)]
    nodes: Vec<String>,
    /// scylla: the region's datacenter; its keyspace is replicated only there.
    #[serde(default)]
    datacenter: Option<String>,
    /// scylla: keyspace (default `domicile_<region>`, or `domicile_index`).
    #[serde(default)]
    keyspace: Option<String>,
    /// scylla: replicas per datacenter (default 3).
    #[serde(default)]
    replication_factor: Option<u32>,
    /// scylla: per-request timeout in milliseconds (default 2000).
    #[serde(default)]
    request_timeout_ms: Option<u64>,
    /// scylla: user name for password authentication.
    #[serde(default)]
    username: Option<String>,
    /// scylla: name of the environment variable holding the password.
    #[serde(default)]
    password_env: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_claim_ttl() -> u64 {
    120
}
fn default_access_ttl() -> u64 {
    600
}
fn default_refresh_ttl() -> u64 {
    14 * 86_400
}
fn default_session_ttl() -> u64 {
    30 * 86_400
}
fn default_memory() -> u32 {
    HashParams::OWASP.memory_kib
}
fn default_iterations() -> u32 {
    HashParams::OWASP.iterations
}
fn default_parallelism() -> u32 {
    HashParams::OWASP.parallelism
}
fn default_hash_queue() -> usize {
    64
}
fn default_audit_queue() -> usize {
    10_000
}
fn default_audit_retention() -> u64 {
    400
}
fn default_weight() -> u32 {
    100
}

// ---- The validated topology ----

/// The validated federation.
#[derive(Clone, Debug)]
pub struct Topology {
    /// The file it came from.
    pub source: PathBuf,
    pub federation: Federation,
    pub index: IndexSettings,
    pub tokens: TokenPolicy,
    pub passwords: PasswordPolicy,
    pub edge: EdgeSettings,
    pub audit: AuditSettings,
    pub regions: BTreeMap<RegionCode, Region>,
    /// The registered OpenID Connect clients.
    pub clients: crate::clients::Clients,
    /// Verification and recovery policy.
    pub accounts: crate::messaging::AccountPolicy,
    /// The operators who may call the Admin service, and their roles.
    pub admin: crate::admin::AdminSettings,
    countries: HashMap<String, RegionCode>,
    exact_domains: HashMap<String, RegionCode>,
    wildcard_domains: Vec<(String, RegionCode)>,
}

#[derive(Clone, Debug)]
pub struct Federation {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    pub default_region: RegionCode,
    pub allow_region_preference: bool,
    pub geoip_database: Option<PathBuf>,
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Clone, Debug)]
pub struct IndexSettings {
    pub host_region: RegionCode,
    pub secret_file: PathBuf,
    pub create_secret: bool,
    pub claim_ttl_seconds: i64,
    pub store: StoreConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenPolicy {
    pub access_ttl_seconds: i64,
    pub refresh_ttl_seconds: i64,
    pub session_ttl_seconds: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub params: HashParams,
    /// 0 = one per CPU core.
    pub hash_workers: usize,
    pub hash_queue: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// Events waiting to be written before new ones are dropped (and counted).
    pub queue: usize,
    /// How long an event is kept.
    pub retention_seconds: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub index_cache_positive: Duration,
    pub index_cache_negative: Duration,
    pub index_cache_capacity: u64,
    pub health_check_interval: Duration,
    pub jwks_refresh_interval: Duration,
    pub retry_after_seconds: u64,
}

#[derive(Clone, Debug)]
pub struct Region {
    pub code: RegionCode,
    pub residency: String,
    pub countries: Vec<String>,
    pub email_domains: Vec<String>,
    pub nodes: Vec<NodeEndpoint>,
    pub store: StoreConfig,
    /// The region's email and SMS senders.
    pub messaging: crate::messaging::Messaging,
}

impl Region {
    /// The addresses of the nodes with a weight above 0.
    pub fn active_addresses(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .filter(|n| n.weight > 0)
            .map(|n| n.address)
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEndpoint {
    pub name: String,
    pub address: SocketAddr,
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    Embedded { path: PathBuf },
    Scylla(ScyllaConfig),
}

/// A ScyllaDB store. For a region: its contact points, datacenter and
/// keyspace. For the index: its keyspace and the datacenters it is
/// replicated to (every region's); nodes reach it through their region's
/// session, so it has no contact points of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScyllaConfig {
    pub nodes: Vec<String>,
    /// The datacenter this store's sessions prefer (the region's own).
    pub datacenter: String,
    pub keyspace: String,
    /// (datacenter, replicas) of the keyspace's NetworkTopologyStrategy.
    pub replication: Vec<(String, u32)>,
    pub request_timeout: Duration,
    pub username: Option<String>,
    pub password_env: Option<String>,
}

fn valid_datacenter(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

impl Topology {
    /// Parses and validates `text`, which was read from `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let err = |key: &str, reason: String| ConfigError {
            file: file.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| err(&syntax_location(text, e.span()), e.message().to_owned()))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let key = if key == "." {
                syntax_location(text, inner.span())
            } else {
                key
            };
            err(&key, inner.message().to_owned())
        })?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        Builder { file, base }.build(raw)
    }

    /// The region a country is assigned to (ISO alpha-2, any case).
    pub fn region_for_country(&self, iso: &str) -> Option<&RegionCode> {
        self.countries.get(&iso.to_ascii_uppercase())
    }

    /// The region an email domain rule pins a (normalized, ASCII) domain to:
    /// an exact rule first, then the longest matching `*.` rule.
    pub fn region_for_domain(&self, domain: &str) -> Option<&RegionCode> {
        if let Some(r) = self.exact_domains.get(domain) {
            return Some(r);
        }
        self.wildcard_domains
            .iter()
            .filter(|(suffix, _)| {
                domain.len() > suffix.len() + 1
                    && domain.ends_with(suffix.as_str())
                    && domain.as_bytes()[domain.len() - suffix.len() - 1] == b'.'
            })
            .max_by_key(|(suffix, _)| suffix.len())
            .map(|(_, r)| r)
    }

    pub fn region(&self, code: &RegionCode) -> Option<&Region> {
        self.regions.get(code)
    }

    /// Addresses of the index host region's nodes with a weight above 0:
    /// where an embedded index lives.
    pub fn index_host_addresses(&self) -> Vec<SocketAddr> {
        self.regions
            .get(&self.index.host_region)
            .map(Region::active_addresses)
            .unwrap_or_default()
    }

    /// The nodes that serve the index's lookups, one group per region in the
    /// order to ask them: the host region's. When the index is on Scylla,
    /// every region on Scylla reads the index keyspace in its own
    /// datacenter and serves it too, after the host: a region that is down
    /// does not take lookups with it.
    pub fn index_servers(&self) -> Vec<(RegionCode, Vec<SocketAddr>)> {
        let host = std::iter::once(&self.index.host_region);
        let on_scylla = |c: &&RegionCode| {
            matches!(self.index.store, StoreConfig::Scylla(_))
                && self
                    .regions
                    .get(*c)
                    .is_some_and(|r| matches!(r.store, StoreConfig::Scylla(_)))
        };
        let others = self
            .regions
            .keys()
            .filter(|c| **c != self.index.host_region)
            .filter(on_scylla);
        host.chain(others)
            .filter_map(|c| {
                let addresses = self.regions.get(c)?.active_addresses();
                (!addresses.is_empty()).then(|| (c.clone(), addresses))
            })
            .collect()
    }

    /// The same federation with its local state under `dir`: each embedded
    /// region store at `dir/<region>`, an embedded index at `dir/index`, the
    /// index secret at `dir/index.key`. Scylla stores are left as they are.
    /// (`domicile up --data DIR`: a second federation beside the first.)
    pub fn with_data_dir(mut self, dir: &Path) -> Self {
        for (code, region) in &mut self.regions {
            if let StoreConfig::Embedded { path } = &mut region.store {
                *path = dir.join(code.as_str());
            }
            if let Some(crate::messaging::EmailSender {
                transport: crate::messaging::EmailTransport::Outbox(path),
                ..
            }) = &mut region.messaging.email
            {
                *path = dir.join("outbox").join(code.as_str()).join("email");
            }
            if let Some(crate::messaging::SmsSender::Outbox(path)) = &mut region.messaging.sms {
                *path = dir.join("outbox").join(code.as_str()).join("sms");
            }
        }
        if let StoreConfig::Embedded { path } = &mut self.index.store {
            *path = dir.join("index");
        }
        self.index.secret_file = dir.join("index.key");
        self
    }

    /// Parses a region code and checks it belongs to the federation.
    pub fn known_region(&self, code: &str) -> Option<&RegionCode> {
        RegionCode::parse(code)
            .ok()
            .and_then(|c| self.regions.get_key_value(&c))
            .map(|(k, _)| k)
    }
}

fn syntax_location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(s) => {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line} column {col}")
        }
        None => "(document)".into(),
    }
}

struct Builder<'a> {
    file: &'a Path,
    base: PathBuf,
}

impl Builder<'_> {
    fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn region_code(&self, key: &str, s: &str) -> Result<RegionCode, ConfigError> {
        RegionCode::parse(s).map_err(|e| self.err(key, e.to_string()))
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    fn ttl(&self, key: &str, v: u64, max: u64) -> Result<i64, ConfigError> {
        if v == 0 || v > max {
            return Err(self.err(key, format!("must be between 1 and {max} seconds, got {v}")));
        }
        i64::try_from(v).map_err(|_| self.err(key, "too large"))
    }

    fn store(
        &self,
        key: &str,
        raw: &RawStore,
        default_keyspace: &str,
    ) -> Result<StoreConfig, ConfigError> {
        let scylla_only = [
            ("nodes", !raw.nodes.is_empty()),
            ("datacenter", raw.datacenter.is_some()),
            ("keyspace", raw.keyspace.is_some()),
            ("replication_factor", raw.replication_factor.is_some()),
            ("request_timeout_ms", raw.request_timeout_ms.is_some()),
            ("username", raw.username.is_some()),
            ("password_env", raw.password_env.is_some()),
        ];
        match raw.backend.as_str() {
            "embedded" => {
                if let Some((field, _)) = scylla_only.iter().find(|(_, set)| *set) {
                    return Err(self.err(
                        format!("{key}.{field}"),
                        "only the scylla backend takes this setting",
                    ));
                }
                let path = raw.path.as_ref().ok_or_else(|| {
                    self.err(
                        format!("{key}.path"),
                        "the embedded backend needs a data directory",
                    )
                })?;
                Ok(StoreConfig::Embedded {
                    path: self.path(path),
                })
            }
            "scylla" => {
                if raw.path.is_some() {
                    return Err(self.err(
                        format!("{key}.path"),
                        "only the embedded backend takes a data directory",
                    ));
                }
                for (i, n) in raw.nodes.iter().enumerate() {
                    let ok = n.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                    });
                    if !ok {
                        return Err(self.err(
                            format!("{key}.nodes[{i}]"),
                            format!("{n:?} is not a contact point of the form host:port"),
                        ));
                    }
                }
                let keyspace = raw
                    .keyspace
                    .clone()
                    .unwrap_or_else(|| default_keyspace.to_owned());
                // Whether it is a valid CQL name is domicile-store's to check
                // (`domicile_store::scylla::validate`): core knows no CQL.
                let rf = raw.replication_factor.unwrap_or(3);
                if !(1..=9).contains(&rf) {
                    return Err(self.err(
                        format!("{key}.replication_factor"),
                        "must be between 1 and 9",
                    ));
                }
                let timeout = raw.request_timeout_ms.unwrap_or(2000);
                if !(10..=120_000).contains(&timeout) {
                    return Err(self.err(
                        format!("{key}.request_timeout_ms"),
                        "must be between 10 and 120000",
                    ));
                }
                if let Some(env) = &raw.password_env {
                    if raw.username.is_none() {
                        return Err(
                            self.err(format!("{key}.username"), "password_env needs a username")
                        );
                    }
                    if env.is_empty()
                        || !env.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
                    {
                        return Err(self.err(
                            format!("{key}.password_env"),
                            "must name an environment variable",
                        ));
                    }
                }
                let datacenter = raw.datacenter.clone().unwrap_or_default();
                if raw.datacenter.is_some() && !valid_datacenter(&datacenter) {
                    return Err(self.err(
                        format!("{key}.datacenter"),
                        format!("{datacenter:?} is not a datacenter name"),
                    ));
                }
                Ok(StoreConfig::Scylla(ScyllaConfig {
                    nodes: raw.nodes.clone(),
                    datacenter: datacenter.clone(),
                    keyspace,
                    replication: vec![(datacenter, rf)],
                    request_timeout: Duration::from_millis(timeout),
                    username: raw.username.clone(),
                    password_env: raw.password_env.clone(),
                }))
            }
            other => Err(self.err(
                format!("{key}.backend"),
                format!("unknown store backend {other:?}; expected \"embedded\" or \"scylla\""),
            )),
        }
    }

    /// The index store; on Scylla it is replicated to every region's datacenter.
    fn index_store(
        &self,
        raw: &RawStore,
        regions: &BTreeMap<RegionCode, Region>,
    ) -> Result<StoreConfig, ConfigError> {
        if raw.backend == "scylla" && (!raw.nodes.is_empty() || raw.datacenter.is_some()) {
            return Err(self.err("index.store", "the index has no contact points or datacenter of its own: nodes reach it through their region's cluster"));
        }
        let mut store = self.store("index.store", raw, "domicile_index")?;
        if let StoreConfig::Scylla(sc) = &mut store {
            let rf = raw.replication_factor.unwrap_or(3);
            let mut replication = Vec::new();
            for r in regions.values() {
                match &r.store {
                    StoreConfig::Scylla(rs) => replication.push((rs.datacenter.clone(), rf)),
                    StoreConfig::Embedded { .. } => {
                        return Err(self.err(
                            format!("regions.{}.store.backend", r.code),
                            "a scylla index needs every region on scylla (it is replicated to their datacenters)",
                        ));
                    }
                }
            }
            sc.replication = replication;
        }
        Ok(store)
    }

    fn build(&self, raw: RawConfig) -> Result<Topology, ConfigError> {
        if raw.regions.is_empty() {
            return Err(self.err("regions", "at least one region is required"));
        }
        let f = &raw.federation;
        if f.name.trim().is_empty() {
            return Err(self.err("federation.name", "must not be empty"));
        }
        if !(f.issuer.starts_with("https://") || f.issuer.starts_with("http://"))
            || f.issuer.len() < 10
        {
            return Err(self.err(
                "federation.issuer",
                format!("must be an http(s) URL, got {:?}", f.issuer),
            ));
        }
        let mut regions = BTreeMap::new();
        let mut countries: HashMap<String, RegionCode> = HashMap::new();
        let mut exact_domains = HashMap::new();
        let mut wildcard_domains = Vec::new();
        let mut domain_owner: HashMap<String, RegionCode> = HashMap::new();
        let mut addresses: HashMap<SocketAddr, String> = HashMap::new();
        for (name, r) in &raw.regions {
            let key = format!("regions.{name}");
            let code = self.region_code(&key, name)?;
            if r.residency.trim().is_empty() {
                return Err(self.err(format!("{key}.residency"), "must not be empty"));
            }
            let mut region_countries = Vec::new();
            for (i, c) in r.countries.iter().enumerate() {
                let k = format!("{key}.countries[{i}]");
                let up = c.to_ascii_uppercase();
                if up.len() != 2 || !up.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(self.err(
                        k,
                        format!("{c:?} is not an ISO 3166-1 alpha-2 country code"),
                    ));
                }
                if let Some(other) = countries.insert(up.clone(), code.clone()) {
                    return Err(self.err(
                        k,
                        format!("country {up} is already assigned to region {other}"),
                    ));
                }
                region_countries.push(up);
            }
            let mut region_domains = Vec::new();
            for (i, d) in r.email_domains.iter().enumerate() {
                let k = format!("{key}.email_domains[{i}]");
                let (wild, bare) = match d.strip_prefix("*.") {
                    Some(rest) => (true, rest),
                    None => (false, d.as_str()),
                };
                let norm = normalize_domain(bare)
                    .ok_or_else(|| self.err(&k, format!("{d:?} is not a valid domain")))?;
                let rule = if wild {
                    format!("*.{norm}")
                } else {
                    norm.clone()
                };
                if let Some(other) = domain_owner.insert(rule.clone(), code.clone()) {
                    return Err(self.err(
                        k,
                        format!("email domain rule {rule} is already assigned to region {other}"),
                    ));
                }
                if wild {
                    wildcard_domains.push((norm, code.clone()));
                } else {
                    exact_domains.insert(norm, code.clone());
                }
                region_domains.push(rule);
            }
            if r.nodes.is_empty() {
                return Err(self.err(format!("{key}.nodes"), "a region needs at least one node"));
            }
            let mut nodes = Vec::new();
            for (i, n) in r.nodes.iter().enumerate() {
                let k = format!("{key}.nodes[{i}]");
                let address: SocketAddr = n.address.parse().map_err(|_| {
                    self.err(
                        format!("{k}.address"),
                        format!("{:?} is not an address of the form ip:port", n.address),
                    )
                })?;
                let node_name = n
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{code}-{}", i + 1));
                if address.port() != 0
                    && let Some(other) = addresses.insert(address, format!("{k}.address"))
                {
                    return Err(self.err(
                        format!("{k}.address"),
                        format!("{address} is already used by {other}"),
                    ));
                }
                if nodes.iter().any(|x: &NodeEndpoint| x.name == node_name) {
                    return Err(self.err(
                        format!("{k}.name"),
                        format!("node name {node_name:?} is used twice in region {code}"),
                    ));
                }
                nodes.push(NodeEndpoint {
                    name: node_name,
                    address,
                    weight: n.weight,
                });
            }
            if nodes.iter().all(|n| n.weight == 0) {
                return Err(self.err(
                    format!("{key}.nodes"),
                    "at least one node needs a weight above 0",
                ));
            }
            let store_key = format!("{key}.store");
            let store = self.store(&store_key, &r.store, &format!("domicile_{code}"))?;
            if let StoreConfig::Scylla(sc) = &store {
                if sc.nodes.is_empty() {
                    return Err(self.err(
                        format!("{store_key}.nodes"),
                        "the scylla backend needs contact points in the region's datacenter",
                    ));
                }
                if sc.datacenter.is_empty() {
                    return Err(self.err(
                        format!("{store_key}.datacenter"),
                        "the scylla backend needs the region's datacenter name",
                    ));
                }
                let taken = regions.values().find(|other: &&Region| matches!(&other.store, StoreConfig::Scylla(o) if o.datacenter == sc.datacenter));
                if let Some(other) = taken {
                    return Err(self.err(
                        format!("{store_key}.datacenter"),
                        format!(
                            "datacenter {} already holds region {}: each region needs its own",
                            sc.datacenter, other.code
                        ),
                    ));
                }
            }
            let tag = crate::passkey::region_tag(&code);
            if let Some(other) = regions
                .keys()
                .find(|c: &&RegionCode| crate::passkey::region_tag(c) == tag)
            {
                return Err(self.err(
                    key.clone(),
                    format!("the codes {code} and {other} share a passkey region tag; rename one"),
                ));
            }
            regions.insert(
                code.clone(),
                Region {
                    code,
                    residency: r.residency.clone(),
                    countries: region_countries,
                    email_domains: region_domains,
                    nodes,
                    store,
                    messaging: crate::messaging::build(
                        &key,
                        r.email.as_ref(),
                        r.sms.as_ref(),
                        &|p| self.path(p),
                        &|k, reason| self.err(k, reason),
                    )?,
                },
            );
        }
        let default_region = self.region_code("federation.default_region", &f.default_region)?;
        if !regions.contains_key(&default_region) {
            return Err(self.err(
                "federation.default_region",
                format!(
                    "unknown region {default_region}; the file defines {}",
                    list(&regions)
                ),
            ));
        }
        let mut trusted_proxies = Vec::new();
        for (i, c) in f.trusted_proxies.iter().enumerate() {
            let net = c
                .parse::<IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    self.err(
                        format!("federation.trusted_proxies[{i}]"),
                        format!("{c:?} is not a CIDR or IP address"),
                    )
                })?;
            trusted_proxies.push(net);
        }
        let federation = Federation {
            name: f.name.clone(),
            issuer: f.issuer.trim_end_matches('/').to_owned(),
            audience: f
                .audience
                .clone()
                .unwrap_or_else(|| f.issuer.trim_end_matches('/').to_owned()),
            default_region,
            allow_region_preference: f.allow_region_preference,
            geoip_database: f.geoip_database.as_deref().map(|p| self.path(p)),
            trusted_proxies,
        };
        let host_region = self.region_code("index.host_region", &raw.index.host_region)?;
        if !regions.contains_key(&host_region) {
            return Err(self.err(
                "index.host_region",
                format!(
                    "unknown region {host_region}; the file defines {}",
                    list(&regions)
                ),
            ));
        }
        let index = IndexSettings {
            host_region,
            secret_file: self.path(&raw.index.secret_file),
            create_secret: raw.index.create_secret,
            claim_ttl_seconds: self.ttl(
                "index.claim_ttl_seconds",
                raw.index.claim_ttl_seconds,
                86_400,
            )?,
            store: self.index_store(&raw.index.store, &regions)?,
        };
        let t = &raw.tokens;
        let tokens = TokenPolicy {
            access_ttl_seconds: self.ttl(
                "tokens.access_ttl_seconds",
                t.access_ttl_seconds,
                86_400,
            )?,
            refresh_ttl_seconds: self.ttl(
                "tokens.refresh_ttl_seconds",
                t.refresh_ttl_seconds,
                400 * 86_400,
            )?,
            session_ttl_seconds: self.ttl(
                "tokens.session_ttl_seconds",
                t.session_ttl_seconds,
                400 * 86_400,
            )?,
        };
        let p = &raw.passwords;
        let params = HashParams {
            memory_kib: p.memory_kib,
            iterations: p.iterations,
            parallelism: p.parallelism,
        };
        params
            .validate()
            .map_err(|e| self.err("passwords", e.to_string()))?;
        if p.hash_queue > 100_000 {
            return Err(self.err("passwords.hash_queue", "must be at most 100000"));
        }
        let e = &raw.edge;
        let addr = |key: &str, v: &str| {
            v.parse::<SocketAddr>()
                .map_err(|_| self.err(key, format!("{v:?} is not an address of the form ip:port")))
        };
        let secs = |key: &str, v: u64, max: u64| {
            self.ttl(key, v, max)
                .map(|s| Duration::from_secs(s.unsigned_abs()))
        };
        let edge = EdgeSettings {
            listen: addr("edge.listen", &e.listen)?,
            admin_listen: addr("edge.admin_listen", &e.admin_listen)?,
            index_cache_positive: secs(
                "edge.index_cache_positive_seconds",
                e.index_cache_positive_seconds,
                86_400,
            )?,
            index_cache_negative: secs(
                "edge.index_cache_negative_seconds",
                e.index_cache_negative_seconds,
                3_600,
            )?,
            index_cache_capacity: e.index_cache_capacity.clamp(1, 100_000_000),
            health_check_interval: secs(
                "edge.health_check_seconds",
                e.health_check_seconds,
                3_600,
            )?,
            jwks_refresh_interval: secs(
                "edge.jwks_refresh_seconds",
                e.jwks_refresh_seconds,
                86_400,
            )?,
            retry_after_seconds: self
                .ttl("edge.retry_after_seconds", e.retry_after_seconds, 3_600)?
                .unsigned_abs(),
        };
        if edge.listen.port() != 0 && edge.listen == edge.admin_listen {
            return Err(self.err("edge.admin_listen", "must differ from edge.listen"));
        }
        let passwords = PasswordPolicy {
            params,
            hash_workers: p.hash_workers,
            hash_queue: p.hash_queue,
        };
        let a = &raw.audit;
        if !(1..=1_000_000).contains(&a.queue) {
            return Err(self.err("audit.queue", "must be between 1 and 1000000"));
        }
        if !(1..=3_650).contains(&a.retention_days) {
            return Err(self.err("audit.retention_days", "must be between 1 and 3650"));
        }
        let audit = AuditSettings {
            queue: a.queue,
            retention_seconds: a.retention_days as i64 * 86_400,
        };
        let clients = crate::clients::build(raw.clients, &|key, reason| self.err(key, reason))?;
        let accounts =
            crate::messaging::build_accounts(&raw.accounts, &|key, reason| self.err(key, reason))?;
        let admin = crate::admin::build(&raw.admin, &|key, reason| self.err(key, reason))?;
        Ok(Topology {
            source: self.file.to_owned(),
            federation,
            index,
            tokens,
            passwords,
            edge,
            audit,
            regions,
            clients,
            accounts,
            admin,
            countries,
            exact_domains,
            wildcard_domains,
        })
    }
}

fn list(regions: &BTreeMap<RegionCode, Region>) -> String {
    regions
        .keys()
        .map(RegionCode::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
[federation]
name = "test"
issuer = "https://id.example.com"
default_region = "eu"
trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]

[index]
host_region = "eu"
secret_file = "secret.key"
store = { backend = "embedded", path = "data/index" }

[regions.eu]
residency = "EU"
countries = ["DE", "fr"]
email_domains = ["example.de", "*.corp.example.eu"]
nodes = [{ address = "127.0.0.1:7101" }]
store = { backend = "embedded", path = "data/eu" }

[regions.us]
residency = "US"
countries = ["US"]
email_domains = ["example.com"]
nodes = [{ address = "127.0.0.1:7201", weight = 95 }, { name = "canary", address = "127.0.0.1:7202", weight = 5 }]
store = { backend = "embedded", path = "/var/lib/domicile/us" }
"#;

    fn parse(text: &str) -> Result<Topology, ConfigError> {
        Topology::parse(Path::new("conf/regions.toml"), text)
    }

    /// Applies `edit` (a search and its replacement) to VALID and expects an
    /// error at `key` whose reason contains `reason`.
    fn check(from: &str, to: &str, key: &str, reason: &str) {
        assert!(VALID.contains(from), "fixture lacks {from:?}");
        let text = VALID.replacen(from, to, 1);
        match parse(&text) {
            Ok(_) => panic!("expected an error at {key} for {to:?}"),
            Err(e) => {
                assert_eq!(e.file, Path::new("conf/regions.toml"));
                assert_eq!(e.key, key, "{e}");
                assert!(
                    e.reason.contains(reason),
                    "reason {:?} lacks {reason:?}",
                    e.reason
                );
                assert!(e.to_string().starts_with("conf/regions.toml: "), "{e}");
            }
        }
    }

    /// `[admin]`: operators with their keys and roles, and a local
    /// operator; each broken value refused by its key.
    #[test]
    fn admin_operators_and_their_refusals() {
        use crate::admin::Role;
        let key = crate::admin::OperatorKey::from_seed("ada", [1; 32]).public_key();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, key);
        let admin = |name: &str, public_key: &str, roles: &str| {
            format!(
                "{VALID}\n[admin]\nlocal_operator = \"local\"\n\n[[admin.operators]]\nname = \"{name}\"\npublic_key = \"{public_key}\"\nroles = {roles}\n"
            )
        };
        let t = parse(&admin(
            "ada",
            &b64,
            "[\"compliance\", \"support\", \"support\"]",
        ))
        .unwrap();
        assert_eq!(t.admin.local_operator.as_deref(), Some("local"));
        assert_eq!(t.admin.operators.len(), 1);
        assert_eq!(t.admin.operators[0].public_key, key);
        assert_eq!(
            t.admin.operators[0].roles,
            vec![Role::Compliance, Role::Support]
        );
        assert!(parse(VALID).unwrap().admin.operators.is_empty());
        for (text, key, reason) in [
            (
                admin("Ada", &b64, "[\"support\"]"),
                "admin.operators[0].name",
                "a-z",
            ),
            (
                admin("local", &b64, "[\"support\"]"),
                "admin.operators[0].name",
                "twice",
            ),
            (
                admin("ada", "AAAA", "[\"support\"]"),
                "admin.operators[0].public_key",
                "32 bytes",
            ),
            (
                admin("ada", &b64, "[]"),
                "admin.operators[0].roles",
                "at least one",
            ),
            (
                admin("ada", &b64, "[\"root\"]"),
                "admin.operators[0].roles",
                "unknown role",
            ),
        ] {
            let e = parse(&text).map(|_| ()).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.reason.contains(reason), "{e}");
        }
    }

    /// Two regions whose passkey handles would carry one tag are refused
    /// (the edge could not tell their passkeys apart). `ddpx` was found
    /// by searching four-letter codes for `eu`'s tag.
    #[test]
    fn regions_sharing_a_passkey_tag_are_refused() {
        let code = |c: &str| RegionCode::parse(c).unwrap();
        assert_eq!(
            crate::passkey::region_tag(&code("ddpx")),
            crate::passkey::region_tag(&code("eu"))
        );
        let text = VALID.replacen("[regions.us]", "[regions.ddpx]", 1);
        let e = parse(&text).map(|_| ()).unwrap_err();
        assert!(e.key == "regions.eu" || e.key == "regions.ddpx", "{e}");
        assert!(e.reason.contains("share a passkey region tag"), "{e}");
    }

    #[test]
    fn a_valid_file() {
        let t = parse(VALID).unwrap();
        let eu = RegionCode::parse("eu").unwrap();
        let us = RegionCode::parse("us").unwrap();
        assert_eq!(t.federation.default_region, eu);
        assert_eq!(t.federation.audience, "https://id.example.com");
        assert_eq!(t.region_for_country("FR"), Some(&eu));
        assert_eq!(t.region_for_country("us"), Some(&us));
        assert_eq!(t.region_for_country("JP"), None);
        assert_eq!(t.region_for_domain("example.de"), Some(&eu));
        assert_eq!(t.region_for_domain("mail.corp.example.eu"), Some(&eu));
        assert_eq!(t.region_for_domain("corp.example.eu"), None);
        assert_eq!(t.region_for_domain("sub.example.de"), None);
        assert_eq!(t.region_for_domain("example.com"), Some(&us));
        assert_eq!(t.regions[&us].nodes[1].name, "canary");
        assert_eq!(t.regions[&us].nodes[0].name, "us-1");
        assert_eq!(
            t.regions[&eu].store,
            StoreConfig::Embedded {
                path: PathBuf::from("conf/data/eu")
            }
        );
        assert_eq!(
            t.regions[&us].store,
            StoreConfig::Embedded {
                path: PathBuf::from("/var/lib/domicile/us")
            }
        );
        assert_eq!(t.passwords.params, HashParams::OWASP);
        assert_eq!(t.federation.trusted_proxies.len(), 2);
        assert_eq!(t.known_region("us"), Some(&us));
        assert_eq!(t.known_region("ap"), None);
    }

    /// The senders and the account policy: a valid pair, then each kind
    /// of broken setting, refused with its key.
    #[test]
    fn message_senders_and_account_policy() {
        use crate::messaging::{EmailTransport, SmsSender, SmtpTls};
        let us_store = "store = { backend = \"embedded\", path = \"/var/lib/domicile/us\" }";
        let with = |extra: &str| VALID.replacen(us_store, &format!("{us_store}\n{extra}"), 1);
        let text = with(
            "email = { from = \"ID <no-reply@us.example>\", smtp = { host = \"smtp.us.example\", username = \"id\", password_env = \"US_SMTP\" } }\nsms = { webhook = \"https://sms.us.example/send\", secret_env = \"US_SMS\" }",
        ) + "\n[accounts]\nrequire_verified_email = true\nrequests_per_identifier = 3\n";
        let t = parse(&text).unwrap();
        let us = &t.regions[&RegionCode::parse("us").unwrap()];
        let email = us.messaging.email.as_ref().unwrap();
        let EmailTransport::Smtp(smtp) = &email.transport else {
            panic!("{email:?}")
        };
        assert_eq!((smtp.port, smtp.tls), (587, SmtpTls::StartTls));
        assert!(matches!(&us.messaging.sms, Some(SmsSender::Webhook(w)) if w.attempts == 3));
        assert!(t.accounts.require_verified_email && t.accounts.reset_revokes_sessions);
        assert_eq!(t.accounts.requests_per_identifier, 3);
        let eu = &t.regions[&RegionCode::parse("eu").unwrap()];
        assert_eq!(eu.messaging, crate::messaging::Messaging::default());

        for (extra, key, reason) in [
            (
                "email = { from = \"nobody\", outbox = \"o\" }",
                "regions.us.email.from",
                "is not addr@host",
            ),
            (
                "email = { from = \"a@b.example\" }",
                "regions.us.email",
                "exactly one of outbox",
            ),
            (
                "email = { from = \"a@b.example\", outbox = \"o\", smtp = { host = \"h.example\" } }",
                "regions.us.email",
                "exactly one of outbox",
            ),
            (
                "email = { from = \"a@b.example\", smtp = { host = \"smtp.example\", tls = \"none\" } }",
                "regions.us.email.smtp.tls",
                "only to a loopback relay",
            ),
            (
                "email = { from = \"a@b.example\", smtp = { host = \"smtp.example\", tls = \"ssl\" } }",
                "regions.us.email.smtp.tls",
                "expected",
            ),
            (
                "email = { from = \"a@b.example\", smtp = { host = \"smtp.example\", password_env = \"P\" } }",
                "regions.us.email.smtp.username",
                "needs a username",
            ),
            (
                "email = { from = \"a@b.example\", smtp = { host = \"smtp example\" } }",
                "regions.us.email.smtp.host",
                "not a host",
            ),
            (
                "email = { from = \"a@b.example\", smtp = { host = \"h.example\", timeout_ms = 5 } }",
                "regions.us.email.smtp.timeout_ms",
                "between",
            ),
            (
                "sms = { webhook = \"http://sms.example/send\", secret_env = \"S\" }",
                "regions.us.sms.webhook",
                "must be https",
            ),
            (
                "sms = { webhook = \"https://sms.example/send\" }",
                "regions.us.sms.secret_env",
                "exactly one of secret_env",
            ),
            (
                "sms = { webhook = \"https://sms.example/send\", secret_env = \"S\", secret_file = \"s\" }",
                "regions.us.sms.secret_env",
                "exactly one of secret_env",
            ),
            (
                "sms = { webhook = \"https://sms.example/send\", secret_env = \"S\", attempts = 9 }",
                "regions.us.sms.attempts",
                "between 1 and 5",
            ),
            (
                "sms = { outbox = \"o\", attempts = 2 }",
                "regions.us.sms",
                "the webhook's settings",
            ),
        ] {
            match parse(&with(extra)) {
                Ok(_) => panic!("{extra} was accepted"),
                Err(e) => {
                    assert_eq!(e.key, key, "{extra}: {e}");
                    assert!(e.reason.contains(reason), "{extra}: {e}");
                }
            }
        }
        for (accounts, key) in [
            (
                "requests_per_identifier = 0",
                "accounts.requests_per_identifier",
            ),
            (
                "request_window_seconds = 5",
                "accounts.request_window_seconds",
            ),
            ("requests_per_address = 0", "accounts.requests_per_address"),
        ] {
            let e = parse(&format!("{VALID}\n[accounts]\n{accounts}\n")).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        check(
            "default_region = \"eu\"",
            "default_region = \"mars\"",
            "federation.default_region",
            "unknown region mars",
        );
        check(
            "default_region = \"eu\"",
            "default_region = \"EU\"",
            "federation.default_region",
            "invalid region code",
        );
        check(
            "countries = [\"US\"]",
            "countries = [\"de\"]",
            "regions.us.countries[0]",
            "country DE is already assigned to region eu",
        );
        check(
            "countries = [\"US\"]",
            "countries = [\"USA\"]",
            "regions.us.countries[0]",
            "not an ISO 3166-1",
        );
        check(
            "email_domains = [\"example.com\"]",
            "email_domains = [\"Example.DE\"]",
            "regions.us.email_domains[0]",
            "example.de is already assigned to region eu",
        );
        check(
            "email_domains = [\"example.com\"]",
            "email_domains = [\"not a domain\"]",
            "regions.us.email_domains[0]",
            "not a valid domain",
        );
        check(
            "127.0.0.1:7101",
            "127.0.0.1",
            "regions.eu.nodes[0].address",
            "not an address",
        );
        check(
            "127.0.0.1:7101",
            "localhost:99999",
            "regions.eu.nodes[0].address",
            "not an address",
        );
        check(
            "127.0.0.1:7202",
            "127.0.0.1:7201",
            "regions.us.nodes[1].address",
            "already used by regions.us.nodes[0].address",
        );
        check(
            "[regions.us]",
            "[regions.US]",
            "regions.US",
            "invalid region code",
        );
        check(
            "[regions.us]",
            "[regions.u-s]",
            "regions.u-s",
            "invalid region code",
        );
        check(
            "name = \"test\"",
            "name = \"test\"\ncolour = \"blue\"",
            "federation.colour",
            "unknown field `colour`",
        );
        check(
            "residency = \"US\"",
            "residency = \"US\"\nzone = 1",
            "regions.us.zone",
            "unknown field `zone`",
        );
        check(
            "weight = 95",
            "weight = \"heavy\"",
            "regions.us.nodes[0].weight",
            "invalid type",
        );
        check(
            "trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]",
            "trusted_proxies = [\"10.0.0.0/33\"]",
            "federation.trusted_proxies[0]",
            "not a CIDR",
        );
        check(
            "host_region = \"eu\"",
            "host_region = \"ap\"",
            "index.host_region",
            "unknown region ap",
        );
        check(
            "backend = \"embedded\", path = \"data/eu\"",
            "backend = \"cassandra\"",
            "regions.eu.store.backend",
            "unknown store backend",
        );
        check(
            "backend = \"embedded\", path = \"data/eu\"",
            "backend = \"embedded\"",
            "regions.eu.store.path",
            "needs a data directory",
        );
        check(
            "nodes = [{ address = \"127.0.0.1:7101\" }]",
            "nodes = []",
            "regions.eu.nodes",
            "at least one node",
        );
        check(
            "issuer = \"https://id.example.com\"",
            "issuer = \"id.example.com\"",
            "federation.issuer",
            "http(s) URL",
        );
        check(
            "[federation]",
            "[federation\n",
            "line 2 column 12",
            "unclosed table",
        );
        check(
            "[index]",
            "[index]\nclaim_ttl_seconds = 0",
            "index.claim_ttl_seconds",
            "between 1 and",
        );
        check(
            "[index]",
            "[passwords]\nmemory_kib = 1\n[index]",
            "passwords",
            "invalid argon2 parameters",
        );
        check(
            "[index]",
            "[audit]\nqueue = 0\n[index]",
            "audit.queue",
            "between 1 and",
        );
        check(
            "[index]",
            "[audit]\nretention_days = 4000\n[index]",
            "audit.retention_days",
            "between 1 and 3650",
        );
        check(
            "[index]",
            "[edge]\nlisten = \"nowhere\"\n[index]",
            "edge.listen",
            "not an address",
        );
        check(
            "[index]",
            "[edge]\nindex_cache_negative_seconds = 0\n[index]",
            "edge.index_cache_negative_seconds",
            "between 1 and",
        );
        check(
            "[index]",
            "[edge]\nlisten = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:1\"\n[index]",
            "edge.admin_listen",
            "must differ",
        );
        check(
            "[index]",
            "[edge]\nport = 1\n[index]",
            "edge.port",
            "unknown field",
        );
        check(
            "backend = \"embedded\", path = \"data/eu\"",
            "backend = \"embedded\", path = \"data/eu\", nodes = [\"a:1\"]",
            "regions.eu.store.nodes",
            "only the scylla backend",
        );
    }

    /// The fixture with every region (and optionally the index) on Scylla.
    fn scylla(index_on_scylla: bool) -> String {
        let mut t = VALID
            .replace(
                "store = { backend = \"embedded\", path = \"data/eu\" }",
                "store = { backend = \"scylla\", nodes = [\"10.1.0.1:9042\"], datacenter = \"eu-dc\" }",
            )
            .replace(
                "store = { backend = \"embedded\", path = \"/var/lib/domicile/us\" }",
                "store = { backend = \"scylla\", nodes = [\"10.2.0.1:9042\", \"db.us.internal:9042\"], datacenter = \"us-dc\", replication_factor = 5, request_timeout_ms = 500, username = \"domicile\", password_env = \"SCYLLA_PASSWORD\" }",
            );
        if index_on_scylla {
            t = t.replace(
                "store = { backend = \"embedded\", path = \"data/index\" }",
                "store = { backend = \"scylla\" }",
            );
        }
        t
    }

    #[test]
    fn scylla_stores() {
        let t = parse(&scylla(true)).unwrap();
        let eu = RegionCode::parse("eu").unwrap();
        let us = RegionCode::parse("us").unwrap();
        let StoreConfig::Scylla(e) = &t.regions[&eu].store else {
            panic!("eu is on scylla")
        };
        assert_eq!(
            (e.keyspace.as_str(), e.datacenter.as_str()),
            ("domicile_eu", "eu-dc")
        );
        assert_eq!(e.replication, vec![("eu-dc".to_owned(), 3)]);
        assert_eq!(e.request_timeout, Duration::from_secs(2));
        let StoreConfig::Scylla(u) = &t.regions[&us].store else {
            panic!("us is on scylla")
        };
        assert_eq!(u.replication, vec![("us-dc".to_owned(), 5)]);
        assert_eq!(u.request_timeout, Duration::from_millis(500));
        assert_eq!(
            (u.username.as_deref(), u.password_env.as_deref()),
            (Some("domicile"), Some("SCYLLA_PASSWORD"))
        );
        let StoreConfig::Scylla(ix) = &t.index.store else {
            panic!("index is on scylla")
        };
        assert_eq!(ix.keyspace, "domicile_index");
        assert_eq!(
            ix.replication,
            vec![("eu-dc".to_owned(), 3), ("us-dc".to_owned(), 3)],
            "every region's datacenter"
        );
    }

    /// Who serves index lookups: the embedded index only its host region's
    /// active nodes; the Scylla index every region's, the host first.
    #[test]
    fn index_servers() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let code = |c: &str| RegionCode::parse(c).unwrap();
        for (text, want) in [
            (
                VALID.to_owned(),
                vec![(code("eu"), vec![a("127.0.0.1:7101")])],
            ),
            (
                VALID.replace("host_region = \"eu\"", "host_region = \"us\""),
                vec![(code("us"), vec![a("127.0.0.1:7201"), a("127.0.0.1:7202")])],
            ),
            (
                scylla(true).replace("host_region = \"eu\"", "host_region = \"us\""),
                vec![
                    (code("us"), vec![a("127.0.0.1:7201"), a("127.0.0.1:7202")]),
                    (code("eu"), vec![a("127.0.0.1:7101")]),
                ],
            ),
            (
                scylla(true).replace("weight = 5", "weight = 0"),
                vec![
                    (code("eu"), vec![a("127.0.0.1:7101")]),
                    (code("us"), vec![a("127.0.0.1:7201")]),
                ],
            ),
        ] {
            let t = parse(&text).unwrap();
            assert_eq!(t.index_servers(), want, "{text}");
        }
    }

    #[test]
    fn scylla_errors_name_the_key() {
        let base = scylla(true);
        let check_s = |from: &str, to: &str, key: &str, reason: &str| {
            assert!(base.contains(from), "fixture lacks {from:?}");
            let e = parse(&base.replacen(from, to, 1)).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.reason.contains(reason), "{e}");
        };
        check_s(
            "nodes = [\"10.1.0.1:9042\"], ",
            "",
            "regions.eu.store.nodes",
            "needs contact points",
        );
        check_s(
            ", datacenter = \"eu-dc\"",
            "",
            "regions.eu.store.datacenter",
            "needs the region's datacenter",
        );
        check_s(
            "datacenter = \"us-dc\"",
            "datacenter = \"eu-dc\"",
            "regions.us.store.datacenter",
            "already holds region eu",
        );
        check_s(
            "\"10.1.0.1:9042\"",
            "\"10.1.0.1\"",
            "regions.eu.store.nodes[0]",
            "host:port",
        );
        check_s(
            "datacenter = \"eu-dc\"",
            "datacenter = \"eu dc\"",
            "regions.eu.store.datacenter",
            "not a datacenter name",
        );
        check_s(
            "replication_factor = 5",
            "replication_factor = 0",
            "regions.us.store.replication_factor",
            "between 1 and 9",
        );
        check_s(
            "username = \"domicile\", ",
            "",
            "regions.us.store.username",
            "needs a username",
        );
        check_s(
            "datacenter = \"eu-dc\"",
            "datacenter = \"eu-dc\", path = \"x\"",
            "regions.eu.store.path",
            "only the embedded backend",
        );
        check_s(
            "store = { backend = \"scylla\" }",
            "store = { backend = \"scylla\", datacenter = \"eu-dc\" }",
            "index.store",
            "no contact points or datacenter of its own",
        );
        // A scylla index needs every region on scylla.
        let mixed = scylla(true).replace(
            "store = { backend = \"scylla\", nodes = [\"10.1.0.1:9042\"], datacenter = \"eu-dc\" }",
            "store = { backend = \"embedded\", path = \"data/eu\" }",
        );
        assert_eq!(parse(&mixed).unwrap_err().key, "regions.eu.store.backend");
        // Regions on scylla with an embedded index host are fine.
        assert!(parse(&scylla(false)).is_ok());
    }

    #[test]
    fn missing_sections_are_named() {
        let no_index = VALID.replace("[index]", "[ignored]");
        let e = parse(&no_index).unwrap_err();
        assert!(
            e.reason.contains("unknown field `ignored`") || e.reason.contains("missing field"),
            "{e}"
        );
    }

    #[test]
    fn the_shipped_regions_toml_is_valid() {
        let text = include_str!("../../../regions.toml");
        let t = Topology::parse(Path::new("regions.toml"), text).unwrap();
        let codes: Vec<&str> = t.regions.keys().map(RegionCode::as_str).collect();
        assert_eq!(codes, ["ap", "eu", "us"]);
    }
}
