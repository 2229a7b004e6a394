//! A federation of real nodes behind a real edge, in-process.

use domicile_core::{RegionCode, index::IndexSecret, topology::Topology};
use domicile_edge::{Edge, EdgeOptions, GeoIp, RunningEdge, Schema, geoip::build_database};
use domicile_node::{Node, NodeOptions, OsEntropy, RunningNode, SystemClock};
use domicile_proto::v1::identity_client::IdentityClient;
use domicile_testkit::config::FederationConfig;
pub use domicile_testkit::{
    bearer, from, grpc_status, h2_post, http_get, key_set, login, register, route_of,
};
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};
use tonic::{Code, Status, transport::Channel};

/// Readable GeoIP source: documentation ranges, assigned for tests.
pub const GEO_SOURCE: &str = "\
192.0.2.0/25 DE 52.52,13.40      # eu (Berlin)
192.0.2.128/25 FR 48.86,2.35     # eu (Paris)
198.51.100.0/24 US 40.71,-74.01  # us (New York)
203.0.113.0/24 JP 35.68,139.69   # ap (Tokyo)
2001:db8:a::/48 ZA               # nobody's country
";

pub struct Fed {
    /// Kept alive for the federation's data.
    _dir: tempfile::TempDir,
    /// The federation's regions.toml and the text it started with.
    pub config_path: std::path::PathBuf,
    pub config_text: String,
    pub nodes: BTreeMap<String, RunningNode>,
    pub edge: Option<RunningEdge>,
}

pub struct Settings {
    pub trusted_proxies: &'static str,
    pub negative_ttl: u64,
    pub schema: Schema,
    /// Every region's email through this SMTP server (plain text on
    /// loopback); without one the regions send no email.
    pub smtp: Option<SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            trusted_proxies: "[\"127.0.0.0/8\"]",
            negative_ttl: 5,
            schema: Schema::GeoIp2,
            smtp: None,
        }
    }
}

impl Fed {
    pub async fn start() -> Self {
        Self::with(Settings::default()).await
    }

    pub async fn with(s: Settings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        for r in ["eu", "us", "ap"] {
            listeners.insert(
                r.to_owned(),
                tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            );
        }
        let edge_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = |r: &str| listeners[r].local_addr().unwrap();
        let geo_path = dir.path().join("geo.mmdb");
        std::fs::write(&geo_path, build_database(GEO_SOURCE, s.schema, 1).unwrap()).unwrap();
        let mut config = FederationConfig::new("edge-test");
        config.geoip_database = Some("geo.mmdb".into());
        config.trusted_proxies = Some(s.trusted_proxies.into());
        if let Some(smtp) = s.smtp {
            config.region_settings = vec![format!(
                "email = {{ from = \"Test ID <no-reply@{{region}}.id.test>\", smtp = {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }} }}",
                smtp.port()
            )];
        }
        config.edge = Some((edge_l.local_addr().unwrap(), admin_l.local_addr().unwrap()));
        config.edge_settings = vec![
            format!("index_cache_negative_seconds = {}", s.negative_ttl),
            "health_check_seconds = 1".into(),
            "jwks_refresh_seconds = 1".into(),
            "retry_after_seconds = 7".into(),
        ];
        for r in ["eu", "us", "ap"] {
            config = config.node(r, addr(r));
        }
        let text = config.render();
        let path = dir.path().join("regions.toml");
        std::fs::write(&path, &text).unwrap();
        let topology = Arc::new(Topology::parse(&path, &text).unwrap());
        let mut nodes = BTreeMap::new();
        for (r, l) in listeners {
            let opts = NodeOptions {
                topology: topology.clone(),
                region: RegionCode::parse(&r).unwrap(),
                clock: Arc::new(SystemClock),
                entropy: Arc::new(OsEntropy),
            };
            nodes.insert(r, Node::start(opts, l).await.unwrap());
        }
        let secret = std::fs::read_to_string(dir.path().join("index.key")).unwrap();
        let opts = EdgeOptions {
            topology: topology.clone(),
            secret: IndexSecret::new(secret.trim().as_bytes().to_vec()).unwrap(),
            geoip: Some(GeoIp::open(&geo_path).unwrap()),
        };
        let edge = Edge::start(opts, edge_l, admin_l).await.unwrap();
        Fed {
            _dir: dir,
            config_path: path,
            config_text: text,
            nodes,
            edge: Some(edge),
        }
    }

    pub fn edge_addr(&self) -> SocketAddr {
        self.edge.as_ref().unwrap().addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.edge.as_ref().unwrap().admin_addr
    }

    pub async fn client(&self) -> IdentityClient<Channel> {
        IdentityClient::connect(format!("http://{}", self.edge_addr()))
            .await
            .unwrap()
    }

    pub async fn node_client(&self, region: &str) -> IdentityClient<Channel> {
        IdentityClient::connect(format!("http://{}", self.nodes[region].addr))
            .await
            .unwrap()
    }

    pub async fn users(&self, region: &str) -> u64 {
        self.nodes[region].store.count_users().await.unwrap()
    }

    pub async fn census(&self) -> Vec<u64> {
        let mut v = Vec::new();
        for r in self.nodes.keys() {
            v.push(self.users(r).await);
        }
        v
    }
}

pub fn expect_code<T: std::fmt::Debug>(r: Result<T, Status>, code: Code) -> Status {
    match r {
        Ok(v) => panic!("expected {code:?}, got {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{s:?}");
            s
        }
    }
}

/// Waits until `check` holds, for at most 10 s (health checks run every second).
pub async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}
