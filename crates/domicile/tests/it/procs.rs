//! Starting and stopping the federation's processes.

use domicile_proto::v1::{self as pb, admin_client::AdminClient, identity_client::IdentityClient};
pub use domicile_testkit::config::OWASP_PASSWORDS;
use domicile_testkit::config::{CqlStores, FederationConfig};
pub use domicile_testkit::{
    bearer, from, grpc_status, h2_post, http_get, key_set, login, register, route_of,
};
use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_domicile");

/// A loopback address no other caller in this test process has been given.
/// The port is free when handed out and the process that binds it comes
/// later, so two concurrent tests asking the kernel could be told the same
/// port; each port is handed out once per process. Ports come from below
/// the kernel's ephemeral range: outgoing connections (a node's CQL
/// connections, every client) take their local port from that range, and
/// one could take a handed-out port before its process binds it.
pub fn free_addr() -> SocketAddr {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, span) = (ephemeral_low.saturating_sub(12_000).max(1024), 12_000u32);
    // Each test process starts at its own offset, so concurrent binaries
    // rarely probe the same ports.
    let offset = std::process::id().wrapping_mul(7919) % span;
    let mut given = GIVEN.lock().unwrap();
    for i in 0..span {
        let port = low + ((offset + i) % span) as u16;
        if port >= ephemeral_low || given.contains(&port) {
            continue;
        }
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            given.insert(port);
            return l.local_addr().unwrap();
        }
    }
    panic!("no free loopback port below the ephemeral range ({low}..{ephemeral_low})")
}

pub struct Proc {
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(args: &[&str], log: PathBuf, cwd: &Path, opts: &Options) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(&opts.global_args)
            .args(args)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
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

    /// SIGKILL (no chance to finish anything), and reap it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
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

/// How the federation's processes run beyond the defaults.
#[derive(Clone, Default)]
pub struct Options {
    /// Before the subcommand (e.g. `--log-format json`).
    pub global_args: Vec<String>,
    /// Extra environment (e.g. `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub env: Vec<(String, String)>,
    /// Every store on the CQL backend (the schema is applied with
    /// `domicile schema apply` before the nodes start).
    pub cql: Option<CqlStores>,
    /// The `[passwords]` table (cheap hashing when `None`).
    pub passwords: Option<&'static str>,
    /// Every region's email through this SMTP server (plain text, loopback).
    pub smtp: Option<SocketAddr>,
    /// Every region's text messages to this webhook (`{region}` in the URL
    /// is the region), signed with this secret (kept in a file).
    pub sms: Option<(String, String)>,
    /// The issuer is `http://localhost:<edge port>` rather than the edge's
    /// address: a browser's WebAuthn needs a domain as the RP ID.
    pub localhost: bool,
}

pub struct Federation {
    pub dir: tempfile::TempDir,
    pub opts: Options,
    pub config: PathBuf,
    pub edge_addr: SocketAddr,
    /// The edge's admin address (`/metrics`).
    pub admin_addr: SocketAddr,
    pub node_addrs: BTreeMap<String, SocketAddr>,
    pub nodes: BTreeMap<String, Proc>,
    pub edge: Option<Proc>,
}

pub fn wait_for_port(addr: SocketAddr, log: &Path) {
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
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node_addrs: BTreeMap<String, SocketAddr> = ["eu", "us", "ap"]
            .iter()
            .map(|r| ((*r).to_owned(), free_addr()))
            .collect();
        let (edge_addr, admin_addr) = (free_addr(), free_addr());
        let geo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/geoip/local.mmdb");
        let mut c = FederationConfig::new("e2e");
        c.issuer = if opts.localhost {
            format!("http://localhost:{}", edge_addr.port())
        } else {
            format!("http://{edge_addr}")
        };
        c.geoip_database = Some(geo.display().to_string());
        c.trusted_proxies = Some("[\"127.0.0.0/8\"]".into());
        c.edge = Some((edge_addr, admin_addr));
        c.edge_settings = vec![
            "health_check_seconds = 1".into(),
            "jwks_refresh_seconds = 1".into(),
            "retry_after_seconds = 3".into(),
        ];
        c.nodes = node_addrs.clone();
        c.cql = opts.cql.clone();
        if let Some(p) = opts.passwords {
            c.passwords = p.into();
        }
        if let Some(smtp) = opts.smtp {
            c.region_settings.push(format!(
                "email = {{ from = \"E2E ID <no-reply@{{region}}.id.test>\", smtp = {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }} }}",
                smtp.port()
            ));
        }
        if let Some((url, secret)) = &opts.sms {
            std::fs::write(dir.path().join("sms.secret"), secret).unwrap();
            c.region_settings.push(format!(
                "sms = {{ webhook = \"{url}\", secret_file = \"sms.secret\", timeout_ms = 2000 }}"
            ));
        }
        let text = c.render();
        let config = dir.path().join("regions.toml");
        std::fs::write(&config, text).unwrap();
        let mut fed = Federation {
            dir,
            opts,
            config,
            edge_addr,
            admin_addr,
            node_addrs,
            nodes: BTreeMap::new(),
            edge: None,
        };
        if fed.opts.cql.is_some() {
            let config = fed.config.to_str().unwrap().to_owned();
            let (ok, out) = fed.run(&["schema", "apply", "--config", &config]);
            assert!(ok, "schema apply failed:\n{out}");
        }
        for r in ["eu", "us", "ap"] {
            fed.start_node(r);
        }
        let log = fed.dir.path().join("edge.log");
        let edge = Proc::spawn(
            &["edge", "--config", fed.config.to_str().unwrap()],
            log.clone(),
            fed.dir.path(),
            &fed.opts,
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
            &self.opts,
        );
        wait_for_port(self.node_addrs[region], &log);
        self.nodes.insert(region.to_owned(), p);
    }

