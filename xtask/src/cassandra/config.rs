//! What each node is given, as pure functions of its place in the cluster
//! and its directory: the node's addresses and ports, its `cassandra.yaml`,
//! `cassandra-rackdc.properties` and `logback.xml`, the Maven pom that
//! fetches the jars, and the `java` command line. Written here (in the
//! spirit of Cassandra's `test/conf/cassandra.yaml`), not copied.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
};

/// The Cassandra release the cluster runs (the newest 5.0.x on Maven
/// Central when this was written; 5.0 is the first line on JDK 17).
pub const VERSION: &str = "5.0.9";
/// The Maven plugin that copies the jars (pinned: Maven 3.8's default is 2.8).
pub const DEPENDENCY_PLUGIN: &str = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1";
pub const MAIN_CLASS: &str = "org.apache.cassandra.service.CassandraDaemon";
pub const CQL_PORT: u16 = 9042;
pub const STORAGE_PORT: u16 = 7000;
/// The first node's JMX port; node `i` has `JMX_BASE + 100 * i` (7199,
/// 7299, 7399: clear of the federation's 7101/7201/7301 in `regions.toml`).
pub const JMX_BASE: u16 = 7199;
pub const CLUSTER_NAME: &str = "domicile-local";
/// Default heap (`-Xms` = `-Xmx`): three nodes on 2 cores and 24 GiB.
pub const DEFAULT_HEAP: &str = "512m";

/// One node: the datacenter (a region of `regions.toml`) and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub dc: String,
    pub address: Ipv4Addr,
    pub jmx_port: u16,
    /// Everything of this node: conf/, data/, logs/, the pid file.
    pub dir: PathBuf,
}

/// A node directory's layout: `conf/`, `logs/`, `data/`, … and `pid`.
pub fn conf_file(node_dir: &Path, file: &str) -> PathBuf {
    node_dir.join("conf").join(file)
}

pub fn yaml_file(node_dir: &Path) -> PathBuf {
    conf_file(node_dir, "cassandra.yaml")
}

pub fn pid_file(node_dir: &Path) -> PathBuf {
    node_dir.join("pid")
}

impl NodeSpec {
    pub fn cql(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.address, CQL_PORT))
    }
    pub fn storage(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.address, STORAGE_PORT))
    }
    pub fn conf(&self, file: &str) -> PathBuf {
        conf_file(&self.dir, file)
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("logs").join("system.log")
    }
    pub fn stdout_log(&self) -> PathBuf {
        self.dir.join("logs").join("stdout.log")
    }
}

/// The nodes, one per region in order: 127.0.0.1 (the seed), .2, .3, …
pub fn node_specs(regions: &[String], cluster_dir: &Path) -> Vec<NodeSpec> {
    regions
        .iter()
        .zip(1u8..=254)
        .zip((JMX_BASE..).step_by(100))
        .map(|((dc, host), jmx_port)| NodeSpec {
            dc: dc.clone(),
            address: Ipv4Addr::new(127, 0, 0, host),
            jmx_port,
            dir: cluster_dir.join(dc),
        })
        .collect()
}

