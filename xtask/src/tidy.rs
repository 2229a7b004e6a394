//! The tidy checks: the house style and the architecture invariants of
//! `docs/architecture.md` that a program can check. Each check is a pure
//! function over text (a source file, `cargo tree` output) so a test can
//! plant a violation and watch it fail; `tidy` gathers the text and runs
//! them all.

use anyhow::{Context, Result, bail};
use std::{path::Path, process::Command};

/// Crates whose normal dependency tree must not contain these crates.
/// (crate, forbidden, the invariant it breaks)
const LAYERING: &[(&str, &[&str], &str)] = &[
    (
        "domicile-identity",
        &[
            "tonic",
            "prost",
            "axum",
            "hyper",
            "http",
            "h2",
            "domicile-proto",
        ],
        "use cases know no transport",
    ),
    (
        "domicile-core",
        &[
            "tonic",
            "prost",
            "axum",
            "hyper",
            "http",
            "tokio",
            "scylla",
            "redb",
            "pingora-core",
        ],
        "core does no I/O and knows no transport or storage engine",
    ),
    (
        "domicile-oidc",
        &[
            "tonic",
            "prost",
            "axum",
            "hyper",
            "http",
            "tokio",
            "domicile-store",
            "domicile-identity",
            "domicile-proto",
        ],
        "oidc is pure protocol logic: no I/O, transport or storage",
    ),
    (
        "domicile-store",
        &["tonic", "prost", "axum", "hyper", "http", "domicile-proto"],
        "the store knows nothing of gRPC or HTTP",
    ),
    (
        "domicile-edge",
        &["domicile-store", "domicile-identity", "redb", "scylla"],
        "the edge never depends on the store and holds no personal data",
    ),
    (
        "domicile-node",
        &["pingora-core", "pingora-proxy"],
        "only the edge knows Pingora",
    ),
    (
        "domicile-identity",
        &["pingora-core", "pingora-proxy"],
        "only the edge knows Pingora",
    ),
    (
        "domicile-store",
        &["pingora-core", "pingora-proxy", "domicile-identity"],
        "only the edge knows Pingora; the store is below the use cases",
    ),
    (
        "domicile-identity",
        &["lettre", "reqwest", "askama", "domicile-messages"],
        "use cases know no message transport or template: senders are adapters behind ports::Courier",
    ),
    (
        "domicile-messages",
        &["tonic", "axum", "domicile-proto", "pingora-core"],
        "the senders are adapters below the transports",
    ),
];

/// Source patterns `crates/core` and `crates/oidc` must not contain (they
/// do no I/O, read no clock and draw no randomness).
const CORE_FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "SystemTime::now",
    "Instant::now",
    "OsRng",
    "thread_rng",
    "std::env::var",
];

