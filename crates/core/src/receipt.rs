//! Compliance receipts: what a move or an erasure did, signed by each
//! region involved with its token signing key (a compact JWS, `alg:
//! EdDSA`, `typ: receipt+jwt`, `kid: <region>-<n>`), so anyone holding the
//! federation's JWKS can check it offline; and residency proofs (`typ:
//! residency+jwt`): what a region's scan of its own store found, signed
//! the same way, with the findings a proof must not have.
//!
//! A receipt names the operation, the pseudonymous user ids (never an
//! email, a name or a number), the regions, the operator, the time, the
//! number of records per table that the signing region copied or
//! deleted, and the post-check: what a scan of the source region still
//! found of the user (nothing, for a receipt to be clean). It does not
//! decide what is counted (the use cases do) and reads no clock.

use crate::{
    UnixSeconds,
    token::{KeySet, Kid, SigningKey, TokenError},
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `typ` of a receipt's header: an access or ID token is not one.
pub const RECEIPT_TYPE: &str = "receipt+jwt";

/// The `typ` of a residency proof's header.
pub const RESIDENCY_TYPE: &str = "residency+jwt";
/// A move older than this is stale: finish it or call it off.
pub const STALE_MOVE_SECONDS: i64 = 3600;
/// Most ids a proof lists per finding (the counts are always whole).
pub const MAX_LISTED: usize = 100;

/// What a region states about its own store, signed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidencyClaims {
    pub region: String,
    /// The legal residency label (EU, US, …).
    pub residency: String,
    pub iat: UnixSeconds,
    /// Users the region homes, and the lowest and highest id (ids sort by
    /// creation time).
    pub users: u64,
    pub first_user_id: String,
    pub last_user_id: String,
    /// Rows read by the scan, every table.
    pub rows_scanned: u64,
    /// Records naming another region (`table: id`), at most
    /// [`MAX_LISTED`], and how many in all.
    pub foreign_records: Vec<String>,
    pub foreign_count: u64,
    /// Identifier keys that read as an identifier in the clear.
    pub plaintext_keys: u64,
    /// Identifiers (email, phone) of stored users confirmed by the index
    /// as theirs, in this region.
    pub indexed_identifiers: u64,
    /// Users one of whose identifiers the index does not give them (at
    /// most [`MAX_LISTED`] ids), and how many in all.
    pub unindexed_users: Vec<String>,
    pub unindexed_count: u64,
    /// Users in a compliance move now whose identifiers the index gives
    /// another id (the other side of the move): not findings.
    pub moving: u64,
    /// Users marked as in a move for longer than [`STALE_MOVE_SECONDS`]
    /// (an interrupted move nobody finished or called off).
    #[serde(default)]
    pub stale_moves: u64,
    /// Where the store keeps its data, and why that breaks residency.
    pub placement: String,
    pub placement_violations: Vec<String>,
    /// The index host's count of the index, when this region hosts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexClaims>,
}

/// What the index host counted in the index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexClaims {
    pub entries: u64,
    pub active_by_region: BTreeMap<String, u64>,
    pub pending: u64,
    pub malformed: u64,
    pub plaintext_keys: u64,
}

impl ResidencyClaims {
    /// What is wrong, one line each; empty for a clean proof.
    pub fn findings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let r = &self.region;
        for v in &self.placement_violations {
            out.push(format!("{r}: the store is kept outside the region: {v}"));
        }
        if self.foreign_count > 0 {
            out.push(format!(
                "{r}: {} records of another region: {}",
                self.foreign_count,
                self.foreign_records.join(", ")
            ));
        }
        if self.plaintext_keys > 0 {
            out.push(format!(
                "{r}: {} identifier keys in the clear",
                self.plaintext_keys
            ));
        }
        if self.unindexed_count > 0 {
            out.push(format!(
                "{r}: {} users the index does not home here: {}",
                self.unindexed_count,
                self.unindexed_users.join(", ")
            ));
        }
        if self.stale_moves > 0 {
            out.push(format!(
                "{r}: {} users in a move for more than an hour (finish it or call it off)",
                self.stale_moves
            ));
        }
        if let Some(ix) = &self.index {
            if ix.malformed > 0 {
                out.push(format!("index: {} malformed entries", ix.malformed));
            }
            if ix.plaintext_keys > 0 {
                out.push(format!("index: {} keys in the clear", ix.plaintext_keys));
            }
        }
        out
    }
}

/// What the operation was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// The user's data left `from` for `to` under a new id.
    Move,
    /// The user's data was deleted from its home region.
    Erase,
}

/// What the signing region did, in its own words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The source of a move, or the region of an erasure: it deleted.
    Source,
    /// The target of a move: it wrote the copy.
    Target,
}

