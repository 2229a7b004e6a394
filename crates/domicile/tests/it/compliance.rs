//! The compliance officer's commands against the real binaries: a signed
//! residency proof checked offline, a pin that refuses a move, a move
//! whose receipt verifies against the edge's JWKS (and fails when a part
//! is taken out), an export, an erasure after which the address registers
//! again; and no log holds the user's address.

use crate::procs::*;

/// The word after `marker` in `out`.
fn word_after<'a>(out: &'a str, marker: &str) -> &'a str {
    let at = out
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in:\n{out}"));
    out[at + marker.len()..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compliance_officer_proves_pins_moves_exports_and_erases_from_the_command_line() {
    let fed = Federation::start();
    let config = fed.config.to_str().unwrap().to_owned();
    let dir = fed.dir.path();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let email = "officer.case@example.org";
    let mut edge = fed.client().await;
    let reg = edge
        .register(from("192.0.2.50", register(email)))
        .await
        .unwrap()
        .into_inner();
    let to = if reg.region == "us" { "ap" } else { "us" };
    let save_jwks = |name: &'static str| {
        let addr = fed.edge_addr;
        let file = path(name);
        async move {
            let (status, body) = http_get(addr, "/.well-known/jwks.json").await;
            assert_eq!(status, 200);
            std::fs::write(&file, body).unwrap();
            file
        }
    };

    // A signed residency proof, saved and checked offline.
    let proof = path("proof.json");
    let (ok, out) = fed.run(&[
        "residency",
        "report",
        "--config",
        &config,
        "--prove",
        "--out",
        &proof,
    ]);
    assert!(ok && !out.contains("FAIL"), "{out}");
    assert!(
        out.contains(&format!("PASS {} signs that it holds 1 users", reg.region)),
        "{out}"
    );
    let jwks = save_jwks("jwks.json").await;
    let (ok, out) = fed.run(&[
        "residency",
        "verify-proof",
        &proof,
        "--jwks",
        &jwks,
        "--config",
        &config,
    ]);
    assert!(ok && out.matches("PASS").count() == 3, "{out}");

    // A pin refuses the move, naming it; unpinned, the move goes.
    let (ok, out) = fed.run(&[
        "compliance",
        "pin",
        &reg.user_id,
        "--reason",
        "TICKET-7",
        "--config",
        &config,
    ]);
    assert!(ok && out.contains("is pinned to"), "{out}");
    let (ok, out) = fed.run(&[
        "compliance",
        "move",
        &reg.user_id,
        "--to",
        to,
        "--config",
        &config,
    ]);
    assert!(!ok && out.contains("pinned"), "{out}");
    let (ok, out) = fed.run(&["compliance", "unpin", &reg.user_id, "--config", &config]);
    assert!(ok, "{out}");
    let receipt = path("move.json");
    let (ok, out) = fed.run(&[
        "compliance",
        "move",
        &reg.user_id,
        "--to",
        to,
        "--config",
        &config,
        "--receipt",
        &receipt,
    ]);
    assert!(ok, "{out}");
    let new_id = word_after(&out, &format!("moved to {to} as ")).to_owned();
    assert!(new_id.starts_with(&format!("usr_{to}_")), "{out}");
    let jwks = save_jwks("jwks-after.json").await;
    let (ok, out) = fed.run(&["compliance", "verify-receipt", &receipt, "--jwks", &jwks]);
    assert!(ok && !out.contains("FAIL"), "{out}");
    assert!(out.contains("PASS post-check"), "{out}");
    // Without the source's part the receipt proves nothing.
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    file["parts"].as_array_mut().unwrap().pop();
    let cut = path("move-cut.json");
    std::fs::write(&cut, file.to_string()).unwrap();
    let (ok, out) = fed.run(&["compliance", "verify-receipt", &cut, "--jwks", &jwks]);
    assert!(!ok && out.contains("FAIL one source part"), "{out}");

    // The user signs in through the edge, at the new home, as the new id.
    let signed_in = edge.login(from("192.0.2.50", login(email))).await.unwrap();
    assert_eq!(route_of(signed_in.metadata()).0, to);
    assert_eq!(signed_in.into_inner().user_id, new_id);

    // The export, then the erasure; the address registers anew.
    let export = path("export.json");
    let (ok, out) = fed.run(&[
        "compliance",
        "export",
        &new_id,
        "--out",
        &export,
        "--config",
        &config,
    ]);
    assert!(ok, "{out}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(doc["account"]["email"], email);
    assert!(
        doc["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "moved_in"),
        "{doc}"
    );
    let erased = path("erase.json");
    let (ok, out) = fed.run(&[
        "compliance",
        "erase",
        &new_id,
        "--receipt",
        &erased,
        "--config",
        &config,
    ]);
    assert!(ok && out.contains("erased"), "{out}");
    let (ok, out) = fed.run(&["compliance", "verify-receipt", &erased, "--jwks", &jwks]);
    assert!(ok, "{out}");
    let s = edge
        .login(from("192.0.2.50", login(email)))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
    edge.register(from("192.0.2.50", register(email)))
        .await
        .unwrap();
    // The address is in no log of any process.
    assert_no_leak("logs", &fed.logs(), &[email.to_owned()]);
}
