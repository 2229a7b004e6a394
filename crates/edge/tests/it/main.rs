//! Edge integration tests: a real edge in front of real eu, us and ap nodes,
//! all on 127.0.0.1:0, driven by tonic clients, a raw HTTP/2 client and
//! grpcio (gRPC C-core, from Python: `grpc_call.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod grpcio;
mod harness;
mod operations;
mod risk;
mod routing;
mod shift;
