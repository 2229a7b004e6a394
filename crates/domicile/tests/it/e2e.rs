//! The residency promise, end to end, with real processes.

use crate::procs::*;
use domicile_core::token::Expectations;
use domicile_proto::v1 as pb;
use prost::Message;
use tonic::Code;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// (a) New users are homed per the routing table; (b) an EU user travelling
/// is served by EU and their token verifies against the edge's JWKS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_homed_by_the_table_and_served_at_home_when_travelling() {
    let fed = Federation::start();
    let mut edge = fed.client().await;
    // (email, preference, client address) → (region, reason)
    let cases = [
        ("pin@example.com", "", "192.0.2.1", "us", "domain"),
        ("pin@example.jp", "eu", "198.51.100.1", "ap", "domain"),
        (
            "choice@example.org",
            "us",
            "203.0.113.1",
            "us",
            "preference",
        ),
        ("de@example.org", "", "192.0.2.50", "eu", "geoip"),
        ("gb@example.org", "", "100.65.3.4", "eu", "geoip"),
        ("ca@example.org", "", "100.66.0.9", "us", "geoip"),
        ("sg@example.org", "", "100.68.1.1", "ap", "geoip"),
        ("jp6@example.org", "", "2001:db8:81::1", "ap", "geoip"),
        ("za@example.org", "", "100.70.0.1", "eu", "default"),
    ];
    for (email, pref, ip, region, reason) in cases {
        let req = pb::RegisterRequest {
            region_preference: pref.into(),
            ..register(email)
        };
        let resp = edge
            .register(from(ip, req))
            .await
            .unwrap_or_else(|s| panic!("{email}: {s:?}\n{}", fed.logs()));
        assert_eq!(
            route_of(resp.metadata()),
            (region.to_owned(), reason.to_owned()),
            "{email}"
        );
        assert!(
            resp.get_ref()
                .user_id
                .starts_with(&format!("usr_{region}_"))
        );
    }

    let keys = edge_keys(fed.edge_addr).await;
    let issuer = format!("http://{}", fed.edge_addr);
    let want = Expectations {
        issuer: &issuer,
        audience: &issuer,
        region: None,
    };
    for ip in ["198.51.100.7", "203.0.113.7", "2001:db8:1::7"] {
        let resp = edge.login(from(ip, login("de@example.org"))).await.unwrap();
        assert_eq!(
            route_of(resp.metadata()),
            ("eu".into(), "index".into()),
            "login from {ip}"
        );
        let claims = keys
            .verify(&resp.get_ref().access_token, &want, now())
            .unwrap();
        assert_eq!(claims.rgn, "eu");
    }
}

