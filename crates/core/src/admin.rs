//! Admin authentication: short-lived EdDSA tokens that an operator signs
//! with their own Ed25519 key, and the roles the federation grants each
//! operator (`[[admin.operators]]` in `regions.toml`: a name, a public
//! key, roles).
//!
//! A token (`typ: admin+jwt`, `kid`: the operator's name) says who signs
//! (`sub`), for what (`aud: domicile-admin`), which roles it asks for
//! (`roles`, at most those granted), and lives at most five minutes. A
//! node accepts it only if the operator is listed, the signature is by
//! that operator's key, the lifetime holds at `now` (with a small skew),
//! and every role asked for is granted; an RPC then needs one of its
//! roles. Nothing here reads keys from files or the clock: seeds and
//! `now` are passed in.

use crate::UnixSeconds;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt};

/// The `aud` of every admin token.
pub const ADMIN_AUDIENCE: &str = "domicile-admin";
/// The `typ` of an admin token's header.
pub const ADMIN_TOKEN_TYPE: &str = "admin+jwt";
/// Longest lifetime a token may claim.
pub const MAX_LIFETIME_SECONDS: i64 = 300;
/// Clock skew tolerated between the operator's machine and the node.
pub const SKEW_SECONDS: i64 = 30;
/// Longest token read.
pub const MAX_TOKEN_LEN: usize = 2048;

/// What an operator may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Move, pin, export, erase; the residency and index reports; audit
    /// trails.
    Compliance,
    /// Signing keys, draining, regions.
    Operator,
    /// A user's non-secret state (the audit trail).
    Support,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Compliance, Role::Operator, Role::Support];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Compliance => "compliance",
            Role::Operator => "operator",
            Role::Support => "support",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator as the federation lists them.
#[derive(Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub public_key: [u8; 32],
    pub roles: Vec<Role>,
}

impl fmt::Debug for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operator")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// Whether `name` may name an operator: 1 to 64 of `a-z 0-9 - _ .`.
pub fn valid_operator_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// The claims of an admin token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminClaims {
    pub sub: String,
    pub aud: String,
    pub iat: UnixSeconds,
    pub exp: UnixSeconds,
    pub jti: String,
    pub roles: Vec<Role>,
}

/// A verified caller: who, and which roles the token carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminCaller {
    pub operator: String,
    pub roles: Vec<Role>,
}

impl AdminCaller {
    /// Whether the caller holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), AdminAuthError> {
        if self.roles.iter().any(|r| roles.contains(r)) {
            Ok(())
        } else {
            Err(AdminAuthError::WrongRole(roles.to_vec()))
        }
    }
}

/// Why an admin call was refused. The texts are what callers see.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminAuthError {
    #[error("admin calls need authorization: Bearer <admin token> (see docs/compliance.md)")]
    Missing,
    #[error("the admin token is malformed")]
    Malformed,
    #[error("the admin token names no operator of this federation")]
    UnknownOperator,
    #[error("the admin token's signature is not its operator's")]
    BadSignature,
    #[error("the admin token has expired")]
    Expired,
    #[error("the admin token is not valid yet")]
    NotYetValid,
    #[error("an admin token lives at most {MAX_LIFETIME_SECONDS} seconds")]
    TooLong,
    #[error("the token is not an admin token")]
    WrongAudience,
    #[error("the operator is not granted the role {0}")]
    NotGranted(Role),
    #[error("this call needs the role {}", names(.0))]
    WrongRole(Vec<Role>),
}

fn names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// An operator's private key, to sign admin tokens with.
#[derive(Clone)]
pub struct OperatorKey {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OperatorKey({})", self.name)
    }
}

impl OperatorKey {
    /// The key of operator `name` from its 32-byte seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Self {
        Self {
            name: name.to_owned(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// A token asking for `roles`, issued at `now`, living `lifetime`
    /// seconds, with the random `jti`.
    pub fn sign(
        &self,
        roles: &[Role],
        now: UnixSeconds,
        lifetime: i64,
        jti: [u8; 16],
    ) -> Result<String, AdminAuthError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|_| AdminAuthError::Malformed)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ADMIN_TOKEN_TYPE.into());
        header.kid = Some(self.name.clone());
        let claims = AdminClaims {
            sub: self.name.clone(),
            aud: ADMIN_AUDIENCE.into(),
            iat: now,
            exp: now + lifetime,
            jti: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti),
            roles: roles.to_vec(),
        };
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes()))
            .map_err(|_| AdminAuthError::Malformed)
    }
}

