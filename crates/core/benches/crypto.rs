//! Token signing and verification, and Argon2id at the shipped (OWASP)
//! parameters. Run: `cargo bench -p domicile-core --bench crypto`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use domicile_core::{
    password::{self, HashParams},
    token::{AccessClaims, Expectations, KeySet, Kid, SigningKey},
};
use std::hint::black_box;

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "https://id.example".into(),
        sub: "usr_eu_01JD0000000000000000000000".into(),
        aud: "https://id.example".into(),
        exp: 1_800_000_600,
        iat: 1_800_000_000,
        nbf: 1_800_000_000,
        jti: "01JD0000000000000000000001".into(),
        client_id: "domicile".into(),
        scope: "openid profile email".into(),
        rgn: "eu".into(),
        sid: "ses_eu_01JD0000000000000000000000".into(),
        amr: vec![],
        acr: String::new(),
    }
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_seed(Kid::parse("eu-1").unwrap(), [7; 32]).unwrap();
    let mut set = KeySet::default();
    use base64::Engine as _;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key.public_jwk().x)
        .unwrap();
    set.insert(key.kid(), x.try_into().unwrap());
    let token = key.sign(&claims()).unwrap();
    let want = Expectations {
        issuer: "https://id.example",
        audience: "https://id.example",
        region: None,
    };
    c.bench_function("access token: sign (EdDSA JWT)", |b| {
        b.iter(|| key.sign(black_box(&claims())).unwrap())
    });
    c.bench_function("access token: verify (EdDSA JWT)", |b| {
        b.iter(|| set.verify(black_box(&token), &want, 1_800_000_100).unwrap())
    });

    let mut g = c.benchmark_group("argon2id");
    g.sample_size(20);
    let phc = password::hash("correct horse battery", &HashParams::OWASP, [1; 16]).unwrap();
    g.bench_function("hash, OWASP m=19MiB t=2 p=1", |b| {
        b.iter(|| {
            password::hash(
                black_box("correct horse battery"),
                &HashParams::OWASP,
                [1; 16],
            )
            .unwrap()
        })
    });
    g.bench_function("verify, OWASP m=19MiB t=2 p=1", |b| {
        b.iter(|| {
            password::verify(black_box("correct horse battery"), &phc, &HashParams::OWASP).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
