//! End-to-end tests: the real `domicile` binary as processes (three nodes and
//! the edge), a templated regions.toml in a temporary directory, free
//! loopback ports, logs kept in files (printed when a test fails).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser;
mod compliance;
mod cql;
mod crash;
mod e2e;
mod oidc;
mod procs;
mod telemetry;