/// The `domicile client` commands, as a developer would use them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_command_shows_where_requests_go() {
    let fed = Federation::start();
    let edge = fed.edge_addr.to_string();
    let session = fed.dir.path().join("cli-session.json");
    let base = [
        "client",
        "--edge",
        &edge,
        "--session",
        session.to_str().unwrap(),
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
        fed.run(&args)
    };
    let (ok, out) = run(&[
        "--from",
        "203.0.113.7",
        "register",
        "--email",
        "cli@example.org",
        "--password",
        "analytical engine",
        "--given-name",
        "Ada",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("region: ap (route: geoip)"), "{out}");
    let (ok, out) = run(&[
        "--from",
        "192.0.2.7",
        "login",
        "--email",
        "cli@example.org",
        "--password",
        "analytical engine",
    ]);
    assert!(ok && out.contains("region: ap (route: index)"), "{out}");
    let (ok, out) = run(&["whoami"]);
    assert!(
        ok && out.contains("region: ap (route: artifact)")
            && out.contains("email: cli@example.org")
            && out.contains("name: Ada"),
        "{out}"
    );
    let (ok, out) = run(&["refresh"]);
    assert!(ok && out.contains("region: ap (route: artifact)"), "{out}");
    let (ok, out) = run(&[
        "--from",
        "192.0.2.7",
        "login",
        "--email",
        "cli@example.org",
        "--password",
        "wrong password",
    ]);
    assert!(
        !ok && out.contains("Unauthenticated") && out.contains("region: ap"),
        "{out}"
    );
    // Two-step sign-in from the command line (codes by totp-rs).
    let (ok, out) = run(&["mfa-enroll"]);
    assert!(ok && out.contains("region: ap (route: artifact)"), "{out}");
    let uri = out
        .lines()
        .find_map(|l| l.strip_prefix("otpauth URI (for a QR code): "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    let totp = totp_rs::Totp::from_url(&uri).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (ok, out) = run(&["mfa-confirm", "--code", &totp.generate(now).to_string()]);
    assert!(ok && out.contains("two-step sign-in is on"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("  ")).count(),
        10,
        "{out}"
    );
    let password_only = [
        "--from",
        "192.0.2.7",
        "login",
        "--email",
        "cli@example.org",
        "--password",
        "analytical engine",
    ];
    let (ok, out) = run(&password_only);
    assert!(!ok && out.contains("--code"), "{out}");
    let next = totp.generate(now + 30).to_string();
    let with_code: Vec<&str> = password_only
        .iter()
        .copied()
        .chain(["--code", next.as_str()])
        .collect();
    let (ok, out) = run(&with_code);
    assert!(ok && out.contains("region: ap (route: artifact)"), "{out}");
    let (ok, out) = run(&["logout"]);
    assert!(ok && out.contains("ended session ses_ap_"), "{out}");
}

/// (c) After a mixed workload each region stores only its own users, by the
/// store API and by the bytes of its files; the index holds no identifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_mixed_workload_every_region_holds_only_its_own_users() {
    let fed = Federation::start();
    let mut edge = fed.client().await;
    let mut homes = Vec::new();
    for (i, ip) in ["192.0.2.9", "198.51.100.9", "203.0.113.9", "100.70.0.9"]
        .iter()
        .cycle()
        .take(16)
        .enumerate()
    {
        let email = format!("mixed{i}@example.org");
        let r = edge
            .register(from(ip, register(&email)))
            .await
            .unwrap()
            .into_inner();
        // Travel, log in again, refresh, read and change the profile.
        let l = edge
            .login(from("203.0.113.200", login(&email)))
            .await
            .unwrap()
            .into_inner();
        let f = edge
            .refresh(pb::RefreshRequest {
                refresh_token: l.refresh_token,
            })
            .await
            .unwrap()
            .into_inner();
        let change = pb::UpdateProfileRequest {
            display_name: Some(format!("user {i}")),
            ..Default::default()
        };
        edge.update_profile(bearer(change, &f.access_token))
            .await
            .unwrap();
        homes.push((email, r.region));
    }
    for (region, _) in fed.users().await {
        let report = fed.report(&region).await;
        let mut expected: Vec<String> = homes
            .iter()
            .filter(|(_, r)| *r == region)
            .map(|(e, _)| e.clone())
            .collect();
        expected.sort();
        assert_eq!(report.identifiers, expected, "store API of {region}");
        assert_eq!(report.foreign_users, 0);
        let file =
            std::fs::read(fed.dir.path().join(format!("data/{region}/region.redb"))).unwrap();
        for (email, home) in &homes {
            assert_eq!(
                contains(&file, email.as_bytes()),
                *home == region,
                "{email} (home {home}) in {region}'s file"
            );
        }
    }
    let index = std::fs::read(fed.dir.path().join("data/index/index.redb")).unwrap();
    for (email, _) in &homes {
        assert!(
            !contains(&index, email.as_bytes()),
            "{email} in the index file"
        );
    }
    // The compliance report agrees and says so.
    let (ok, out) = fed.run(&[
        "residency",
        "report",
        "--config",
        fed.config.to_str().unwrap(),
        "--scan-files",
    ]);
    assert!(ok, "{out}");
    assert!(
        !out.contains("FAIL") && out.matches("PASS").count() >= 8,
        "{out}"
    );
    assert!(
        !out.contains("mixed0@"),
        "identifiers are shown only with --identifiers:\n{out}"
    );
    let (ok, out) = fed.run(&[
        "residency",
        "report",
        "--config",
        fed.config.to_str().unwrap(),
        "--identifiers",
    ]);
    assert!(ok && out.contains("mixed0@example.org"), "{out}");
    // An operator key the federation does not list: the nodes refuse the
    // report (the CLI signs with DOMICILE_ADMIN_KEY's key when it is set).
    let key = fed.dir.path().join("stranger.key");
    let (ok, out) = fed.run(&[
        "admin",
        "new-key",
        "--name",
        "stranger",
        "--out",
        key.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("public_key = "), "{out}");
    let (ok, out) = fed.run_with(
        &[
            "residency",
            "report",
            "--config",
            fed.config.to_str().unwrap(),
        ],
        &[("DOMICILE_ADMIN_KEY", key.to_str().unwrap())],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("names no operator"), "{out}");
    assert!(!out.contains("mixed0@"), "{out}");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// (d) One email registered at once from addresses of two regions: one account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_through_the_edge_make_one_account() {
    let fed = Federation::start();
    let mut tasks = Vec::new();
    for i in 0..6 {
        for ip in ["192.0.2.10", "198.51.100.10"] {
            let mut c = fed.client().await;
            let req = from(ip, register(&format!("both{i}@example.org")));
            tasks.push(tokio::spawn(async move { c.register(req).await }));
        }
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) => assert!(
                matches!(s.code(), Code::AlreadyExists | Code::FailedPrecondition),
                "{s:?}"
            ),
        }
    }
    assert_eq!(ok, 6);
    let total: u64 = fed.users().await.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 6);
}

