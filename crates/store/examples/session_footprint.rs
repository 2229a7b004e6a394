//! Measures what sessions cost in the embedded store: disk bytes and resident
//! memory per session (with its refresh token, as a login writes them), and
//! the durable write rate of one region's store.
//!
//! Run: `cargo run --release -p domicile-store --example session_footprint -- 20000`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use domicile_core::RegionCode;
use domicile_store::{RefreshRecord, RegionStore, SessionRecord};
use std::time::Instant;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        RegionStore::open_embedded(dir.path(), &RegionCode::parse("eu").unwrap()).unwrap(),
    );
    let now = 1_800_000_000;
    let rss0 = rss_kib();
    let start = Instant::now();
    // 16 writers at once, like concurrent logins.
    let per = n / 16;
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let s = store.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    let id = format!("ses_eu_01JD{w:04}{i:018}");
                    let session = SessionRecord {
                        session_id: id.clone(),
                        user_id: format!("usr_eu_01JD{w:04}{i:018}"),
                        created_at: now,
                        expires_at: now + 30 * 86_400,
                        revoked_at: None,
                        revoked_reason: None,
                        client: None,
                        browser_hash: None,
                        browser_session: None,
                        amr: Vec::new(),
                    };
                    s.insert_session(&session, now).await.unwrap();
                    let mut hash = [0u8; 32];
                    hash[..8].copy_from_slice(&((w * per + i) as u64).to_le_bytes());
                    let token = RefreshRecord {
                        token_hash: hash,
                        session_id: id,
                        user_id: session.user_id.clone(),
                        issued_at: now,
                        expires_at: now + 14 * 86_400,
                        used_at: None,
                    };
                    s.insert_refresh(&token, now).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let written = per * 16;
    let file = std::fs::metadata(dir.path().join("region.redb"))
        .unwrap()
        .len();
    let rss = rss_kib().saturating_sub(rss0);
    println!("sessions (each with a refresh token): {written}");
    println!(
        "durable write transactions: {} in {secs:.1} s = {:.0}/s",
        written * 2,
        (written * 2) as f64 / secs
    );
    println!(
        "file: {:.1} MiB = {:.0} bytes per session",
        file as f64 / 1048576.0,
        file as f64 / written as f64
    );
    println!(
        "resident memory growth: {:.1} MiB = {:.0} bytes per session",
        rss as f64 / 1024.0,
        rss as f64 * 1024.0 / written as f64
    );
    println!(
        "per 100k sessions: {:.0} MiB on disk, {:.0} MiB resident",
        file as f64 / written as f64 * 100_000.0 / 1048576.0,
        rss as f64 * 1024.0 / written as f64 * 100_000.0 / 1048576.0
    );
}