/// The operators of a federation, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Operators(BTreeMap<String, Operator>);

impl Operators {
    pub fn new(list: impl IntoIterator<Item = Operator>) -> Self {
        Self(list.into_iter().map(|o| (o.name.clone(), o)).collect())
    }

    pub fn get(&self, name: &str) -> Option<&Operator> {
        self.0.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Operator> {
        self.0.values()
    }

    /// The caller of `token` at `now`, or why it is refused.
    pub fn verify(&self, token: &str, now: UnixSeconds) -> Result<AdminCaller, AdminAuthError> {
        if token.is_empty() {
            return Err(AdminAuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AdminAuthError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AdminAuthError::Malformed)?;
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(ADMIN_TOKEN_TYPE) {
            return Err(AdminAuthError::WrongAudience);
        }
        let name = header.kid.ok_or(AdminAuthError::Malformed)?;
        let operator = self.get(&name).ok_or(AdminAuthError::UnknownOperator)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Lifetime and audience are checked below against `now`.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let key = DecodingKey::from_ed_der(&operator.public_key);
        let claims = jsonwebtoken::decode::<AdminClaims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => AdminAuthError::BadSignature,
                _ => AdminAuthError::Malformed,
            })?
            .claims;
        if claims.aud != ADMIN_AUDIENCE {
            return Err(AdminAuthError::WrongAudience);
        }
        if claims.sub != operator.name {
            return Err(AdminAuthError::Malformed);
        }
        if claims.exp - claims.iat > MAX_LIFETIME_SECONDS || claims.exp <= claims.iat {
            return Err(AdminAuthError::TooLong);
        }
        if now + SKEW_SECONDS < claims.iat {
            return Err(AdminAuthError::NotYetValid);
        }
        if now >= claims.exp + SKEW_SECONDS {
            return Err(AdminAuthError::Expired);
        }
        if let Some(r) = claims.roles.iter().find(|r| !operator.roles.contains(r)) {
            return Err(AdminAuthError::NotGranted(*r));
        }
        Ok(AdminCaller {
            operator: operator.name.clone(),
            roles: claims.roles,
        })
    }
}

/// The federation's admin settings (`[admin]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminSettings {
    /// The operators listed with their public keys.
    pub operators: Vec<Operator>,
    /// A local federation's operator, granted every role, whose key every
    /// node and the `domicile` CLI derive from the federation secret
    /// (`IndexSecret::derive(LOCAL_OPERATOR_KEY)`). Whoever reads that
    /// secret is this operator: never set it in production.
    pub local_operator: Option<String>,
}

/// The purpose the local operator's key seed is derived under.
pub const LOCAL_OPERATOR_KEY: &str = "local admin operator v1";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    #[serde(default)]
    operators: Vec<RawOperator>,
    #[serde(default)]
    local_operator: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    name: String,
    /// The Ed25519 public key, base64url (32 bytes).
    public_key: String,
    roles: Vec<String>,
}

type Err<'a> = &'a dyn Fn(String, String) -> crate::topology::ConfigError;

