//! `cargo xtask cassandra up|down|status|flush`: a real Apache Cassandra 5.0
//! cluster on this machine for the CQL store's tests, one node per region
//! of `regions.toml`, each node its own datacenter.
//!
//! What it does:
//! - fetches `org.apache.cassandra:cassandra-all` ([`VERSION`]) and its
//!   runtime dependencies with Maven into `~/.cache/domicile/cassandra/<version>/lib`
//!   (`$DOMICILE_CASSANDRA_CACHE/<version>` or `$XDG_CACHE_HOME/…` when
//!   set), once: a marker lists the jars, and a complete set is reused
//!   offline without Maven;
//! - writes each node a `cassandra.yaml`, `cassandra-rackdc.properties` and
//!   `logback.xml`, and starts the nodes one after another on 127.0.0.1,
//!   127.0.0.2, 127.0.0.3, … (in `regions.toml` order; the first is the
//!   seed) with GossipingPropertyFileSnitch: CQL on 9042 and storage on
//!   7000 of each address, JMX (local only) on 7199, 7299, 7399, …;
//! - waits for each node's CQL STARTUP handshake (READY) before starting
//!   the next, with a bound, and then until every node reports its own
//!   datacenter in `system.local` and every other one in `system.peers`;
//! - keeps data, configs, pid files and logs under one directory,
//!   `<workspace>/.domicile/cassandra` or `$DOMICILE_CASSANDRA_DIR`
//!   (relative to the workspace), `<dir>/<dc>/{conf,data,commitlog,logs,pid}`,
//!   plus `<dir>/env` with the variables below; `down` stops the nodes
//!   (SIGTERM, a bounded wait, then SIGKILL) and removes that directory.
//!
//! `flush` runs Cassandra's own `nodetool flush` (the `NodeTool` class of
//! the cached jars) on each node's local JMX port, so that a node's data
//! directory holds, as SSTables, everything it stores.
//!
//! What it does not do: install Java 17 or Maven ([`missing_tools`] names
//! what is missing and `up` fails with that list), download a Cassandra
//! tarball, run any other nodetool command or cqlsh, enable authentication or TLS, or manage
//! more than one cluster per machine (the addresses and ports are fixed:
//! a second checkout's `up` fails while another cluster holds them), or
//! lock against two `up`s at once. The topology check is of membership
//! (`system.peers` rows), not of liveness: right after a node restarts,
//! its peers may take a gossip round to mark it up.
//!
//! Schema changes cost about a second each for a driver that awaits
//! schema agreement (gossip carries the new version once a second): create
//! the schema once per run, not once per test.
//!
//! For the test runner: [`missing_tools`] (empty when `up` can run; else
//! report SKIPPED with those names), [`up`] (idempotent: a cluster that is
//! already up is returned as it is) and [`down`]. [`Cluster::env`] gives the
//! contact points:
//!
//! - `DOMICILE_CQL_NODES=127.0.0.1:9042,127.0.0.2:9042,127.0.0.3:9042`
//! - `DOMICILE_CQL_DCS=eu,us,ap` (the datacenter of each of those nodes,
//!   in the same order)
//! - `DOMICILE_CQL_DIR` (the cluster directory: a node's pid is in
//!   `<dir>/<dc>/pid`) and `DOMICILE_CQL_XTASK` (this program: `<it>
//!   cassandra up` starts a node that is down), for the one test that
//!   kills a node and brings it back

mod config;
mod cql;
mod fetch;
mod node;
mod regions;

pub use config::VERSION;

use anyhow::{Context, Result, bail};
use config::NodeSpec;
use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

/// How long one node may take from `java` to CQL READY.
const START_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the nodes may take to see each other's datacenters.
const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the nodes get to drain after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// One CQL probe's connect and read bound.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The file that marks a directory as this command's, so `down` never
/// removes a directory it did not make.
const DIR_MARKER: &str = ".domicile-cassandra";

/// A running cluster, as `up` found or started it.
#[derive(Debug)]
pub struct Cluster {
    /// Data, configs and logs of every node.
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
    /// Every node was already running before this `up`.
    pub already_up: bool,
}

