//! Residency: a node never creates or reads data for a user it does not home,
//! and an identifier belongs to exactly one account in the federation.

use crate::harness::*;
use domicile_proto::v1::{self as pb, home_index_client::HomeIndexClient};
use domicile_testkit::PASSWORD;
use tonic::Code;

/// The residency rule's shared case table, as the node enforces it: a
/// required region registers only there (the others refuse with the home
/// region in metadata), a free identifier registers anywhere, a refused
/// preference is bad input everywhere; refusals write nothing.
#[tokio::test]
async fn the_shared_residency_cases() {
    use domicile_core::residency::cases::CASES;
    for allow in [true, false] {
        let fed = Fed::with(CHEAP_PASSWORDS, allow).await;
        let mut clients = Vec::new();
        for r in ["eu", "us", "ap"] {
            clients.push((r, fed.client(r).await));
        }
        for (i, (case_allow, domain, preference, want)) in CASES.iter().enumerate() {
            if *case_allow != allow {
                continue;
            }
            let req = |at: &str| pb::RegisterRequest {
                region_preference: (*preference).into(),
                ..register_req(&format!("case{i}.{at}@{domain}"))
            };
            for (at, client) in &mut clients {
                let before = fed.census().await;
                let got = client.register(req(at)).await;
                let what = format!("allow={allow} {domain} {preference:?} at {at}");
                match want {
                    Ok(Some(home)) if home == at => {
                        assert!(got.is_ok(), "{what}: {got:?}")
                    }
                    Ok(Some(home)) => {
                        expect_wrong_region(got, home);
                        assert_eq!(fed.census().await, before, "{what} wrote");
                    }
                    Ok(None) => assert!(got.is_ok(), "{what}: {got:?}"),
                    Err(e) => {
                        let s = expect_status(got, Code::InvalidArgument, "region_preference");
                        let kind = e.to_string();
                        let want_text = kind.split('"').next().unwrap_or_default();
                        assert!(s.message().contains(want_text.trim()), "{what}: {s:?}");
                        assert_eq!(fed.census().await, before, "{what} wrote");
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn compliance_pins_and_preferences_are_enforced_by_the_node() {
    let fed = Fed::start().await;
    let mut eu = fed.client("eu").await;
    let before = fed.census().await;
    // example.com is pinned to us: eu refuses it, whatever the user prefers.
    expect_wrong_region(eu.register(register_req("pinned@example.com")).await, "us");
    let prefer_eu = pb::RegisterRequest {
        region_preference: "eu".into(),
        ..register_req("pinned@example.com")
    };
    expect_wrong_region(eu.register(prefer_eu.clone()).await, "us");
    // A preference for another region is honoured by refusing here...
    let prefer_ap = pb::RegisterRequest {
        region_preference: "ap".into(),
        ..register_req("chooser@example.org")
    };
    expect_wrong_region(eu.register(prefer_ap.clone()).await, "ap");
    // ...and an unknown region is bad input.
    let prefer_mars = pb::RegisterRequest {
        region_preference: "mars".into(),
        ..register_req("chooser@example.org")
    };
    expect_status(
        eu.register(prefer_mars).await,
        Code::InvalidArgument,
        "unknown region",
    );
    assert_eq!(fed.census().await, before, "refusals wrote nothing");

    // The right regions accept them (the pin beats the preference).
    let us_user = fed
        .client("us")
        .await
        .register(prefer_eu)
        .await
        .unwrap()
        .into_inner();
    assert!(us_user.user_id.starts_with("usr_us_"));
    let ap_user = fed
        .client("ap")
        .await
        .register(prefer_ap)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ap_user.region, "ap");
    // No preference and no pin: any region may take the user (GeoIP and the
    // default region are the edge's hints, not rules).
    fed.client("us")
        .await
        .register(register_req("free@example.org"))
        .await
        .unwrap();
}

#[tokio::test]
async fn requests_about_users_homed_elsewhere_are_refused_with_their_region() {
    let fed = Fed::start().await;
    let us_user = fed
        .client("us")
        .await
        .register(register_req("homed@example.com"))
        .await
        .unwrap()
        .into_inner();
    let free = fed
        .client("ap")
        .await
        .register(register_req("taken@example.org"))
        .await
        .unwrap()
        .into_inner();
    let mut eu = fed.client("eu").await;
    let before = fed.census().await;
    expect_wrong_region(
        eu.login(login_req("homed@example.com", "correct horse battery"))
            .await,
        "us",
    );
    expect_wrong_region(
        eu.login(login_req("homed@example.com", "wrong password!"))
            .await,
        "us",
    );
    expect_wrong_region(
        eu.refresh(pb::RefreshRequest {
            refresh_token: us_user.refresh_token.clone(),
        })
        .await,
        "us",
    );
    expect_wrong_region(
        eu.logout(pb::LogoutRequest {
            refresh_token: us_user.refresh_token.clone(),
        })
        .await,
        "us",
    );
    expect_wrong_region(
        eu.get_profile(bearer(pb::GetProfileRequest {}, &us_user.access_token))
            .await,
        "us",
    );
    let change = pb::UpdateProfileRequest {
        given_name: Some("Mallory".into()),
        ..Default::default()
    };
    expect_wrong_region(
        eu.update_profile(bearer(change, &us_user.access_token))
            .await,
        "us",
    );
    // Registering the same email in another region is refused there too
    // (no domain rule: the index says where it lives).
    expect_wrong_region(eu.register(register_req("TAKEN@example.org")).await, "ap");
    assert_eq!(fed.census().await, before, "nothing written in eu");
    // At home the user works, and the profile was not touched.
    let p = fed
        .client("us")
        .await
        .get_profile(bearer(pb::GetProfileRequest {}, &us_user.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.given_name, "");
    expect_status(
        fed.client("ap")
            .await
            .register(register_req("taken@example.org"))
            .await,
        Code::AlreadyExists,
        "already exists",
    );
    assert!(free.user_id.starts_with("usr_ap_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_email_in_two_regions_make_one_account() {
    let fed = Fed::start().await;
    let emails: Vec<String> = (0..12).map(|i| format!("race{i}@example.org")).collect();
    let mut tasks = Vec::new();
    for email in &emails {
        for region in ["eu", "us"] {
            let mut c = fed.client(region).await;
            let req = register_req(email);
            tasks.push(tokio::spawn(async move { c.register(req).await }));
        }
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => winners += 1,
            Err(s) => assert!(
                matches!(s.code(), Code::AlreadyExists | Code::FailedPrecondition),
                "losers are told the account exists or where it lives: {s:?}"
            ),
        }
    }
    assert_eq!(winners, emails.len(), "exactly one account per email");
    assert_eq!(
        fed.users("eu").await + fed.users("us").await,
        emails.len() as u64
    );
}

#[tokio::test]
async fn an_orphaned_claim_expires_and_the_email_can_be_taken() {
    let fed = Fed::start().await;
    let key = email_key(&fed, "orphan@example.org");
    // A registration in us claimed the email and crashed before confirming.
    let mut index = HomeIndexClient::connect(format!("http://{}", fed.nodes["eu"].addr))
        .await
        .unwrap();
    let crashed = pb::IndexClaimRequest {
        key: key.clone(),
        region: "us".into(),
        user_id: "usr_us_01JD0000000000000000000009".into(),
        abandoned_user_id: String::new(),
    };
    assert!(index.claim(crashed).await.unwrap().into_inner().applied);
    // While the claim is live, the email is held.
    expect_wrong_region(
        fed.client("ap")
            .await
            .register(register_req("orphan@example.org"))
            .await,
        "us",
    );
    assert_eq!(fed.users("ap").await, 0);
    // After the claim TTL (60 s here) it can be taken again.
    fed.clock.advance(61);
    let lookup = index
        .lookup(pb::IndexLookupRequest { key: key.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(lookup.entry.is_none(), "expired claim is gone: {lookup:?}");
    let user = fed
        .client("ap")
        .await
        .register(register_req("orphan@example.org"))
        .await
        .unwrap()
        .into_inner();
    assert!(user.user_id.starts_with("usr_ap_"));
    let entry = index
        .lookup(pb::IndexLookupRequest { key })
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(
        (entry.region.as_str(), entry.user_id.as_str(), entry.state),
        ("ap", user.user_id.as_str(), pb::IndexState::Active as i32)
    );
    assert_eq!(entry.expires_at, 0, "an active entry does not expire");
}

/// Where a registration was cut off (its node killed, its index
/// unreachable) before it confirmed its claim, as the state it left.
#[derive(Clone, Copy, Debug)]
enum CutOffAfter {
    /// Claimed, then nothing (killed while hashing).
    Claim,
    /// Claimed and wrote its identifier row, no user.
    IdentifierRow,
    /// Claimed, wrote its identifier row and its user; never confirmed.
    User,
}

/// The state a registration of `email` in eu left when it was cut off at
/// `at`, with `password`; returns its user id.
async fn plant_cut_off(fed: &Fed, email: &str, password: &str, at: CutOffAfter, n: u8) -> String {
    let user_id = format!("usr_eu_01JD00000000000000000000C{n}");
    let key = email_key(fed, email);
    let mut index = HomeIndexClient::connect(format!("http://{}", fed.nodes["eu"].addr))
        .await
        .unwrap();
    let claim = pb::IndexClaimRequest {
        key: key.clone(),
        region: "eu".into(),
        user_id: user_id.clone(),
        abandoned_user_id: String::new(),
    };
    assert!(index.claim(claim).await.unwrap().into_inner().applied);
    let store = &fed.nodes["eu"].store;
    let ik = domicile_core::index::IdentifierKey::from_slice(&key).unwrap();
    if matches!(at, CutOffAfter::IdentifierRow | CutOffAfter::User) {
        assert!(
            store
                .insert_identifier(&ik, &user_id)
                .await
                .unwrap()
                .is_applied()
        );
    }
    if let CutOffAfter::User = at {
        let params = domicile_core::password::HashParams {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        };
        let user = domicile_store::UserRecord {
            user_id: user_id.clone(),
            email: email.into(),
            email_verified: false,
            password_hash: domicile_core::password::hash(password, &params, [7; 16]).unwrap(),
            given_name: String::new(),
            family_name: String::new(),
            display_name: String::new(),
            locale: String::new(),
            pending_email: None,
            phone: None,
            pending_phone: None,
            pin: None,
            moving: None,
            created_at: START,
            updated_at: START,
            version: 1,
        };
        assert!(store.insert_user(&user).await.unwrap().is_applied());
    }
    user_id
}

/// A registration cut off before it confirmed can be retried at once, by
/// the same person (same password) or, where it created no account, by
/// anyone; the email never answers ALREADY_EXISTS without an account
/// that signs in, and ends with exactly one account.
#[tokio::test]
async fn a_cut_off_registration_can_be_retried_at_once() {
    let fed = Fed::start().await;
    let other = "another password entirely";
    // (cut off at, password of the retry, the retry's outcome: Ok(same
    // user as the cut-off one?) or the code)
    let cases: [(CutOffAfter, &str, Result<bool, Code>); 5] = [
        (CutOffAfter::Claim, PASSWORD, Ok(false)),
        (CutOffAfter::Claim, other, Ok(false)),
        (CutOffAfter::IdentifierRow, PASSWORD, Ok(false)),
        (CutOffAfter::User, PASSWORD, Ok(true)),
        (CutOffAfter::User, other, Err(Code::AlreadyExists)),
    ];
    for (n, (at, password, want)) in cases.into_iter().enumerate() {
        let email = format!("cut{n}@example.de");
        let cut_off = plant_cut_off(&fed, &email, PASSWORD, at, n as u8).await;
        let what = format!("cut off after {at:?}, retried with {password:?}");
        let retry = fed
            .client("eu")
            .await
            .register(pb::RegisterRequest {
                password: password.into(),
                ..register_req(&email)
            })
            .await;
        let holder = match (&retry, want) {
            (Ok(r), Ok(same)) => {
                let r = r.get_ref();
                assert_eq!(r.user_id == cut_off, same, "{what}: {r:?}");
                r.user_id.clone()
            }
            (Err(s), Err(code)) if s.code() == code => cut_off.clone(),
            _ => panic!("{what}: expected {want:?}, got {retry:?}"),
        };
        // The index names the account, active; it signs in with the
        // password it was created with.
        let mut index = HomeIndexClient::connect(format!("http://{}", fed.nodes["eu"].addr))
            .await
            .unwrap();
        let entry = index
            .lookup(pb::IndexLookupRequest {
                key: email_key(&fed, &email),
            })
            .await
            .unwrap()
            .into_inner()
            .entry
            .unwrap();
        assert_eq!(
            (entry.user_id.as_str(), entry.state),
            (holder.as_str(), pb::IndexState::Active as i32),
            "{what}"
        );
        let created_with = if holder == cut_off {
            PASSWORD
        } else {
            password
        };
        let signed_in = fed
            .client("eu")
            .await
            .login(login_req(&email, created_with))
            .await
            .unwrap_or_else(|s| panic!("{what}: the account does not sign in: {s:?}"));
        assert_eq!(signed_in.get_ref().user_id, holder, "{what}");
    }
    assert_eq!(
        fed.users("eu").await,
        5,
        "one account per email, none left over"
    );
}

/// The index key of an email, computed like a node does, from the federation
/// secret file.
pub(crate) fn email_key(fed: &Fed, email: &str) -> Vec<u8> {
    use domicile_core::{email::Email, index::IndexSecret};
    let secret = std::fs::read_to_string(fed.dir.path().join("index.key")).unwrap();
    let secret = IndexSecret::new(secret.trim().as_bytes().to_vec()).unwrap();
    secret.email_key(&Email::parse(email).unwrap()).0.to_vec()
}

#[tokio::test]
async fn the_index_holds_no_personal_data() {
    let fed = Fed::start().await;
    let emails = ["priv1@example.org", "priv2@example.com", "priv3@example.de"];
    for (email, region) in emails.iter().zip(["ap", "us", "eu"]) {
        fed.client(region)
            .await
            .register(register_req(email))
            .await
            .unwrap();
    }
    let index_file = std::fs::read(fed.data_dir().join("index/index.redb")).unwrap();
    for email in emails {
        let local = email.split('@').next().unwrap();
        assert!(
            !contains(&index_file, email.as_bytes()) && !contains(&index_file, local.as_bytes()),
            "{email} found in the index"
        );
    }
    // Each region's file holds its own users' emails and no one else's.
    for (email, region) in emails.iter().zip(["ap", "us", "eu"]) {
        for other in ["eu", "us", "ap"] {
            let file = std::fs::read(fed.data_dir().join(format!("{other}/region.redb"))).unwrap();
            assert_eq!(
                contains(&file, email.as_bytes()),
                other == region,
                "{email} in {other}"
            );
        }
    }
}
