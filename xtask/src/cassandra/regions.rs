//! The region names of `regions.toml`, in file order: one Cassandra
//! datacenter per region. A tiny line parse of the `[regions.NAME]` table
//! headers, not a TOML parser: the `toml` crate (already in `Cargo.lock`)
//! keeps tables in a sorted map unless built with `preserve_order`, and the
//! order is what decides which region gets 127.0.0.1 (the seed).

use anyhow::{Result, bail};

/// The distinct `NAME`s of `[regions.NAME]` (and `[regions.NAME.sub]`)
/// headers, in the order they first appear.
pub fn region_names(toml: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for (i, line) in toml.lines().enumerate() {
        let line = line.trim();
        // Arrays of tables (`[[x]]`) and key lines are not region tables.
        if !line.starts_with('[') || line.starts_with("[[") {
            continue;
        }
        let Some(end) = line.find(']') else {
            bail!("regions.toml:{}: table header without `]`", i + 1);
        };
        let mut parts = line[1..end].split('.').map(str::trim);
        if parts.next() != Some("regions") {
            continue;
        }
        let Some(name) = parts.next() else {
            continue;
        };
        if !valid_name(name) {
            bail!(
                "regions.toml:{}: region name `{name}` is not a bare key of letters, digits, `_` or `-` (it names a Cassandra datacenter)",
                i + 1
            );
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    if names.is_empty() {
        bail!("regions.toml has no [regions.NAME] table");
    }
    Ok(names)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::region_names;

    /// `Ok(names)` joined by commas, or `error: <message>`.
    fn check(toml: &str, expected: &str) {
        let got = match region_names(toml) {
            Ok(names) => names.join(","),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected, "for {toml:?}");
    }

    #[test]
    fn names_in_file_order() {
        check("[regions.eu]\n[regions.us]\n[regions.ap]\n", "eu,us,ap");
        check("[regions.us]\n[regions.eu]\n", "us,eu");
        check(
            "[federation]\nname = \"x\"\n[regions.eu]\nstore = { backend = \"embedded\" }\n[regions.eu.extra]\n[regions.ap]\n",
            "eu,ap",
        );
        check("  [ regions . eu ]  # comment\n", "eu");
        check("[regionsx.eu]\n[regions.a-b_1]\n", "a-b_1");
        check("[[regions.eu]]\n[regions.us]\n", "us");
    }

    #[test]
    fn bad_files_say_why() {
        check(
            "[federation]\n",
            "error: regions.toml has no [regions.NAME] table",
        );
        check(
            "[regions.\"e u\"]\n",
            "error: regions.toml:1: region name `\"e u\"` is not a bare key of letters, digits, `_` or `-` (it names a Cassandra datacenter)",
        );
        check(
            "[regions.eu\n",
            "error: regions.toml:1: table header without `]`",
        );
    }

    #[test]
    fn the_workspace_file() {
        let text = include_str!("../../../regions.toml");
        check(text, "eu,us,ap");
    }
}