/// One running node.
#[derive(Debug)]
pub struct Node {
    pub dc: String,
    pub cql: SocketAddr,
    pub jmx_port: u16,
    pub pid: u32,
    /// From `java` to CQL READY; `None` for a node that was already running.
    pub started_in: Option<Duration>,
    /// Resident memory (VmRSS) when `up` returned, in KiB.
    pub rss_kib: Option<u64>,
    pub log: PathBuf,
}

impl Cluster {
    /// `127.0.0.1:9042,127.0.0.2:9042,…`
    pub fn cql_nodes(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.cql.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `eu,us,ap`: the datacenter of each node of [`Cluster::cql_nodes`].
    pub fn dcs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.dc.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The variables that point the CQL tests at the cluster: its contact
    /// points and, for the tests that take a node down and bring it back,
    /// its directory (each node's pid file is `<dir>/<dc>/pid`) and this
    /// program (`<xtask> cassandra up` restarts a node that is down).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("DOMICILE_CQL_NODES", self.cql_nodes()),
            ("DOMICILE_CQL_DCS", self.dcs()),
            ("DOMICILE_CQL_DIR", self.dir.display().to_string()),
        ];
        if let Ok(exe) = std::env::current_exe() {
            env.push(("DOMICILE_CQL_XTASK", exe.display().to_string()));
        }
        env
    }
}

/// `cargo xtask cassandra <up|down|status|flush>`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("up") => {
            let cluster = up(root)?;
            for (k, v) in cluster.env() {
                println!("export {k}={v}");
            }
            Ok(())
        }
        Some("down") => down(root),
        Some("status") => status(root).map(drop),
        Some("flush") => flush(root),
        _ => {
            eprintln!("usage: cargo xtask cassandra <up|down|status|flush>");
            eprintln!("  up      start (or find) the three-datacenter Cassandra {VERSION} cluster");
            eprintln!("  down    stop it and remove its directory");
            eprintln!("  status  each node: address, datacenter, pid, alive, CQL, memory");
            eprintln!("  flush   nodetool flush on every node (memtables to SSTables)");
            bail!("unknown cassandra task")
        }
    }
}

/// `$DOMICILE_CASSANDRA_DIR` (relative to the workspace root), else
/// `<root>/.domicile/cassandra`.
pub fn cluster_dir(root: &Path) -> PathBuf {
    match std::env::var_os("DOMICILE_CASSANDRA_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join(".domicile").join("cassandra"),
    }
}

/// `$JAVA_HOME/bin/java` when `JAVA_HOME` is set, else `java` on the PATH.
fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(
            || PathBuf::from("java"),
            |h| PathBuf::from(h).join("bin/java"),
        )
}

/// The major version in `java -version` output: `17` for
/// `openjdk version "17.0.15"`, `8` for `java version "1.8.0_292"`.
fn java_major(version_output: &str) -> Option<u32> {
    let quoted = version_output.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '-', '+', '_']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// What `up` needs and this machine lacks: `java 17` (Cassandra 5.0's
/// JDK; `JAVA_HOME` is honoured) and, unless the jars are already cached,
/// `mvn`. Empty when `up` can run.
pub fn missing_tools() -> Vec<&'static str> {
    let mut missing = Vec::new();
    let java_version = Command::new(java())
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| java_major(&String::from_utf8_lossy(&o.stderr)));
    if java_version != Some(17) {
        missing.push("java 17");
    }
    let has_mvn = Command::new("mvn")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_mvn && !fetch::cached(VERSION) {
        missing.push("mvn");
    }
    missing
}

/// The Debian package that brings a tool [`missing_tools`] names.
fn debian_package(tool: &str) -> &'static str {
    if tool == "mvn" {
        "maven"
    } else {
        "openjdk-17-jre-headless"
    }
}

fn node_specs(root: &Path) -> Result<Vec<NodeSpec>> {
    let path = root.join("regions.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let regions = regions::region_names(&text)?;
    if regions.len() > 254 {
        bail!("{} regions: at most 254 fit on 127.0.0.x", regions.len());
    }
    Ok(config::node_specs(&regions, &cluster_dir(root)))
}

/// `-Xmx` for each node: `$DOMICILE_CASSANDRA_HEAP` (like `768m`), else
/// [`config::DEFAULT_HEAP`].
fn heap() -> Result<String> {
    let heap = std::env::var("DOMICILE_CASSANDRA_HEAP")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| config::DEFAULT_HEAP.to_owned());
    if !valid_heap(&heap) {
        bail!("DOMICILE_CASSANDRA_HEAP={heap} is not a JVM size like 512m or 1g");
    }
    Ok(heap)
}

