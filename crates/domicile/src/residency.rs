//! `domicile residency report`: where personal data lives, proven.
//!
//! Asks each region's node what it stores (the internal Admin service), the
//! index host what the index holds, and checks: no region stores a user of
//! another region; the index holds no plaintext identifiers; the index and
//! the regions agree. With `--scan-files` it also reads the embedded stores'
//! files byte by byte for other regions' identifiers. Exits non-zero when a
//! check fails.

use anyhow::{Context, Result};
use clap::Args;
use domicile_core::{
    admin::Role,
    topology::{StoreConfig, Topology},
};
use domicile_proto::v1::{self as pb, admin_client::AdminClient};
use std::{collections::BTreeMap, path::PathBuf};

#[derive(Args)]
pub struct ReportArgs {
    /// The federation's regions.toml.
    #[arg(long, default_value = "regions.toml")]
    config: PathBuf,
    /// List each region's identifiers (emails): personal data on your screen.
    #[arg(long)]
    identifiers: bool,
    /// Also scan the embedded stores' files for identifiers of other regions
    /// (must run on the machine that holds them).
    #[arg(long)]
    scan_files: bool,
}

async fn admin(addr: std::net::SocketAddr) -> Result<AdminClient<tonic::transport::Channel>> {
    AdminClient::connect(format!("http://{addr}"))
        .await
        .with_context(|| format!("cannot reach the node at {addr}"))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

pub async fn run(args: ReportArgs) -> Result<bool> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let t = Topology::parse(&args.config, &text)?;
    let mut ok = true;
    let mut check = |pass: bool, what: String| {
        println!("{} {what}", if pass { "PASS" } else { "FAIL" });
        ok &= pass;
    };
    let mut reports = BTreeMap::new();
    println!(
        "{:<8} {:<10} {:>8} {:>9} {:>14}",
        "region", "residency", "users", "sessions", "foreign users"
    );
    for (code, region) in &t.regions {
        let node = region
            .nodes
            .iter()
            .find(|n| n.weight > 0)
            .context("region without an active node")?;
        // Identifiers are fetched for the cross-checks; shown only when asked.
        let req = pb::RegionReportRequest {
            include_identifiers: true,
        };
        let req = crate::admin::request(&t, Role::Compliance, req)?;
        let r = admin(node.address)
            .await?
            .region_report(req)
            .await
            .map_err(|s| anyhow::anyhow!("{code}: {}", s.message()))?
            .into_inner();
        println!(
            "{:<8} {:<10} {:>8} {:>9} {:>14}",
            r.region, r.residency, r.users, r.sessions, r.foreign_users
        );
        reports.insert(code.clone(), r);
    }
    let ix = index_report(&t).await?;
    println!(
        "index: {} entries ({} pending), active per region: {:?}",
        ix.entries,
        ix.pending,
        ix.active_by_region.iter().collect::<BTreeMap<_, _>>()
    );
    if args.identifiers {
        for r in reports.values() {
            println!("{} identifiers:", r.region);
            for id in &r.identifiers {
                println!("  {id}");
            }
        }
    }

    for (code, r) in &reports {
        check(
            r.placement_violations.is_empty(),
            format!(
                "{code}'s store is kept only in its region ({}{})",
                r.placement,
                if r.placement_violations.is_empty() {
                    String::new()
                } else {
                    format!(": {}", r.placement_violations.join("; "))
                }
            ),
        );
        check(
            r.foreign_users == 0,
            format!(
                "{code} stores only its own users ({} foreign: {:?})",
                r.foreign_users, r.foreign_user_ids
            ),
        );
        let indexed = ix.active_by_region.get(code.as_str()).copied().unwrap_or(0);
        check(
            indexed == r.users,
            format!(
                "index and {code} agree ({indexed} indexed, {} stored)",
                r.users
            ),
        );
    }
    check(
        ix.malformed_keys == 0 && ix.plaintext_suspects == 0,
        format!(
            "the index holds only keyed hashes, regions, user ids and timestamps ({} malformed entries, {} keys in the clear)",
            ix.malformed_keys, ix.plaintext_suspects
        ),
    );

    if args.scan_files {
        let StoreConfig::Embedded { path } = &t.index.store else {
            anyhow::bail!(
                "--scan-files reads embedded stores' files; this index is on scylla (the store-level checks above still hold)"
            );
        };
        let index_file = std::fs::read(path.join("index.redb"))
            .with_context(|| format!("cannot read the index in {}", path.display()))?;
        for (code, region) in &t.regions {
            let StoreConfig::Embedded { path } = &region.store else {
                println!("SKIP {code}'s files: it is on scylla");
                continue;
            };
            let file = std::fs::read(path.join("region.redb"))
                .with_context(|| format!("cannot read {}", path.display()))?;
            let leaked: Vec<&String> = reports
                .iter()
                .filter(|(other, _)| *other != code)
                .flat_map(|(_, r)| r.identifiers.iter())
                .filter(|id| contains(&file, id.as_bytes()))
                .collect();
            check(
                leaked.is_empty(),
                format!(
                    "{code}'s files hold no other region's identifiers ({} found)",
                    leaked.len()
                ),
            );
        }
        let in_index = reports
            .values()
            .flat_map(|r| r.identifiers.iter())
            .filter(|id| contains(&index_file, id.as_bytes()))
            .count();
        check(
            in_index == 0,
            format!("the index file holds no plaintext identifier ({in_index} found)"),
        );
    }
    Ok(ok)
}

/// The index report from the first node that serves the index and answers
/// (the host region's first; on Scylla, any region's).
async fn index_report(t: &Topology) -> Result<pb::IndexReportResponse> {
    let mut last = anyhow::anyhow!("no region has an active node that serves the index");
    for address in t.index_servers().into_iter().flat_map(|(_, a)| a) {
        let answer = match admin(address).await {
            Ok(mut a) => a
                .index_report(crate::admin::request(
                    t,
                    Role::Compliance,
                    pb::IndexReportRequest {},
                )?)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| anyhow::anyhow!("index at {address}: {}", s.message())),
            Err(e) => Err(e),
        };
        match answer {
            Ok(r) => return Ok(r),
            Err(e) => last = e,
        }
    }
    Err(last)
}
