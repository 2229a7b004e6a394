//! Domicile's regional identity node: the transports of one region's use
//! cases. gRPC services (identity API, home-region index, admin, health,
//! reflection), HTTP routes and the OpenID Connect endpoints and hosted
//! pages (`oidc`) each convert their wire types (`convert`), call one use
//! case of `domicile-identity`, and map its errors in one place per
//! transport (`error::status` for gRPC; `http` and `oidc` for theirs).
//!
//! It also provides what the use cases need from outside: the bounded
//! Argon2id pool (`hashing`), the index over gRPC for regions that do not
//! host it (`index`), Prometheus metrics (`metrics`, `observe`, `metered`),
//! and the assembly and drain of a node (`server`). It holds no identity
//! logic, knows nothing of the edge or Pingora, and never writes to another
//! region's store.

#![forbid(unsafe_code)]

mod admin;
mod convert;
mod error;
mod hashing;
mod http;
pub mod index;
mod metered;
mod metrics;
mod observe;
mod oidc;
mod peers;
mod server;
mod service;

pub use domicile_identity::{Clock, Entropy, ManualClock, OsEntropy, SystemClock};
pub use error::{
    HOME_REGION_METADATA, MFA_METHODS_METADATA, MFA_PASSKEY_METADATA, MFA_TOKEN_METADATA, NodeError,
};
pub use server::{Node, NodeOptions, RunningNode, load_or_create_secret};
