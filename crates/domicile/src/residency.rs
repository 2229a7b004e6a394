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
    receipt::ResidencyClaims,
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
    /// Also have each region scan its whole store and sign what it found
    /// (a residency proof per region), check the proofs against each
    /// other and the index, and save them to --out.
    #[arg(long)]
    prove: bool,
    /// Where --prove saves the signed proofs.
    #[arg(long, default_value = "residency-proof.json")]
    out: PathBuf,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// A file `residency report --prove` saved.
    proof: PathBuf,
    /// The federation's JWKS, saved (`/.well-known/jwks.json`).
    #[arg(long)]
    jwks: PathBuf,
    /// The federation's regions.toml: every region must have a proof.
    #[arg(long, default_value = "regions.toml")]
    config: PathBuf,
}

/// Most seconds between the first and the last proof of one file.
const PROOF_WINDOW_SECONDS: i64 = 600;

/// What `--prove` saves: each region's signed proof as it came.
#[derive(serde::Serialize, serde::Deserialize)]
struct ProofFile {
    generated_at: i64,
    proofs: BTreeMap<String, String>,
}

fn claims_of(jws: &str) -> Result<ResidencyClaims> {
    domicile_core::receipt::unverified_claims(jws).map_err(|e| anyhow::anyhow!("a proof: {e}"))
}

/// The findings of a set of proofs taken together: each region's own, and
/// whether the index's active entries per region are exactly the
/// identifiers that region's proof confirmed (an entry homing a user the
/// region does not have shows here; a move in flight counts on the side
/// the index names, so it needs no exception).
pub fn cross_findings(proofs: &BTreeMap<String, ResidencyClaims>) -> Vec<String> {
    let mut out: Vec<String> = proofs
        .values()
        .flat_map(ResidencyClaims::findings)
        .collect();
    let index = proofs.values().find_map(|c| c.index.as_ref());
    match index {
        None => out.push("no region's proof carries the index's count".into()),
        Some(ix) => {
            for (region, c) in proofs {
                let active = ix.active_by_region.get(region).copied().unwrap_or(0);
                if active != c.indexed_identifiers {
                    out.push(format!(
                        "index: {active} active entries home users in {region}, whose proof confirms {}",
                        c.indexed_identifiers
                    ));
                }
            }
            for region in ix.active_by_region.keys() {
                if !proofs.contains_key(region) {
                    out.push(format!(
                        "index: entries home users in {region}, which sent no proof"
                    ));
                }
            }
        }
    }
    out
}

