//! Test support shared by Domicile's integration tests (node, edge and the
//! end-to-end suite): builders for the requests an app sends, reading the
//! edge's routing headers, a JWKS-to-verifier helper, and plain HTTP/1.1 and
//! raw h2c clients for bodies no gRPC client would send.
//!
//! Only ever a dev-dependency: it panics on failure like the tests that use it.
//! The servers it has (`smtp`, an SMTP server we did not write; `sms`, a
//! webhook receiver) are started by each suite that needs them.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod admin;
pub mod config;
pub mod sms;
pub mod smtp;

use base64::Engine as _;
use domicile_core::token::{KeySet, Kid};
use domicile_proto::v1 as pb;
use http_body_util::{BodyExt, Empty, Full};
use std::net::SocketAddr;
use tonic::{Request, metadata::MetadataMap};

/// Polls `found` every 20 ms until it gives something or `timeout` passes.
pub async fn poll<T>(
    timeout: std::time::Duration,
    mut found: impl FnMut() -> Option<T>,
) -> Option<T> {
    let until = std::time::Instant::now() + timeout;
    loop {
        if let Some(t) = found() {
            return Some(t);
        }
        if std::time::Instant::now() > until {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The password the builders use.
pub const PASSWORD: &str = "correct horse battery";

/// A request as from a client at `ip` (sent as X-Forwarded-For, believed only
/// from a trusted proxy).
pub fn from<T>(ip: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("x-forwarded-for", ip.parse().unwrap());
    r
}

/// A request with `authorization: Bearer <token>`.
pub fn bearer<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

pub fn register(email: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        email: email.into(),
        password: PASSWORD.into(),
        ..Default::default()
    }
}

pub fn login(email: &str) -> pb::LoginRequest {
    pb::LoginRequest {
        email: email.into(),
        password: PASSWORD.into(),
    }
}

/// The region and route reason the edge reported (`domicile-region`, `domicile-route`).
pub fn route_of(md: &MetadataMap) -> (String, String) {
    let get = |k: &str| {
        md.get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    (
        get(domicile_core::region::REGION_HEADER),
        get(domicile_core::region::ROUTE_HEADER),
    )
}

/// A verifier over the keys of a JWKS document.
pub fn key_set(jwks: &str) -> KeySet {
    let doc: serde_json::Value = serde_json::from_str(jwks).unwrap();
    let mut set = KeySet::default();
    for k in doc["keys"].as_array().unwrap() {
        assert_eq!(
            (k["kty"].as_str(), k["crv"].as_str(), k["alg"].as_str()),
            (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
        );
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(k["x"].as_str().unwrap())
            .unwrap();
        set.insert(
            &Kid::parse(k["kid"].as_str().unwrap()).unwrap(),
            x.try_into().unwrap(),
        );
    }
    set
}

/// A plain HTTP/1.1 GET: status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let resp = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A raw POST over HTTP/2 with prior knowledge (h2c): status, headers with
/// the trailers merged in, and body.
pub async fn h2_post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    let req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.unwrap();
    let mut headers = parts.headers;
    if let Some(t) = collected.trailers() {
        headers.extend(t.clone());
    }
    (
        parts.status.as_u16(),
        headers,
        collected.to_bytes().to_vec(),
    )
}

/// `grpc-status` of a response, from its headers or trailers.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The value of `<input … name="{name}" value="…">` in a hosted page (the
/// pages' attribute order; values are HTML-escaped, and the fields read
/// this way hold no characters that escaping changes).
pub fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let Some(at) = html.find(&marker) else {
        panic!("no {name} field in:\n{html}");
    };
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').unwrap_or(rest.len())].to_owned()
}