pub fn tidy(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(root.join("crates"))? {
        let dir = entry?.path();
        for file in ["src/lib.rs", "src/main.rs"] {
            let path = dir.join(file);
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Some(p) = missing_crate_doc(&text)
            {
                problems.push(format!("{}: {p}", path.display()));
            }
        }
        let manifest = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest)
            && let Some(p) = missing_workspace_lints(&text)
        {
            problems.push(format!("{}: {p}", manifest.display()));
        }
        for_each_rs(&dir.join("src"), &mut |path, text| {
            for p in stubs(text) {
                problems.push(format!("{}:{p}", path.display()));
            }
        })?;
    }
    for pure in ["core", "oidc"] {
        for_each_rs(
            &root.join("crates").join(pure).join("src"),
            &mut |path, text| {
                for p in forbidden_patterns(text, CORE_FORBIDDEN) {
                    problems.push(format!("{}:{p} ({pure} does no I/O)", path.display()));
                }
            },
        )?;
    }
    for (krate, forbidden, invariant) in LAYERING {
        let tree = cargo_tree(root, krate)?;
        for found in forbidden_in_tree(&tree, forbidden) {
            problems.push(format!(
                "{krate} depends on {found}: breaks \"{invariant}\" (docs/architecture.md)"
            ));
        }
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

/// The normal (non-dev, non-build) dependency tree of a workspace crate,
/// one `name version` a line.
fn cargo_tree(root: &Path, krate: &str) -> Result<String> {
    let out = Command::new("cargo")
        .current_dir(root)
        .args([
            "tree", "--quiet", "-p", krate, "-e", "normal", "--prefix", "none",
        ])
        .output()
        .with_context(|| format!("cannot run cargo tree -p {krate}"))?;
    if !out.status.success() {
        bail!(
            "cargo tree -p {krate} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The forbidden crates that appear in a `cargo tree --prefix none` listing.
pub fn forbidden_in_tree(tree: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found: Vec<String> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| forbidden.contains(name))
        .map(str::to_owned)
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The workspace lints (forbid unsafe code; deny unwrap, expect, panic,
/// todo, unimplemented and locks held across await) apply only where a
/// crate opts in.
fn missing_workspace_lints(manifest: &str) -> Option<&'static str> {
    let opted_in = manifest
        .split("[lints]")
        .nth(1)
        .is_some_and(|rest| rest.trim_start().starts_with("workspace = true"));
    (!opted_in).then_some("must take the workspace lints ([lints] workspace = true)")
}

fn missing_crate_doc(text: &str) -> Option<&'static str> {
    (!text.trim_start().starts_with("//!"))
        .then_some("must open with a //! doc saying the crate's job")
}

/// `line: stub left in code` for each stub macro outside comments.
fn stubs(text: &str) -> Vec<String> {
    // Built from parts so this checker does not flag itself.
    let macros: Vec<String> = ["todo", "unimplemented"]
        .iter()
        .map(|s| format!("{s}!("))
        .collect();
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            !line.trim_start().starts_with("//") && macros.iter().any(|m| line.contains(m))
        })
        .map(|(i, _)| format!("{}: stub left in code", i + 1))
        .collect()
}

/// `line: uses <pattern>` for each forbidden pattern outside comments.
fn forbidden_patterns(text: &str, patterns: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for p in patterns {
            if line.contains(p) {
                out.push(format!("{}: uses {p}", i + 1));
            }
        }
    }
    out
}

fn for_each_rs(dir: &Path, f: &mut dyn FnMut(&Path, &str)) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            for_each_rs(&path, f)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)?;
            f(&path, &text);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_transport_crate_is_found() {
        let tree = "domicile-identity v0.1.0 (/w/crates/identity)\nthiserror v2.0.1\nhttp v1.3.1\ntonic v0.14.2\nhttp-body v1.0.1\n";
        assert_eq!(
            forbidden_in_tree(tree, &["tonic", "http", "prost"]),
            vec!["http".to_owned(), "tonic".to_owned()]
        );
        assert!(forbidden_in_tree("thiserror v2\nhttp-body v1\n", &["http"]).is_empty());
    }

    #[test]
    fn core_io_is_found_outside_comments() {
        let text = "// std::fs is fine in a comment\nlet t = std::time::SystemTime::now();\n";
        assert_eq!(
            forbidden_patterns(text, CORE_FORBIDDEN),
            vec!["2: uses SystemTime::now".to_owned()]
        );
    }

    #[test]
    fn stubs_and_missing_docs_are_found() {
        let stub = format!(
            "fn f() {{ {}!() }}\n// {}!() in a comment\n",
            "todo", "todo"
        );
        assert_eq!(stubs(&stub), vec!["1: stub left in code".to_owned()]);
        assert!(missing_crate_doc("use x;").is_some());
        assert!(missing_workspace_lints("[package]\nname = \"x\"\n").is_some());
        assert!(missing_workspace_lints("[lints]\nworkspace = true\n").is_none());
        assert!(missing_crate_doc("//! The crate.\nuse x;").is_none());
    }
}
