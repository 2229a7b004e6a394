//! Domicile's gRPC contracts, generated from `proto/` at build time.
//!
//! This crate only carries wire types and generated clients and servers. It
//! holds no logic: conversion to domain types happens at the node's edge
//! (`TryFrom` in `domicile-node`), and domain code never sees these types.

#![forbid(unsafe_code)]
#![allow(clippy::all, missing_docs)]

/// `domicile.v1`: the public identity API and the internal home-region index.
pub mod v1 {
    tonic::include_proto!("domicile.v1");
}

/// Encoded `FileDescriptorSet` of every Domicile proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/domicile_descriptor.bin"));
