//! Project chores, as one Rust program (`cargo xtask <task>`):
//!
//! - `test`: install what the build needs, run the tidy checks, clippy with
//!   the house lints, and the whole test suite (what CI runs).
//! - `up`: install what the build needs, build, and start the local
//!   federation from `regions.toml` until Ctrl-C.
//! - `doctor`: say what is missing on this machine, install nothing.
//! - `tidy`: the house-style checks only.
//! - `cassandra up|down|status|flush`: a three-datacenter Apache Cassandra
//!   cluster on 127.0.0.1–3 for the CQL store's tests (see `cassandra.rs`).

mod cassandra;
mod tidy;

use anyhow::{Context, Result, bail};
use std::{
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
};
use tidy::tidy;

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
            browser(true);
            tidy(&root)?;
            test(&root, &args[1..])
        }
        Some("up") => {
            prerequisites(&root, true)?;
            up(&root, args.iter().any(|a| a == "--release"))
        }
        Some("doctor") => {
            browser(false);
            prerequisites(&root, false)
        }
        Some("tidy") => tidy(&root),
        Some("cassandra") => cassandra::run(&root, &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <test|up|doctor|tidy|cassandra>");
            eprintln!("  test    install build prerequisites, run tidy checks and every test");
            eprintln!(
                "  up      start the local federation (regions.toml) until Ctrl-C; --release for load tests"
            );
            eprintln!("  doctor  report missing build prerequisites");
            eprintln!("  tidy    house-style checks");
            eprintln!(
                "  cassandra up|down|status|flush  a three-datacenter Cassandra cluster on 127.0.0.1-3"
            );
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
    python_peers(install);
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

/// Debian's Chromium and its WebDriver, for the hosted pages' browser test.
const BROWSER_TOOLS: &[(&str, &str)] = &[
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/chromedriver", "chromium-driver"),
];

/// Installs Chromium and chromium-driver with apt-get (as root) when the
/// browser test would lack them, or says how; without them that test says
/// SKIPPED (never fails the build).
fn browser(install: bool) {
    let missing: Vec<&str> = BROWSER_TOOLS
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return;
    }
    let command = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if install && is_root && has_tool("apt-get") {
        println!(
            "xtask: installing {} (the browser test)",
            missing.join(", ")
        );
        let ok = Command::new("sh")
            .args(["-c", &format!("DEBIAN_FRONTEND=noninteractive {command}")])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
    }
    println!(
        "xtask: {} missing: the hosted pages' browser test will be SKIPPED; install with `sudo sh -c '{command}'`",
        missing.join(", ")
    );
}

/// Python packages (PyPI) the tests use as third-party peers: (module to
/// import, pip requirement, what needs it). Without one, its tests say
/// SKIPPED (never fail the build).
const PYTHON_PEERS: &[(&str, &str, &str)] = &[
    (
        "grpc",
        "grpcio==1.85.1",
        "the edge's gRPC C-core client test",
    ),
    (
        "pyotp",
        "pyotp==2.12.0",
        "the TOTP tests' third-party code generator",
    ),
    (
        "zxingcpp",
        "zxing-cpp==3.1.1",
        "the account page test's third-party QR code decoder",
    ),
];

fn has_module(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs each Python peer with pip when python3 is there, or says how.
fn python_peers(install: bool) {
    for (module, spec, what) in PYTHON_PEERS {
        if has_module(module) {
            continue;
        }
        let command = format!("python3 -m pip install --quiet {spec}");
        if install && has_tool("python3") {
            println!("xtask: installing {spec} ({what})");
            let pip = |extra: &[&str]| {
                Command::new("python3")
                    .args(["-m", "pip", "install", "--quiet", spec])
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
            if has_module(module) {
                continue;
            }
        }
        eprintln!(
            "xtask: {module} is missing: {what} will be SKIPPED; install it with `{command}`"
        );
    }
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

fn test(root: &Path, extra: &[String]) -> Result<()> {
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
    // The CQL backend's tests need the Cassandra cluster: started once for
    // the run, its contact points go to the tests' environment; where Java
    // or Maven are missing, this says so and each of those tests writes
    // SKIPPED. A cluster that fails to start fails the run.
    let missing = cassandra::missing_tools();
    let cluster = if missing.is_empty() {
        Some(cassandra::up(root).context("cannot start the Cassandra cluster for the CQL tests")?)
    } else {
        println!(
            "xtask: SKIPPED: the CQL backend's tests against Apache Cassandra need {} on this machine; each says SKIPPED below",
            missing.join(" and ")
        );
        None
    };
    let env: Vec<(&str, String)> = cluster.iter().flat_map(|c| c.env()).collect();
    let ran = run_tests(extra, &env);
    // A cluster that was up before this run is left as it was found.
    if let Some(c) = &cluster
        && !c.already_up
    {
        cassandra::down(root)?;
    }
    ran
}

/// The suite: nextest when present, else cargo test, with `env` (the
/// Cassandra cluster's contact points, when it is up).
fn run_tests(extra: &[String], env: &[(&str, String)]) -> Result<()> {
    // The crates have no doctests (examples live in tests), so nextest alone
    // runs everything, and its summary is the run's closing line.
    if has_nextest() {
        run(Command::new("cargo")
            .args(["nextest", "run", "--workspace", "--no-fail-fast"])
            .args(extra)
            .envs(env.iter().cloned()))
    } else {
        // Without nextest: cargo test over every library, binary and test
        // target (no doctests: there are none, and an empty doctest run
        // must not be the closing line), then one summary line of our own.
        cargo_test_with_summary(extra, env)
    }
}

/// Runs `cargo test`, echoing its output, and closes with
/// `tests: N passed, N failed, N ignored` summed over every test binary.
fn cargo_test_with_summary(extra: &[String], env: &[(&str, String)]) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("cargo")
        .args([
            "test",
            "--workspace",
            "--lib",
            "--bins",
            "--tests",
            "--no-fail-fast",
        ])
        .args(extra)
        .envs(env.iter().cloned())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot run cargo test")?;
    let mut totals = Totals::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            totals.add(&line);
        }
    }
    let status = child.wait()?;
    println!(
        "tests: {} passed, {} failed, {} ignored",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    if totals.passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

/// Counts from cargo test's `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    fn add(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        let words: Vec<&str> = rest
            .split([' ', ';', '.'])
            .filter(|w| !w.is_empty())
            .collect();
        for pair in words.windows(2) {
            let n = pair[0].parse::<u64>().unwrap_or(0);
            match pair[1] {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds `domicile` and runs `domicile up` on `regions.toml`: a node per
/// region, then the edge. `--release` builds optimized binaries (for load
/// tests).
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
    // The shipped binary runs the federation (what a user with only the
    // binary does); Ctrl-C reaches the whole foreground process group, and
    // this process stays to wait for it.
    ctrlc::set_handler(|| eprintln!("xtask: stopping the federation"))
        .context("cannot handle Ctrl-C")?;
    run(Command::new(&exe)
        .args(["up", "--config"])
        .arg(root.join("regions.toml")))
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn summary_sums_every_binary() {
        let mut t = Totals::default();
        for line in [
            "test result: ok. 10 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 14.21s",
            "running 3 tests",
            "test result: FAILED. 2 passed; 1 failed; 4 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        ] {
            t.add(line);
        }
        assert_eq!(
            t,
            Totals {
                passed: 12,
                failed: 1,
                ignored: 4
            }
        );
    }
}
