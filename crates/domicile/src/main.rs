//! The `domicile` command: runs a regional identity node or the edge router,
//! validates `regions.toml`, and builds GeoIP databases from readable sources.

mod admin;
mod client;
mod compliance;
mod residency;
mod up;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use domicile_core::{RegionCode, topology::Topology};
use domicile_node::{Node, NodeOptions, OsEntropy, SystemClock};
use std::{net::SocketAddr, path::PathBuf, sync::Arc};

#[derive(Parser)]
#[command(
    name = "domicile",
    version,
    about = "Geo-federated customer identity: every user's data in its home region."
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Trace export (off unless an endpoint is given).
#[derive(clap::Args)]
struct Otlp {
    /// OTLP/gRPC collector for traces, e.g. http://127.0.0.1:4317.
    /// Default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, then $OTEL_EXPORTER_OTLP_ENDPOINT; unset = no export.
    #[arg(long)]
    otlp_endpoint: Option<String>,
}

impl Otlp {
    fn endpoint(&self) -> Option<String> {
        self.otlp_endpoint
            .clone()
            .or_else(domicile_telemetry::endpoint_from_env)
    }
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Create (idempotently) every Scylla keyspace and table the topology needs, printing each statement.
    Apply {
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
        /// Print the statements without connecting.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a region's next signing key: published now, signing after --activate-in.
    Rotate {
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
        /// The region whose key rotates.
        #[arg(long)]
        region: String,
        /// Seconds until the new key signs (keep above every JWKS cache lifetime).
        #[arg(long, default_value_t = 600)]
        activate_in: u32,
        /// A node of the region to ask (its internal address); default the first configured.
        #[arg(long)]
        node_addr: Option<SocketAddr>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Make an operator's key: the private key goes to --out (keep it
    /// secret; point DOMICILE_ADMIN_KEY at it), the public key is printed
    /// for [[admin.operators]] in regions.toml.
    NewKey {
        /// The operator's name (1 to 64 of a-z 0-9 - _ .).
        #[arg(long)]
        name: String,
        /// Where to write the private key (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print an admin token (two minutes) for another tool, e.g.
    /// grpcurl -H "authorization: Bearer $(domicile admin token --role support)".
    Token {
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
        /// compliance, operator or support.
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
enum ResidencyCommand {
    /// Users per region, the index, and checks that nothing lives where it should not.
    Report(residency::ReportArgs),
    /// Check a saved residency proof's signatures (against a saved JWKS)
    /// and findings; exits non-zero on any.
    VerifyProof(residency::VerifyArgs),
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole federation of a regions.toml on this machine: a node
    /// per region and the edge, until Ctrl-C.
    Up {
        /// The federation's regions.toml.
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
        /// Keep the embedded stores and the index secret under this
        /// directory instead of where regions.toml says.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Run the identity node of one region.
    Node {
        /// Region this node serves (e.g. eu).
        #[arg(long)]
        region: String,
        /// The federation's regions.toml.
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
        /// Keep the embedded stores and the index secret under this directory.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Which of the region's nodes this is (its `name`); default the first.
        #[arg(long)]
        node: Option<String>,
        /// Listen here instead of the configured address (e.g. 127.0.0.1:0).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// On SIGTERM, stay up this long reporting not-ready (so the edge
        /// moves traffic away) before finishing in-flight calls and exiting.
        /// Default: twice the edge's health-check interval, plus one second.
        #[arg(long)]
        drain_seconds: Option<u64>,
        #[command(flatten)]
        otlp: Otlp,
    },
    /// Run the edge router: the federation's one public address.
    Edge {
        /// The federation's regions.toml.
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
        /// Where the federation's local state is (`domicile up --data`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Listen here instead of `edge.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve metrics here instead of `edge.admin_listen`.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// On SIGTERM, how long in-flight requests may take to finish.
        #[arg(long, default_value_t = 10)]
        drain_seconds: u64,
        #[command(flatten)]
        otlp: Otlp,
    },
    /// Talk to the edge as an app would: register, login, refresh, whoami, logout.
    Client(client::ClientArgs),
    /// Compliance: where personal data lives.
    #[command(subcommand)]
    Residency(ResidencyCommand),
    /// Compliance operations on one user: export, erase, pin, move, receipts.
    #[command(subcommand)]
    Compliance(compliance::ComplianceCommand),
    /// Database schema (ScyllaDB).
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Admin authentication: operator keys.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Make a secret for a confidential OpenID Connect client and the
    /// `secret_sha256` that registers it (only the hash goes in regions.toml).
    OidcSecret,
    /// Validate regions.toml and print the federation it describes.
    CheckConfig {
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
    },
    /// Build a MaxMind-format country database from `CIDR COUNTRY` lines.
    GeoipBuild {
        /// The readable source.
        #[arg(long)]
        source: PathBuf,
        /// Where to write the .mmdb file.
        #[arg(long)]
        out: PathBuf,
        /// Write `country_code` records instead of GeoIP2's `country.iso_code`.
        #[arg(long)]
        country_code_schema: bool,
    },
}

fn load(config: &PathBuf) -> anyhow::Result<Topology> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let t = Topology::parse(config, &text)?;
    // The store's own settings (CQL names) are the store's to validate.
    domicile_store::scylla::validate(&t)?;
    Ok(t)
}

/// The topology, with its local state moved under `data` when given.
fn load_with(config: &PathBuf, data: Option<&std::path::Path>) -> anyhow::Result<Topology> {
    let t = load(config)?;
    Ok(match data {
        Some(dir) => t.with_data_dir(dir),
        None => t,
    })
}

/// Logs (and, for the servers, traces) for this process.
fn init_telemetry(
    format: LogFormat,
    service: &str,
    region: Option<&str>,
    otlp_endpoint: Option<String>,
) -> anyhow::Result<domicile_telemetry::Telemetry> {
    let log_format = match format {
        LogFormat::Text => domicile_telemetry::LogFormat::Text,
        LogFormat::Json => domicile_telemetry::LogFormat::Json,
    };
    let resource = region
        .map(|r| vec![("domicile.region".to_owned(), r.to_owned())])
        .unwrap_or_default();
    Ok(domicile_telemetry::init(
        domicile_telemetry::TelemetryConfig {
            service: service.to_owned(),
            resource,
            log_format,
            otlp_endpoint,
        },
    )?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = match &cli.command {
        Command::Node { region, otlp, .. } => init_telemetry(
            cli.log_format,
            "domicile-node",
            Some(region),
            otlp.endpoint(),
        )?,
        Command::Edge { otlp, .. } => {
            init_telemetry(cli.log_format, "domicile-edge", None, otlp.endpoint())?
        }
        _ => init_telemetry(cli.log_format, "domicile", None, None)?,
    };
    if telemetry.exporting() {
        tracing::info!("exporting traces over OTLP/gRPC");
    }
    let result = run(cli.command).await;
    telemetry.shutdown().await;
    result
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up { config, data } => {
            let topology = load_with(&config, data.as_deref())?;
            up::run(up::Up { config, data }, &topology).await
        }
        Command::CheckConfig { config } => {
            let t = load(&config)?;
            println!(
                "{}: federation {:?}, issuer {}, default region {}",
                config.display(),
                t.federation.name,
                t.federation.issuer,
                t.federation.default_region
            );
            for r in t.regions.values() {
                let nodes: Vec<String> = r
                    .nodes
                    .iter()
                    .map(|n| format!("{}={} (weight {})", n.name, n.address, n.weight))
                    .collect();
                println!(
                    "  {} [{}]: {} countries, domains {:?}, nodes {}",
                    r.code,
                    r.residency,
                    r.countries.len(),
                    r.email_domains,
                    nodes.join(", ")
                );
            }
            for c in t.clients.iter() {
                println!(
                    "  client {} ({}): {}, redirect URIs {:?}, scopes {:?}",
                    c.id,
                    c.name,
                    if c.is_public() {
                        "public"
                    } else {
                        "confidential"
                    },
                    c.redirect_uris,
                    c.scopes
                );
            }
            Ok(())
        }
        Command::OidcSecret => {
            use base64::Engine as _;
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                domicile_identity::env::random::<32>(&domicile_node::OsEntropy),
            );
            println!("client secret (give it to the app, keep it out of regions.toml):");
            println!("  {secret}");
            println!("register it with:");
            println!(
                "  secret_sha256 = \"{}\"",
                domicile_core::clients::secret_sha256_hex(&secret)
            );
            Ok(())
        }
        Command::Client(args) => client::run(args).await,
        Command::Admin(AdminCommand::Token { config, role }) => {
            let t = load(&config)?;
            let role = domicile_core::admin::Role::parse(&role).with_context(|| {
                format!("unknown role {role:?}: compliance, operator or support")
            })?;
            println!("{}", admin::token(&t, role)?);
            Ok(())
        }
        Command::Admin(AdminCommand::NewKey { name, out }) => {
            let public = admin::new_key(&name, &out)?;
            println!("private key written to {} (keep it secret)", out.display());
            println!("list the operator in regions.toml:");
            println!(
                "  [[admin.operators]]\n  name = \"{name}\"\n  public_key = \"{public}\"\n  roles = [\"compliance\"]"
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate {
            config,
            region,
            activate_in,
            node_addr,
        }) => {
            let t = load(&config)?;
            let code = RegionCode::parse(&region)?;
            let Some(r) = t.region(&code) else {
                bail!("{}: regions.{region}: no such region", config.display());
            };
            let addr = match node_addr {
                Some(a) => a,
                None => r.nodes.first().context("region has no nodes")?.address,
            };
            let mut admin =
                domicile_proto::v1::admin_client::AdminClient::connect(format!("http://{addr}"))
                    .await
                    .with_context(|| format!("cannot reach node {addr}"))?;
            let req = admin::request(
                &t,
                domicile_core::admin::Role::Operator,
                domicile_proto::v1::RotateSigningKeyRequest {
                    activate_in_seconds: activate_in,
                },
            )?;
            let done = admin
                .rotate_signing_key(req)
                .await
                .map_err(|s| anyhow::anyhow!("{}: {}", addr, s.message()))?
                .into_inner();
            println!(
                "region {}: {} published now, signs from {} (unix); {} signs until then",
                done.region, done.kid, done.activates_at, done.previous_kid
            );
            Ok(())
        }
        Command::Schema(SchemaCommand::Apply { config, dry_run }) => {
            let t = load(&config)?;
            if dry_run {
                for (what, cfg, statements) in domicile_store::scylla::schema::plan(&t) {
                    println!(
                        "-- {what}: keyspace {} (datacenter {})",
                        cfg.keyspace, cfg.datacenter
                    );
                    for st in statements {
                        println!("{st};");
                    }
                }
                return Ok(());
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            domicile_store::scylla::schema::apply(&t, now, &mut |line| println!("{line}")).await?;
            Ok(())
        }
        Command::Compliance(cmd) => {
            if compliance::run(cmd).await? {
                Ok(())
            } else {
                bail!("the receipt does not verify")
            }
        }
        Command::Residency(ResidencyCommand::VerifyProof(args)) => {
            if residency::verify(args)? {
                Ok(())
            } else {
                bail!("the residency proof does not verify, or has findings")
            }
        }
        Command::Residency(ResidencyCommand::Report(args)) => {
            if residency::run(args).await? {
                Ok(())
            } else {
                bail!("residency checks failed")
            }
        }
        Command::GeoipBuild {
            source,
            out,
            country_code_schema,
        } => {
            let text = std::fs::read_to_string(&source)
                .with_context(|| format!("cannot read {}", source.display()))?;
            let schema = if country_code_schema {
                domicile_edge::Schema::CountryCode
            } else {
                domicile_edge::Schema::GeoIp2
            };
            let epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let bytes = domicile_edge::geoip::build_database(&text, schema, epoch)
                .with_context(|| source.display().to_string())?;
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {} ({} bytes)", out.display(), bytes.len());
            Ok(())
        }
        Command::Edge {
            config,
            data,
            listen,
            admin_listen,
            drain_seconds,
            otlp: _,
        } => {
            // Before anything listens: a SIGHUP must never find the default
            // action (exit) in place.
            let mut hangups = hangups()?;
            let topology = Arc::new(load_with(&config, data.as_deref())?);
            let secret = domicile_node::load_or_create_secret(
                &topology.index.secret_file,
                topology.index.create_secret,
                &OsEntropy,
            )?;
            let geoip = match &topology.federation.geoip_database {
                Some(path) => Some(domicile_edge::GeoIp::open(path)?),
                None => None,
            };
            let addr = listen.unwrap_or(topology.edge.listen);
            let admin = admin_listen.unwrap_or(topology.edge.admin_listen);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let admin_listener = tokio::net::TcpListener::bind(admin)
                .await
                .with_context(|| format!("cannot listen on {admin}"))?;
            let opts = domicile_edge::EdgeOptions {
                topology,
                secret,
                geoip,
            };
            let edge = domicile_edge::Edge::start(opts, listener, admin_listener).await?;
            println!(
                "domicile edge listening on {} (metrics on http://{}/metrics)",
                edge.addr, edge.admin_addr
            );
            // SIGHUP re-reads the file; SIGTERM (or Ctrl-C) drains and exits.
            let stop = shutdown_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = hangups.recv() => {
                        // Logged and counted either way; a refused file changes nothing.
                        let _ = edge.reload_from(&config).await;
                    }
                }
            }
            tracing::info!("shutting down: no new connections, finishing in-flight requests");
            edge.drain(std::time::Duration::from_secs(drain_seconds))
                .await;
            Ok(())
        }
        Command::Node {
            region,
            config,
            data,
            node,
            listen,
            drain_seconds,
            otlp: _,
        } => {
            // A stray SIGHUP (e.g. `systemctl reload` on every unit) must not
            // kill a node without a drain.
            let mut hangups = hangups()?;
            let topology = Arc::new(load_with(&config, data.as_deref())?);
            let drain = drain_seconds.map_or(
                topology.edge.health_check_interval * 2 + std::time::Duration::from_secs(1),
                std::time::Duration::from_secs,
            );
            let region = RegionCode::parse(&region)?;
            let Some(r) = topology.region(&region) else {
                bail!("{}: regions.{region}: no such region", config.display());
            };
            let endpoint = match &node {
                Some(name) => r.nodes.iter().find(|n| &n.name == name).with_context(|| {
                    format!(
                        "{}: regions.{region}.nodes: no node named {name:?}",
                        config.display()
                    )
                })?,
                None => r.nodes.first().context("region has no nodes")?,
            };
            let addr = listen.unwrap_or(endpoint.address);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let opts = NodeOptions {
                topology,
                region,
                clock: Arc::new(SystemClock),
                entropy: Arc::new(OsEntropy),
            };
            let mut running = Node::start(opts, listener).await?;
            println!(
                "domicile node {} listening on {}",
                running.region, running.addr
            );
            let stop = shutdown_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    r = running.failed() => return Ok(r?),
                    _ = &mut stop => break,
                    _ = hangups.recv() => {
                        tracing::warn!("SIGHUP ignored: a node reads regions.toml at start; restart it (SIGTERM drains) to apply changes");
                    }
                }
            }
            running.drain(drain).await?;
            Ok(())
        }
    }
}

/// SIGHUPs from now on (replacing the default action, which exits).
fn hangups() -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
