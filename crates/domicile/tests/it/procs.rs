//! Starting and stopping the federation's processes.

use domicile_proto::v1::{self as pb, admin_client::AdminClient, identity_client::IdentityClient};
use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_domicile");

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub struct Proc {
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(args: &[&str], log: PathBuf, cwd: &Path) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .env(
                "RUST_LOG",
                "info,domicile=debug,domicile_node=debug,domicile_edge=debug,domicile_store=debug",
            )
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "exited with {status}; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("did not stop within 10 s");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Federation {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub edge_addr: SocketAddr,
    pub node_addrs: BTreeMap<String, SocketAddr>,
    pub nodes: BTreeMap<String, Proc>,
    pub edge: Option<Proc>,
}

fn wait_for_port(addr: SocketAddr, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{addr} never opened; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Federation {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node_addrs: BTreeMap<String, SocketAddr> = ["eu", "us", "ap"]
            .iter()
            .map(|r| ((*r).to_owned(), free_addr()))
            .collect();
        let (edge_addr, admin_addr) = (free_addr(), free_addr());
        let geo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/geoip/local.mmdb");
        let text = format!(
            r#"
[federation]
name = "e2e"
issuer = "http://{edge_addr}"
default_region = "eu"
geoip_database = "{geo}"
trusted_proxies = ["127.0.0.0/8"]

[index]
host_region = "eu"
secret_file = "index.key"
create_secret = true
store = {{ backend = "embedded", path = "data/index" }}

[passwords]
memory_kib = 256
iterations = 1
parallelism = 1

[edge]
listen = "{edge_addr}"
admin_listen = "{admin_addr}"
health_check_seconds = 1
jwks_refresh_seconds = 1
retry_after_seconds = 3

[regions.eu]
residency = "EU"
countries = ["DE", "FR", "GB"]
email_domains = ["example.de"]
nodes = [{{ address = "{eu}" }}]
store = {{ backend = "embedded", path = "data/eu" }}

[regions.us]
residency = "US"
countries = ["US", "CA", "BR"]
email_domains = ["example.com"]
nodes = [{{ address = "{us}" }}]
store = {{ backend = "embedded", path = "data/us" }}

[regions.ap]
residency = "AP"
countries = ["JP", "SG", "AU"]
email_domains = ["example.jp"]
nodes = [{{ address = "{ap}" }}]
store = {{ backend = "embedded", path = "data/ap" }}
"#,
            geo = geo.display(),
            eu = node_addrs["eu"],
            us = node_addrs["us"],
            ap = node_addrs["ap"],
        );
        let config = dir.path().join("regions.toml");
        std::fs::write(&config, text).unwrap();
        let mut fed = Federation {
            dir,
            config,
            edge_addr,
            node_addrs,
            nodes: BTreeMap::new(),
            edge: None,
        };
        for r in ["eu", "us", "ap"] {
            fed.start_node(r);
        }
        let log = fed.dir.path().join("edge.log");
        let edge = Proc::spawn(
            &["edge", "--config", fed.config.to_str().unwrap()],
            log.clone(),
            fed.dir.path(),
        );
        wait_for_port(fed.edge_addr, &log);
        fed.edge = Some(edge);
        fed
    }

    pub fn start_node(&mut self, region: &str) {
        let log = self.dir.path().join(format!("node-{region}.log"));
        let p = Proc::spawn(
            &[
                "node",
                "--region",
                region,
                "--config",
                self.config.to_str().unwrap(),
            ],
            log.clone(),
            self.dir.path(),
        );
        wait_for_port(self.node_addrs[region], &log);
        self.nodes.insert(region.to_owned(), p);
    }

    pub fn stop_node(&mut self, region: &str) {
        self.nodes.remove(region).unwrap().stop();
    }

    pub async fn client(&self) -> IdentityClient<Channel> {
        IdentityClient::connect(format!("http://{}", self.edge_addr))
            .await
            .unwrap()
    }

    /// What a region's node says it stores (the Admin service).
    pub async fn report(&self, region: &str) -> pb::RegionReportResponse {
        let mut a = AdminClient::connect(format!("http://{}", self.node_addrs[region]))
            .await
            .unwrap();
        a.region_report(pb::RegionReportRequest {
            include_identifiers: true,
        })
        .await
        .unwrap()
        .into_inner()
    }

    pub async fn users(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        for r in self.node_addrs.keys() {
            v.push((r.clone(), self.report(r).await.users));
        }
        v
    }

    /// Runs the binary with arguments, returns (success, stdout + stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "log") {
                s += &format!(
                    "== {}\n{}\n",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_default()
                );
            }
        }
        s
    }
}

/// A request as from a client at `ip`.
pub fn from<T>(ip: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("x-forwarded-for", ip.parse().unwrap());
    r
}

pub fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

pub fn register(email: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        email: email.into(),
        password: "correct horse battery".into(),
        ..Default::default()
    }
}

pub fn login(email: &str) -> pb::LoginRequest {
    pb::LoginRequest {
        email: email.into(),
        password: "correct horse battery".into(),
    }
}

pub fn route_of(md: &tonic::metadata::MetadataMap) -> (String, String) {
    let get = |k: &str| {
        md.get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    (get("domicile-region"), get("domicile-route"))
}

/// The edge's federation JWKS as a key set.
pub async fn edge_keys(addr: SocketAddr) -> domicile_core::token::KeySet {
    use base64::Engine as _;
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let resp = client
        .get(
            format!("http://{addr}/.well-known/jwks.json")
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut set = domicile_core::token::KeySet::default();
    for k in doc["keys"].as_array().unwrap() {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(k["x"].as_str().unwrap())
            .unwrap();
        set.insert(
            &domicile_core::token::Kid::parse(k["kid"].as_str().unwrap()).unwrap(),
            x.try_into().unwrap(),
        );
    }
    set
}

/// A raw h2c POST (bodies no gRPC client sends). Returns grpc-status.
pub async fn h2_post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Option<String>) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    let req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let trailers = body.collect().await.unwrap().trailers().cloned();
    let grpc = parts
        .headers
        .get("grpc-status")
        .or_else(|| trailers.as_ref().and_then(|t| t.get("grpc-status")))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, grpc)
}
