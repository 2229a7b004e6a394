//! Store integration tests: the conformance suite against every backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cql;
mod embedded;
