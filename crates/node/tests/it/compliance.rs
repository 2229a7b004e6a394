//! Compliance operations through the Admin service: export, erase, pins
//! and moves between regions, with receipts checked against the regions'
//! JWKS; moves interrupted after each step and finished by a re-run on a
//! restarted node.

use crate::harness::*;
use crate::residency::email_key;
use domicile_core::receipt::{Operation, Part, ReceiptClaims};
use domicile_proto::v1::{self as pb, home_index_client::HomeIndexClient};
use domicile_store::{AuditKind, OperationStep};
use tonic::Code;

/// Where the index says `email` lives: (region, user id), or None.
async fn indexed(fed: &Fed, email: &str) -> Option<(String, String)> {
    let mut index = HomeIndexClient::connect(format!("http://{}", fed.nodes["eu"].addr))
        .await
        .unwrap();
    index
        .lookup(pb::IndexLookupRequest {
            key: email_key(fed, email),
        })
        .await
        .unwrap()
        .into_inner()
        .entry
        .map(|e| (e.region, e.user_id))
}

/// Each part of `r` verified against the JWKS of the region that signed it.
async fn verified(fed: &Fed, r: &pb::ComplianceReceipt) -> Vec<ReceiptClaims> {
    let mut out = Vec::new();
    for part in &r.parts {
        let mut found = None;
        for region in ["eu", "us", "ap"] {
            if let Ok(c) = jwks(fed, region).await.verify_receipt(part) {
                assert_eq!(c.region, region, "signed by the region it names");
                found = Some(c);
                break;
            }
        }
        out.push(found.expect("some region's key verifies the part"));
    }
    out
}

