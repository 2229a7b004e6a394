//! `domicile up`: the whole federation of a `regions.toml` on this machine,
//! from the shipped binary alone. It starts one node per region (the index
//! host first) and then the edge, each as a child process of this binary,
//! prints where to connect, and on Ctrl-C or SIGTERM stops them all (nodes
//! without a drain period: the edge stops at the same moment, so there is
//! no traffic to move away) and waits for them. A child that dies stops
//! the rest. It does not build anything (`cargo xtask up` builds, then
//! calls this).

use anyhow::{Context, Result, bail};
use domicile_core::topology::Topology;
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::process::{Child, Command};

/// Pause between starting two nodes, so the index host is listening
/// before the others' first lookups.
const STAGGER: Duration = Duration::from_millis(300);

/// What `up` was asked for.
pub struct Up {
    pub config: PathBuf,
    pub data: Option<PathBuf>,
}

/// Region codes, the index host first.
pub fn start_order(topology: &Topology) -> Vec<String> {
    let host = topology.index.host_region.to_string();
    let mut regions: Vec<String> = topology.regions.keys().map(ToString::to_string).collect();
    regions.sort_by_key(|r| *r != host);
    regions
}

fn child(exe: &Path, args: &[&str], up: &Up) -> Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .arg("--config")
        .arg(&up.config)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(dir) = &up.data {
        cmd.arg("--data").arg(dir);
    }
    cmd.spawn()
        .with_context(|| format!("cannot start `domicile {}`", args.join(" ")))
}

/// Asks a child to stop (SIGTERM: nodes and the edge finish in-flight work).
fn terminate(name: &str, c: &Child) {
    let Some(pid) = c.id() else { return };
    let Ok(pid) = i32::try_from(pid) else { return };
    if let Err(e) = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    ) {
        eprintln!("domicile up: cannot stop {name}: {e}");
    }
}

/// Runs the federation until Ctrl-C, SIGTERM or a child's exit.
pub async fn run(up: Up, topology: &Topology) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let regions = start_order(topology);
    let mut children: Vec<(String, Child)> = Vec::new();
    for region in &regions {
        let c = child(
            &exe,
            &["node", "--region", region, "--drain-seconds", "0"],
            &up,
        )?;
        children.push((format!("node {region}"), c));
        tokio::time::sleep(STAGGER).await;
    }
    children.push(("edge".into(), child(&exe, &["edge"], &up)?));
    let data = up.data.as_ref().map_or_else(
        || "the paths regions.toml names".to_owned(),
        |d| d.display().to_string(),
    );
    println!(
        "domicile up: federation {:?} up: edge on http://{} (metrics on http://{}/metrics), regions {}; data in {data}. Ctrl-C to stop.",
        topology.federation.name,
        topology.edge.listen,
        topology.edge.admin_listen,
        regions.join(", ")
    );
    for (code, region) in &topology.regions {
        use domicile_core::messaging::{EmailSender, EmailTransport, SmsSender};
        if let Some(EmailSender {
            transport: EmailTransport::Outbox(dir),
            ..
        }) = &region.messaging.email
        {
            println!(
                "domicile up: email to {code}'s users (codes, links, notices) goes to the outbox {} (one .eml file per message)",
                dir.display()
            );
        }
        if let Some(SmsSender::Outbox(dir)) = &region.messaging.sms {
            println!(
                "domicile up: SMS to {code}'s users goes to the outbox {} (one .json file per message)",
                dir.display()
            );
        }
    }
    println!(
        "domicile up: try `domicile client --config {} --from 203.0.113.7 register --email ada@example.org --password 'analytical engine'`",
        up.config.display()
    );
    let exited = {
        let waits = children.iter_mut().map(|(name, c)| {
            let name = name.clone();
            Box::pin(async move { (name, c.wait().await) })
        });
        tokio::select! {
            _ = crate::shutdown_signal() => None,
            ((name, status), _, _) = futures::future::select_all(waits) => Some((name, status)),
        }
    };
    for (name, c) in &children {
        terminate(name, c);
    }
    let mut failed = match &exited {
        Some((name, status)) => {
            eprintln!("domicile up: {name} exited ({status:?}); stopping the federation");
            true
        }
        None => {
            eprintln!("domicile up: stopping the federation");
            false
        }
    };
    for (name, mut c) in children {
        let status = c.wait().await?;
        if !status.success() && exited.as_ref().is_none_or(|(n, _)| n != &name) {
            // A signal is how we stopped it; anything else is a failure.
            if status.code().is_some() {
                eprintln!("domicile up: {name} exited with {status}");
                failed = true;
            }
        }
    }
    if failed {
        bail!("a process of the federation failed");
    }
    Ok(())
}
