//! `domicile-loadtest`: drives the edge (or one node, to measure the edge's
//! overhead) with a realistic identity workload, as a pipeline:
//!
//! 1. **profile**: a seeded population of synthetic users, each with an email,
//!    a password and a home address from the synthetic GeoIP ranges of the
//!    local federation (`deploy/geoip/local.txt`), so they home in eu, us and
//!    ap like real users would;
//! 2. **populate**: registers them through the target;
//! 3. **run**: a weighted mix of logins (at home, or travelling from another
//!    region's address), refreshes, profile reads and new registrations,
//!    bounded by duration and count, at a fixed rate or as fast as the
//!    concurrency allows.
//!
//! With `--oidc` the run drives the OpenID Connect endpoints instead (see
//! `oidc`): refresh grants, introspection and the sign-in page.
//!
//! Latencies go into HDR histograms per operation and per home region; the
//! result is printed and written as JSON. It targets loopback addresses only.

mod oidc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use domicile_proto::v1::{self as pb, identity_client::IdentityClient};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tonic::transport::Channel;

#[derive(Parser, Clone)]
#[command(
    name = "domicile-loadtest",
    about = "Multi-region identity load against a local Domicile federation"
)]
struct Args {
    /// The edge (or, with --region, one region's node) to drive. Loopback only.
    #[arg(long, default_value = "127.0.0.1:8080")]
    target: SocketAddr,
    /// Only users homed in this region (to drive a node directly).
    #[arg(long)]
    region: Option<String>,
    /// Seed of the user population and the operation mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Users registered before the run.
    #[arg(long, default_value_t = 500)]
    users: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// gRPC connections the clients share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Run length in seconds.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Stop after this many operations.
    #[arg(long, default_value_t = 1_000_000)]
    max_ops: u64,
    /// Target operations per second for the whole run (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Operation mix as weights: login,refresh,profile,register.
    #[arg(long, default_value = "30,40,25,5")]
    mix: String,
    /// Share of logins made from another region's address (travelling).
    #[arg(long, default_value_t = 0.2)]
    travel: f64,
    /// Where to write the JSON result.
    #[arg(long, default_value = "loadtest-result.json")]
    out: std::path::PathBuf,
    /// No progress bar (for logs).
    #[arg(long)]
    quiet: bool,
    /// Drive the OpenID Connect endpoints (users sign in once through the
    /// hosted page for `demo`) instead of the gRPC API.
    #[arg(long)]
    oidc: bool,
    /// With --oidc, the mix as weights: refresh,introspect,page.
    #[arg(long, default_value = "50,40,10")]
    oidc_mix: String,
    /// With --oidc, the confidential client that introspects (regions.toml's
    /// local `demo-api`).
    #[arg(long, default_value = "demo-api")]
    introspect_client: String,
    #[arg(long, default_value = "demo-api-local-secret")]
    introspect_secret: String,
}

/// A home region and addresses that GeoIP places there (deploy/geoip/local.txt).
const HOMES: &[(&str, &[&str])] = &[
    ("eu", &["192.0.2.", "100.64.1.", "100.65.1."]),
    ("us", &["198.51.100.", "100.66.1.", "100.67.1."]),
    ("ap", &["203.0.113.", "100.68.1.", "100.69.1."]),
];

#[derive(Clone)]
struct User {
    email: String,
    home: &'static str,
    ip: String,
    refresh: Option<String>,
    access: Option<String>,
}

/// Step 1: the seeded population.
fn profile(seed: u64, n: usize, only: Option<&str>, offset: usize) -> Vec<User> {
    let mut rng = SmallRng::seed_from_u64(seed ^ offset as u64);
    (0..n)
        .map(|i| {
            let (home, prefixes) = match only {
                Some(r) => *HOMES.iter().find(|(h, _)| *h == r).unwrap_or(&HOMES[0]),
                None => HOMES[rng.gen_range(0..HOMES.len())],
            };
            let ip = format!(
                "{}{}",
                prefixes[rng.gen_range(0..prefixes.len())],
                rng.gen_range(1..250)
            );
            User {
                email: format!("lt{seed}-{}@loadtest.example", offset + i),
                home,
                ip,
                refresh: None,
                access: None,
            }
        })
        .collect()
}

const PASSWORD: &str = "load test password";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    Register,
    Login,
    LoginTravelling,
    Refresh,
    Profile,
    /// `/token` with `grant_type=refresh_token`.
    RefreshGrant,
    /// `/introspect` of an access token.
    Introspect,
    /// `GET /authorize`, to the first byte.
    SignInPage,
}

