//! The region's signing keys: created on first start, persisted in the
//! region's store, published as this region's JWKS, rotated on request.
//!
//! Rotation is publish-then-sign: a new key `<region>-<n+1>` is published at
//! once and signs only from its `not_before`, so every verifier's cached JWKS
//! has it before the first token it signs. The key it replaces stays
//! published until the last token it can have signed has expired (its
//! successor's activation + the access-token lifetime + a margin for nodes
//! that reload their keys late), then drops out of the JWKS. Every node
//! reloads the keys from the store periodically; which key signs is decided
//! at signing time from `now`, so activation needs no reload.

use crate::{Conflict, Entropy, Identity, IdentityError, env};
use domicile_core::{
    RegionCode, UnixSeconds,
    token::{AccessClaims, Jwk, KeySet, Kid, SigningKey},
};
use domicile_store::{Applied, RegionStore, SigningKeyRecord};

/// How often nodes reload the region's keys from the store.
pub const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// Extra time a replaced key stays published (late reloads, clock skew).
const PUBLISH_MARGIN: i64 = 120;

struct Entry {
    key: SigningKey,
    jwk: Jwk,
    /// Signs from here on (and until a later key activates or `retire_at`).
    active_from: UnixSeconds,
    retire_at: Option<UnixSeconds>,
}

/// This region's keys: every one still published, by number.
pub struct KeyRing {
    entries: Vec<Entry>,
    verify: KeySet,
    access_ttl: i64,
}

impl KeyRing {
    /// Loads the region's keys, creating `<region>-1` if there are none.
    /// Concurrent first starts agree: the key insert is conditional.
    pub async fn load_or_create(
        store: &RegionStore,
        region: &RegionCode,
        entropy: &dyn Entropy,
        now: UnixSeconds,
        access_ttl: i64,
    ) -> Result<Self, IdentityError> {
        if store.signing_keys().await?.is_empty() {
            store
                .insert_signing_key(&SigningKeyRecord {
                    kid: Kid {
                        region: region.clone(),
                        n: 1,
                    }
                    .to_string(),
                    seed: env::random::<32>(entropy),
                    created_at: now,
                    retire_at: None,
                    not_before: None,
                })
                .await?;
        }
        Self::load(store, region, access_ttl).await
    }

    /// The region's keys as stored now.
    pub async fn load(
        store: &RegionStore,
        region: &RegionCode,
        access_ttl: i64,
    ) -> Result<Self, IdentityError> {
        let mut entries = Vec::new();
        let mut verify = KeySet::default();
        for r in store.signing_keys().await? {
            let kid = Kid::parse(&r.kid)
                .filter(|k| &k.region == region)
                .ok_or_else(|| {
                    IdentityError::internal(
                        "load signing keys",
                        format!("stored key {} does not belong to region {region}", r.kid),
                    )
                })?;
            let key = SigningKey::from_seed(kid, r.seed)
                .map_err(|e| IdentityError::internal("load signing keys", e))?;
            let jwk = key.public_jwk();
            verify.insert(key.kid(), public_bytes(&jwk)?);
            entries.push(Entry {
                key,
                jwk,
                active_from: r.not_before.unwrap_or(r.created_at),
                retire_at: r.retire_at,
            });
        }
        if entries.is_empty() {
            return Err(IdentityError::internal(
                "load signing keys",
                format!("region {region} has no signing key"),
            ));
        }
        entries.sort_by_key(|e| e.key.kid().n);
        Ok(Self {
            entries,
            verify,
            access_ttl,
        })
    }

    /// The key that signs at `now`: the newest active one.
    fn current(&self, now: UnixSeconds) -> Result<&SigningKey, IdentityError> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.active_from <= now && e.retire_at.is_none_or(|t| now < t))
            .map(|e| &e.key)
            .ok_or_else(|| IdentityError::internal("sign", "no signing key is active"))
    }

    pub fn sign(&self, claims: &AccessClaims, now: UnixSeconds) -> Result<String, IdentityError> {
        self.current(now)?
            .sign(claims)
            .map_err(|e| IdentityError::internal("sign", e))
    }

    /// Signs ID token claims with the key current at `now`.
    pub fn sign_id_token(
        &self,
        claims: &domicile_core::token::IdClaims,
        now: UnixSeconds,
    ) -> Result<String, IdentityError> {
        self.current(now)?
            .sign_id_token(claims)
            .map_err(|e| IdentityError::internal("sign", e))
    }

    /// Signs a compliance receipt part with the key current at `now`.
    pub fn sign_receipt(
        &self,
        claims: &domicile_core::receipt::ReceiptClaims,
        now: UnixSeconds,
    ) -> Result<String, IdentityError> {
        self.current(now)?
            .sign_receipt(claims)
            .map_err(|e| IdentityError::internal("sign receipt", e))
    }

    /// Signs a residency proof with the key current at `now`.
    pub fn sign_residency(
        &self,
        claims: &domicile_core::receipt::ResidencyClaims,
        now: UnixSeconds,
    ) -> Result<String, IdentityError> {
        self.current(now)?
            .sign_residency(claims)
            .map_err(|e| IdentityError::internal("sign residency proof", e))
    }

    /// Every key this region ever had (a token still needs its `exp` to pass).
    pub fn verifier(&self) -> &KeySet {
        &self.verify
    }

    /// Whether entry `i` is still published at `now`: until the last token
    /// it can have signed has expired.
    fn published(&self, i: usize, now: UnixSeconds) -> bool {
        let stopped_signing = match (self.entries.get(i + 1), self.entries[i].retire_at) {
            (Some(next), Some(r)) => Some(next.active_from.min(r)),
            (Some(next), None) => Some(next.active_from),
            (None, r) => r,
        };
        stopped_signing.is_none_or(|t| now < t + self.access_ttl + PUBLISH_MARGIN)
    }

    /// `{"keys": [...]}` for `/.well-known/jwks.json`.
    pub fn jwks_json(&self, now: UnixSeconds) -> serde_json::Value {
        let keys: Vec<&Jwk> = (0..self.entries.len())
            .filter(|&i| self.published(i, now))
            .map(|i| &self.entries[i].jwk)
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// The kid of the key signing at `now`.
    pub fn signing_kid(&self, now: UnixSeconds) -> Option<String> {
        self.current(now).ok().map(|k| k.kid().to_string())
    }
}