/// The user's records in `region`'s store, by table (tombstones aside).
async fn held(fed: &Fed, region: &str, user_id: &str) -> std::collections::BTreeMap<String, u64> {
    let e = fed.nodes[region].store.export_user(user_id).await.unwrap();
    domicile_identity::compliance::table_counts(&e)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// An eu client, and `email`'s registration and a second sign-in there.
async fn registered_and_signed_in(
    fed: &Fed,
    email: &str,
) -> (
    pb::identity_client::IdentityClient<tonic::transport::Channel>,
    pb::AuthResponse,
    pb::AuthResponse,
) {
    let mut eu = fed.client("eu").await;
    let reg = eu.register(register_req(email)).await.unwrap().into_inner();
    let login = eu
        .login(domicile_testkit::login(email))
        .await
        .unwrap()
        .into_inner();
    (eu, reg, login)
}

fn now_u64(fed: &Fed) -> u64 {
    use domicile_identity::Clock as _;
    fed.clock.now() as u64
}

fn audit_kinds(events: &[domicile_store::AuditRecord]) -> Vec<AuditKind> {
    events.iter().map(|e| e.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_holds_everything_the_home_region_keeps_and_no_secret() {
    let fed = Fed::start().await;
    let email = "export.me@example.de";
    let (mut eu, reg, login) = registered_and_signed_in(&fed, email).await;
    eu.update_profile(bearer(
        pb::UpdateProfileRequest {
            given_name: Some("Ada".into()),
            ..Default::default()
        },
        &login.access_token,
    ))
    .await
    .unwrap();
    let mut admin = fed.admin("eu").await;
    let doc = admin
        .export_user(pb::ExportUserRequest {
            user_id: reg.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .document;
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["format"], "domicile.user-export/1");
    assert_eq!(
        (v["region"].as_str(), v["residency"].as_str()),
        (Some("eu"), Some("EU"))
    );
    assert_eq!(v["account"]["email"], email);
    assert_eq!(v["account"]["given_name"], "Ada");
    assert_eq!(v["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(v["refresh_tokens"].as_array().unwrap().len(), 2);
    assert_eq!(v["identifier_keys"], 1);
    assert!(
        v["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "registered"),
        "{doc}"
    );
    // No secret: no hash, no token, no keyed hash.
    for secret in [
        "$argon2",
        "password",
        &reg.refresh_token,
        &login.refresh_token,
        &login.access_token,
        "token_hash",
    ] {
        assert!(!doc.contains(secret), "the export shows {secret}");
    }
    assert!(audited(&fed, &reg.user_id, AuditKind::AdminAccess).await);
    // Only the home region answers; bad ids are refused.
    expect_wrong_region(
        fed.admin("us")
            .await
            .export_user(pb::ExportUserRequest {
                user_id: reg.user_id.clone(),
            })
            .await,
        "eu",
    );
    for (user_id, code) in [
        ("usr_eu_01JD0000000000000000000000", Code::NotFound),
        ("not-an-id", Code::InvalidArgument),
        ("usr_zz_01JD0000000000000000000000", Code::InvalidArgument),
        ("", Code::InvalidArgument),
    ] {
        let s = admin
            .export_user(pb::ExportUserRequest {
                user_id: user_id.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(s.code(), code, "{user_id}: {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_leaves_a_tombstone_and_a_receipt_and_the_email_can_come_back() {
    let fed = Fed::start().await;
    let email = "forget.me@example.de";
    let (mut eu, reg, login) = registered_and_signed_in(&fed, email).await;
    let before = held(&fed, "eu", &reg.user_id).await;
    assert_eq!(before["users"], 1, "{before:?}");
    let mut admin = fed.admin("eu").await;
    let r = admin
        .erase_user(pb::EraseUserRequest {
            user_id: reg.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let claims = verified(&fed, &r).await;
    assert_eq!(claims.len(), 1);
    let c = &claims[0];
    assert_eq!(
        (c.operation, c.part, c.user_id.as_str(), c.operator.as_str()),
        (
            Operation::Erase,
            Part::Source,
            reg.user_id.as_str(),
            "local"
        )
    );
    assert!(c.clean(), "the post-check found {:?}", c.remaining);
    assert_eq!(c.counts.get("users"), Some(&1));
    assert_eq!(c.counts.get("sessions"), before.get("sessions"));
    // Nothing of the user works or is held any more.
    assert!(held(&fed, "eu", &reg.user_id).await.is_empty());
    assert_eq!(indexed(&fed, email).await, None, "the index entry is gone");
    expect_status(
        eu.login(domicile_testkit::login(email)).await,
        Code::Unauthenticated,
        "invalid",
    );
    expect_status(
        eu.refresh(pb::RefreshRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await,
        Code::Unauthenticated,
        "",
    );
    // The tombstone: who and which operation, nothing personal.
    let (_, trail) = fed.nodes["eu"]
        .identity()
        .user_audit(&reg.user_id, 0)
        .await
        .unwrap();
    assert_eq!(audit_kinds(&trail), [AuditKind::Erased]);
    assert_eq!(
        trail[0].detail,
        format!("operator=local operation={}", r.operation_id)
    );
    // The whole store holds the address nowhere now.
    let users = fed.nodes["eu"].store.scan_users().await.unwrap();
    assert!(users.iter().all(|u| u.email != email));
    // Erasing again gives the same receipt; the email registers anew.
    let again = admin
        .erase_user(pb::EraseUserRequest {
            user_id: reg.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, r);
    let back = eu.register(register_req(email)).await.unwrap().into_inner();
    assert_ne!(back.user_id, reg.user_id);
    eu.login(domicile_testkit::login(email)).await.unwrap();
    // A receipt part changed by one byte fails.
    let mut forged = r.parts[0].clone();
    let at = forged.rfind('.').unwrap() + 2;
    let flipped = if &forged[at..at + 1] == "A" { "B" } else { "A" };
    forged.replace_range(at..at + 1, flipped);
    assert!(jwks(&fed, "eu").await.verify_receipt(&forged).is_err());
}

/// The local operator's token with the compliance role, now.
fn compliance_token(fed: &Fed) -> String {
    use domicile_identity::Clock as _;
    domicile_testkit::admin::token(
        &domicile_testkit::admin::local(&fed.topology),
        &[domicile_core::admin::Role::Compliance],
        fed.clock.now(),
    )
}

/// Runs eu's move of `user_id` to us until `step`, where it stops as a
/// crash would.
async fn stop_move(fed: &Fed, token: &str, user_id: &str, step: OperationStep) {
    let err = fed.nodes["eu"]
        .identity()
        .move_user_until(user_id, "us", "local", token, Some(step))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stopped"), "{step:?}: {err}");
}

/// eu's journal of `user_id`'s operation.
async fn journal(fed: &Fed, user_id: &str) -> domicile_store::OperationRecord {
    fed.nodes["eu"]
        .store
        .get_operation(user_id)
        .await
        .unwrap()
        .unwrap()
}

/// Moves the eu user `user_id` to us, as the local operator.
async fn move_to_us(
    fed: &Fed,
    user_id: &str,
) -> Result<tonic::Response<pb::ComplianceReceipt>, tonic::Status> {
    fed.admin("eu")
        .await
        .move_user(pb::MoveUserRequest {
            user_id: user_id.into(),
            to: "us".into(),
        })
        .await
}

/// A new user in eu whose address no domain rule pins (so only pins and
/// the operator decide where it lives).
async fn unpinned_user(fed: &Fed, email: &str) -> pb::AuthResponse {
    fed.client("eu")
        .await
        .register(register_req(email))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_rules_refuse_a_move_and_say_which() {
    let fed = Fed::start().await;
    let mut admin = fed.admin("eu").await;
    let move_to = |user_id: &str, to: &str| pb::MoveUserRequest {
        user_id: user_id.into(),
        to: to.into(),
    };
    // A domain rule: example.de lives in eu.
    let de = fed
        .client("eu")
        .await
        .register(register_req("ruled@example.de"))
        .await
        .unwrap()
        .into_inner();
    expect_status(
        admin.move_user(move_to(&de.user_id, "us")).await,
        Code::FailedPrecondition,
        "the email-domain rules pin example.de to eu",
    );
    // A pin, with its operator and reason; unpinning lets the move go.
    let u = unpinned_user(&fed, "pinned@example.org").await;
    let pin = admin
        .pin_user(pb::PinUserRequest {
            user_id: u.user_id.clone(),
            reason: "TICKET-42".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(pin.pinned && pin.changed && pin.pinned_by == "local" && pin.region == "eu");
    let again = admin
        .pin_user(pb::PinUserRequest {
            user_id: u.user_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed && again.pinned_at == pin.pinned_at);
    expect_status(
        admin.move_user(move_to(&u.user_id, "us")).await,
        Code::FailedPrecondition,
        "pinned to eu (by local",
    );
    assert_eq!(held(&fed, "us", &u.user_id).await.len(), 0);
    assert_eq!(fed.users("us").await, 0, "a refused move copies nothing");
    // Bad input changes nothing either.
    for (req, code) in [
        (move_to(&u.user_id, "mars"), Code::InvalidArgument),
        (move_to(&u.user_id, "eu"), Code::InvalidArgument),
        (
            move_to("usr_eu_01JD0000000000000000000000", "us"),
            Code::NotFound,
        ),
        (move_to("nobody", "us"), Code::InvalidArgument),
    ] {
        let s = admin.move_user(req.clone()).await.unwrap_err();
        assert_eq!(s.code(), code, "{req:?}: {s:?}");
    }
    expect_status(
        admin
            .pin_user(pb::PinUserRequest {
                user_id: u.user_id.clone(),
                reason: "x".repeat(201),
            })
            .await,
        Code::InvalidArgument,
        "reason",
    );
    let unpinned = admin
        .unpin_user(pb::UnpinUserRequest {
            user_id: u.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!unpinned.pinned && unpinned.changed);
    let r = admin
        .move_user(move_to(&u.user_id, "us"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.new_user_id.starts_with("usr_us_"), "{r:?}");
    assert!(audited(&fed, &u.user_id, AuditKind::MovedOut).await);
}

/// What the user's sign-in looks like after a move: the new id in us, the
/// index there, the old region empty but for the tombstone.
async fn assert_moved(fed: &Fed, email: &str, old_id: &str, r: &pb::ComplianceReceipt) {
    let new_id = r.new_user_id.as_str();
    assert_eq!(
        indexed(fed, email).await,
        Some(("us".to_owned(), new_id.to_owned()))
    );
    assert!(held(fed, "eu", old_id).await.is_empty(), "eu holds nothing");
    let moved = held(fed, "us", new_id).await;
    assert_eq!(
        (moved["users"], moved["users_by_identifier"]),
        (1, 1),
        "{moved:?}"
    );
    let claims = verified(fed, r).await;
    let parts: Vec<(Part, &str)> = claims.iter().map(|c| (c.part, c.region.as_str())).collect();
    assert_eq!(parts, [(Part::Target, "us"), (Part::Source, "eu")]);
    for c in &claims {
        assert_eq!(c.operation_id, r.operation_id);
        assert_eq!(
            (c.user_id.as_str(), c.new_user_id.as_deref()),
            (old_id, Some(new_id))
        );
        assert!(c.clean(), "{:?}", c.remaining);
    }
    // The old id's trail is the tombstone, naming the new id.
    let (_, trail) = fed.nodes["eu"]
        .identity()
        .user_audit(old_id, 0)
        .await
        .unwrap();
    assert_eq!(audit_kinds(&trail), [AuditKind::MovedOut], "{trail:?}");
    assert!(trail[0].detail.contains(&format!("new_user_id={new_id}")));
    // Signing in goes to the new home (to its second step, for a user
    // with a second factor); the old one sends it there.
    match fed
        .client("us")
        .await
        .login(domicile_testkit::login(email))
        .await
    {
        Ok(login) => assert_eq!(login.into_inner().user_id, new_id),
        Err(s) => {
            let token = s
                .metadata()
                .get(domicile_node::MFA_TOKEN_METADATA)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{s:?}"));
            assert!(token.starts_with("mfa_us_"), "{token}");
        }
    }
    expect_wrong_region(
        fed.client("eu")
            .await
            .login(domicile_testkit::login(email))
            .await,
        "us",
    );
    // Exactly one user in the federation has the address.
    let mut holders = 0;
    for region in ["eu", "us", "ap"] {
        holders += fed.nodes[region]
            .store
            .scan_users()
            .await
            .unwrap()
            .iter()
            .filter(|u| u.email == email)
            .count();
    }
    assert_eq!(holders, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_carries_the_account_and_its_second_factor_and_ends_the_old_artifacts() {
    let fed = Fed::start().await;
    let email = "mover@example.org";
    let reg = unpinned_user(&fed, email).await;
    let mut eu = fed.client("eu").await;
    eu.update_profile(bearer(
        pb::UpdateProfileRequest {
            given_name: Some("Grace".into()),
            ..Default::default()
        },
        &reg.access_token,
    ))
    .await
    .unwrap();
    let e = eu
        .enroll_totp(bearer(pb::EnrollTotpRequest::default(), &reg.access_token))
        .await
        .unwrap()
        .into_inner();
    let totp = totp_rs::Totp::from_url(&e.otpauth_uri).unwrap();
    let now = now_u64(&fed);
    let recovery = eu
        .confirm_totp(bearer(
            pb::ConfirmTotpRequest {
                code: totp.generate(now).to_string(),
            },
            &reg.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .recovery_codes;
    let r = move_to_us(&fed, &reg.user_id).await.unwrap().into_inner();
    // The old artifacts stop working.
    expect_status(
        eu.refresh(pb::RefreshRequest {
            refresh_token: reg.refresh_token.clone(),
        })
        .await,
        Code::Unauthenticated,
        "",
    );
    expect_status(
        eu.get_profile(bearer(pb::GetProfileRequest {}, &reg.access_token))
            .await,
        Code::Unauthenticated,
        "",
    );
    // The second factor moved: the app's next code, then a recovery code.
    let mut us = fed.client("us").await;
    fed.clock.advance(30);
    let s = us.login(domicile_testkit::login(email)).await.unwrap_err();
    let token = s
        .metadata()
        .get(domicile_node::MFA_TOKEN_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("a second factor is asked: {s:?}"))
        .to_owned();
    assert!(token.starts_with("mfa_us_"), "{token}");
    let done = us
        .complete_sign_in(pb::CompleteSignInRequest {
            mfa_token: token,
            totp_code: totp.generate(now_u64(&fed)).to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.user_id, r.new_user_id);
    let profile = us
        .get_profile(bearer(pb::GetProfileRequest {}, &done.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.given_name, "Grace");
    let s = us.login(domicile_testkit::login(email)).await.unwrap_err();
    let token = s
        .metadata()
        .get(domicile_node::MFA_TOKEN_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_owned();
    us.complete_sign_in(pb::CompleteSignInRequest {
        mfa_token: token,
        recovery_code: recovery[0].clone(),
        ..Default::default()
    })
    .await
    .expect("a recovery code made before the move still works");
    // The new trail: the old history, then the arrival.
    let (_, trail) = fed.nodes["us"]
        .identity()
        .user_audit(&r.new_user_id, 0)
        .await
        .unwrap();
    let kinds = audit_kinds(&trail);
    assert!(kinds.contains(&AuditKind::Registered), "{kinds:?}");
    assert!(kinds.contains(&AuditKind::TotpEnrolled), "{kinds:?}");
    let arrival = trail
        .iter()
        .find(|e| e.kind == AuditKind::MovedIn)
        .expect("moved_in");
    assert!(
        arrival
            .detail
            .contains(&format!("old_user_id={}", reg.user_id))
    );
    assert_moved(&fed, email, &reg.user_id, &r).await;
    // Moving again is the same operation's receipt; the old id cannot be erased.
    let again = move_to_us(&fed, &reg.user_id).await.unwrap().into_inner();
    assert_eq!(again, r);
    expect_status(
        fed.admin("eu")
            .await
            .erase_user(pb::EraseUserRequest {
                user_id: reg.user_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "moved to us",
    );
}

/// A move interrupted after its copy, after its index switch and in the
/// middle of its erasure (each followed by a restart of the source node,
/// so nothing survives in memory) is finished by running it again; at
/// every stop the index names exactly one region, that region holds the
/// user, and the user is in one region's index only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_move_is_finished_by_running_it_again() {
    let mut fed = Fed::start().await;
    for (i, stop) in [
        OperationStep::Copied,
        OperationStep::Switched,
        OperationStep::Done,
    ]
    .into_iter()
    .enumerate()
    {
        let email = format!("crash{i}@example.org");
        let reg = unpinned_user(&fed, &email).await;
        let token = compliance_token(&fed);
        stop_move(&fed, &token, &reg.user_id, stop).await;
        fed.restart("eu", None).await;
        let op = journal(&fed, &reg.user_id).await;
        let new_id = op.new_user_id.clone().unwrap();
        // Where the user lives now: the index's one region, which has them.
        let (home, id) = indexed(&fed, &email).await.expect("indexed somewhere");
        match stop {
            OperationStep::Copied => {
                assert_eq!((home.as_str(), id.as_str()), ("eu", reg.user_id.as_str()));
                assert_eq!(op.step, OperationStep::Copied);
                // Frozen meanwhile: no sign-in, told to retry.
                let s = fed
                    .client("eu")
                    .await
                    .login(domicile_testkit::login(&email))
                    .await
                    .unwrap_err();
                assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                assert!(s.metadata().get("retry-after").is_some());
                // The target's copy is inert until the index names it,
                // even to a client that reaches the target's node directly.
                let s = fed
                    .client("us")
                    .await
                    .login(domicile_testkit::login(&email))
                    .await
                    .unwrap_err();
                assert_eq!(s.code(), Code::Unavailable, "{s:?}");
            }
            _ => {
                assert_eq!((home.as_str(), id.as_str()), ("us", new_id.as_str()));
                assert!(op.step >= OperationStep::Switched, "{op:?}");
            }
        }
        assert!(
            fed.nodes[home.as_str()]
                .store
                .get_user(&id)
                .await
                .unwrap()
                .is_some(),
            "{stop:?}: the indexed region holds the user"
        );
        // Mid-move, the signed proofs hold no finding, and the index's
        // count per region is what each region's proof confirms.
        let mut proofs = std::collections::BTreeMap::new();
        for region in ["eu", "us"] {
            let jws = fed
                .admin(region)
                .await
                .residency_proof(pb::ResidencyProofRequest {})
                .await
                .unwrap()
                .into_inner()
                .proof;
            let c = jwks(&fed, region).await.verify_residency(&jws).unwrap();
            assert!(c.findings().is_empty(), "{stop:?}: {c:?}");
            proofs.insert(region, c);
        }
        let index = proofs["eu"].index.clone().unwrap();
        for region in ["eu", "us"] {
            assert_eq!(
                index.active_by_region.get(region).copied().unwrap_or(0),
                proofs[region].indexed_identifiers,
                "{stop:?}: {region}"
            );
        }
        assert_eq!(proofs["eu"].moving + proofs["us"].moving, 1, "{stop:?}");
        let r = move_to_us(&fed, &reg.user_id)
            .await
            .unwrap_or_else(|s| panic!("{stop:?}: the re-run: {s:?}"))
            .into_inner();
        assert_eq!(
            (r.operation_id.as_str(), r.new_user_id.as_str()),
            (op.operation_id.as_str(), new_id.as_str())
        );
        assert_moved(&fed, &email, &reg.user_id, &r).await;
    }
}

/// A move interrupted before its index switch can be called off: the
/// target drops its copy, the user thaws where they are, and a later move
/// goes through; after the switch an abort is refused. An abort that could
/// not reach the target leaves the move marked: running the move again is
/// refused (it would switch to a copy that may be gone), running the abort
/// again finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_is_called_off_before_its_switch_and_only_then() {
    let mut fed = Fed::start().await;
    let token = compliance_token(&fed);
    let email = "undecided@example.org";
    let reg = unpinned_user(&fed, email).await;
    stop_move(&fed, &token, &reg.user_id, OperationStep::Copied).await;
    let op = journal(&fed, &reg.user_id).await;
    let new_id = op.new_user_id.clone().unwrap();
    assert_eq!(
        held(&fed, "us", &new_id).await["users"],
        1,
        "the copy is there"
    );
    let mut admin = fed.admin("eu").await;
    // us cannot be reached: the abort stops after marking the move.
    let addrs = fed.stop("us").await;
    expect_status(
        admin
            .abort_move(pb::AbortMoveRequest {
                user_id: reg.user_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "region us did not discard the copy",
    );
    fed.start_again("us", addrs).await;
    expect_status(
        move_to_us(&fed, &reg.user_id).await,
        Code::FailedPrecondition,
        "being called off",
    );
    let r = admin
        .abort_move(pb::AbortMoveRequest {
            user_id: reg.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.operation_id, op.operation_id);
    assert!(
        held(&fed, "us", &new_id).await.is_empty(),
        "the copy is gone"
    );
    assert_eq!(fed.users("us").await, 0);
    assert!(
        fed.nodes["eu"]
            .store
            .get_operation(&reg.user_id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        indexed(&fed, email).await,
        Some(("eu".to_owned(), reg.user_id.clone()))
    );
    fed.client("eu")
        .await
        .login(domicile_testkit::login(email))
        .await
        .expect("the user signs in where they are again");
    assert!(audited(&fed, &reg.user_id, AuditKind::MoveAborted).await);
    expect_status(
        admin
            .abort_move(pb::AbortMoveRequest {
                user_id: reg.user_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "in no move",
    );
    // Past the switch there is no way back, only forward.
    stop_move(&fed, &token, &reg.user_id, OperationStep::Switched).await;
    expect_status(
        admin
            .abort_move(pb::AbortMoveRequest {
                user_id: reg.user_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "past its index switch",
    );
    let done = admin
        .move_user(pb::MoveUserRequest {
            user_id: reg.user_id.clone(),
            to: "us".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_moved(&fed, email, &reg.user_id, &done).await;

    // An abort marked while another run was inside its switch: the abort
    // can no longer finish (the index names the copy), so the move takes
    // the mark off and finishes.
    let email = "torn@example.org";
    let torn = unpinned_user(&fed, email).await;
    stop_move(&fed, &token, &torn.user_id, OperationStep::Copied).await;
    let new_id = journal(&fed, &torn.user_id).await.new_user_id.unwrap();
    let addrs = fed.stop("us").await;
    admin
        .abort_move(pb::AbortMoveRequest {
            user_id: torn.user_id.clone(),
        })
        .await
        .unwrap_err();
    fed.start_again("us", addrs).await;
    // The other run's switch, as it went on past the mark.
    let mut index = HomeIndexClient::connect(format!("http://{}", fed.nodes["eu"].addr))
        .await
        .unwrap();
    assert!(
        index
            .switch(pb::IndexSwitchRequest {
                key: email_key(&fed, email),
                from_user_id: torn.user_id.clone(),
                to_user_id: new_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .applied
    );
    expect_status(
        admin
            .abort_move(pb::AbortMoveRequest {
                user_id: torn.user_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "the index names the copy already",
    );
    let done = move_to_us(&fed, &torn.user_id).await.unwrap().into_inner();
    assert_eq!(done.new_user_id, new_id);
    assert_moved(&fed, email, &torn.user_id, &done).await;
}

/// Every compliance RPC needs an operator's token with the compliance
/// role: refused without one, with a bad one, or with another role, and
/// nothing changes (no pin, no move, no erasure, no import).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compliance_call_needs_the_compliance_role() {
    use domicile_core::admin::{OperatorKey, Role};
    use domicile_identity::Clock as _;
    use domicile_testkit::admin::{self, listed};
    let fed = Fed::start().await;
    let u = unpinned_user(&fed, "guarded@example.org").await;
    let now = fed.clock.now();
    let local = admin::local(&fed.topology);
    let tokens: Vec<(&str, Option<String>, Code)> = vec![
        ("no token", None, Code::Unauthenticated),
        ("malformed", Some("nope".into()), Code::Unauthenticated),
        (
            "forged",
            Some(admin::token(
                &OperatorKey::from_seed("local", [7; 32]),
                &Role::ALL,
                now,
            )),
            Code::Unauthenticated,
        ),
        (
            "expired",
            Some(admin::token(&local, &Role::ALL, now - 200)),
            Code::Unauthenticated,
        ),
        (
            "support",
            Some(admin::token(&listed("help"), &[Role::Support], now)),
            Code::PermissionDenied,
        ),
        (
            "operator",
            Some(admin::token(&listed("sre"), &[Role::Operator], now)),
            Code::PermissionDenied,
        ),
        (
            "local, as operator only",
            Some(admin::token(&local, &[Role::Operator], now)),
            Code::PermissionDenied,
        ),
    ];
    let before = held(&fed, "eu", &u.user_id).await;
    let addr = |r: &str| fed.nodes[r].addr;
    for rpc in [
        "export", "erase", "pin", "unpin", "move", "abort", "import", "discard", "proof",
    ] {
        for (what, t, code) in &tokens {
            let region = if matches!(rpc, "import" | "discard") {
                "us"
            } else {
                "eu"
            };
            let mut c = pb::admin_client::AdminClient::connect(format!("http://{}", addr(region)))
                .await
                .unwrap();
            macro_rules! with {
                ($m:expr) => {
                    match t {
                        Some(t) => bearer($m, t),
                        None => tonic::Request::new($m),
                    }
                };
            }
            let id = u.user_id.clone();
            let r = match rpc {
                "export" => c
                    .export_user(with!(pb::ExportUserRequest { user_id: id }))
                    .await
                    .map(|_| ()),
                "erase" => c
                    .erase_user(with!(pb::EraseUserRequest { user_id: id }))
                    .await
                    .map(|_| ()),
                "pin" => c
                    .pin_user(with!(pb::PinUserRequest {
                        user_id: id,
                        reason: String::new()
                    }))
                    .await
                    .map(|_| ()),
                "unpin" => c
                    .unpin_user(with!(pb::UnpinUserRequest { user_id: id }))
                    .await
                    .map(|_| ()),
                "move" => c
                    .move_user(with!(pb::MoveUserRequest {
                        user_id: id,
                        to: "us".into()
                    }))
                    .await
                    .map(|_| ()),
                "abort" => c
                    .abort_move(with!(pb::AbortMoveRequest { user_id: id }))
                    .await
                    .map(|_| ()),
                "discard" => c
                    .discard_moved_user(with!(pb::DiscardMovedUserRequest {
                        new_user_id: "usr_us_01JD0000000000000000000000".into(),
                        operation_id: "op_eu_1".into(),
                    }))
                    .await
                    .map(|_| ()),
                "proof" => c
                    .residency_proof(with!(pb::ResidencyProofRequest {}))
                    .await
                    .map(|_| ()),
                _ => c
                    .import_moved_user(with!(pb::ImportMovedUserRequest {
                        bundle: b"{}".to_vec()
                    }))
                    .await
                    .map(|_| ()),
            };
            let s = r.expect_err(&format!("{rpc}: {what}"));
            assert_eq!(s.code(), *code, "{rpc}: {what}: {s:?}");
        }
    }
    assert_eq!(
        held(&fed, "eu", &u.user_id).await,
        before,
        "nothing changed"
    );
    let user = fed.nodes["eu"]
        .store
        .get_user(&u.user_id)
        .await
        .unwrap()
        .unwrap();
    assert!(user.pin.is_none() && user.moving.is_none());
    assert!(
        fed.nodes["eu"]
            .store
            .get_operation(&u.user_id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(fed.users("us").await, 0);
    // An import with the right role but a bad bundle is refused whole.
    let mut us = fed.admin("us").await;
    for (bundle, words) in [
        (b"{}".to_vec(), "malformed"),
        (b"not json".to_vec(), "malformed"),
        (
            vec![b' '; domicile_identity::compliance::MAX_BUNDLE + 1],
            "too large",
        ),
    ] {
        expect_status(
            us.import_moved_user(pb::ImportMovedUserRequest { bundle })
                .await,
            Code::InvalidArgument,
            words,
        );
    }
    assert_eq!(fed.users("us").await, 0);
}

/// The signed proof of each region: clean on a clean federation, and
/// naming each planted violation (a record of another region, an
/// identifier key in the clear, a user the index does not home) once it
/// is there; every proof verifies against its region's JWKS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_residency_proof_is_signed_and_names_each_planted_violation() {
    use domicile_core::{RegionCode, index::IdentifierKey};
    let fed = Fed::start().await;
    let de = unpinned_user(&fed, "proof@example.de").await;
    fed.client("us")
        .await
        .register(register_req("proof@example.com"))
        .await
        .unwrap();
    let proof = |region: &'static str| {
        let fed = &fed;
        async move {
            let r = fed
                .admin(region)
                .await
                .residency_proof(pb::ResidencyProofRequest {})
                .await
                .unwrap()
                .into_inner();
            let c = jwks(fed, region).await.verify_residency(&r.proof).unwrap();
            assert_eq!(c.findings(), r.findings, "the findings are the claims'");
            c
        }
    };
    let eu = proof("eu").await;
    assert!(eu.findings().is_empty(), "{eu:?}");
    assert_eq!(
        (eu.users, eu.first_user_id.as_str(), eu.indexed_identifiers),
        (1, de.user_id.as_str(), 1)
    );
    let ix = eu.index.as_ref().expect("eu hosts the index");
    assert_eq!(
        (ix.active_by_region.get("eu"), ix.active_by_region.get("us")),
        (Some(&1), Some(&1))
    );
    let us = proof("us").await;
    assert!(us.findings().is_empty() && us.index.is_none(), "{us:?}");

    // Each plant, and the words of the finding it must raise.
    let data = fed.data_dir().join("eu");
    let region = |r: &str| RegionCode::parse(r).unwrap();
    let stray = domicile_store::RegionStore::open_embedded(&data, &region("us")).unwrap();
    stray
        .insert_identifier(&IdentifierKey([5; 32]), "usr_us_01JD0000000000000000000005")
        .await
        .unwrap();
    let found = proof("eu").await.findings();
    assert!(
        found
            .iter()
            .any(|f| f.contains("records of another region: users_by_identifier: usr_us_")),
        "{found:?}"
    );
    let mut clear = [0u8; 32];
    clear[..16].copy_from_slice(b"proof@example.de");
    fed.nodes["eu"]
        .store
        .insert_identifier(&IdentifierKey(clear), &de.user_id)
        .await
        .unwrap();
    let found = proof("eu").await.findings();
    assert!(
        found
            .iter()
            .any(|f| f.contains("1 identifier keys in the clear")),
        "{found:?}"
    );
    let mut index = HomeIndexClient::connect(format!("http://{}", fed.nodes["eu"].addr))
        .await
        .unwrap();
    assert!(
        index
            .release(pb::IndexReleaseRequest {
                key: email_key(&fed, "proof@example.de"),
                user_id: de.user_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .applied
    );
    let found = proof("eu").await.findings();
    assert!(
        found.iter().any(|f| f.contains(&format!(
            "1 users the index does not home here: {}",
            de.user_id
        ))),
        "{found:?}"
    );
    // Without the compliance role there is no proof.
    let s = pb::admin_client::AdminClient::connect(format!("http://{}", fed.nodes["eu"].addr))
        .await
        .unwrap()
        .residency_proof(pb::ResidencyProofRequest {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
}

/// The region-wide admin calls land in the region's admin log with their
/// operator; refused calls do not; the log is read by compliance or
/// operator roles only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_wide_admin_calls_are_in_the_regions_admin_log() {
    use domicile_core::admin::Role;
    use domicile_identity::Clock as _;
    use domicile_testkit::admin::{self, listed};
    let fed = Fed::start().await;
    let mut local = fed.admin("eu").await;
    local
        .region_report(pb::RegionReportRequest::default())
        .await
        .unwrap();
    local.index_report(pb::IndexReportRequest {}).await.unwrap();
    local
        .residency_proof(pb::ResidencyProofRequest {})
        .await
        .unwrap();
    let now = fed.clock.now();
    let addr = fed.nodes["eu"].addr;
    let mut sre = admin::client(addr, &admin::token(&listed("sre"), &[Role::Operator], now)).await;
    sre.rotate_signing_key(pb::RotateSigningKeyRequest {
        activate_in_seconds: 300,
    })
    .await
    .unwrap();
    // Refused: not logged.
    let mut help = admin::client(addr, &admin::token(&listed("help"), &[Role::Support], now)).await;
    help.region_report(pb::RegionReportRequest::default())
        .await
        .unwrap_err();
    expect_status(
        help.admin_log(pb::AdminLogRequest { limit: 0 }).await,
        Code::PermissionDenied,
        "",
    );
    let log = sre
        .admin_log(pb::AdminLogRequest { limit: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(log.region, "eu");
    let seen: Vec<(&str, &str)> = log
        .events
        .iter()
        .map(|e| (e.operator.as_str(), e.call.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("sre", "rotate_signing_key"),
            ("local", "residency_proof"),
            ("local", "index_report"),
            ("local", "region_report"),
        ],
        "newest first"
    );
    assert!(
        log.events[0].detail.starts_with("kid=eu-2"),
        "{:?}",
        log.events[0]
    );
    expect_status(
        local.admin_log(pb::AdminLogRequest { limit: 1001 }).await,
        Code::InvalidArgument,
        "limit",
    );
    // Only eu's calls are in eu's log.
    let us = fed
        .admin("us")
        .await
        .admin_log(pb::AdminLogRequest { limit: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(us.events.is_empty(), "{us:?}");
}
