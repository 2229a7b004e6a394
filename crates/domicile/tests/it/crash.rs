//! A node killed with SIGKILL under registration load, through the edge:
//! no acknowledged registration is lost, and every registration it cut off
//! can be retried at once, ending with exactly one account per email that
//! signs in (docs/storage.md, "Registration without cross-partition
//! transactions"). The scenario is written once and run on both backends
//! (here on the embedded store, in `cql` on Cassandra).

use crate::procs::*;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tonic::Code;

/// Concurrent registering clients.
const WORKERS: usize = 12;
/// At most this many registrations per worker (the load is bounded).
const PER_WORKER: usize = 400;
/// A client that got an error waits this long before its next email.
const AFTER_ERROR: Duration = Duration::from_millis(50);

/// Email domains pinned to eu, us and ap.
const DOMAINS: [&str; 3] = ["example.de", "example.com", "example.jp"];

/// One registration attempt of the load.
struct Attempt {
    email: String,
    started: Instant,
    ended: Instant,
    outcome: Result<String, tonic::Status>,
}

/// What the run saw, for the test's log and its assertions.
#[derive(Debug, Default)]
pub struct CrashReport {
    pub acknowledged: usize,
    /// Failed registrations (in flight at the kill, or refused while the
    /// node was down).
    pub failed: usize,
    /// Of those, in flight when the node was killed.
    pub in_flight_at_kill: usize,
    /// Users created by registrations that were cut off before confirming
    /// (seen after the restart, before the retries).
    pub unconfirmed_users: u64,
    /// Retries that registered (a fresh account, or the cut-off one
    /// completed).
    pub retried_registered: usize,
    /// Retries told ALREADY_EXISTS whose account then signed in.
    pub retried_existing: usize,
}

async fn load(fed: &Federation, worker: usize, tag: &str, stop: Arc<AtomicBool>) -> Vec<Attempt> {
    let mut edge = fed.client().await;
    let mut out = Vec::new();
    for i in 0..PER_WORKER {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let email = format!("{tag}{worker}.{i}@{}", DOMAINS[(worker + i) % 3]);
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(20),
            edge.register(from("203.0.113.40", register(&email))),
        )
        .await
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("client timeout")))
        .map(|r| r.into_inner().user_id);
        let failed = outcome.is_err();
        out.push(Attempt {
            email,
            started,
            ended: Instant::now(),
            outcome,
        });
        if failed {
            tokio::time::sleep(AFTER_ERROR).await;
        }
    }
    out
}

/// Registers until `region` answers again through the edge (bounded).
async fn wait_until_serving(fed: &Federation, region: &str, tag: &str) {
    let domain = DOMAINS[["eu", "us", "ap"]
        .iter()
        .position(|r| *r == region)
        .unwrap()];
    let mut edge = fed.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        match edge
            .register(register(&format!("{tag}.probe@{domain}")))
            .await
        {
            Ok(_) => return,
            Err(s) => last = Some(s),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{region} never served again: {last:?}\n{}", fed.logs());
}

/// Signs `email` in through the edge; its user id.
async fn signs_in(fed: &Federation, email: &str) -> Result<String, tonic::Status> {
    let mut edge = fed.client().await;
    edge.login(login(email))
        .await
        .map(|r| r.into_inner().user_id)
}

/// Kills `victim`'s node (SIGKILL) while registrations run, starts it
/// again on its data, and checks every email: acknowledged ones sign in
/// as the user they were given; failed ones, retried once at once, end
/// registered or ALREADY_EXISTS with an account that signs in. Every email
/// ends with exactly one account.
pub async fn kill_under_registration_load(
    fed: &mut Federation,
    victim: &str,
    tag: &str,
) -> CrashReport {
    let stop = Arc::new(AtomicBool::new(false));
    let victim_proc = fed.nodes.remove(victim).unwrap();
    let loaded: &Federation = fed;
    let workers = (0..WORKERS).map(|w| load(loaded, w, tag, stop.clone()));
    let (attempts, killed_at) = tokio::join!(futures::future::join_all(workers), async {
        // Let registrations get going in every region, kill, keep the load
        // on briefly while the node is down, stop.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let killed_at = Instant::now();
        victim_proc.kill();
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.store(true, Ordering::Relaxed);
        killed_at
    });
    let attempts: Vec<Attempt> = attempts.into_iter().flatten().collect();
    fed.start_node(victim);
    wait_until_serving(fed, victim, tag).await;

    let mut report = CrashReport::default();
    // Users that cut-off registrations created and never confirmed.
    let users_before_retries: u64 = fed.users().await.iter().map(|(_, n)| n).sum();
    for a in &attempts {
        match &a.outcome {
            Ok(user_id) => {
                report.acknowledged += 1;
                let got = signs_in(fed, &a.email).await;
                assert_eq!(
                    got.as_ref().ok(),
                    Some(user_id),
                    "an acknowledged registration of {} was lost: {got:?}",
                    a.email
                );
            }
            Err(_) => {
                report.failed += 1;
                if a.started < killed_at && a.ended >= killed_at {
                    report.in_flight_at_kill += 1;
                }
            }
        }
    }
    report.unconfirmed_users = users_before_retries - report.acknowledged as u64 - 1;
    // Every failed email, retried once, now (concurrently, like clients
    // coming back).
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.outcome.is_err()).collect();
    let shared: &Federation = fed;
    for chunk in failed.chunks(WORKERS) {
        let retries = chunk.iter().map(|a| async move {
            let fed = shared;
            let mut edge = fed.client().await;
            let r = edge
                .register(from("203.0.113.41", register(&a.email)))
                .await;
            (a, r)
        });
        for (a, r) in futures::future::join_all(retries).await {
            match r {
                Ok(_) => report.retried_registered += 1,
                Err(s) if s.code() == Code::AlreadyExists => {
                    let got = signs_in(fed, &a.email).await;
                    assert!(
                        got.is_ok(),
                        "{} (first {:?}) answers ALREADY_EXISTS on retry but does not sign in: {got:?}",
                        a.email,
                        a.outcome
                    );
                    report.retried_existing += 1;
                }
                Err(s) => panic!(
                    "retrying {} (first {:?}) failed: {s:?}\n{}",
                    a.email,
                    a.outcome,
                    fed.logs()
                ),
            }
        }
    }
    // Exactly one account per email (the probe's included), none left over.
    let users = fed.users().await;
    assert_eq!(
        users.iter().map(|(_, n)| n).sum::<u64>(),
        attempts.len() as u64 + 1,
        "{users:?} after {report:?}"
    );
    eprintln!("kill -9 of {victim} under registration load: {report:?}");
    assert!(
        report.in_flight_at_kill > 0,
        "the kill cut off no registration: {report:?}"
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_index_host_under_registration_load_loses_nothing() {
    let mut fed = Federation::start_with(Options {
        passwords: Some(OWASP_PASSWORDS),
        ..Options::default()
    });
    // Real hashing cost, so that many registrations are between their
    // claim and their confirmation when the node dies. eu hosts the embedded index: its death cuts off registrations in
    // every region, between their claim and their confirmation too.
    kill_under_registration_load(&mut fed, "eu", "crash").await;
    fed.stop_all();
}
