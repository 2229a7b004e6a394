//! The cost of the routing decision, with and without the GeoIP lookup it
//! usually includes. Run: `cargo bench -p domicile-edge --bench routing`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use domicile_core::{RegionCode, topology::Topology};
use domicile_edge::{
    extract,
    geoip::{GeoIp, Schema, build_database},
    routing::{Facts, route},
};
use std::{hint::black_box, net::IpAddr, path::Path};

fn topology() -> Topology {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../regions.toml"))
        .unwrap_or_default();
    Topology::parse(Path::new("regions.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn bench(c: &mut Criterion) {
    let t = topology();
    // A database of realistic size: ~100k networks.
    let mut source = String::new();
    let countries = ["DE", "FR", "US", "JP", "BR", "IN", "ZA", "GB", "SG", "CA"];
    for i in 0..100_000u32 {
        let net = (1u32 << 24) + i * 256;
        let ip = std::net::Ipv4Addr::from(net);
        source.push_str(&format!("{ip}/24 {}\n", countries[(i % 10) as usize]));
    }
    let geo = GeoIp::from_bytes(build_database(&source, Schema::GeoIp2, 1).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let client: IpAddr = "1.2.3.4".parse().unwrap_or(IpAddr::from([1, 2, 3, 4]));

    c.bench_function("route: artifact (token region)", |b| {
        let facts = Facts {
            artifact: RegionCode::parse("ap").ok(),
            ..Facts::default()
        };
        b.iter(|| route(black_box(&t), black_box(&facts)))
    });
    c.bench_function("route: email domain rule", |b| {
        let facts = Facts {
            email_domain: Some("example.de".into()),
            ..Facts::default()
        };
        b.iter(|| route(black_box(&t), black_box(&facts)))
    });
    c.bench_function("route: geoip lookup + decision (100k networks)", |b| {
        b.iter(|| {
            let facts = Facts {
                email_domain: Some("gmail.com".into()),
                country: geo.country(black_box(client)),
                ..Facts::default()
            };
            route(black_box(&t), &facts)
        })
    });
    c.bench_function("extract: bearer token region", |b| {
        let token = "Bearer eyJhbGciOiJFZERTQSIsImtpZCI6ImV1LTEiLCJ0eXAiOiJhdCtqd3QifQ.eyJyZ24iOiJldSIsInN1YiI6InVzcl9ldV8wMUpEIn0.c2ln";
        b.iter(|| extract::bearer_region(black_box(token)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