pub(crate) fn build(
    raw: &RawAdmin,
    err: Err<'_>,
) -> Result<AdminSettings, crate::topology::ConfigError> {
    let mut operators: Vec<Operator> = Vec::new();
    for (i, o) in raw.operators.iter().enumerate() {
        let key = |k: &str| format!("admin.operators[{i}].{k}");
        if !valid_operator_name(&o.name) {
            return Err(err(key("name"), "1 to 64 of a-z 0-9 - _ .".into()));
        }
        if operators.iter().any(|p| p.name == o.name)
            || raw.local_operator.as_deref() == Some(&o.name)
        {
            return Err(err(key("name"), format!("{:?} is listed twice", o.name)));
        }
        let public_key: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(o.public_key.trim().trim_end_matches('='))
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                err(
                    key("public_key"),
                    "must be an Ed25519 public key: 32 bytes, base64url".into(),
                )
            })?;
        if o.roles.is_empty() {
            return Err(err(key("roles"), "at least one role".into()));
        }
        let mut roles = Vec::new();
        for r in &o.roles {
            let role = Role::parse(r).ok_or_else(|| {
                err(
                    key("roles"),
                    format!("unknown role {r:?}: compliance, operator or support"),
                )
            })?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        operators.push(Operator {
            name: o.name.clone(),
            public_key,
            roles,
        });
    }
    if let Some(name) = &raw.local_operator
        && !valid_operator_name(name)
    {
        return Err(err(
            "admin.local_operator".into(),
            "1 to 64 of a-z 0-9 - _ .".into(),
        ));
    }
    Ok(AdminSettings {
        operators,
        local_operator: raw.local_operator.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixSeconds = 1_800_000_000;

    fn key(name: &str, seed: u8) -> OperatorKey {
        OperatorKey::from_seed(name, [seed; 32])
    }

    fn operators() -> Operators {
        Operators::new([
            Operator {
                name: "ada".into(),
                public_key: key("ada", 1).public_key(),
                roles: vec![Role::Compliance, Role::Support],
            },
            Operator {
                name: "sre".into(),
                public_key: key("sre", 2).public_key(),
                roles: vec![Role::Operator],
            },
        ])
    }

    #[test]
    fn tokens_name_their_operator_and_roles_and_nothing_else_passes() {
        let ops = operators();
        let ada = key("ada", 1);
        let good = ada.sign(&[Role::Compliance], NOW, 120, [7; 16]).unwrap();
        let caller = ops.verify(&good, NOW + 60).unwrap();
        assert_eq!(caller.operator, "ada");
        assert_eq!(caller.require(&[Role::Compliance, Role::Support]), Ok(()));
        assert_eq!(
            caller.require(&[Role::Operator]),
            Err(AdminAuthError::WrongRole(vec![Role::Operator]))
        );
        // Someone else's key under ada's name; a name nobody has.
        let forged = key("ada", 9)
            .sign(&[Role::Compliance], NOW, 120, [7; 16])
            .unwrap();
        let stranger = key("eve", 1)
            .sign(&[Role::Compliance], NOW, 120, [7; 16])
            .unwrap();
        let greedy = ada.sign(&[Role::Operator], NOW, 120, [7; 16]).unwrap();
        let long = ada
            .sign(&[Role::Support], NOW, MAX_LIFETIME_SECONDS + 1, [7; 16])
            .unwrap();
        // A tampered payload under a real signature.
        let parts: Vec<&str> = good.split('.').collect();
        let other = ada.sign(&[Role::Support], NOW, 120, [8; 16]).unwrap();
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            other.split('.').nth(1).unwrap(),
            parts[2]
        );
        for (token, at, want) in [
            ("", NOW, AdminAuthError::Missing),
            ("not a token", NOW, AdminAuthError::Malformed),
            (forged.as_str(), NOW, AdminAuthError::BadSignature),
            (swapped.as_str(), NOW, AdminAuthError::BadSignature),
            (stranger.as_str(), NOW, AdminAuthError::UnknownOperator),
            (
                greedy.as_str(),
                NOW,
                AdminAuthError::NotGranted(Role::Operator),
            ),
            (long.as_str(), NOW, AdminAuthError::TooLong),
            (
                good.as_str(),
                NOW + 120 + SKEW_SECONDS,
                AdminAuthError::Expired,
            ),
            (
                good.as_str(),
                NOW - SKEW_SECONDS - 1,
                AdminAuthError::NotYetValid,
            ),
        ] {
            assert_eq!(ops.verify(token, at), Err(want.clone()), "{want}");
        }
        assert!(ops.verify(&"x".repeat(MAX_TOKEN_LEN + 1), NOW).is_err());
    }

    #[test]
    fn an_access_token_is_not_an_admin_token() {
        use crate::token::{AccessClaims, Kid, SigningKey};
        let region = crate::RegionCode::parse("eu").unwrap();
        let k = SigningKey::from_seed(
            Kid {
                region: region.clone(),
                n: 1,
            },
            [1; 32],
        )
        .unwrap();
        let claims = AccessClaims {
            iss: "https://id.test".into(),
            sub: "usr_eu_x".into(),
            aud: ADMIN_AUDIENCE.into(),
            exp: NOW + 60,
            iat: NOW,
            nbf: NOW,
            jti: "j".into(),
            client_id: "c".into(),
            scope: "s".into(),
            rgn: "eu".into(),
            sid: "ses".into(),
            amr: vec![],
            acr: String::new(),
        };
        let token = k.sign(&claims).unwrap();
        assert_eq!(
            operators().verify(&token, NOW),
            Err(AdminAuthError::WrongAudience)
        );
    }

    #[test]
    fn names_and_roles() {
        for ok in ["ada", "sre-1", "a.b_c"] {
            assert!(valid_operator_name(ok), "{ok}");
        }
        for bad in ["", "Ada", "a b", &"x".repeat(65)] {
            assert!(!valid_operator_name(bad), "{bad}");
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
