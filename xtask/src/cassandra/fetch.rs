//! Cassandra's jars from Maven Central, fetched once into a cache and
//! reused offline: `mvn dependency:copy-dependencies` on a generated pom,
//! into `lib.partial/`, then a marker listing every jar, then a rename to
//! `lib/`. A `lib/` whose marker names only jars that are there is
//! complete, and Maven is not run again.

use super::config;
use anyhow::{Context, Result, bail};
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// The file in `lib/` that lists the jars of a complete fetch.
pub const MARKER: &str = ".complete";

/// The jars of one Cassandra version in the cache.
#[derive(Debug)]
pub struct Jars {
    pub lib: PathBuf,
    pub jamm: PathBuf,
    pub count: usize,
    /// How long Maven took; `None` when the cache was complete.
    pub fetched_in: Option<Duration>,
}

/// `$DOMICILE_CASSANDRA_CACHE`, else `$XDG_CACHE_HOME/domicile/cassandra`,
/// else `~/.cache/domicile/cassandra`; then the version.
pub fn cache_dir(version: &str) -> Result<PathBuf> {
    let base = if let Some(dir) = std::env::var_os("DOMICILE_CASSANDRA_CACHE") {
        PathBuf::from(dir)
    } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        PathBuf::from(dir).join("domicile/cassandra")
    } else {
        let home = std::env::var_os("HOME")
            .context("HOME is not set: set DOMICILE_CASSANDRA_CACHE to a directory for the jars")?;
        PathBuf::from(home).join(".cache/domicile/cassandra")
    };
    Ok(base.join(version))
}

/// The jars a marker lists (one file name a line, blank lines skipped).
pub fn marker_jars(marker: &str) -> Vec<&str> {
    marker
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether a marker describes a usable set: it names the Cassandra jar and
/// a jamm jar, and `exists` says every named jar is present.
pub fn complete(marker: &str, version: &str, exists: &dyn Fn(&str) -> bool) -> bool {
    let jars = marker_jars(marker);
    let cassandra = format!("cassandra-all-{version}.jar");
    jars.contains(&cassandra.as_str())
        && jars.iter().any(|j| is_jamm(j))
        && jars.iter().all(|j| exists(j))
}

fn is_jamm(name: &str) -> bool {
    name.starts_with("jamm-") && name.ends_with(".jar")
}

/// Whether the cache already holds a complete jar set (then Maven is not
/// needed).
pub fn cached(version: &str) -> bool {
    cache_dir(version).is_ok_and(|dir| read_complete(&dir.join("lib"), version).is_some())
}

/// The marker's jar names when `lib` is complete.
fn read_complete(lib: &Path, version: &str) -> Option<Vec<String>> {
    let marker = std::fs::read_to_string(lib.join(MARKER)).ok()?;
    complete(&marker, version, &|jar| lib.join(jar).is_file()).then(|| {
        marker_jars(&marker)
            .into_iter()
            .map(str::to_owned)
            .collect()
    })
}

/// The complete jar set of `version`, fetching it with `mvn` when the cache
/// lacks it.
pub fn ensure(version: &str) -> Result<Jars> {
    let dir = cache_dir(version)?;
    let lib = dir.join("lib");
    let mut fetched_in = None;
    let jars = match read_complete(&lib, version) {
        Some(jars) => jars,
        None => {
            let started = Instant::now();
            fetch(&dir, version)?;
            fetched_in = Some(started.elapsed());
            read_complete(&lib, version)
                .with_context(|| format!("{} is incomplete right after the fetch", lib.display()))?
        }
    };
    let jamm = jars
        .iter()
        .find(|j| is_jamm(j))
        .map(|j| lib.join(j))
        .context("no jamm jar in the marker")?;
    Ok(Jars {
        lib,
        jamm,
        count: jars.len(),
        fetched_in,
    })
}

fn fetch(dir: &Path, version: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pom = dir.join("pom.xml");
    std::fs::write(&pom, config::pom_xml(version))?;
    let partial = dir.join("lib.partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    let log = dir.join("maven.log");
    println!(
        "cassandra: fetching cassandra-all {version} and its runtime dependencies with Maven (log: {})",
        log.display()
    );
    let out = Command::new("mvn")
        .arg("--batch-mode")
        .arg("-f")
        .arg(&pom)
        .arg(format!("{}:copy-dependencies", config::DEPENDENCY_PLUGIN))
        .arg("-DincludeScope=runtime")
        .arg(format!("-DoutputDirectory={}", partial.display()))
        .output()
        .context("cannot run mvn")?;
    let mut text = out.stdout;
    text.extend_from_slice(&out.stderr);
    std::fs::write(&log, &text)?;
    if !out.status.success() {
        bail!(
            "Maven could not fetch cassandra-all {version} ({}); the end of {}:\n{}",
            out.status,
            log.display(),
            tail(&String::from_utf8_lossy(&text), 20)
        );
    }
    let mut jars: Vec<String> = std::fs::read_dir(&partial)
        .with_context(|| format!("Maven wrote no {}", partial.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jar"))
        .collect();
    jars.sort();
    let mut marker = jars.join("\n");
    marker.push('\n');
    if !complete(&marker, version, &|_| true) {
        bail!(
            "Maven's copy in {} lacks cassandra-all-{version}.jar or a jamm jar",
            partial.display()
        );
    }
    std::fs::write(partial.join(MARKER), marker)?;
    let lib = dir.join("lib");
    if lib.exists() {
        std::fs::remove_dir_all(&lib)?;
    }
    std::fs::rename(&partial, &lib)?;
    Ok(())
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(marker: &str, present: &[&str], expected: bool) {
        let exists = |jar: &str| present.contains(&jar);
        assert_eq!(
            complete(marker, "5.0.9", &exists),
            expected,
            "marker {marker:?} with {present:?}"
        );
    }

    #[test]
    fn a_marker_is_complete_only_with_every_jar() {
        let all = ["cassandra-all-5.0.9.jar", "jamm-0.4.0.jar", "guava-32.jar"];
        let marker = "cassandra-all-5.0.9.jar\njamm-0.4.0.jar\nguava-32.jar\n";
        check(marker, &all, true);
        check(marker, &all[..2], false);
        check("", &all, false);
        check("jamm-0.4.0.jar\nguava-32.jar\n", &all, false);
        check("cassandra-all-5.0.9.jar\nguava-32.jar\n", &all, false);
        check("cassandra-all-5.0.8.jar\njamm-0.4.0.jar\n", &all, false);
        check("\n cassandra-all-5.0.9.jar \n\njamm-0.4.0.jar", &all, true);
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
