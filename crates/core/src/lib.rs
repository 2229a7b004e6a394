//! Domicile's domain: what a region, a user id, an email, a phone number, a password and a
//! token are, and the validated federation topology (`regions.toml`).
//!
//! This crate does no I/O: it reads no files, opens no sockets and never reads
//! the clock or the system's randomness. Time (`now`, Unix seconds) and random
//! bytes are always passed in, so every rule here is testable without sleeping.
//! It knows nothing of gRPC, storage engines or Pingora.

#![forbid(unsafe_code)]

pub mod admin;
pub mod clients;
pub mod email;
pub mod ids;
pub mod index;
pub mod messaging;
pub mod mfa;
pub mod passkey;
pub mod password;
pub mod phone;
pub mod receipt;
pub mod region;
pub mod residency;
pub mod risk;
pub mod token;
pub mod topology;

pub use region::RegionCode;

/// Seconds since the Unix epoch. Always passed in, never read from the clock here.
pub type UnixSeconds = i64;
