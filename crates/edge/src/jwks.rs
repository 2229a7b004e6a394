//! The federation's JWKS: the union of every region's public keys, fetched
//! from the regions' nodes in the background and served from memory, so it
//! keeps answering (with the last keys seen) while a region is down.

use crate::pools::Pools;
use domicile_core::{RegionCode, topology::Topology};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use std::{collections::BTreeMap, sync::RwLock, time::Duration};

/// Largest JWKS document read from a node.
const MAX_JWKS_BYTES: usize = 256 * 1024;

#[derive(Default)]
pub struct FederationKeys {
    by_region: RwLock<BTreeMap<RegionCode, Vec<serde_json::Value>>>,
}

impl FederationKeys {
    /// `{"keys": [...]}` over every region seen so far.
    pub fn document(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = match self.by_region.read() {
            Ok(map) => map.values().flatten().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().flatten().cloned().collect(),
        };
        serde_json::json!({ "keys": keys })
    }

    /// Fetches every region's keys once; a region that fails keeps its last keys.
    pub async fn refresh(&self, topology: &Topology, pools: &Pools) {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        for code in topology.regions.keys() {
            let Some(addr) = pools.select(code) else {
                continue;
            };
            let uri = format!("http://{addr}/.well-known/jwks.json");
            match tokio::time::timeout(Duration::from_secs(2), fetch(&client, &uri)).await {
                Ok(Ok(keys)) => {
                    // Keys must belong to the region that published them.
                    let own: Vec<serde_json::Value> = keys
                        .into_iter()
                        .filter(|k| {
                            k.get("kid")
                                .and_then(|v| v.as_str())
                                .is_some_and(|kid| kid.starts_with(&format!("{code}-")))
                        })
                        .collect();
                    match self.by_region.write() {
                        Ok(mut map) => {
                            map.insert(code.clone(), own);
                        }
                        Err(poisoned) => {
                            poisoned.into_inner().insert(code.clone(), own);
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(region = %code, error = %e, "JWKS refresh failed; serving the last keys")
                }
                Err(_) => {
                    tracing::warn!(region = %code, "JWKS refresh timed out; serving the last keys")
                }
            }
        }
    }
}

async fn fetch(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    uri: &str,
) -> Result<Vec<serde_json::Value>, String> {
    let uri: hyper::Uri = uri
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
    let resp = client.get(uri).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = http_body_util::Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    doc.get("keys")
        .and_then(|k| k.as_array())
        .cloned()
        .ok_or_else(|| "no keys array".to_owned())
}