/// `residency verify-proof`: every proof's signature, and the findings.
pub fn verify(args: VerifyArgs) -> Result<bool> {
    let text = std::fs::read_to_string(&args.proof)
        .with_context(|| format!("cannot read {}", args.proof.display()))?;
    let file: ProofFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a proof file", args.proof.display()))?;
    let keys = domicile_core::token::KeySet::from_jwks(
        &std::fs::read_to_string(&args.jwks)
            .with_context(|| format!("cannot read {}", args.jwks.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", args.jwks.display()))?;
    let mut ok = !file.proofs.is_empty();
    let mut claims = BTreeMap::new();
    for (region, jws) in &file.proofs {
        match keys.verify_residency(jws) {
            Ok(c) if &c.region == region => {
                println!("PASS {region}'s proof is signed by {region}");
                claims.insert(region.clone(), c);
            }
            Ok(c) => {
                println!("FAIL the proof filed as {region} is {}'s", c.region);
                ok = false;
            }
            Err(e) => {
                println!("FAIL {region}'s proof does not verify: {e}");
                ok = false;
            }
        }
    }
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let t = Topology::parse(&args.config, &text)?;
    for code in t.regions.keys() {
        if !claims.contains_key(code.as_str()) {
            println!("FAIL no proof of {code}");
            ok = false;
        }
    }
    let times: Vec<i64> = claims.values().map(|c| c.iat).collect();
    if let (Some(first), Some(last)) = (times.iter().min(), times.iter().max())
        && last - first > PROOF_WINDOW_SECONDS
    {
        println!(
            "FAIL the proofs were signed {}s apart (at most {PROOF_WINDOW_SECONDS}s)",
            last - first
        );
        ok = false;
    }
    for f in cross_findings(&claims) {
        println!("FAIL {f}");
        ok = false;
    }
    Ok(ok)
}

/// The first node of `region` that takes traffic (weight above 0).
pub fn active_node(region: &domicile_core::topology::Region) -> Result<std::net::SocketAddr> {
    region
        .nodes
        .iter()
        .find(|n| n.weight > 0)
        .map(|n| n.address)
        .context("region without an active node")
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
        let node = active_node(region)?;
        // Identifiers are fetched for the cross-checks; shown only when asked.
        let req = pb::RegionReportRequest {
            include_identifiers: true,
        };
        let req = crate::admin::request(&t, Role::Compliance, req)?;
        let r = admin(node)
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

    if args.prove {
        let mut proofs = BTreeMap::new();
        let mut claims = BTreeMap::new();
        for (code, region) in &t.regions {
            let req = crate::admin::request(&t, Role::Compliance, pb::ResidencyProofRequest {})?;
            let r = admin(active_node(region)?)
                .await?
                .residency_proof(req)
                .await
                .map_err(|s| anyhow::anyhow!("{code}: {}", s.message()))?
                .into_inner();
            let c = claims_of(&r.proof)?;
            check(
                r.findings.is_empty(),
                format!(
                    "{code} signs that it holds {} users ({} … {}), {} rows scanned, {} moving, nothing of another region, no identifier in the clear, every identifier indexed{}",
                    c.users,
                    c.first_user_id,
                    c.last_user_id,
                    c.rows_scanned,
                    c.moving,
                    if r.findings.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.findings.join("; "))
                    }
                ),
            );
            proofs.insert(code.to_string(), r.proof);
            claims.insert(code.to_string(), c);
        }
        let own: Vec<String> = claims
            .values()
            .flat_map(ResidencyClaims::findings)
            .collect();
        let cross: Vec<String> = cross_findings(&claims)
            .into_iter()
            .filter(|f| !own.contains(f))
            .collect();
        check(
            cross.is_empty(),
            format!(
                "the index homes exactly the identifiers each region's proof confirms{}",
                if cross.is_empty() {
                    String::new()
                } else {
                    format!(": {}", cross.join("; "))
                }
            ),
        );
        let generated_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let file = ProofFile {
            generated_at,
            proofs,
        };
        std::fs::write(&args.out, serde_json::to_string_pretty(&file)?)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        println!("signed proofs saved to {}", args.out.display());
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use domicile_core::receipt::IndexClaims;

    fn proof(region: &str, indexed: u64, index: Option<&[(&str, u64)]>) -> ResidencyClaims {
        ResidencyClaims {
            region: region.into(),
            indexed_identifiers: indexed,
            index: index.map(|a| IndexClaims {
                active_by_region: a.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect(),
                ..IndexClaims::default()
            }),
            ..ResidencyClaims::default()
        }
    }

    #[test]
    fn the_index_must_home_exactly_what_the_regions_confirm() {
        let set = |v: Vec<ResidencyClaims>| -> BTreeMap<String, ResidencyClaims> {
            v.into_iter().map(|c| (c.region.clone(), c)).collect()
        };
        // Each case: the proofs, and the words of the one finding (None: clean).
        let cases: Vec<(Vec<ResidencyClaims>, Option<&str>)> = vec![
            (
                vec![
                    proof("eu", 2, Some(&[("eu", 2), ("us", 1)])),
                    proof("us", 1, None),
                ],
                None,
            ),
            (
                // An entry homing a user eu does not have.
                vec![
                    proof("eu", 2, Some(&[("eu", 3), ("us", 1)])),
                    proof("us", 1, None),
                ],
                Some("index: 3 active entries home users in eu, whose proof confirms 2"),
            ),
            (
                vec![proof("eu", 2, Some(&[("eu", 2), ("ap", 1)]))],
                Some("index: entries home users in ap, which sent no proof"),
            ),
            (
                vec![proof("eu", 2, None), proof("us", 1, None)],
                Some("no region's proof carries the index's count"),
            ),
        ];
        for (proofs, want) in cases {
            let found = cross_findings(&set(proofs));
            match want {
                None => assert!(found.is_empty(), "{found:?}"),
                Some(w) => assert!(found.len() == 1 && found[0].contains(w), "{w}: {found:?}"),
            }
        }
        // A move in progress is no exception: the counts still compare.
        let mut moving = proof("eu", 1, Some(&[("eu", 2)]));
        moving.moving = 1;
        assert_eq!(cross_findings(&set(vec![moving])).len(), 1);
    }
}
