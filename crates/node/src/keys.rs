//! The region's signing keys: created on first start, persisted in the
//! region's store, published as this region's JWKS.

use crate::{Entropy, env, error::NodeError};
use domicile_core::{
    RegionCode, UnixSeconds,
    token::{AccessClaims, Jwk, KeySet, Kid, SigningKey},
};
use domicile_store::{RegionStore, SigningKeyRecord};

/// This region's keys: the one that signs now, and every published one.
pub struct KeyRing {
    current: SigningKey,
    verify: KeySet,
    jwks: Vec<Jwk>,
}

impl KeyRing {
    /// Loads the region's keys, creating `<region>-1` if there are none.
    /// Concurrent first starts agree: the key insert is conditional.
    pub async fn load_or_create(
        store: &dyn RegionStore,
        region: &RegionCode,
        entropy: &dyn Entropy,
        now: UnixSeconds,
    ) -> Result<Self, NodeError> {
        let mut records = store.signing_keys().await?;
        if records.is_empty() {
            let seed = env::random::<32>(entropy);
            let kid = Kid {
                region: region.clone(),
                n: 1,
            };
            store
                .insert_signing_key(&SigningKeyRecord {
                    kid: kid.to_string(),
                    seed,
                    created_at: now,
                    retire_at: None,
                })
                .await?;
            records = store.signing_keys().await?;
        }
        let mut keys = Vec::new();
        for r in &records {
            let kid = Kid::parse(&r.kid)
                .filter(|k| &k.region == region)
                .ok_or_else(|| {
                    NodeError::Internal(format!(
                        "stored signing key {} does not belong to region {region}",
                        r.kid
                    ))
                })?;
            let key = SigningKey::from_seed(kid, r.seed)
                .map_err(|e| NodeError::Internal(e.to_string()))?;
            keys.push((r.retire_at, key));
        }
        keys.sort_by_key(|(_, k)| k.kid().n);
        let current = keys
            .iter()
            .rev()
            .find(|(retire, _)| retire.is_none_or(|t| now < t))
            .map(|(_, k)| k.clone())
            .ok_or_else(|| {
                NodeError::Internal(format!("region {region} has no active signing key"))
            })?;
        let mut verify = KeySet::default();
        let mut jwks = Vec::new();
        for (_, k) in &keys {
            let jwk = k.public_jwk();
            verify.insert(k.kid(), public_bytes(&jwk)?);
            jwks.push(jwk);
        }
        Ok(Self {
            current,
            verify,
            jwks,
        })
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, NodeError> {
        self.current
            .sign(claims)
            .map_err(|e| NodeError::Internal(e.to_string()))
    }

    pub fn verifier(&self) -> &KeySet {
        &self.verify
    }

    /// `{"keys": [...]}` for `/.well-known/jwks.json`.
    pub fn jwks_json(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.jwks })
    }
}

fn public_bytes(jwk: &Jwk) -> Result<[u8; 32], NodeError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&jwk.x)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| NodeError::Internal("bad public key encoding".into()))
}
