//! Node integration tests: real nodes on 127.0.0.1:0 with temporary data
//! directories, driven through the generated tonic clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod compliance;
mod harness;
mod identity;
mod messages;
mod mfa;
mod oidc;
mod one_time;
mod operations;
mod passkeys;
mod phone;
mod residency;
mod risk;
mod service;
