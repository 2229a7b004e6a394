//! The `domicile` command: runs a regional identity node or the edge router,
//! validates `regions.toml`, and builds GeoIP databases from readable sources.

mod client;
mod residency;

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
enum ResidencyCommand {
    /// Users per region, the index, and checks that nothing lives where it should not.
    Report(residency::ReportArgs),
}

#[derive(Subcommand)]
enum Command {
    /// Run the identity node of one region.
    Node {
        /// Region this node serves (e.g. eu).
        #[arg(long)]
        region: String,
        /// The federation's regions.toml.
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
        /// Which of the region's nodes this is (its `name`); default the first.
        #[arg(long)]
        node: Option<String>,
        /// Listen here instead of the configured address (e.g. 127.0.0.1:0).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run the edge router: the federation's one public address.
    Edge {
        /// The federation's regions.toml.
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
        /// Listen here instead of `edge.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve metrics here instead of `edge.admin_listen`.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
    },
    /// Talk to the edge as an app would: register, login, refresh, whoami, logout.
    Client(client::ClientArgs),
    /// Compliance: where personal data lives.
    #[command(subcommand)]
    Residency(ResidencyCommand),
    /// Database schema (ScyllaDB).
    #[command(subcommand)]
    Schema(SchemaCommand),
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
    Ok(Topology::parse(config, &text)?)
}

fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match cli.command {
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
            Ok(())
        }
        Command::Client(args) => client::run(args).await,
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
            listen,
            admin_listen,
        } => {
            let topology = Arc::new(load(&config)?);
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
            shutdown_signal().await;
            tracing::info!("shutting down");
            edge.shutdown().await;
            Ok(())
        }
        Command::Node {
            region,
            config,
            node,
            listen,
        } => {
            let topology = Arc::new(load(&config)?);
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
            let running = Node::start(opts, listener).await?;
            println!(
                "domicile node {} listening on {}",
                running.region, running.addr
            );
            let (stop, task) = running.into_parts();
            tokio::pin!(task);
            tokio::select! {
                r = &mut task => { r??; }
                _ = shutdown_signal() => {
                    tracing::info!("shutting down: finishing in-flight calls");
                    let _ = stop.send(());
                    (&mut task).await??;
                }
            }
            Ok(())
        }
    }
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