    pub fn stop_node(&mut self, region: &str) {
        self.nodes.remove(region).unwrap().stop();
    }

    /// Stops the edge and every node gracefully (their logs and exports complete).
    pub fn stop_all(&mut self) {
        if let Some(edge) = self.edge.take() {
            edge.stop();
        }
        let regions: Vec<String> = self.nodes.keys().cloned().collect();
        std::thread::scope(|s| {
            for p in regions.iter().filter_map(|r| self.nodes.remove(r)) {
                s.spawn(move || p.stop());
            }
        });
    }

    /// SIGHUP to the edge (reload regions.toml).
    pub fn hangup_edge(&self) {
        let pid = self.edge.as_ref().unwrap().child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits (at most 60 s) until the edge's health checks count every
    /// configured node of every region healthy, and says how long it took:
    /// a node on a loaded machine (the CQL cluster's JVMs) may fail its
    /// first `/readyz`, and the edge then routes nothing to its region
    /// until the next check passes.
    pub async fn wait_until_routable(&self) {
        let start = Instant::now();
        loop {
            let (_, metrics) = domicile_testkit::http_get(self.admin_addr, "/metrics").await;
            let count = |region: &str, state: &str| {
                metrics
                    .lines()
                    .find(|l| {
                        l.starts_with("domicile_edge_region_nodes")
                            && l.contains(&format!("region=\"{region}\""))
                            && l.contains(&format!("state=\"{state}\""))
                    })
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            };
            let ready = self.node_addrs.keys().all(|r| {
                matches!((count(r, "healthy"), count(r, "configured")), (Some(h), Some(c)) if h >= c && c > 0.0)
            });
            if ready {
                println!(
                    "the edge saw every region healthy after {:?}",
                    start.elapsed()
                );
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the edge never saw every region healthy in 60 s:\n{metrics}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn client(&self) -> IdentityClient<Channel> {
        IdentityClient::connect(format!("http://{}", self.edge_addr))
            .await
            .unwrap()
    }

    /// The federation's topology, as its processes read it.
    pub fn topology(&self) -> domicile_core::topology::Topology {
        let text = std::fs::read_to_string(&self.config).unwrap();
        domicile_core::topology::Topology::parse(&self.config, &text).unwrap()
    }

    /// What a region's node says it stores (the Admin service).
    pub async fn report(&self, region: &str) -> pb::RegionReportResponse {
        let mut a = AdminClient::connect(format!("http://{}", self.node_addrs[region]))
            .await
            .unwrap();
        a.region_report(domicile_testkit::admin::request(
            &self.topology(),
            pb::RegionReportRequest {
                include_identifiers: true,
            },
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
        ))
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
        self.run_with(args, &[])
    }

    /// `run` with `env` set for the command.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
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

/// The edge's federation JWKS as a key set.
pub async fn edge_keys(addr: SocketAddr) -> domicile_core::token::KeySet {
    key_set(&http_get(addr, "/.well-known/jwks.json").await.1)
}

/// Fails if `text` holds any secret, or any 16-character window of one.
pub fn assert_no_leak(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        let windows: Vec<&str> = if s.len() > 16 {
            (0..=s.len() - 16)
                .step_by(8)
                .map(|i| &s[i..i + 16])
                .collect()
        } else {
            vec![s.as_str()]
        };
        for w in windows {
            assert!(!text.contains(w), "{what} leak of {w:?}:\n{text}");
        }
    }
}