/// Creates the region's next key, signing from `now + lead`.
async fn rotate(
    store: &RegionStore,
    region: &RegionCode,
    entropy: &dyn Entropy,
    now: UnixSeconds,
    lead: i64,
) -> Result<SigningKeyRecord, IdentityError> {
    let next = store
        .signing_keys()
        .await?
        .iter()
        .filter_map(|r| Kid::parse(&r.kid))
        .map(|k| k.n)
        .max()
        .unwrap_or(0)
        + 1;
    let record = SigningKeyRecord {
        kid: Kid {
            region: region.clone(),
            n: next,
        }
        .to_string(),
        seed: env::random::<32>(entropy),
        created_at: now,
        retire_at: None,
        not_before: Some(now + lead),
    };
    match store.insert_signing_key(&record).await? {
        Applied::Yes => Ok(record),
        Applied::No(()) => Err(Conflict::KeyCreated { kid: record.kid }.into()),
    }
}

fn public_bytes(jwk: &Jwk) -> Result<[u8; 32], IdentityError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&jwk.x)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| IdentityError::internal("load signing keys", "bad public key encoding"))
}

/// A rotation started by [`Identity::rotate_signing_key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub kid: String,
    pub activates_at: UnixSeconds,
    /// The key signing until then.
    pub previous_kid: String,
}

/// Lead time of a rotation when the operator names none.
pub const DEFAULT_LEAD: u32 = 600;
/// Longest lead time of a rotation (7 days).
pub const MAX_LEAD: u32 = 604_800;

impl Identity {
    /// Signs access claims with the key active now.
    pub(crate) fn sign(&self, claims: &AccessClaims) -> Result<String, IdentityError> {
        self.keys.load().sign(claims, self.now())
    }

    pub(crate) fn sign_id_token(
        &self,
        claims: &domicile_core::token::IdClaims,
    ) -> Result<String, IdentityError> {
        self.keys.load().sign_id_token(claims, self.now())
    }

    /// `{"keys": [...]}`: this region's published public keys.
    pub fn jwks_json(&self) -> serde_json::Value {
        self.keys.load().jwks_json(self.now())
    }

    /// Reads the region's keys from the store again (another node may have
    /// rotated them); keeps the loaded ones on failure.
    pub async fn reload_keys(&self) -> Result<(), IdentityError> {
        let ring = KeyRing::load(
            self.store.as_ref(),
            &self.region,
            self.topology.tokens.access_ttl_seconds,
        )
        .await?;
        self.keys.store(std::sync::Arc::new(ring));
        Ok(())
    }

    /// Whether the region's store answers (a read of its one keys partition).
    pub async fn store_answers(&self) -> Result<(), IdentityError> {
        self.store
            .signing_keys()
            .await
            .map(|_| ())
            .map_err(Into::into)
    }

    /// Starts a rotation: the next key is published now and signs from
    /// `activate_in` seconds on (0: [`DEFAULT_LEAD`]; above [`MAX_LEAD`] is
    /// refused).
    pub async fn rotate_signing_key(&self, activate_in: u32) -> Result<Rotation, IdentityError> {
        let lead = match activate_in {
            0 => DEFAULT_LEAD,
            n @ 1..=MAX_LEAD => n,
            n => {
                return Err(IdentityError::invalid(
                    "activate_in_seconds",
                    format!("{n} is more than {MAX_LEAD} (7 days)"),
                ));
            }
        };
        let now = self.now();
        let previous_kid = self.keys.load().signing_kid(now).unwrap_or_default();
        let lead = i64::from(lead);
        let record = rotate(
            self.store.as_ref(),
            &self.region,
            self.entropy.as_ref(),
            now,
            lead,
        )
        .await?;
        self.reload_keys().await?;
        tracing::info!(region = %self.region, kid = %record.kid, activates_at = now + lead, "signing key rotation started");
        Ok(Rotation {
            kid: record.kid,
            activates_at: now + lead,
            previous_kid,
        })
    }
}