/// A double-quoted YAML scalar.
fn yaml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn yaml_path(p: &Path) -> String {
    yaml_str(&p.to_string_lossy())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `file:///…` for an absolute path, percent-encoding what a URL path may
/// not hold.
pub fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// A small single-node-per-DC test configuration: few tokens, small
/// memtables and caches, no snapshots on drop/truncate (tests drop a lot),
/// no bootstrap streaming (the cluster is new and empty).
pub fn cassandra_yaml(node: &NodeSpec, seed: Ipv4Addr) -> String {
    let d = &node.dir;
    let addr = node.address;
    format!(
        r#"# Written by `cargo xtask cassandra up`: node {addr}, datacenter {dc}.
cluster_name: {cluster}
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: GossipingPropertyFileSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{seed}:{storage}"
listen_address: {addr}
rpc_address: {addr}
storage_port: {storage}
native_transport_port: {cql}
start_native_transport: true
auto_bootstrap: false
data_file_directories:
  - {data}
commitlog_directory: {commitlog}
hints_directory: {hints}
saved_caches_directory: {caches}
cdc_raw_directory: {cdc}
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
commitlog_total_space: 256MiB
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
key_cache_size: 16MiB
counter_cache_size: 0MiB
file_cache_size: 64MiB
concurrent_compactors: 1
auto_snapshot: false
incremental_backups: false
snapshot_before_compaction: false
hinted_handoff_enabled: true
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
read_request_timeout: 10000ms
write_request_timeout: 5000ms
cas_contention_timeout: 5000ms
"#,
        dc = node.dc,
        cluster = CLUSTER_NAME,
        storage = STORAGE_PORT,
        cql = CQL_PORT,
        data = yaml_path(&d.join("data")),
        commitlog = yaml_path(&d.join("commitlog")),
        hints = yaml_path(&d.join("hints")),
        caches = yaml_path(&d.join("saved_caches")),
        cdc = yaml_path(&d.join("cdc_raw")),
    )
}

/// GossipingPropertyFileSnitch's datacenter and rack for the node.
pub fn rackdc_properties(node: &NodeSpec) -> String {
    format!(
        "# Written by `cargo xtask cassandra up`.\ndc={}\nrack=rack1\nprefer_local=true\n",
        node.dc
    )
}

/// INFO and above to `logs/system.log`, nothing to the console.
pub fn logback_xml(node: &NodeSpec) -> String {
    format!(
        r#"<configuration scan="false">
  <!-- Written by `cargo xtask cassandra up`. -->
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{log}</file>
    <encoder>
      <pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="FILE"/>
  </root>
</configuration>
"#,
        log = xml_escape(&node.log().to_string_lossy())
    )
}

/// A pom whose only dependency is `cassandra-all`: `copy-dependencies`
/// on it brings the jar and its runtime dependencies.
pub fn pom_xml(version: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by `cargo xtask cassandra up` to fetch Cassandra's jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.domicile</groupId>
  <artifactId>cassandra-jars</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"#
    )
}

/// The JDK 17 flags of Cassandra's `conf/jvm17-server.options`: G1, the
/// JPMS exports and opens its internals need, and Netty's settings.
pub const JVM17_SERVER_OPTIONS: &[&str] = &[
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m",
    "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
];

/// Everything after `java` for `nodetool <command…>` against `node`'s
/// local JMX port: the JPMS flags of the JDK 17 options (the tool loads
/// Cassandra's classes), a small heap, its history under `home`, logging
/// at WARN, the classpath and `NodeTool`.
pub fn nodetool_args(
    node: &NodeSpec,
    lib: &Path,
    home: &Path,
    logback: &Path,
    command: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = JVM17_SERVER_OPTIONS
        .iter()
        .filter(|o| o.starts_with("--add-"))
        .map(|s| (*s).to_owned())
        .collect();
    args.extend([
        "-Xmx128m".to_owned(),
        format!("-Duser.home={}", home.display()),
        format!("-Dcassandra.logdir={}", home.display()),
        format!("-Dlogback.configurationFile={}", logback.display()),
        "-cp".to_owned(),
        format!("{}/*", lib.display()),
        "org.apache.cassandra.tools.NodeTool".to_owned(),
        "-h".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        node.jmx_port.to_string(),
    ]);
    args.extend(command.iter().map(|c| (*c).to_owned()));
    args
}

/// A logback configuration that prints only warnings, to stderr.
pub fn quiet_logback_xml() -> &'static str {
    r#"<configuration>
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%-5level %logger{36} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDERR"/></root>
</configuration>
"#
}