/// A receipt's claims, as each region signs them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptClaims {
    /// `rcp_<region>_<ulid>`-like id of the operation (the same in every
    /// region's part).
    pub operation_id: String,
    pub operation: Operation,
    /// What the signer did.
    pub part: Part,
    /// The region whose key signs this part.
    pub region: String,
    /// The user's id before (and, for an erasure, the only one).
    pub user_id: String,
    /// The user's id in the target region (moves only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_user_id: Option<String>,
    pub from_region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_region: Option<String>,
    /// The operator who asked (an admin token's `sub`).
    pub operator: String,
    /// When the operation started and when this part was signed.
    pub started_at: UnixSeconds,
    pub iat: UnixSeconds,
    /// Records per table that this region copied (target) or deleted
    /// (source).
    pub counts: BTreeMap<String, u64>,
    /// The source region's scan for the user after the operation, by
    /// table: empty when nothing is left (only the source signs one).
    #[serde(default)]
    pub remaining: BTreeMap<String, u64>,
}

impl ReceiptClaims {
    /// Whether the post-check found nothing of the user left.
    pub fn clean(&self) -> bool {
        self.remaining.values().all(|n| *n == 0)
    }
}

/// The claims of a receipt part or proof, decoded WITHOUT checking its
/// signature: for what a region reads back from its own journal, or a
/// tool shows before verifying (verifiers use `KeySet::verify_receipt` and
/// `KeySet::verify_residency`).
pub fn unverified_claims<T: serde::de::DeserializeOwned>(jws: &str) -> Result<T, TokenError> {
    use base64::Engine as _;
    let body = jws.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

impl SigningKey {
    /// Signs a receipt part (`typ: receipt+jwt`).
    pub fn sign_receipt(&self, claims: &ReceiptClaims) -> Result<String, TokenError> {
        self.sign_typed(claims, RECEIPT_TYPE)
    }

    /// Signs a residency proof (`typ: residency+jwt`).
    pub fn sign_residency(&self, claims: &ResidencyClaims) -> Result<String, TokenError> {
        self.sign_typed(claims, RESIDENCY_TYPE)
    }
}

impl KeySet {
    /// The Ed25519 keys of a JWKS document (`{"keys": [...]}`, as the
    /// federation's `/.well-known/jwks.json` serves it); keys of another
    /// type or with a kid not of the form `<region>-<n>` are refused.
    pub fn from_jwks(text: &str) -> Result<KeySet, TokenError> {
        use base64::Engine as _;
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<crate::token::Jwk>,
        }
        let doc: Doc = serde_json::from_str(text).map_err(|_| TokenError::Malformed)?;
        let mut set = KeySet::default();
        for k in doc.keys {
            if k.kty != "OKP" || k.crv != "Ed25519" {
                return Err(TokenError::Malformed);
            }
            let kid = Kid::parse(&k.kid).ok_or(TokenError::Malformed)?;
            let x: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&k.x)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(TokenError::Malformed)?;
            set.insert(&kid, x);
        }
        Ok(set)
    }

    /// The claims of a receipt part signed by one of these keys, whose
    /// `kid` names the region the claims say signed it. Lifetimes do not
    /// apply: a receipt is a record, checked as long as its key is known.
    pub fn verify_receipt(&self, jws: &str) -> Result<ReceiptClaims, TokenError> {
        let (claims, region) = self.verify_typed::<ReceiptClaims>(jws, RECEIPT_TYPE)?;
        if claims.region != region {
            return Err(TokenError::Malformed);
        }
        Ok(claims)
    }

    /// The claims of a residency proof, checked like a receipt's.
    pub fn verify_residency(&self, jws: &str) -> Result<ResidencyClaims, TokenError> {
        let (claims, region) = self.verify_typed::<ResidencyClaims>(jws, RESIDENCY_TYPE)?;
        if claims.region != region {
            return Err(TokenError::Malformed);
        }
        Ok(claims)
    }

    /// Claims of a JWS of header `typ`, and the region of its signing key.
    fn verify_typed<T: serde::de::DeserializeOwned>(
        &self,
        jws: &str,
        typ: &str,
    ) -> Result<(T, String), TokenError> {
        let header = jsonwebtoken::decode_header(jws).map_err(|_| TokenError::Malformed)?;
        if header.typ.as_deref() != Some(typ) {
            return Err(TokenError::Malformed);
        }
        let (claims, kid): (T, Kid) = self.decode_signed(jws, None)?;
        Ok((claims, kid.region.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn key(kid: &str, seed: u8) -> SigningKey {
        SigningKey::from_seed(Kid::parse(kid).unwrap(), [seed; 32]).unwrap()
    }

    fn set(keys: &[&SigningKey]) -> KeySet {
        let mut s = KeySet::default();
        for k in keys {
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&k.public_jwk().x)
                .unwrap();
            s.insert(k.kid(), x.try_into().unwrap());
        }
        s
    }

    fn claims(region: &str) -> ReceiptClaims {
        ReceiptClaims {
            operation_id: "op_eu_1".into(),
            operation: Operation::Erase,
            part: Part::Source,
            region: region.into(),
            user_id: "usr_eu_01JD0000000000000000000000".into(),
            new_user_id: None,
            from_region: "eu".into(),
            to_region: None,
            operator: "ada".into(),
            started_at: 10,
            iat: 11,
            counts: BTreeMap::from([("users".into(), 1)]),
            remaining: BTreeMap::from([("users".into(), 0)]),
        }
    }

    #[test]
    fn receipts_verify_against_the_signing_region_only() {
        let eu = key("eu-1", 1);
        let us = key("us-1", 2);
        let keys = set(&[&eu, &us]);
        let jws = eu.sign_receipt(&claims("eu")).unwrap();
        assert_eq!(keys.verify_receipt(&jws).unwrap(), claims("eu"));
        // Each case: how a receipt was made or spoiled, and the refusal.
        let forged_region = eu.sign_receipt(&claims("us")).unwrap();
        let mut tampered = jws.clone();
        let body_start = tampered.find('.').unwrap() + 3;
        tampered.replace_range(body_start..body_start + 1, "A");
        let access = eu.sign_typed(&claims("eu"), "at+jwt").unwrap();
        let unknown = key("ap-1", 3).sign_receipt(&claims("ap")).unwrap();
        for (what, jws, want) in [
            (
                "a region claiming to be another",
                forged_region,
                TokenError::Malformed,
            ),
            ("another typ", access, TokenError::Malformed),
            ("an unknown key", unknown, TokenError::UnknownKey),
            ("garbage", "not.a.jws".to_owned(), TokenError::Malformed),
        ] {
            assert_eq!(keys.verify_receipt(&jws), Err(want), "{what}");
        }
        assert!(keys.verify_receipt(&tampered).is_err(), "tampered body");
    }

    #[test]
    fn jwks_documents_become_key_sets() {
        let eu = key("eu-1", 1);
        let doc = serde_json::json!({ "keys": [eu.public_jwk()] }).to_string();
        let set = KeySet::from_jwks(&doc).unwrap();
        let good = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","alg":"EdDSA","use":"sig","kid":"eu-1"}]}"#;
        assert!(KeySet::from_jwks(good).is_ok(), "the control case parses");
        let jws = eu.sign_receipt(&claims("eu")).unwrap();
        assert!(set.verify_receipt(&jws).is_ok());
        for bad in [
            "",
            "{}",
            // another key type; a key that is not 32 bytes; a kid not <region>-<n>
            r#"{"keys":[{"kty":"RSA","crv":"Ed25519","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","alg":"EdDSA","use":"sig","kid":"eu-1"}]}"#,
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA","alg":"EdDSA","use":"sig","kid":"eu-1"}]}"#,
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","alg":"EdDSA","use":"sig","kid":"nokid"}]}"#,
        ] {
            assert!(KeySet::from_jwks(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn residency_proofs_verify_and_list_each_finding() {
        let eu = key("eu-1", 1);
        let keys = set(&[&eu]);
        let clean = ResidencyClaims {
            region: "eu".into(),
            index: Some(IndexClaims::default()),
            ..ResidencyClaims::default()
        };
        let jws = eu.sign_residency(&clean).unwrap();
        assert_eq!(keys.verify_residency(&jws).unwrap(), clean);
        assert!(clean.findings().is_empty());
        // A receipt is not a proof, nor the reverse.
        assert!(keys.verify_receipt(&jws).is_err());
        let receipt = eu.sign_receipt(&claims("eu")).unwrap();
        assert!(keys.verify_residency(&receipt).is_err());
        // Each planted finding, and the words that name it.
        type Plant = fn(&mut ResidencyClaims);
        let cases: [(Plant, &str); 7] = [
            (
                |c| c.stale_moves = 1,
                "1 users in a move for more than an hour",
            ),
            (
                |c| c.placement_violations = vec!["dc2 holds replicas".into()],
                "outside the region",
            ),
            (
                |c| {
                    c.foreign_count = 1;
                    c.foreign_records = vec!["users: usr_us_1".into()];
                },
                "1 records of another region: users: usr_us_1",
            ),
            (|c| c.plaintext_keys = 2, "2 identifier keys in the clear"),
            (
                |c| {
                    c.unindexed_count = 1;
                    c.unindexed_users = vec!["usr_eu_1".into()];
                },
                "1 users the index does not home here",
            ),
            (
                |c| c.index.as_mut().unwrap().malformed = 1,
                "index: 1 malformed",
            ),
            (
                |c| c.index.as_mut().unwrap().plaintext_keys = 3,
                "index: 3 keys in the clear",
            ),
        ];
        for (plant, words) in cases {
            let mut c = clean.clone();
            plant(&mut c);
            let f = c.findings();
            assert!(f.len() == 1 && f[0].contains(words), "{words}: {f:?}");
        }
    }

    #[test]
    fn clean_means_nothing_remaining() {
        let mut c = claims("eu");
        assert!(c.clean());
        c.remaining.insert("audit_log".into(), 2);
        assert!(!c.clean());
    }
}
