//! Project chores, as one Rust program (`cargo xtask <task>`):
//!
//! - `test`: install what the build needs, run the tidy checks, clippy with
//!   the house lints, and the whole test suite (what CI runs).
//! - `up`: install what the build needs, build, and start the local
//!   federation from `regions.toml` until Ctrl-C.
//! - `doctor`: say what is missing on this machine, install nothing.
//! - `tidy`: the house-style checks only.

use anyhow::{Context, Result, bail};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
};

fn main() -> std::process::ExitCode {
    match run_task() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_task() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root()?;
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => {
            prerequisites(&root, true)?;
            tidy(&root)?;
            test(&args[1..])
        }
        Some("up") => {
            prerequisites(&root, true)?;
            up(&root, args.iter().any(|a| a == "--release"))
        }
        Some("doctor") => prerequisites(&root, false),
        Some("tidy") => tidy(&root),
        _ => {
            eprintln!("usage: cargo xtask <test|up|doctor|tidy>");
            eprintln!("  test    install build prerequisites, run tidy checks and every test");
            eprintln!(
                "  up      start the local federation (regions.toml) until Ctrl-C; --release for load tests"
            );
            eprintln!("  doctor  report missing build prerequisites");
            eprintln!("  tidy    house-style checks");
            bail!("unknown task")
        }
    }
}

fn root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf())
}

/// A system tool a dependency needs, the crate that needs it, and its Debian package.
struct Prerequisite {
    tool: &'static str,
    needed_by: &'static str,
    package: &'static str,
}

/// pingora-core builds zlib-ng (libz-ng-sys) with cmake.
const PREREQUISITES: &[Prerequisite] = &[Prerequisite {
    tool: "cmake",
    needed_by: "libz-ng-sys",
    package: "cmake",
}];

fn has_tool(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs (with apt-get, as root) or reports each system tool that
/// `Cargo.lock` shows the build needs, and grpcio for the tests.
fn prerequisites(root: &Path, install: bool) -> Result<()> {
    grpcio(install);
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let missing: Vec<&Prerequisite> = PREREQUISITES
        .iter()
        .filter(|p| lock.contains(&format!("name = \"{}\"", p.needed_by)) && !has_tool(p.tool))
        .collect();
    if missing.is_empty() {
        println!("xtask: build prerequisites present");
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|p| p.package).collect();
    let command = format!(
        "apt-get update && apt-get install -y {}",
        packages.join(" ")
    );
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if install && is_root && has_tool("apt-get") {
        println!("xtask: installing {}", packages.join(", "));
        run(Command::new("sh").args(["-c", &format!("DEBIAN_FRONTEND=noninteractive {command}")]))?;
        return Ok(());
    }
    for p in &missing {
        eprintln!(
            "xtask: missing `{}` (needed to build {})",
            p.tool, p.needed_by
        );
    }
    bail!("install them first: sudo sh -c '{command}'")
}

/// The gRPC C-core client (PyPI) the edge's tests drive the edge with.
const GRPCIO: &str = "grpcio==1.85.1";

fn has_grpcio() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs grpcio with pip when python3 is there, or says how; without it
/// the edge's C-core client test says SKIPPED (never fails the build).
fn grpcio(install: bool) {
    if has_grpcio() {
        return;
    }
    let command = format!("python3 -m pip install --quiet {GRPCIO}");
    if install && has_tool("python3") {
        println!("xtask: installing {GRPCIO} (the edge's gRPC C-core client test)");
        let pip = |extra: &[&str]| {
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", GRPCIO])
                .args(extra)
                .output()
        };
        let mut out = pip(&[]);
        // PEP 668: pip refuses a distribution-managed Python without this flag.
        if out.as_ref().is_ok_and(|o| {
            String::from_utf8_lossy(&o.stderr).contains("externally-managed-environment")
        }) {
            out = pip(&["--break-system-packages"]);
        }
        match out {
            Ok(o) if !o.status.success() => eprint!("{}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("xtask: cannot run pip: {e}"),
            Ok(_) => {}
        }
        if has_grpcio() {
            return;
        }
    }
    eprintln!(
        "xtask: grpcio is missing: the edge's gRPC C-core client test will be SKIPPED; install it with `{command}`"
    );
}

fn run(cmd: &mut Command) -> Result<()> {
    let status: ExitStatus = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    // The house lints (no unwrap/expect/panic in server code, …) are part of the suite.
    run(Command::new("cargo").args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--quiet",
        "--",
        "-D",
        "warnings",
    ]))?;
    if std::env::var_os("DOMICILE_SCYLLA_NODES").is_none() {
        println!(
            "xtask: DOMICILE_SCYLLA_NODES is not set: the Scylla conformance run will be SKIPPED (the embedded backend always runs)"
        );
    }
    // The crates have no doctests (examples live in tests), so nextest alone
    // runs everything, and its summary is the run's closing line.
    if has_nextest() {
        run(Command::new("cargo")
            .args(["nextest", "run", "--workspace", "--no-fail-fast"])
            .args(extra))
    } else {
        run(Command::new("cargo")
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(extra))
    }
}

fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// House-style checks: every library opens with a `//!` doc saying its job,
/// and no stubs in non-test code.
fn tidy(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(root.join("crates"))? {
        let dir = entry?.path();
        for file in ["src/lib.rs", "src/main.rs"] {
            let path = dir.join(file);
            if let Ok(text) = std::fs::read_to_string(&path)
                && !text.trim_start().starts_with("//!")
            {
                problems.push(format!(
                    "{}: must open with a //! doc saying the crate's job",
                    path.display()
                ));
            }
        }
        scan_stubs(&dir.join("src"), &mut problems)?;
    }
    if problems.is_empty() {
        println!("xtask: tidy ok");
        return Ok(());
    }
    for p in &problems {
        eprintln!("tidy: {p}");
    }
    bail!("{} tidy problem(s)", problems.len())
}

fn scan_stubs(dir: &Path, problems: &mut Vec<String>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            scan_stubs(&path, problems)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)?;
            for (i, line) in text.lines().enumerate() {
                // Built from parts so this checker does not flag itself.
                let stub = ["todo", "unimplemented"]
                    .iter()
                    .any(|s| line.contains(&format!("{s}!(")));
                if stub && !line.trim_start().starts_with("//") {
                    problems.push(format!("{}:{}: stub left in code", path.display(), i + 1));
                }
            }
        }
    }
    Ok(())
}

/// Builds `domicile` and starts one node per region of `regions.toml`, then
/// the edge. `--release` builds optimized binaries (for load tests).
fn up(root: &Path, release: bool) -> Result<()> {
    let mut build = Command::new("cargo");
    build.args(["build", "--quiet", "--bin", "domicile"]);
    if release {
        build.args([
            "--release",
            "--bin",
            "domicile-loadtest",
            "-p",
            "domicile",
            "-p",
            "domicile-loadtest",
        ]);
    }
    run(&mut build)?;
    // Where cargo put it: CARGO_TARGET_DIR when set (relative to the root).
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d));
    let exe = target
        .join(if release { "release" } else { "debug" })
        .join("domicile");
    let config = root.join("regions.toml");
    let (topology, regions) = regions_of(&config)?;
    // Ctrl-C reaches the whole foreground process group: the nodes drain and
    // exit, and this process stays to wait for them.
    ctrlc::set_handler(|| eprintln!("xtask: stopping the federation"))
        .context("cannot handle Ctrl-C")?;
    // The index host starts first; its region is named in [index].
    let mut children: Vec<(String, Child)> = Vec::new();
    for region in &regions {
        // No drain period: Ctrl-C stops the edge at the same moment, so there
        // is no traffic to move away (a fleet keeps the default).
        let child = Command::new(&exe)
            .args([
                "node",
                "--region",
                region,
                "--drain-seconds",
                "0",
                "--config",
            ])
            .arg(&config)
            .spawn()
            .with_context(|| format!("cannot start node {region}"))?;
        children.push((region.clone(), child));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let edge = Command::new(&exe)
        .args(["edge", "--config"])
        .arg(&config)
        .spawn()
        .context("cannot start the edge")?;
    children.push(("edge".into(), edge));
    println!(
        "xtask: local federation up: edge on http://{} (metrics on http://{}/metrics), regions {}; data in .domicile/. Ctrl-C to stop.",
        topology.edge.listen,
        topology.edge.admin_listen,
        regions.join(", ")
    );
    println!(
        "xtask: try `grpcurl -plaintext -d '{{\"email\":\"ada@example.org\",\"password\":\"analytical engine\"}}' -H 'x-forwarded-for: 203.0.113.7' {} domicile.v1.Identity/Register`",
        topology.edge.listen
    );
    let mut failed = false;
    for (region, mut child) in children {
        let status = child.wait()?;
        if !status.success() {
            eprintln!("xtask: {region} exited with {status}");
            failed = true;
        }
    }
    if failed {
        bail!("a process of the federation failed");
    }
    Ok(())
}

/// The topology (validated like the nodes do) and its region codes, the index host first.
fn regions_of(config: &Path) -> Result<(domicile_core::topology::Topology, Vec<String>)> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let topology = domicile_core::topology::Topology::parse(config, &text)?;
    let host = topology.index.host_region.to_string();
    let mut regions: Vec<String> = topology.regions.keys().map(ToString::to_string).collect();
    regions.sort_by_key(|r| *r != host);
    Ok((topology, regions))
}
