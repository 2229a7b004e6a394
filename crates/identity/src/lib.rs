//! Domicile's identity use cases, one module each: `registration`, `login`,
//! `sessions` (sessions, refresh-token rotation, logout, bearer checks),
//! `oidc` (sign-in for an OpenID Connect client, its codes, grants and
//! userinfo),
//! `profile`, `keys` (the region's signing keys and their rotation),
//! `one_time` (codes and links), `messages` (sending and its limits),
//! `recovery` (password reset), `verification` (email verification),
//! `passwordless` (sign-in by a code by email or text message),
//! `email_change`, `phone` (the account's phone number), `identifiers`
//! (the index steps both changes share),
//! `mfa` (setting up an authenticator app and recovery codes),
//! `second_factor` (the gate after a first factor, and finishing a sign-in
//! with a second), `passkeys` (registering and managing passkeys, and
//! checking one as a second factor), `passkey_sign_in` (signing in with a
//! passkey alone), `risk` (where a sign-in comes from),
//! `audit` (recording and reading a user's trail), `residency` (the
//! node's enforcement of the residency rule and the compliance reports)
//! and `compliance` (export, erasure, pins and moves of one user, with
//! signed receipts).
//!
//! Domain types go in and out: validated inputs (`registration::Registration`,
//! `login::Credentials`, `profile::ProfileChange`), results such as
//! `sessions::Authenticated` and `profile::Profile`, and one error type,
//! [`IdentityError`], with typed variants. This crate knows no transport: no
//! gRPC, protobuf, HTTP or metadata; a tidy check in `cargo xtask test`
//! fails if tonic, prost, axum, hyper or http enter its dependency tree.
//! The node's gRPC services and HTTP routes convert their wire types, call
//! a use case, and map [`IdentityError`] once per transport.
//!
//! What the use cases need from outside is passed in as traits this crate
//! owns: the time ([`Clock`]), randomness ([`Entropy`]), password hashing off
//! the async runtime ([`ports::Hasher`]), the home-region index, local or
//! remote ([`ports::HomeIndex`]), counters ([`ports::Meter`]), and the
//! region's message senders ([`ports::Courier`]).

#![forbid(unsafe_code)]

pub mod audit;
pub mod browser;
pub mod compliance;
pub mod email_change;
pub mod env;
mod error;
mod identifiers;
pub mod index;
pub mod keys;
pub mod login;
pub mod messages;
pub mod mfa;
pub mod oidc;
pub mod one_time;
pub mod passkey_sign_in;
pub mod passkeys;
pub mod passwordless;
pub mod phone;
pub mod ports;
pub mod profile;
pub mod recovery;
pub mod registration;
pub mod residency;
pub mod risk;
pub mod second_factor;
pub mod sessions;
pub mod verification;

pub use env::{Clock, Entropy, ManualClock, OsEntropy, SystemClock};
pub use error::{Conflict, GrantError, IdentityError, Unauthenticated};

use arc_swap::ArcSwap;
use domicile_core::{RegionCode, UnixSeconds, index::IndexSecret, topology::Topology};
use domicile_store::RegionStore;
use std::sync::Arc;

/// Everything a region's use cases need, passed in once at start.
pub struct Parts {
    pub region: RegionCode,
    pub topology: Arc<Topology>,
    pub store: Arc<RegionStore>,
    pub index: Arc<dyn ports::HomeIndex>,
    pub secret: IndexSecret,
    pub hasher: Arc<dyn ports::Hasher>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub audit: audit::AuditLog,
    pub keys: keys::KeyRing,
    /// The region's senders (`domicile-messages` in the node).
    pub courier: Arc<dyn ports::Courier>,
    pub meter: Arc<dyn ports::Meter>,
    /// The other regions' nodes (a compliance move's target).
    pub peers: Arc<dyn ports::Peers>,
}

/// One region's identity use cases. Its parts are private: transports call
/// use cases, never the store or the index behind them.
pub struct Identity {
    region: RegionCode,
    topology: Arc<Topology>,
    store: Arc<RegionStore>,
    index: Arc<dyn ports::HomeIndex>,
    secret: IndexSecret,
    hasher: Arc<dyn ports::Hasher>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    audit: audit::AuditLog,
    /// Reloaded from the store periodically (rotation by another node).
    keys: ArcSwap<keys::KeyRing>,
    /// Verified against when the user does not exist, so unknown users cost
    /// as much as wrong passwords.
    dummy_hash: String,
    /// The registrations running in this process, by identifier key: a
    /// pending claim named here is not cut off.
    registering: registration::InFlight,
    courier: Arc<dyn ports::Courier>,
    meter: Arc<dyn ports::Meter>,
    peers: Arc<dyn ports::Peers>,
    /// Messages being sent now (at most `messages::SENDING`).
    sending: Arc<tokio::sync::Semaphore>,
    throttle: messages::Throttle,
    /// The passkeys' relying party, built once from the issuer (or why the
    /// issuer cannot have passkeys: every passkey call then fails so).
    relying_party: Result<webauthn_rs::prelude::Webauthn, String>,
    /// Seals passwordless passkey ceremonies (`passkey_sign_in`).
    ceremony_sealer: domicile_oidc::sealed::Sealer,
}

impl Identity {
    /// Assembles the use cases; hashes the dummy password once.
    pub async fn new(parts: Parts) -> Result<Self, IdentityError> {
        let salt = env::random::<16>(parts.entropy.as_ref());
        let dummy_hash = parts
            .hasher
            .hash("domicile-dummy-password".into(), salt)
            .await?;
        let relying_party = passkeys::relying_party(&parts.topology);
        let ceremony_sealer = passkey_sign_in::sealer(&parts.secret)?;
        Ok(Self {
            region: parts.region,
            topology: parts.topology,
            store: parts.store,
            index: parts.index,
            secret: parts.secret,
            hasher: parts.hasher,
            clock: parts.clock,
            entropy: parts.entropy,
            audit: parts.audit,
            keys: ArcSwap::from_pointee(parts.keys),
            dummy_hash,
            registering: registration::InFlight::default(),
            courier: parts.courier,
            meter: parts.meter,
            peers: parts.peers,
            sending: Arc::new(tokio::sync::Semaphore::new(messages::SENDING)),
            throttle: messages::Throttle::new(),
            relying_party,
            ceremony_sealer,
        })
    }

    /// The region these use cases serve.
    pub fn region(&self) -> &RegionCode {
        &self.region
    }

    /// The federation configuration they run under.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    fn now(&self) -> UnixSeconds {
        self.clock.now()
    }

    fn random_u128(&self) -> u128 {
        env::random_u128(self.entropy.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use crate::{login::Credentials, profile::ProfileChange, registration::Registration};

    /// Every input that carries personal data hides it in `Debug` (the
    /// results `Profile`, `Authenticated` and `RegionReport` are checked in
    /// their modules).
    #[test]
    fn inputs_do_not_print_personal_data() {
        let change = ProfileChange::new(Some("Ada".into()), None, None, None).unwrap();
        let reg = Registration::new(
            "ada.lovelace@example.net",
            "analytical engine".into(),
            change,
            "eu",
        )
        .unwrap();
        let creds =
            Credentials::new("ada.lovelace@example.net", "analytical engine".into()).unwrap();
        let shown = format!("{reg:?} {reg:#?} {creds:?} {creds:#?}");
        for secret in ["ada.lovelace", "analytical", "Ada"] {
            assert!(!shown.contains(secret), "{shown} shows {secret}");
        }
    }
}