fn valid_heap(heap: &str) -> bool {
    let digits = heap.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    heap.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Creates the cluster directory, or checks that an existing one is ours.
fn claim_dir(dir: &Path) -> Result<()> {
    if dir.join(DIR_MARKER).is_file() {
        return Ok(());
    }
    let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
    if !empty {
        bail!(
            "{} is not empty and has no {DIR_MARKER} marker: not a cluster directory of this command, refusing to use it",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join(DIR_MARKER),
        "Made by `cargo xtask cassandra up`; `cargo xtask cassandra down` removes this directory.\n",
    )?;
    Ok(())
}

fn write_node_files(node: &NodeSpec, seed: std::net::Ipv4Addr) -> Result<()> {
    for sub in [
        "conf",
        "logs",
        "data",
        "commitlog",
        "hints",
        "saved_caches",
        "cdc_raw",
        "triggers",
    ] {
        std::fs::create_dir_all(node.dir.join(sub))
            .with_context(|| format!("cannot create {}", node.dir.join(sub).display()))?;
    }
    std::fs::write(
        config::yaml_file(&node.dir),
        config::cassandra_yaml(node, seed),
    )?;
    std::fs::write(
        node.conf("cassandra-rackdc.properties"),
        config::rackdc_properties(node),
    )?;
    std::fs::write(node.conf("logback.xml"), config::logback_xml(node))?;
    Ok(())
}

/// The end of the node's log (or, before logging started, of its stdout).
fn log_tail(node: &NodeSpec) -> String {
    [node.log(), node.stdout_log()]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .find(|t| !t.trim().is_empty())
        .map_or_else(|| "(the log is empty)".to_owned(), |t| fetch::tail(&t, 15))
}

/// Waits for the node's CQL READY, failing early when the process exits.
fn wait_cql(node: &NodeSpec, mut child: Option<&mut Child>, bound: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let exited = match child.as_deref_mut() {
            Some(c) => c.try_wait()?.map(|s| s.to_string()),
            None => node::running_pid(&node.dir)
                .is_none()
                .then(|| "an unknown status".to_owned()),
        };
        if let Some(status) = exited {
            bail!(
                "the {} node ({}) exited with {status} while starting; see {} and {}:\n{}",
                node.dc,
                node.address,
                node.log().display(),
                node.stdout_log().display(),
                log_tail(node)
            );
        }
        let err = match cql::startup(node.cql(), PROBE_TIMEOUT) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if started.elapsed() >= bound {
            bail!(
                "the {} node's CQL ({}) did not answer within {} s (last try: {err:#}); it is still running, see {}:\n{}",
                node.dc,
                node.cql(),
                bound.as_secs(),
                node.log().display(),
                log_tail(node)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What one node says of the topology: its own datacenter, and those of
/// its peers (sorted).
fn topology(node: &NodeSpec) -> Result<(Vec<String>, Vec<String>)> {
    let texts = |cql: &str| -> Result<Vec<String>> {
        let mut v: Vec<String> = cql::query_text(node.cql(), cql, PROBE_TIMEOUT)?
            .into_iter()
            .map(|dc| dc.unwrap_or_else(|| "null".to_owned()))
            .collect();
        v.sort();
        Ok(v)
    };
    Ok((
        texts("SELECT data_center FROM system.local")?,
        texts("SELECT data_center FROM system.peers")?,
    ))
}

/// Waits until every node names its own datacenter in `system.local` and
/// every other node's in `system.peers`.
fn wait_topology(nodes: &[NodeSpec], bound: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let mut pending = Vec::new();
        for node in nodes {
            let (local, peers) = match topology(node) {
                Ok(t) => t,
                Err(e) => {
                    pending.push(format!("{}: {e:#}", node.dc));
                    continue;
                }
            };
            if local != [node.dc.clone()] {
                bail!(
                    "the {} node ({}) says its datacenter is {local:?}; see {}",
                    node.dc,
                    node.address,
                    node.conf("cassandra-rackdc.properties").display()
                );
            }
            let mut others: Vec<String> = nodes
                .iter()
                .filter(|n| n.dc != node.dc)
                .map(|n| n.dc.clone())
                .collect();
            others.sort();
            if peers != others {
                pending.push(format!(
                    "{} sees peers in {peers:?}, not {others:?}",
                    node.dc
                ));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= bound {
            bail!(
                "the nodes did not see each other within {} s: {}",
                bound.as_secs(),
                pending.join("; ")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Fails when something already listens where the node must.
fn check_free(node: &NodeSpec) -> Result<()> {
    for addr in [node.cql(), node.storage()] {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok() {
            bail!(
                "{addr} is already taken (another Cassandra cluster, perhaps from another checkout? `cargo xtask cassandra status` there says); the {} node cannot start",
                node.dc
            );
        }
    }
    Ok(())
}

/// Starts the cluster, or returns it when it is already up (starting any
/// node of it that is not running). Prints each node's startup time and
/// resident memory.
pub fn up(root: &Path) -> Result<Cluster> {
    let started = Instant::now();
    let specs = node_specs(root)?;
    let Some(seed) = specs.first().map(|n| n.address) else {
        bail!("regions.toml has no region");
    };
    let dir = cluster_dir(root);
    let running: Vec<Option<u32>> = specs.iter().map(|n| node::running_pid(&n.dir)).collect();
    let already_up = running.iter().all(Option::is_some);
    let jars = if already_up {
        None
    } else {
        let missing = missing_tools();
        if !missing.is_empty() {
            let packages: Vec<&str> = missing.iter().map(|t| debian_package(t)).collect();
            bail!(
                "cannot start Cassandra: missing {} (on Debian: apt-get install {})",
                missing.join(", "),
                packages.join(" ")
            );
        }
        let heap = heap()?;
        let jars = fetch::ensure(VERSION)?;
        match jars.fetched_in {
            Some(t) => println!(
                "cassandra: fetched {} jars of Cassandra {VERSION} in {:.1} s into {}",
                jars.count,
                t.as_secs_f64(),
                jars.lib.display()
            ),
            None => println!(
                "cassandra: {} jars of Cassandra {VERSION} cached in {}",
                jars.count,
                jars.lib.display()
            ),
        }
        claim_dir(&dir)?;
        Some((jars, heap))
    };
    let mut nodes = Vec::new();
    for (spec, pid) in specs.iter().zip(running) {
        let (pid, started_in) = match (pid, &jars) {
            (Some(pid), _) => {
                wait_cql(spec, None, START_TIMEOUT)?;
                println!(
                    "cassandra: {} {} already running (pid {pid})",
                    spec.dc, spec.address
                );
                (pid, None)
            }
            (None, Some((jars, heap))) => {
                check_free(spec)?;
                write_node_files(spec, seed)?;
                let t = Instant::now();
                let args = config::jvm_args(spec, &jars.lib, &jars.jamm, heap);
                let mut child = node::spawn(&java(), spec, &args)?;
                println!(
                    "cassandra: {} {} starting (pid {}, log {})",
                    spec.dc,
                    spec.address,
                    child.id(),
                    spec.log().display()
                );
                wait_cql(spec, Some(&mut child), START_TIMEOUT)?;
                (child.id(), Some(t.elapsed()))
            }
            (None, None) => bail!("the {} node stopped while `up` ran", spec.dc),
        };
        let rss_kib = node::rss_kib(pid);
        if let Some(t) = started_in {
            println!(
                "cassandra: {} CQL ready at {} in {:.1} s, RSS {}",
                spec.dc,
                spec.cql(),
                t.as_secs_f64(),
                node::format_kib(rss_kib)
            );
        }
        nodes.push(Node {
            dc: spec.dc.clone(),
            cql: spec.cql(),
            jmx_port: spec.jmx_port,
            pid,
            started_in,
            rss_kib,
            log: spec.log(),
        });
    }
    wait_topology(&specs, TOPOLOGY_TIMEOUT)?;
    // RSS once every node is up (the first nodes grow while the others join).
    for n in &mut nodes {
        n.rss_kib = node::rss_kib(n.pid);
    }
    let cluster = Cluster {
        dir,
        nodes,
        already_up,
    };
    let env: String = cluster
        .env()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(cluster.dir.join("env"), env)?;
    print_summary(&cluster, started.elapsed());
    Ok(cluster)
}

fn print_summary(cluster: &Cluster, took: Duration) {
    if cluster.already_up {
        println!("cassandra: already up; every node sees every datacenter");
    } else {
        println!(
            "cassandra: up in {:.1} s; every node sees every datacenter; data and logs in {}",
            took.as_secs_f64(),
            cluster.dir.display()
        );
    }
    println!(
        "{:<6} {:<16} {:<6} {:<8} {:<9} {:<9} log",
        "dc", "cql", "jmx", "pid", "startup", "rss"
    );
    for n in &cluster.nodes {
        let startup = n.started_in.map_or_else(
            || "running".to_owned(),
            |t| format!("{:.1} s", t.as_secs_f64()),
        );
        println!(
            "{:<6} {:<16} {:<6} {:<8} {:<9} {:<9} {}",
            n.dc,
            n.cql.to_string(),
            n.jmx_port,
            n.pid,
            startup,
            node::format_kib(n.rss_kib),
            n.log.display()
        );
    }
}

/// The node directories under the cluster directory (those with a
/// `cassandra.yaml`), whatever `regions.toml` says now.
fn node_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| config::yaml_file(p).is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Stops every node of the cluster directory (SIGTERM, a bounded wait,
/// SIGKILL) and removes the directory. Succeeds when there is no cluster.
pub fn down(root: &Path) -> Result<()> {
    let dir = cluster_dir(root);
    if !dir.exists() {
        println!("cassandra: not up (no {})", dir.display());
        return Ok(());
    }
    if !dir.join(DIR_MARKER).is_file() {
        bail!(
            "{} has no {DIR_MARKER} marker: not a cluster directory of this command, refusing to remove it",
            dir.display()
        );
    }
    let started = Instant::now();
    for (node_dir, pid, how) in node::stop_all(&node_dirs(&dir)?, STOP_TIMEOUT)? {
        let name = node_dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        println!("cassandra: {name} (pid {pid}) {how}");
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    println!(
        "cassandra: down in {:.1} s; removed {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// One node as `status` found it.
#[derive(Debug)]
pub struct NodeStatus {
    pub dc: String,
    pub cql: SocketAddr,
    pub pid: Option<u32>,
    /// The CQL STARTUP handshake got READY.
    pub cql_ready: bool,
    pub rss_kib: Option<u64>,
}

/// Prints and returns each node of `regions.toml`: address, datacenter,
/// pid, alive, CQL answering, resident memory.
/// Flushes every running node's memtables to SSTables (Cassandra's own
/// `nodetool flush`, run from the cached jars over the node's local JMX
/// port), so that what each node stores is on disk in its data directory.
pub fn flush(root: &Path) -> Result<()> {
    let specs = node_specs(root)?;
    let jars = fetch::ensure(VERSION)?;
    let tool_dir = cluster_dir(root).join("nodetool");
    std::fs::create_dir_all(&tool_dir)?;
    let quiet = tool_dir.join("logback.xml");
    std::fs::write(&quiet, config::quiet_logback_xml())?;
    for spec in &specs {
        if node::running_pid(&spec.dir).is_none() {
            println!("cassandra: {} is not running; not flushed", spec.dc);
            continue;
        }
        let t = Instant::now();
        let out = Command::new(java())
            .args(config::nodetool_args(
                spec,
                &jars.lib,
                &tool_dir,
                &quiet,
                &["flush"],
            ))
            .output()
            .context("cannot run java for nodetool")?;
        if !out.status.success() {
            bail!(
                "nodetool flush on {} failed ({}): {}{}",
                spec.dc,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        println!(
            "cassandra: {} flushed in {:.1} s",
            spec.dc,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

pub fn status(root: &Path) -> Result<Vec<NodeStatus>> {
    let specs = node_specs(root)?;
    let dir = cluster_dir(root);
    let nodes: Vec<NodeStatus> = specs
        .iter()
        .map(|spec| {
            let pid = node::running_pid(&spec.dir);
            NodeStatus {
                dc: spec.dc.clone(),
                cql: spec.cql(),
                pid,
                cql_ready: cql::startup(spec.cql(), PROBE_TIMEOUT).is_ok(),
                rss_kib: pid.and_then(node::rss_kib),
            }
        })
        .collect();
    println!(
        "cassandra {VERSION} in {}{}",
        dir.display(),
        if dir.exists() {
            ""
        } else {
            " (absent: not up)"
        }
    );
    println!(
        "{:<6} {:<16} {:<8} {:<6} {:<6} rss",
        "dc", "cql", "pid", "alive", "cql"
    );
    for n in &nodes {
        println!(
            "{:<6} {:<16} {:<8} {:<6} {:<6} {}",
            n.dc,
            n.cql.to_string(),
            n.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            if n.pid.is_some() { "yes" } else { "no" },
            if n.cql_ready { "ready" } else { "no" },
            node::format_kib(n.rss_kib)
        );
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_versions() {
        for (output, major) in [
            (
                "openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime",
                Some(17),
            ),
            ("java version \"1.8.0_292\"\n", Some(8)),
            ("openjdk version \"21\" 2023-09-19\n", Some(21)),
            ("openjdk version \"11.0.2-ea\"\n", Some(11)),
            ("bash: java: command not found\n", None),
            ("", None),
        ] {
            assert_eq!(java_major(output), major, "for {output:?}");
        }
    }

    #[test]
    fn heap_sizes() {
        for (heap, ok) in [
            ("512m", true),
            ("1G", true),
            ("786432k", true),
            ("1024", true),
            ("m", false),
            ("512mm", false),
            ("5x2m", false),
            ("", false),
        ] {
            assert_eq!(valid_heap(heap), ok, "for {heap:?}");
        }
    }

    fn cluster(nodes: &[(&str, &str)]) -> Cluster {
        Cluster {
            dir: PathBuf::from("/c"),
            nodes: nodes
                .iter()
                .filter_map(|(dc, addr)| {
                    Some(Node {
                        dc: (*dc).to_owned(),
                        cql: addr.parse().ok()?,
                        jmx_port: 7199,
                        pid: 1,
                        started_in: None,
                        rss_kib: None,
                        log: PathBuf::from("/c/log"),
                    })
                })
                .collect(),
            already_up: true,
        }
    }

    #[test]
    fn contact_points() {
        let c = cluster(&[
            ("eu", "127.0.0.1:9042"),
            ("us", "127.0.0.2:9042"),
            ("ap", "127.0.0.3:9042"),
        ]);
        let env = c.env();
        assert_eq!(
            env[..3],
            [
                (
                    "DOMICILE_CQL_NODES",
                    "127.0.0.1:9042,127.0.0.2:9042,127.0.0.3:9042".to_owned()
                ),
                ("DOMICILE_CQL_DCS", "eu,us,ap".to_owned()),
                ("DOMICILE_CQL_DIR", c.dir.display().to_string()),
            ]
        );
        assert!(
            env[3..]
                .iter()
                .all(|(k, v)| *k == "DOMICILE_CQL_XTASK" && v.contains("xtask")),
            "{env:?}"
        );
    }

    #[test]
    fn a_foreign_directory_is_refused() -> Result<()> {
        let base = std::env::temp_dir().join(format!("xtask-cassandra-{}", std::process::id()));
        let foreign = base.join("foreign");
        std::fs::create_dir_all(&foreign)?;
        std::fs::write(foreign.join("precious"), "keep me")?;
        let refused = claim_dir(&foreign).is_err();
        let fresh = base.join("fresh");
        let claimed = claim_dir(&fresh).is_ok() && claim_dir(&fresh).is_ok();
        let marked = fresh.join(DIR_MARKER).is_file();
        std::fs::remove_dir_all(&base)?;
        assert!(
            refused,
            "a non-empty directory without the marker was claimed"
        );
        assert!(claimed && marked);
        Ok(())
    }
}
