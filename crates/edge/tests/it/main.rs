//! Edge integration tests: a real edge in front of real eu, us and ap nodes,
//! all on 127.0.0.1:0, driven by tonic clients and a raw HTTP/2 client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod harness;
mod operations;
mod routing;
mod shift;
