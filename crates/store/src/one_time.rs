//! The one-time codes aggregate (email verification, password reset,
//! passwordless sign-in): one row per user and purpose (partition: user id
//! and purpose), holding the keyed hash of the code and the hash of the
//! link issued with it, expiring with the code. Issuing replaces the
//! user's earlier code of that purpose; spending one is a single
//! conditional write that accepts it once, counts a wrong code against its
//! attempts (a link that is not the code's is refused without counting),
//! and refuses a used, expired or exhausted one.
//!
//! Hashes are computed by the caller (the keys are the use cases'); this
//! module compares them in constant time. Rows are keyed by their user, so
//! an erasure deletes them without a scan.

use crate::{
    Key, OneTimeRecord, Purpose, RegionStore, Result, Scope, Table,
    backend::{Change, Expiry},
};
use domicile_core::{UnixSeconds, ids::ArtifactKind};

pub const ONE_TIME_CODES: Table = Table::rows("one_time_codes", Scope::Region);

/// What was presented: the keyed hash of a typed code, or the hash of a
/// link's secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    Code(&'a [u8; 32]),
    Link(&'a [u8; 32]),
}

/// What spending a code found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spend {
    /// Accepted, now used: what it was issued as.
    Accepted(OneTimeRecord),
    /// Not the typed code: one attempt fewer is left (0: it is dead now).
    Wrong { attempts_left: u32 },
    /// No live code (none issued, expired, used, out of attempts), or a
    /// link that is not the live code's.
    Dead,
}

fn key(user_id: &str, purpose: Purpose) -> Key {
    Key::row(format!("{user_id}/{}", purpose.as_str()).into_bytes())
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl RegionStore {
    /// Stores `r` as its user's live code of its purpose, replacing any
    /// earlier one.
    pub async fn put_one_time(&self, r: &OneTimeRecord, now: UnixSeconds) -> Result<()> {
        self.instrument
            .run("put_one_time", async {
                self.check_id(&ONE_TIME_CODES, ArtifactKind::User, &r.user_id)?;
                let value = self.encode(&ONE_TIME_CODES, r)?;
                let expiry = Expiry::At {
                    at: r.expires_at,
                    now,
                };
                self.modify(
                    &ONE_TIME_CODES,
                    &key(&r.user_id, r.purpose),
                    |_: Option<OneTimeRecord>| Ok((Change::Put(value.clone(), expiry), ())),
                )
                .await
            })
            .await
    }

    /// Spends the user's code of `purpose` with what was `presented`.
    pub async fn spend_one_time(
        &self,
        user_id: &str,
        purpose: Purpose,
        presented: Presented<'_>,
        now: UnixSeconds,
    ) -> Result<Spend> {
        self.instrument
            .run("spend_one_time", async {
                self.check_id(&ONE_TIME_CODES, ArtifactKind::User, user_id)?;
                self.modify(
                    &ONE_TIME_CODES,
                    &key(user_id, purpose),
                    |current: Option<OneTimeRecord>| {
                        let mut r = match current {
                            Some(r)
                                if r.used_at.is_none()
                                    && r.attempts_left > 0
                                    && now < r.expires_at
                                    && r.user_id == user_id =>
                            {
                                r
                            }
                            _ => return Ok((Change::Keep, Spend::Dead)),
                        };
                        let expiry = Expiry::At {
                            at: r.expires_at,
                            now,
                        };
                        let right = match presented {
                            Presented::Code(h) => same(h, &r.code_hash),
                            // A link is not typed, and its 256 bits are not
                            // guessed: one that is not this code's (an older
                            // link, a forgery) is simply dead, and costs the
                            // code nothing.
                            Presented::Link(h) if !same(h, &r.link_hash) => {
                                return Ok((Change::Keep, Spend::Dead));
                            }
                            Presented::Link(_) => true,
                        };
                        if right {
                            r.used_at = Some(now);
                            let value = self.encode(&ONE_TIME_CODES, &r)?;
                            Ok((Change::Put(value, expiry), Spend::Accepted(r)))
                        } else {
                            r.attempts_left -= 1;
                            let left = r.attempts_left;
                            let value = self.encode(&ONE_TIME_CODES, &r)?;
                            Ok((
                                Change::Put(value, expiry),
                                Spend::Wrong {
                                    attempts_left: left,
                                },
                            ))
                        }
                    },
                )
                .await
            })
            .await
    }

    /// Deletes the user's codes of every purpose (erasure).
    pub async fn erase_one_time(&self, user_id: &str) -> Result<()> {
        self.instrument
            .run("erase_one_time", async {
                for purpose in Purpose::ALL {
                    self.modify(
                        &ONE_TIME_CODES,
                        &key(user_id, purpose),
                        |current: Option<OneTimeRecord>| {
                            Ok(match current {
                                Some(_) => (Change::Delete, ()),
                                None => (Change::Keep, ()),
                            })
                        },
                    )
                    .await?;
                }
                Ok(())
            })
            .await
    }
}
