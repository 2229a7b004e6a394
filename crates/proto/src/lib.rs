//! Domicile's gRPC contracts, generated from `proto/` at build time.
//!
//! This crate only carries wire types, generated clients and servers, and the
//! constructors of the internal clients (the index client node and edge
//! share; a channel over one region's nodes). It
//! holds no logic: conversion to domain types happens at the node's edge
//! (`TryFrom` in `domicile-node`), and domain code never sees these types.

#![forbid(unsafe_code)]
#![allow(clippy::all, missing_docs)]

/// `domicile.v1`: the public identity API, the internal home-region index and
/// the internal admin service.
pub mod v1 {
    tonic::include_proto!("domicile.v1");
}

/// Encoded `FileDescriptorSet` of every Domicile proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/domicile_descriptor.bin"));

/// A lazily connecting, load-balanced client of the internal `HomeIndex`
/// service on the given nodes.
pub fn home_index_client(
    addresses: &[std::net::SocketAddr],
    connect_timeout: std::time::Duration,
    timeout: std::time::Duration,
) -> Result<
    v1::home_index_client::HomeIndexClient<tonic::transport::Channel>,
    tonic::transport::Error,
> {
    balanced_channel(addresses, connect_timeout, timeout)
        .map(v1::home_index_client::HomeIndexClient::new)
}

/// A lazily connecting channel balanced over `addresses` (one region's
/// nodes), each call bounded by `timeout`.
pub fn balanced_channel(
    addresses: &[std::net::SocketAddr],
    connect_timeout: std::time::Duration,
    timeout: std::time::Duration,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let endpoints = addresses
        .iter()
        .map(|a| {
            tonic::transport::Endpoint::from_shared(format!("http://{a}"))
                .map(|e| e.connect_timeout(connect_timeout).timeout(timeout))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tonic::transport::Channel::balance_list(
        endpoints.into_iter(),
    ))
}
