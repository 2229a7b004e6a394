//! The authorization codes aggregate (OpenID Connect): one row per code,
//! keyed by the SHA-256 of the code, holding what the token endpoint needs
//! to finish the flow, expiring (`kept_until`). A code is redeemed once:
//! [`RegionStore::redeem_code`] marks it in one conditional write and says
//! whether this was the first redemption, a replay (the caller revokes
//! what the first issued), or no live code at all.
//!
//! Codes are not listed per user: they live minutes, so an export or an
//! erasure that misses one loses nothing that outlives it.

use crate::{
    Applied, CodeRecord, Key, RegionStore, Result, Scope, Table,
    backend::{Change, Expiry},
};
use domicile_core::{UnixSeconds, ids::ArtifactKind};

pub const AUTHORIZATION_CODES: Table = Table::rows("authorization_codes", Scope::Region);

/// What redeeming a code found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redemption {
    /// The first redemption of a live code: what it was issued for.
    First(CodeRecord),
    /// The code was redeemed before (at `redeemed_at`), or has expired and
    /// is still kept: refused, with what it was issued for.
    Refused(CodeRecord),
    /// No such code is kept.
    Unknown,
}

fn expiry(c: &CodeRecord, now: UnixSeconds) -> Expiry {
    Expiry::At {
        at: c.kept_until,
        now,
    }
}

impl RegionStore {
    /// Stores a new code unless a kept one has its hash.
    pub async fn insert_code(&self, c: &CodeRecord, now: UnixSeconds) -> Result<Applied> {
        self.instrument
            .run("insert_code", async {
                self.check_id(&AUTHORIZATION_CODES, ArtifactKind::User, &c.user_id)?;
                self.check_id(&AUTHORIZATION_CODES, ArtifactKind::Session, &c.session_id)?;
                let value = self.encode(&AUTHORIZATION_CODES, c)?;
                self.insert_or_modify(
                    &AUTHORIZATION_CODES,
                    &Key::row(c.code_hash.to_vec()),
                    None,
                    |current: Option<CodeRecord>| {
                        Ok(match current {
                            Some(kept) if now < kept.kept_until => (Change::Keep, Applied::No(())),
                            _ => (Change::Put(value.clone(), expiry(c, now)), Applied::Yes),
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Redeems the code whose hash is `code_hash` at `now`.
    pub async fn redeem_code(&self, code_hash: &[u8; 32], now: UnixSeconds) -> Result<Redemption> {
        self.instrument
            .run("redeem_code", async {
                self.modify(
                    &AUTHORIZATION_CODES,
                    &Key::row(code_hash.to_vec()),
                    |current: Option<CodeRecord>| {
                        Ok(match current {
                            Some(c) if now >= c.kept_until => (Change::Keep, Redemption::Unknown),
                            Some(c) if c.redeemed_at.is_some() || now >= c.expires_at => {
                                (Change::Keep, Redemption::Refused(c))
                            }
                            Some(mut c) => {
                                c.redeemed_at = Some(now);
                                let value = self.encode(&AUTHORIZATION_CODES, &c)?;
                                (Change::Put(value, expiry(&c, now)), Redemption::First(c))
                            }
                            None => (Change::Keep, Redemption::Unknown),
                        })
                    },
                )
                .await
            })
            .await
    }
}
