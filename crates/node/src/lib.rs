//! Domicile's regional identity node: the tonic services (identity API,
//! home-region index, health, reflection) and HTTP endpoints of one region,
//! over that region's store.
//!
//! This crate is where wire types stop: requests are converted to validated
//! domain inputs (`convert`) before any logic runs, and every error becomes a
//! gRPC status in one place (`error`). The node enforces residency: it
//! refuses any request about a user it does not home, with the home region in
//! the `domicile-home-region` response metadata. It knows nothing of the edge
//! or Pingora, and it never writes to another region's store.

#![forbid(unsafe_code)]

mod admin;
mod audit;
mod convert;
pub mod env;
mod error;
mod hashing;
mod http;
pub mod index;
mod keys;
mod metered;
mod metrics;
mod observe;
mod server;
mod service;

pub use env::{Clock, Entropy, ManualClock, OsEntropy, SystemClock};
pub use error::{HOME_REGION_METADATA, NodeError};
pub use server::{Node, NodeOptions, RunningNode, load_or_create_secret};