#[derive(Default)]
struct Stats {
    hist: BTreeMap<(Op, &'static str), Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    ok: u64,
}

impl Stats {
    fn record(&mut self, op: Op, region: &'static str, took: Duration, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.ok += 1;
                let micros = u64::try_from(took.as_micros())
                    .unwrap_or(u64::MAX)
                    .clamp(1, 60_000_000);
                match self.hist.entry((op, region)) {
                    std::collections::btree_map::Entry::Occupied(mut e) => {
                        let _ = e.get_mut().record(micros);
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        // 1 µs to 60 s at 3 significant figures: always valid bounds.
                        if let Ok(mut h) = Histogram::new_with_bounds(1, 60_000_000, 3) {
                            let _ = h.record(micros);
                            v.insert(h);
                        }
                    }
                }
            }
            Err(why) => *self.errors.entry(format!("{op:?} {why}")).or_default() += 1,
        }
    }
}

fn request<T>(msg: T, ip: &str, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = ip.parse() {
        r.metadata_mut().insert("x-forwarded-for", v);
    }
    if let Some(t) = token.and_then(|t| format!("Bearer {t}").parse().ok()) {
        r.metadata_mut().insert("authorization", t);
    }
    r
}

/// Step 2: register the population.
async fn populate(
    clients: &[IdentityClient<Channel>],
    users: Vec<User>,
    concurrency: usize,
    bar: &ProgressBar,
) -> Result<Vec<User>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for (i, mut u) in users.into_iter().enumerate() {
        let mut c = clients[i % clients.len()].clone();
        let permit = sem.clone().acquire_owned().await?;
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let msg = pb::RegisterRequest {
                email: u.email.clone(),
                password: PASSWORD.into(),
                ..Default::default()
            };
            let r = match c.register(request(msg, &u.ip, None)).await {
                Ok(r) => Ok(r.into_inner()),
                // Populated by an earlier run with the same seed: log in instead.
                Err(s) if s.code() == tonic::Code::AlreadyExists => c
                    .login(request(
                        pb::LoginRequest {
                            email: u.email.clone(),
                            password: PASSWORD.into(),
                        },
                        &u.ip,
                        None,
                    ))
                    .await
                    .map(tonic::Response::into_inner),
                Err(s) => Err(s),
            };
            bar.inc(1);
            r.map(|a| {
                u.refresh = Some(a.refresh_token);
                u.access = Some(a.access_token);
                u
            })
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            t.await?
                .map_err(|s| anyhow::anyhow!("populate: {:?} {}", s.code(), s.message()))?,
        );
    }
    Ok(out)
}

fn pick(rng: &mut SmallRng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.gen_range(0..total.max(1));
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    0
}

