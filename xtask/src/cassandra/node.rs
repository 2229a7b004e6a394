//! One node's process: start it detached (its own process group, output
//! to `logs/stdout.log`, the pid in a file), tell whether the pid in the
//! file is still that node, read its resident memory, and stop it
//! (SIGTERM, a bounded wait, then SIGKILL). Signals go through `kill(1)`:
//! the crate forbids `unsafe`, and std sends no signal but SIGKILL.

use super::config::{MAIN_CLASS, NodeSpec, file_url, pid_file, yaml_file};
use anyhow::{Context, Result, bail};
use std::{
    fs::File,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Starts `java args…` for the node, detached from this process's group so
/// that Ctrl-C on xtask leaves it running, and records its pid.
pub fn spawn(java: &Path, node: &NodeSpec, args: &[String]) -> Result<Child> {
    let out = File::create(node.stdout_log())
        .with_context(|| format!("cannot create {}", node.stdout_log().display()))?;
    let err = out.try_clone()?;
    let child = Command::new(java)
        .args(args)
        .current_dir(&node.dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {}", java.display()))?;
    std::fs::write(pid_file(&node.dir), format!("{}\n", child.id()))?;
    Ok(child)
}

/// The pid in a node directory's pid file, if it is still that node's
/// Cassandra (not exited, not a zombie, not a reused pid).
pub fn running_pid(node_dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file(node_dir))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_node(pid, &yaml_file(node_dir)).then_some(pid)
}

/// Whether `pid` is a live Cassandra started with this config.
fn is_node(pid: u32, yaml: &Path) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let Ok(cmdline) = std::fs::read(proc.join("cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&cmdline);
    let status = std::fs::read_to_string(proc.join("status")).unwrap_or_default();
    cmdline.contains(MAIN_CLASS) && cmdline.contains(&file_url(yaml)) && !is_zombie(&status)
}

/// `State:` of `/proc/<pid>/status` is Z (exited, not yet reaped) or X.
pub fn is_zombie(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .is_some_and(|s| matches!(s.trim_start().chars().next(), Some('Z' | 'X')))
}

/// `VmRSS` of a `/proc/<pid>/status` text, in KiB.
pub fn parse_vmrss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    parse_vmrss_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// `1.02 GiB`, `812 MiB`, or `-`.
pub fn format_kib(kib: Option<u64>) -> String {
    match kib {
        None => "-".to_owned(),
        Some(k) if k >= 1024 * 1024 => format!("{:.2} GiB", k as f64 / (1024.0 * 1024.0)),
        Some(k) => format!("{} MiB", k / 1024),
    }
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed: {status}");
    }
    Ok(())
}

/// Waits until none of the `(node dir, pid)`s is that node any more, up to
/// `bound`; the indexes and pids still alive then.
fn wait_gone(nodes: &[(&Path, u32)], bound: Duration) -> Vec<(usize, u32)> {
    let started = Instant::now();
    loop {
        let alive: Vec<(usize, u32)> = nodes
            .iter()
            .enumerate()
            .filter(|(_, (dir, pid))| is_node(*pid, &yaml_file(dir)))
            .map(|(i, (_, pid))| (i, *pid))
            .collect();
        if alive.is_empty() || started.elapsed() >= bound {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SIGTERM to the node of every directory that runs one, a wait of up to
/// `bound` for them to drain and exit, SIGKILL to what is left. Returns
/// each stopped node's directory, pid and how it stopped.
pub fn stop_all(
    node_dirs: &[PathBuf],
    bound: Duration,
) -> Result<Vec<(PathBuf, u32, &'static str)>> {
    let running: Vec<(&Path, u32)> = node_dirs
        .iter()
        .filter_map(|d| running_pid(d).map(|pid| (d.as_path(), pid)))
        .collect();
    for (_, pid) in &running {
        signal(*pid, "TERM")?;
    }
    let stubborn = wait_gone(&running, bound);
    for (_, pid) in &stubborn {
        signal(*pid, "KILL")?;
    }
    let left = wait_gone(&running, Duration::from_secs(10));
    if let Some((i, pid)) = left.first() {
        let dir = running
            .get(*i)
            .map_or_else(String::new, |(d, _)| d.display().to_string());
        bail!("the node of {dir} (pid {pid}) is still running after SIGKILL");
    }
    Ok(running
        .iter()
        .enumerate()
        .map(|(i, (dir, pid))| {
            let how = if stubborn.iter().any(|(j, _)| *j == i) {
                "killed (SIGKILL)"
            } else {
                "stopped (SIGTERM)"
            };
            (dir.to_path_buf(), *pid, how)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_fields() {
        let status = "Name:\tjava\nState:\tS (sleeping)\nVmPeak:\t 9000 kB\nVmRSS:\t  812345 kB\n";
        assert_eq!(parse_vmrss_kib(status), Some(812_345));
        assert!(!is_zombie(status));
        assert!(is_zombie("State:\tZ (zombie)\n"));
        assert!(is_zombie("State:\tX (dead)\n"));
        assert_eq!(parse_vmrss_kib("Name:\tkthreadd\nState:\tS\n"), None);
        assert_eq!(parse_vmrss_kib("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn sizes_print() {
        for (kib, text) in [
            (None, "-"),
            (Some(831_488), "812 MiB"),
            (Some(1_069_548), "1.02 GiB"),
            (Some(0), "0 MiB"),
        ] {
            assert_eq!(format_kib(kib), text);
        }
    }
}