/// (e) A region down: its users get UNAVAILABLE, the others keep working, its
/// tokens still verify; after a restart nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_region_fails_alone_and_comes_back_whole() {
    let mut fed = Federation::start();
    let mut edge = fed.client().await;
    let ap = edge
        .register(from("203.0.113.5", register("tokyo@example.org")))
        .await
        .unwrap()
        .into_inner();
    let eu = edge
        .register(from("192.0.2.5", register("berlin@example.org")))
        .await
        .unwrap()
        .into_inner();
    fed.stop_node("ap");
    let mut unavailable = false;
    for _ in 0..100 {
        match edge
            .login(from("203.0.113.5", login("tokyo@example.org")))
            .await
        {
            Err(s) if s.code() == Code::Unavailable => {
                assert_eq!(
                    s.metadata()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("3")
                );
                assert_eq!(route_of(s.metadata()).0, "ap");
                unavailable = true;
                break;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert!(
        unavailable,
        "ap users never saw UNAVAILABLE\n{}",
        fed.logs()
    );
    let s = edge
        .get_profile(bearer(pb::GetProfileRequest {}, &ap.access_token))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable);
    // Others work; ap's tokens still verify offline with the edge's keys.
    edge.get_profile(bearer(pb::GetProfileRequest {}, &eu.access_token))
        .await
        .unwrap();
    edge.register(from("198.51.100.5", register("ny@example.org")))
        .await
        .unwrap();
    let issuer = format!("http://{}", fed.edge_addr);
    let want = Expectations {
        issuer: &issuer,
        audience: &issuer,
        region: None,
    };
    edge_keys(fed.edge_addr)
        .await
        .verify(&ap.access_token, &want, now())
        .unwrap();
    // Back up: everything is there.
    fed.start_node("ap");
    let mut back = None;
    for _ in 0..100 {
        if let Ok(r) = edge
            .login(from("203.0.113.5", login("tokyo@example.org")))
            .await
        {
            back = Some(r.into_inner());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let back = back.unwrap_or_else(|| panic!("ap never came back\n{}", fed.logs()));
    assert_eq!(back.user_id, ap.user_id);
    edge.get_profile(bearer(pb::GetProfileRequest {}, &ap.access_token))
        .await
        .unwrap();
    edge.refresh(pb::RefreshRequest {
        refresh_token: ap.refresh_token,
    })
    .await
    .unwrap();
    assert_eq!(
        fed.users().await,
        vec![("ap".into(), 1), ("eu".into(), 1), ("us".into(), 1)]
    );
}

/// (f) Bad input through the edge: clear errors, healthy nodes, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_through_the_edge_changes_nothing() {
    let fed = Federation::start();
    let mut edge = fed.client().await;
    let frame = |m: &[u8]| {
        let mut v = vec![0u8];
        v.extend_from_slice(&(m.len() as u32).to_be_bytes());
        v.extend_from_slice(m);
        v
    };
    let login_path = "/domicile.v1.Identity/Login";
    let valid = pb::LoginRequest {
        email: "a@example.org".into(),
        password: "whatever1".into(),
    }
    .encode_to_vec();
    // (path, content type, body, HTTP status, grpc-status)
    type Case<'a> = (&'a str, &'a str, Vec<u8>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            login_path,
            "application/grpc",
            b"garbage".to_vec(),
            200,
            Some("3"),
        ),
        (
            login_path,
            "application/grpc",
            frame(&[0xff; 9]),
            200,
            Some("3"),
        ),
        (
            login_path,
            "application/grpc",
            vec![0; 200 * 1024],
            200,
            Some("8"),
        ),
        (login_path, "application/json", frame(&valid), 415, None),
        (login_path, "text/plain", b"hello".to_vec(), 415, None),
    ];
    for (path, ct, body, status, grpc) in cases {
        let (got_status, headers, _) = h2_post(fed.edge_addr, path, ct, body).await;
        assert_eq!(
            (got_status, grpc_status(&headers)),
            (status, grpc.map(str::to_owned)),
            "{path} {ct}"
        );
    }
    let invalid: Vec<(pb::RegisterRequest, Code, &str)> = vec![
        (
            pb::RegisterRequest {
                email: "not an email".into(),
                password: "long enough".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "email:",
        ),
        (
            pb::RegisterRequest {
                email: "x@example.org".into(),
                password: "short".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "password:",
        ),
        (
            pb::RegisterRequest {
                email: "x@example.org".into(),
                password: "p".repeat(1 << 20),
                ..Default::default()
            },
            Code::ResourceExhausted,
            "over",
        ),
        (
            pb::RegisterRequest {
                email: "x@example.org".into(),
                password: "p".repeat(2000),
                ..Default::default()
            },
            Code::InvalidArgument,
            "1024 bytes",
        ),
    ];
    for (req, code, text) in invalid {
        let s = edge.register(from("192.0.2.1", req)).await.unwrap_err();
        assert_eq!(s.code(), code, "{s:?}");
        assert!(s.message().contains(text), "{s:?}");
    }
    assert_eq!(
        fed.users().await.iter().map(|(_, n)| n).sum::<u64>(),
        0,
        "nothing written"
    );
    // Every node is still healthy and serving.
    for addr in fed.node_addrs.values() {
        std::net::TcpStream::connect(addr).unwrap();
    }
    edge.register(from("192.0.2.1", register("fine@example.org")))
        .await
        .unwrap();
}

/// Logs of a full flow (edge and every node) carry no email, password or
/// token, not even a fragment of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_personal_data_or_secrets() {
    let mut fed = Federation::start();
    let mut edge = fed.client().await;
    let email = "secret.person@example.org";
    let password = "hunter2-but-longer";
    let req = pb::RegisterRequest {
        email: email.into(),
        password: password.into(),
        ..Default::default()
    };
    let reg = edge
        .register(from("203.0.113.40", req))
        .await
        .unwrap()
        .into_inner();
    let login = edge
        .login(from(
            "192.0.2.40",
            pb::LoginRequest {
                email: email.into(),
                password: password.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let refreshed = edge
        .refresh(pb::RefreshRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    edge.get_profile(bearer(pb::GetProfileRequest {}, &refreshed.access_token))
        .await
        .unwrap();
    // Failures log too: a wrong password, a reused refresh token.
    let wrong = pb::LoginRequest {
        email: email.into(),
        password: "not the password".into(),
    };
    assert!(edge.login(from("192.0.2.40", wrong)).await.is_err());
    assert!(
        edge.refresh(pb::RefreshRequest {
            refresh_token: login.refresh_token.clone()
        })
        .await
        .is_err()
    );
    // Stop everything so every log is complete.
    for r in ["eu", "us", "ap"] {
        fed.stop_node(r);
    }
    let logs = fed.logs();
    assert!(
        logs.contains("node serving"),
        "the logs were captured:\n{logs}"
    );
    // A refresh token names its session (`rt_<region>_<session ulid>_<secret>`),
    // and session ids may be logged: the 32 random bytes (43 characters) are
    // the secret, and must not appear.
    let secret_of = |t: &str| t[t.len().saturating_sub(43)..].to_owned();
    let secrets = [
        email.to_owned(),
        "secret.person".to_owned(),
        password.to_owned(),
        reg.access_token.clone(),
        secret_of(&login.refresh_token),
        secret_of(&refreshed.refresh_token),
    ];
    assert_no_leak("logs", &logs, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_publishes_the_next_key_through_the_edge() {
    let fed = Federation::start();
    let config = fed.config.to_str().unwrap().to_owned();
    let (ok, out) = fed.run(&["keys", "rotate", "--config", &config, "--region", "mars"]);
    assert!(!ok && out.contains("no such region"), "{out}");
    let (ok, out) = fed.run(&[
        "keys",
        "rotate",
        "--config",
        &config,
        "--region",
        "us",
        "--activate-in",
        "60",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("us-2 published now") && out.contains("us-1 signs until then"),
        "{out}"
    );
    // The edge's federation JWKS picks it up on its next refresh.
    let mut published = false;
    for _ in 0..50 {
        let (_, jwks) = http_get(fed.edge_addr, "/.well-known/jwks.json").await;
        if jwks.contains("\"us-2\"") && jwks.contains("\"us-1\"") {
            published = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(published, "us-2 never reached the federation JWKS");
}

/// `domicile up` runs the whole federation from the shipped binary alone:
/// a node per region and the edge, its state under `--data`, and SIGTERM
/// stops every process it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domicile_up_runs_the_federation_from_the_binary() {
    use domicile_testkit::config::FederationConfig;
    let dir = tempfile::tempdir().unwrap();
    let (edge, admin) = (free_addr(), free_addr());
    let mut c = FederationConfig::new("up");
    c.edge = Some((edge, admin));
    c.edge_settings = vec!["health_check_seconds = 1".into()];
    c.trusted_proxies = Some("[\"127.0.0.0/8\"]".into());
    let nodes: Vec<(&str, std::net::SocketAddr)> = ["eu", "us", "ap"]
        .iter()
        .map(|r| (*r, free_addr()))
        .collect();
    for (r, a) in &nodes {
        c = c.node(r, *a);
    }
    let config = dir.path().join("regions.toml");
    std::fs::write(&config, c.render()).unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("up.log");
    let up = Proc::spawn(
        &[
            "up",
            "--config",
            config.to_str().unwrap(),
            "--data",
            state.to_str().unwrap(),
        ],
        log.clone(),
        dir.path(),
        &Options::default(),
    );
    wait_for_port(edge, &log);
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = pb::identity_client::IdentityClient::connect(format!("http://{edge}")).await
        {
            client = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut client = client.unwrap();
    // The edge's health checks find the nodes within a few seconds.
    let mut registered = None;
    for _ in 0..100 {
        match client.register(register("up@example.jp")).await {
            Ok(r) => {
                registered = Some(r.into_inner());
                break;
            }
            Err(s) if s.code() == Code::Unavailable => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(s) => panic!("{s:?}\n{}", std::fs::read_to_string(&log).unwrap()),
        }
    }
    assert_eq!(registered.unwrap().region, "ap");
    for r in ["eu", "us", "ap", "index", "index.key"] {
        assert!(state.join(r).exists(), "{r} is not under --data");
    }
    assert!(
        !dir.path().join("data").exists(),
        "nothing is written where regions.toml points"
    );
    up.stop();
    for (what, addr) in [("edge", edge)].into_iter().chain(nodes) {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{what} still listens after domicile up stopped"
        );
    }
}

/// A violation planted behind the federation's back (each region's files
/// written directly while its node is stopped, as a bug or a misconfigured
/// node could).
#[derive(Clone, Copy, Debug)]
enum Plant {
    /// A us user's record in eu's store (a node of us pointed at eu's data).
    ForeignUser,
    /// An eu user the index does not know.
    UnindexedUser,
    /// A us user's email inside an eu record.
    ForeignIdentifierInFile,
    /// An email in the clear as an index key.
    PlaintextIndexKey,
    /// An index entry homing a user in a region the federation does not
    /// have (the index store itself refuses an entry whose user id and
    /// region disagree).
    MalformedIndexEntry,
}

fn user_record(id: &str, email: &str) -> domicile_store::UserRecord {
    domicile_store::UserRecord {
        user_id: id.into(),
        email: email.into(),
        email_verified: false,
        password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"
            .into(),
        given_name: String::new(),
        family_name: String::new(),
        display_name: String::new(),
        locale: String::new(),
        pending_email: None,
        phone: None,
        pending_phone: None,
        pin: None,
        moving: None,
        created_at: now(),
        updated_at: now(),
        version: 1,
    }
}

async fn plant(fed: &Federation, what: Plant) {
    use domicile_core::{
        RegionCode,
        ids::UserId,
        index::{IdentifierKey, IndexEntry, IndexState},
    };
    use domicile_store::{IndexStore, RegionStore};
    let data = fed.dir.path().join("data");
    let region = |r: &str| RegionCode::parse(r).unwrap();
    let id = |r: &str| UserId::new(&region(r), 1_700_000_000_000, 42);
    match what {
        Plant::ForeignUser => {
            // Opened as region us on eu's directory: the store's own
            // refusal of foreign records cannot see this misconfiguration.
            let wrong = RegionStore::open_embedded(&data.join("eu"), &region("us")).unwrap();
            let r = wrong
                .insert_user(&user_record(id("us").as_str(), "stray@example.org"))
                .await
                .unwrap();
            assert!(r.is_applied());
        }
        Plant::UnindexedUser | Plant::ForeignIdentifierInFile => {
            let email = match what {
                Plant::UnindexedUser => "ghost@example.de",
                _ => "us-user@example.com",
            };
            let eu = RegionStore::open_embedded(&data.join("eu"), &region("eu")).unwrap();
            assert!(
                eu.insert_user(&user_record(id("eu").as_str(), email))
                    .await
                    .unwrap()
                    .is_applied()
            );
        }
        Plant::PlaintextIndexKey | Plant::MalformedIndexEntry => {
            let index = IndexStore::open_embedded(&data.join("index")).unwrap();
            let (key, entry_region, user) = match what {
                Plant::PlaintextIndexKey => {
                    let mut key = [0u8; 32];
                    key[..19].copy_from_slice(b"us-user@example.com");
                    (key, "us", id("us"))
                }
                _ => ([7u8; 32], "mars", id("mars")),
            };
            let entry = IndexEntry {
                region: region(entry_region),
                user_id: user.clone(),
                state: IndexState::Pending,
                created_at: now(),
                expires_at: Some(now() + 3600),
            };
            let k = IdentifierKey(key);
            index.claim(&k, &entry, now()).await.unwrap();
            assert!(
                index
                    .confirm(&k, user.as_str(), now())
                    .await
                    .unwrap()
                    .is_applied()
            );
        }
    }
}

/// Every check of `domicile residency report` can fail: each planted
/// violation makes its check print FAIL and the report exit non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_residency_report_fails_on_each_planted_violation() {
    let cases = [
        (
            Plant::ForeignUser,
            "FAIL eu stores only its own users (1 foreign",
        ),
        (
            Plant::UnindexedUser,
            "FAIL index and eu agree (1 indexed, 2 stored)",
        ),
        (
            Plant::ForeignIdentifierInFile,
            "FAIL eu's files hold no other region's identifiers (1 found)",
        ),
        (
            Plant::PlaintextIndexKey,
            "FAIL the index holds only keyed hashes",
        ),
        (
            Plant::PlaintextIndexKey,
            "FAIL the index file holds no plaintext identifier (1 found)",
        ),
        (
            Plant::MalformedIndexEntry,
            "FAIL the index holds only keyed hashes",
        ),
        // The signed proofs (--prove) name each one too.
        (
            Plant::ForeignUser,
            "1 records of another region: users: usr_us_",
        ),
        (Plant::UnindexedUser, "1 users the index does not home here"),
        (Plant::PlaintextIndexKey, "index: 1 keys in the clear"),
        (
            Plant::PlaintextIndexKey,
            "index: 2 active entries home users in us, whose proof confirms 1",
        ),
        (Plant::MalformedIndexEntry, "index: 1 malformed entries"),
        (
            Plant::MalformedIndexEntry,
            "entries home users in mars, which sent no proof",
        ),
    ];
    for (what, fail_line) in cases {
        let mut fed = Federation::start();
        let mut edge = fed.client().await;
        for (email, ip) in [
            ("eu-user@example.de", "192.0.2.1"),
            ("us-user@example.com", "198.51.100.1"),
        ] {
            edge.register(from(ip, register(email))).await.unwrap();
        }
        let report = |fed: &Federation| {
            let proof = fed.dir.path().join("proof.json");
            fed.run(&[
                "residency",
                "report",
                "--config",
                fed.config.to_str().unwrap(),
                "--scan-files",
                "--prove",
                "--out",
                proof.to_str().unwrap(),
            ])
        };
        let (ok, out) = report(&fed);
        assert!(
            ok && !out.contains("FAIL"),
            "{what:?}: clean before:\n{out}"
        );
        fed.stop_node("eu");
        plant(&fed, what).await;
        fed.start_node("eu");
        let (ok, out) = report(&fed);
        assert!(!ok, "{what:?}: the report must exit non-zero:\n{out}");
        assert!(
            out.contains(fail_line),
            "{what:?}: no {fail_line:?} in:\n{out}"
        );
    }
}
