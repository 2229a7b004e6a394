//! The CPU of a sign-in's second step and of its risk check: opening a
//! sealed TOTP secret, finding a code's step in the drift window, and
//! comparing a sign-in with a full sign-in history. Run:
//! `cargo bench -p domicile-core --bench second_step`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use domicile_core::{
    mfa::{self, TotpCode, TotpSecret},
    risk::{self, Location, Past, Seen},
};
use std::hint::black_box;

const NOW: i64 = 1_800_000_000;
const USER: &str = "usr_eu_01JD0000000000000000000000";

fn bench(c: &mut Criterion) {
    let key = [7u8; 32];
    let secret = TotpSecret::new([3; 20]);
    let sealed = mfa::seal(&key, [1; 12], USER, &secret).unwrap();
    let code = TotpCode::parse(&secret.code_at(NOW).unwrap()).unwrap();
    c.bench_function(
        "second step: open the sealed TOTP secret (AES-256-GCM)",
        |b| b.iter(|| mfa::open(black_box(&key), USER, black_box(&sealed)).unwrap()),
    );
    c.bench_function("second step: find a code's step (drift ±1)", |b| {
        b.iter(|| secret.matching_step(black_box(&code), NOW).unwrap())
    });
    // A full history: 32 countries and 32 devices, none of them this one's,
    // so every comparison runs to the end.
    let countries: Vec<String> = (0..32u8)
        .map(|i| format!("{}{}", (b'A' + i % 26) as char, (b'A' + i / 26) as char))
        .collect();
    let devices: Vec<[u8; 32]> = (0..32u8).map(|i| [i; 32]).collect();
    let past = Past {
        countries: &countries,
        devices: &devices,
        last: Some((Location::new(52.52, 13.40).unwrap(), NOW - 3600)),
    };
    let seen = Seen {
        country: Some("ZZ".into()),
        location: Some(Location::new(35.68, 139.69).unwrap()),
        device: Some([99; 32]),
    };
    c.bench_function("risk: assess a sign-in against a full history", |b| {
        b.iter(|| risk::assess(black_box(&past), black_box(&seen), NOW))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