/// Everything after `java`: Cassandra's JDK 17 flags, a bounded heap, the
/// jamm agent, the node's files, fast single-box gossip, the classpath and
/// the main class.
pub fn jvm_args(node: &NodeSpec, lib: &Path, jamm: &Path, heap: &str) -> Vec<String> {
    let mut args: Vec<String> = JVM17_SERVER_OPTIONS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let d = &node.dir;
    args.extend([
        format!("-Xms{heap}"),
        format!("-Xmx{heap}"),
        "-Xss256k".to_owned(),
        // Cassandra's startup check asks for a JVM that stops on OOM.
        "-XX:+ExitOnOutOfMemoryError".to_owned(),
        "-XX:+PerfDisableSharedMem".to_owned(),
        "-Djava.net.preferIPv4Stack=true".to_owned(),
        format!("-javaagent:{}", jamm.display()),
        format!("-Dcassandra.jmx.local.port={}", node.jmx_port),
        format!("-Dcassandra.config={}", file_url(&yaml_file(d))),
        // Cassandra 5.0's property is the file's name, with a dash
        // (CassandraRelevantProperties.CASSANDRA_RACKDC_PROPERTIES).
        format!(
            "-Dcassandra-rackdc.properties={}",
            file_url(&node.conf("cassandra-rackdc.properties"))
        ),
        format!(
            "-Dlogback.configurationFile={}",
            node.conf("logback.xml").display()
        ),
        "-Dcassandra-foreground=yes".to_owned(),
        format!("-Dcassandra.storagedir={}", d.display()),
        format!("-Dcassandra.logdir={}", d.join("logs").display()),
        format!("-Dcassandra.triggers_dir={}", d.join("triggers").display()),
        "-Dcassandra.skip_wait_for_gossip_to_settle=0".to_owned(),
        "-Dcassandra.ring_delay_ms=5000".to_owned(),
        "-cp".to_owned(),
        format!("{}/*", lib.display()),
        MAIN_CLASS.to_owned(),
    ]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    /// `dc address jmx dir` per node.
    fn check_specs(names: &[&str], expected: &[&str]) {
        let got: Vec<String> = node_specs(&regions(names), Path::new("/c"))
            .iter()
            .map(|n| format!("{} {} {} {}", n.dc, n.address, n.jmx_port, n.dir.display()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn one_node_per_region_in_order() {
        check_specs(
            &["eu", "us", "ap"],
            &[
                "eu 127.0.0.1 7199 /c/eu",
                "us 127.0.0.2 7299 /c/us",
                "ap 127.0.0.3 7399 /c/ap",
            ],
        );
        check_specs(&["x"], &["x 127.0.0.1 7199 /c/x"]);
        check_specs(&[], &[]);
    }

    fn check_url(path: &str, expected: &str) {
        assert_eq!(file_url(Path::new(path)), expected);
    }

    #[test]
    fn file_urls_are_encoded() {
        check_url("/a/b.yaml", "file:///a/b.yaml");
        check_url("/my dir/c#1/x.yaml", "file:///my%20dir/c%231/x.yaml");
        check_url("/é", "file:///%C3%A9");
    }

    fn node(dc: &str, host: u8, dir: &str) -> NodeSpec {
        NodeSpec {
            dc: dc.to_owned(),
            address: Ipv4Addr::new(127, 0, 0, host),
            jmx_port: JMX_BASE,
            dir: PathBuf::from(dir),
        }
    }

    /// Each `key: value` line that the yaml must hold.
    fn check_yaml(node: &NodeSpec, expected: &[&str]) {
        let yaml = cassandra_yaml(node, Ipv4Addr::new(127, 0, 0, 1));
        let lines: Vec<&str> = yaml.lines().collect();
        for line in expected {
            assert!(lines.contains(line), "{line:?} missing from\n{yaml}");
        }
    }

    #[test]
    fn yaml_places_the_node() {
        check_yaml(
            &node("us", 2, "/c/us"),
            &[
                "listen_address: 127.0.0.2",
                "rpc_address: 127.0.0.2",
                "      - seeds: \"127.0.0.1:7000\"",
                "storage_port: 7000",
                "native_transport_port: 9042",
                "endpoint_snitch: GossipingPropertyFileSnitch",
                "  - \"/c/us/data\"",
                "commitlog_directory: \"/c/us/commitlog\"",
                "hints_directory: \"/c/us/hints\"",
            ],
        );
        check_yaml(
            &node("eu", 1, "/a \"q\"\\b"),
            &["commitlog_directory: \"/a \\\"q\\\"\\\\b/commitlog\""],
        );
    }

    #[test]
    fn yaml_keys_are_unique() {
        let yaml = cassandra_yaml(&node("eu", 1, "/c/eu"), Ipv4Addr::new(127, 0, 0, 1));
        let mut keys: Vec<&str> = yaml
            .lines()
            .filter(|l| !l.starts_with([' ', '#', '-']))
            .filter_map(|l| l.split(':').next())
            .collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key appears twice in\n{yaml}");
    }

    #[test]
    fn rackdc_and_logback() {
        assert_eq!(
            rackdc_properties(&node("ap", 3, "/c/ap")),
            "# Written by `cargo xtask cassandra up`.\ndc=ap\nrack=rack1\nprefer_local=true\n"
        );
        let xml = logback_xml(&node("eu", 1, "/c/<&>"));
        assert!(
            xml.contains("<file>/c/&lt;&amp;&gt;/logs/system.log</file>"),
            "{xml}"
        );
        assert!(xml.contains("%date{ISO8601}"), "{xml}");
    }

    #[test]
    fn pom_names_the_version() {
        let pom = pom_xml("5.0.9");
        assert!(
            pom.contains("<artifactId>cassandra-all</artifactId>\n      <version>5.0.9</version>")
        );
    }

    /// The argument that starts with `prefix`, for each prefix.
    fn check_args(args: &[String], expected: &[&str]) {
        for want in expected {
            assert!(
                args.iter().any(|a| a == want),
                "{want:?} missing from {args:?}"
            );
        }
    }

    #[test]
    fn nodetool_command_line() {
        let mut n = node("us", 2, "/c/us");
        n.jmx_port = 7299;
        let args = nodetool_args(
            &n,
            Path::new("/lib"),
            Path::new("/c/nodetool"),
            Path::new("/c/nodetool/logback.xml"),
            &["flush"],
        );
        check_args(
            &args,
            &[
                "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
                "-Duser.home=/c/nodetool",
                "-Dlogback.configurationFile=/c/nodetool/logback.xml",
                "/lib/*",
                "org.apache.cassandra.tools.NodeTool",
            ],
        );
        assert_eq!(
            args[args.len() - 5..],
            ["-h", "127.0.0.1", "-p", "7299", "flush"],
            "{args:?}"
        );
        assert!(
            !args.iter().any(|a| a.starts_with("-XX:")),
            "a client, not the server's GC settings: {args:?}"
        );
    }

    #[test]
    fn java_command_line() {
        let n = node("us", 2, "/c/us");
        let args = jvm_args(
            &n,
            Path::new("/lib"),
            Path::new("/lib/jamm-0.4.0.jar"),
            "512m",
        );
        check_args(
            &args,
            &[
                "-Xms512m",
                "-Xmx512m",
                "-javaagent:/lib/jamm-0.4.0.jar",
                "-Djdk.attach.allowAttachSelf=true",
                "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
                "--add-opens=java.base/java.lang=ALL-UNNAMED",
                "-Dcassandra.jmx.local.port=7199",
                "-Dcassandra.config=file:///c/us/conf/cassandra.yaml",
                "-Dcassandra-rackdc.properties=file:///c/us/conf/cassandra-rackdc.properties",
                "-Dlogback.configurationFile=/c/us/conf/logback.xml",
                "-Dcassandra-foreground=yes",
                "-Dcassandra.storagedir=/c/us",
                "-Dcassandra.skip_wait_for_gossip_to_settle=0",
                "-Dcassandra.ring_delay_ms=5000",
            ],
        );
        // The classpath and the main class close the line.
        assert_eq!(
            args[args.len() - 3..],
            ["-cp".to_owned(), "/lib/*".to_owned(), MAIN_CLASS.to_owned()]
        );
    }
}