/// Step 3: one client's share of the run.
#[allow(clippy::too_many_arguments)]
async fn client_loop(
    mut c: IdentityClient<Channel>,
    users: Arc<Vec<Mutex<User>>>,
    stats: Arc<Mutex<Stats>>,
    weights: [u32; 4],
    travel: f64,
    seed: u64,
    deadline: Instant,
    budget: Arc<std::sync::atomic::AtomicU64>,
    ticker: Option<Arc<tokio::sync::Mutex<tokio::time::Interval>>>,
    next_new: Arc<std::sync::atomic::AtomicUsize>,
    only: Option<String>,
    bar: ProgressBar,
    (lane, lanes): (usize, usize),
) {
    use std::sync::atomic::Ordering;
    let mut rng = SmallRng::seed_from_u64(seed);
    if users.is_empty() {
        return;
    }
    while Instant::now() < deadline {
        if budget.fetch_sub(1, Ordering::SeqCst) == 0 {
            budget.store(0, Ordering::SeqCst);
            break;
        }
        if let Some(t) = &ticker {
            t.lock().await.tick().await;
        }
        // Each client owns the users idx ≡ lane (mod lanes): two clients never
        // race one user's refresh token (which would, correctly, trip reuse
        // detection and end the session).
        let owned = (users.len() + lanes - 1 - lane) / lanes;
        if owned == 0 {
            return;
        }
        let idx = rng.gen_range(0..owned) * lanes + lane;
        let u = match users[idx].lock() {
            Ok(u) => u.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let start = Instant::now();
        let (op, result) = match pick(&mut rng, &weights) {
            0 => {
                let travelling = only.is_none() && rng.gen_bool(travel.clamp(0.0, 1.0));
                let ip = if travelling {
                    let (_, prefixes) = HOMES
                        .iter()
                        .find(|(h, _)| *h != u.home)
                        .copied()
                        .unwrap_or(HOMES[0]);
                    format!("{}7", prefixes[0])
                } else {
                    u.ip.clone()
                };
                let r = c
                    .login(request(
                        pb::LoginRequest {
                            email: u.email.clone(),
                            password: PASSWORD.into(),
                        },
                        &ip,
                        None,
                    ))
                    .await;
                let op = if travelling {
                    Op::LoginTravelling
                } else {
                    Op::Login
                };
                (op, r.map(|r| store_tokens(&users[idx], r.into_inner())))
            }
            1 => {
                let r = c
                    .refresh(request(
                        pb::RefreshRequest {
                            refresh_token: u.refresh.clone().unwrap_or_default(),
                        },
                        &u.ip,
                        None,
                    ))
                    .await;
                (
                    Op::Refresh,
                    r.map(|r| store_tokens(&users[idx], r.into_inner())),
                )
            }
            2 => {
                let r = c
                    .get_profile(request(
                        pb::GetProfileRequest {},
                        &u.ip,
                        u.access.as_deref(),
                    ))
                    .await;
                (Op::Profile, r.map(|_| ()))
            }
            _ => {
                let n = next_new.fetch_add(1, Ordering::SeqCst);
                let fresh = profile(seed, 1, only.as_deref(), 10_000_000 + n).remove(0);
                let msg = pb::RegisterRequest {
                    email: fresh.email.clone(),
                    password: PASSWORD.into(),
                    ..Default::default()
                };
                let r = c.register(request(msg, &fresh.ip, None)).await;
                (Op::Register, r.map(|_| ()))
            }
        };
        let took = start.elapsed();
        if let Ok(mut s) = stats.lock() {
            s.record(
                op,
                u.home,
                took,
                result.map_err(|s| format!("{:?}", s.code())),
            );
        }
        bar.inc(1);
    }
}

fn store_tokens(slot: &Mutex<User>, a: pb::AuthResponse) {
    if let Ok(mut u) = slot.lock() {
        u.refresh = Some(a.refresh_token);
        u.access = Some(a.access_token);
    }
}

#[derive(Serialize)]
struct OpResult {
    op: Op,
    region: &'static str,
    count: u64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

#[derive(Serialize)]
struct Report {
    target: String,
    seed: u64,
    users: usize,
    concurrency: usize,
    rate: u64,
    mix: String,
    elapsed_seconds: f64,
    ok: u64,
    ops_per_second: f64,
    operations: Vec<OpResult>,
    totals: Vec<OpResult>,
    errors: BTreeMap<String, u64>,
}

fn summarize(op: Op, region: &'static str, h: &Histogram<u64>, secs: f64) -> OpResult {
    let ms = |v: u64| v as f64 / 1000.0;
    OpResult {
        op,
        region,
        count: h.len(),
        per_second: h.len() as f64 / secs,
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

/// `N` whole-number weights from a comma-separated `flag` value.
fn parse_weights<const N: usize>(text: &str, flag: &str, names: &str) -> Result<[u32; N]> {
    let w: Vec<u32> = text
        .split(',')
        .map(|w| w.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{flag} takes whole numbers: {names}"))?;
    w.try_into()
        .map_err(|_| anyhow::anyhow!("{flag} takes {N} weights: {names}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !args.target.ip().is_loopback() {
        bail!(
            "refusing to load {}: domicile-loadtest targets loopback addresses only",
            args.target
        );
    }
    let weights: [u32; 4] = parse_weights(&args.mix, "--mix", "login,refresh,profile,register")?;
    let oidc_weights: [u32; 3] =
        parse_weights(&args.oidc_mix, "--oidc-mix", "refresh,introspect,page")?;
    let url = format!("http://{}", args.target);
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        clients.push(
            IdentityClient::connect(url.clone())
                .await
                .with_context(|| format!("cannot reach {url}"))?,
        );
    }
    let style = ProgressStyle::with_template(
        "{prefix:>9} [{elapsed_precise}] {bar:40} {pos}/{len} {per_sec}",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bar = |len: u64, prefix: &'static str| {
        let b = if args.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(len)
        };
        b.set_style(style.clone());
        b.set_prefix(prefix);
        b
    };

    // 1. profile, 2. populate
    let population = profile(args.seed, args.users, args.region.as_deref(), 0);
    let pb_pop = bar(population.len() as u64, "populate");
    // Population is setup: at most 32 registrations at once, within the nodes' hash queues.
    let users = populate(&clients, population, args.concurrency.min(32), &pb_pop).await?;
    pb_pop.finish();

    // With --oidc: each user signs in once through the hosted page.
    let target = oidc::Target::new(
        args.target,
        (
            args.introspect_client.clone(),
            args.introspect_secret.clone(),
        ),
        args.concurrency.max(1),
    )?;
    let users = if args.oidc {
        let pb_sign_in = bar(users.len() as u64, "sign in");
        let users = oidc::populate(
            &target,
            users,
            PASSWORD,
            args.concurrency.min(32),
            &pb_sign_in,
        )
        .await?;
        pb_sign_in.finish();
        users
    } else {
        users
    };

    // 3. run
    let users = Arc::new(users.into_iter().map(Mutex::new).collect::<Vec<_>>());
    let stats = Arc::new(Mutex::new(Stats::default()));
    let budget = Arc::new(std::sync::atomic::AtomicU64::new(args.max_ops));
    let next_new = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ticker = (args.rate > 0).then(|| {
        let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        Arc::new(tokio::sync::Mutex::new(i))
    });
    let expected = if args.rate > 0 {
        (args.rate * args.duration).min(args.max_ops)
    } else {
        args.max_ops.min(1_000_000)
    };
    let pb_run = bar(expected, "run");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    let lanes = args.concurrency.max(1);
    for i in 0..lanes {
        let seed = args.seed.wrapping_mul(1000).wrapping_add(i as u64);
        if args.oidc {
            tasks.push(tokio::spawn(oidc::client_loop(oidc::Lane {
                target: target.clone(),
                users: users.clone(),
                stats: stats.clone(),
                weights: oidc_weights,
                seed,
                deadline,
                budget: budget.clone(),
                ticker: ticker.clone(),
                bar: pb_run.clone(),
                lane: (i, lanes),
            })));
            continue;
        }
        tasks.push(tokio::spawn(client_loop(
            clients[i % clients.len()].clone(),
            users.clone(),
            stats.clone(),
            weights,
            args.travel,
            seed,
            deadline,
            budget.clone(),
            ticker.clone(),
            next_new.clone(),
            args.region.clone(),
            pb_run.clone(),
            (i, lanes),
        )));
    }
    for t in tasks {
        t.await?;
    }
    pb_run.finish();
    let secs = start.elapsed().as_secs_f64();

    let stats = match stats.lock() {
        Ok(mut s) => std::mem::take(&mut *s),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    let mut operations = Vec::new();
    let mut by_op: BTreeMap<Op, Histogram<u64>> = BTreeMap::new();
    for ((op, region), h) in &stats.hist {
        operations.push(summarize(*op, region, h, secs));
        match by_op.get_mut(op) {
            Some(total) => {
                let _ = total.add(h);
            }
            None => {
                by_op.insert(*op, h.clone());
            }
        }
    }
    let totals: Vec<OpResult> = by_op
        .iter()
        .map(|(op, h)| summarize(*op, "all", h, secs))
        .collect();
    let report = Report {
        target: args.target.to_string(),
        seed: args.seed,
        users: args.users,
        concurrency: args.concurrency,
        rate: args.rate,
        mix: args.mix.clone(),
        elapsed_seconds: secs,
        ok: stats.ok,
        ops_per_second: stats.ok as f64 / secs,
        operations,
        totals,
        errors: stats.errors,
    };
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;

    println!(
        "\n{} ok operations in {:.1} s: {:.0}/s against {}",
        report.ok, secs, report.ops_per_second, report.target
    );
    println!(
        "{:<16} {:<6} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "operation", "region", "count", "per sec", "p50 ms", "p99 ms", "p99.9 ms"
    );
    for o in report.totals.iter().chain(report.operations.iter()) {
        println!(
            "{:<16} {:<6} {:>8} {:>9.1} {:>9.2} {:>9.2} {:>9.2}",
            format!("{:?}", o.op),
            o.region,
            o.count,
            o.per_second,
            o.p50_ms,
            o.p99_ms,
            o.p999_ms
        );
    }
    if report.errors.is_empty() {
        println!("errors: none");
    } else {
        println!("errors: {:?}", report.errors);
    }
    println!("result written to {}", args.out.display());
    Ok(())
}
