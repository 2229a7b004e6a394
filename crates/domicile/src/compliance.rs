//! `domicile compliance …`: the compliance officer's commands over the
//! internal Admin service, each sent to the user's home region (the
//! region a user id names) with a token asking for the `compliance` role:
//! `export` (the user's data as one JSON document), `erase`, `pin` and
//! `unpin`, `move --to R`, and `verify-receipt` (every signed part of a
//! receipt checked offline against a saved federation JWKS).
//!
//! Receipts are written as JSON files (`--receipt`, default
//! `receipt-<operation>.json`): the operation id, the signed parts as
//! they came, and what each says. Personal data is printed only by
//! `export`, and only to the file or standard output the officer names.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use domicile_core::{
    admin::Role, ids::UserId, receipt::ReceiptClaims, token::KeySet, topology::Topology,
};
use domicile_proto::v1::{self as pb, admin_client::AdminClient};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct Target {
    /// The federation's regions.toml.
    #[arg(long, default_value = "regions.toml")]
    config: PathBuf,
    /// A node of the user's home region to ask (its internal address);
    /// default the region's first active node.
    #[arg(long)]
    node_addr: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
pub enum ComplianceCommand {
    /// Everything the user's home region holds about them, as JSON (GDPR
    /// articles 15 and 20): personal data, written to --out or printed.
    Export {
        user_id: String,
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Erase the user (GDPR article 17) and save the signed receipt.
    Erase {
        user_id: String,
        #[arg(long)]
        receipt: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Pin the user to their home region: moves are refused until unpinned.
    Pin {
        user_id: String,
        /// A reference such as a ticket number (no personal data).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        target: Target,
    },
    /// Take a user's pin off.
    Unpin {
        user_id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Move the user to another region under a new id and save the signed
    /// receipt; running it again finishes an interrupted move.
    Move {
        user_id: String,
        /// The target region.
        #[arg(long, required_unless_present = "abort")]
        to: Option<String>,
        #[arg(long)]
        receipt: Option<PathBuf>,
        /// Call off the user's interrupted move instead (only before its
        /// index switch): the target drops its copy, the user stays.
        #[arg(long, conflicts_with = "to")]
        abort: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Check every signed part of a receipt file against a saved JWKS (the
    /// federation's /.well-known/jwks.json); exits non-zero unless each
    /// part verifies and the source's post-check found nothing left.
    VerifyReceipt {
        receipt: PathBuf,
        #[arg(long)]
        jwks: PathBuf,
    },
}

fn load(config: &Path) -> Result<Topology> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    Ok(Topology::parse(config, &text)?)
}

/// An Admin client of the home region of `user_id` (or of `node_addr`),
/// and `msg` carrying a fresh token with the compliance role.
async fn prepare<T>(
    target: &Target,
    user_id: &str,
    msg: T,
) -> Result<(AdminClient<tonic::transport::Channel>, tonic::Request<T>)> {
    let t = load(&target.config)?;
    let id = UserId::parse(user_id).map_err(|e| anyhow::anyhow!("{user_id}: {e}"))?;
    let addr = match target.node_addr {
        Some(a) => a,
        None => crate::residency::active_node(t.region(id.region()).with_context(|| {
            format!("{user_id}: region {} is not in the federation", id.region())
        })?)?,
    };
    let req = crate::admin::request(&t, Role::Compliance, msg)?;
    let client = AdminClient::connect(format!("http://{addr}"))
        .await
        .with_context(|| format!("cannot reach the node at {addr}"))?;
    Ok((client, req))
}

fn failed(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

/// What a receipt file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReceiptFile {
    operation_id: String,
    parts: Vec<String>,
    claims: Vec<ReceiptClaims>,
}

fn decode_claims(part: &str) -> Result<ReceiptClaims> {
    domicile_core::receipt::unverified_claims(part)
        .map_err(|e| anyhow::anyhow!("a receipt part: {e}"))
}

fn save_receipt(r: pb::ComplianceReceipt, path: Option<PathBuf>) -> Result<()> {
    let claims = r
        .parts
        .iter()
        .map(|p| decode_claims(p))
        .collect::<Result<Vec<_>>>()?;
    for c in &claims {
        println!(
            "{:?} part signed by {}: {}",
            c.part,
            c.region,
            c.counts
                .iter()
                .map(|(t, n)| format!("{t}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let path = path.unwrap_or_else(|| PathBuf::from(format!("receipt-{}.json", r.operation_id)));
    let file = ReceiptFile {
        operation_id: r.operation_id,
        parts: r.parts,
        claims,
    };
    std::fs::write(&path, serde_json::to_string_pretty(&file)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("receipt {} saved to {}", file.operation_id, path.display());
    Ok(())
}

/// Runs a compliance command; `Ok(false)` when a check failed.
pub async fn run(cmd: ComplianceCommand) -> Result<bool> {
    match cmd {
        ComplianceCommand::Export {
            user_id,
            out,
            target,
        } => {
            let (mut client, req) = prepare(
                &target,
                &user_id,
                pb::ExportUserRequest {
                    user_id: user_id.clone(),
                },
            )
            .await?;
            let doc = client
                .export_user(req)
                .await
                .map_err(failed)?
                .into_inner()
                .document;
            let pretty =
                serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&doc)?)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, pretty)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!("export of {user_id} written to {}", path.display());
                }
                None => println!("{pretty}"),
            }
            Ok(true)
        }
        ComplianceCommand::Erase {
            user_id,
            receipt,
            target,
        } => {
            let (mut client, req) = prepare(
                &target,
                &user_id,
                pb::EraseUserRequest {
                    user_id: user_id.clone(),
                },
            )
            .await?;
            let r = client.erase_user(req).await.map_err(failed)?.into_inner();
            println!("{user_id} erased (operation {})", r.operation_id);
            save_receipt(r, receipt)?;
            Ok(true)
        }
        ComplianceCommand::Pin {
            user_id,
            reason,
            target,
        } => {
            let (mut client, req) = prepare(
                &target,
                &user_id,
                pb::PinUserRequest {
                    user_id: user_id.clone(),
                    reason,
                },
            )
            .await?;
            let r = client.pin_user(req).await.map_err(failed)?.into_inner();
            println!(
                "{user_id} is pinned to {} (by {} at {}){}",
                r.region,
                r.pinned_by,
                r.pinned_at,
                if r.changed { "" } else { ": it was already" }
            );
            Ok(true)
        }
        ComplianceCommand::Unpin { user_id, target } => {
            let (mut client, req) = prepare(
                &target,
                &user_id,
                pb::UnpinUserRequest {
                    user_id: user_id.clone(),
                },
            )
            .await?;
            let r = client.unpin_user(req).await.map_err(failed)?.into_inner();
            println!(
                "{user_id} is not pinned{}",
                if r.changed {
                    " any more"
                } else {
                    " (it was not)"
                }
            );
            Ok(true)
        }
        ComplianceCommand::Move {
            user_id,
            abort: true,
            target,
            ..
        } => {
            let (mut client, req) = prepare(
                &target,
                &user_id,
                pb::AbortMoveRequest {
                    user_id: user_id.clone(),
                },
            )
            .await?;
            let r = client.abort_move(req).await.map_err(failed)?.into_inner();
            println!(
                "the move of {user_id} is called off (operation {}); it stays where it is",
                r.operation_id
            );
            Ok(true)
        }
        ComplianceCommand::Move {
            user_id,
            to,
            receipt,
            target,
            ..
        } => {
            let to = to.context("--to names the target region")?;
            let msg = pb::MoveUserRequest {
                user_id: user_id.clone(),
                to: to.clone(),
            };
            let (mut client, req) = prepare(&target, &user_id, msg).await?;
            let r = client.move_user(req).await.map_err(failed)?.into_inner();
            println!(
                "{user_id} moved to {to} as {} (operation {})",
                r.new_user_id, r.operation_id
            );
            save_receipt(r, receipt)?;
            Ok(true)
        }
        ComplianceCommand::VerifyReceipt { receipt, jwks } => {
            let text = std::fs::read_to_string(&receipt)
                .with_context(|| format!("cannot read {}", receipt.display()))?;
            let file: ReceiptFile = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a receipt file", receipt.display()))?;
            let keys = KeySet::from_jwks(
                &std::fs::read_to_string(&jwks)
                    .with_context(|| format!("cannot read {}", jwks.display()))?,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", jwks.display()))?;
            Ok(verify(&file, &keys))
        }
    }
}

/// Checks each part's signature, that the parts are one operation's
/// (the same operation, user, new id and regions), that the source's part
/// is there (and, for a move, the target's), and the source's post-check;
/// prints PASS/FAIL lines.
fn verify(file: &ReceiptFile, keys: &KeySet) -> bool {
    use domicile_core::receipt::{Operation, Part};
    let mut ok = true;
    let mut check = |pass: bool, what: String| {
        println!("{} {what}", if pass { "PASS" } else { "FAIL" });
        ok &= pass;
    };
    let mut verified = Vec::new();
    for part in &file.parts {
        match keys.verify_receipt(part) {
            Ok(c) => {
                check(
                    true,
                    format!(
                        "{:?} part signed by {} for operation {}",
                        c.part, c.region, c.operation_id
                    ),
                );
                verified.push(c);
            }
            Err(e) => check(false, format!("a part does not verify: {e}")),
        }
    }
    let Some(first) = verified.first() else {
        check(false, "the receipt has no verified part".into());
        return ok;
    };
    let same = verified.iter().all(|c| {
        c.operation_id == file.operation_id
            && c.operation == first.operation
            && c.user_id == first.user_id
            && c.new_user_id == first.new_user_id
            && c.from_region == first.from_region
            && c.to_region == first.to_region
    });
    check(
        same,
        format!(
            "every part is of operation {} on {}",
            file.operation_id, first.user_id
        ),
    );
    let sources: Vec<_> = verified.iter().filter(|c| c.part == Part::Source).collect();
    let targets = verified.iter().filter(|c| c.part == Part::Target).count();
    let want_targets = usize::from(first.operation == Operation::Move);
    check(
        sources.len() == 1 && targets == want_targets,
        format!(
            "one source part{} ({} source, {targets} target)",
            if want_targets == 1 {
                " and one target part"
            } else {
                ""
            },
            sources.len()
        ),
    );
    for c in sources {
        let clean = c.clean();
        check(
            clean,
            format!(
                "post-check: {} holds {} of {}",
                c.region,
                if clean {
                    "nothing".to_owned()
                } else {
                    format!("{:?}", c.remaining)
                },
                c.user_id
            ),
        );
        check(
            c.region == c.from_region,
            format!(
                "the source part is signed by the source region {}",
                c.from_region
            ),
        );
    }
    ok
}
