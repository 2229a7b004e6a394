//! The second-factor aggregate: a user's factors (`mfa_factors`, one row
//! per user: the sealed TOTP secret and the last step it accepted, an
//! enrolment waiting for its first code, the recovery codes' keyed hashes)
//! and the sign-ins waiting for a second factor (`pending_sign_ins`,
//! partition: user id; clustering: SHA-256 of the pending token; expiring
//! with the record).
//!
//! Every rule that must hold under concurrency is one conditional write
//! here: a TOTP step is accepted once and never one older than the last
//! (replay), a recovery code is spent once, an enrolment is confirmed only
//! as the secret it was shown with, a pending sign-in finishes once and
//! dies after its wrong attempts. What a code is, and whether it matches,
//! is the use cases' (they hold the keys); this module compares hashes and
//! steps. Rows are keyed by their user, so an erasure needs no scan.

use crate::{
    FactorsRecord, Key, PasskeyFactor, PendingPasskey, PendingSignInRecord, PendingTotp,
    RecoverySlot, RegionStore, Result, Scope, SpentChallenge, Table, TotpFactor,
    backend::{Change, Expiry},
};
use domicile_core::{UnixSeconds, ids::ArtifactKind, mfa::Sealed};

pub const FACTORS: Table = Table::rows("mfa_factors", Scope::Region);
pub const PENDING_SIGN_INS: Table = Table::partitioned("pending_sign_ins", Scope::Region);

fn key(user_id: &str) -> Key {
    Key::row(user_id.as_bytes())
}

fn pending_key(user_id: &str, token_hash: &[u8; 32]) -> Key {
    Key::cell(user_id.as_bytes(), token_hash.to_vec())
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What presenting a TOTP step found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepUse {
    /// Newer than the last one accepted: accepted, and now the last.
    Accepted,
    /// At or before the last step accepted: a replay.
    Replayed,
    /// The user has no authenticator app.
    NoFactor,
}

/// What confirming an enrolment found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// The app is the user's factor now; `recovery_installed` when the
    /// given recovery codes became the live set (there was none).
    Activated { recovery_installed: bool },
    /// No live enrolment of that secret (expired, replaced, or done).
    NoEnrolment,
}

/// What spending a recovery code found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryUse {
    Accepted { left: usize },
    Refused,
}

/// What finishing or failing a pending sign-in found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PendingOutcome {
    /// Finished now (single use): what it was.
    Finished(PendingSignInRecord),
    /// One wrong attempt counted: this many are left (0: dead now).
    Counted { attempts_left: u32 },
    /// Expired, finished, out of attempts, or unknown.
    Dead,
}

/// Challenges of passwordless sign-ins one account keeps spent at a time
/// (each for its ceremony's five minutes); beyond them an answer is
/// refused as a replay.
pub const MAX_SPENT_CHALLENGES: usize = 32;

/// What storing a passkey's use found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasskeyUse {
    /// The counter is stored (and the challenge spent).
    Used,
    /// The challenge was spent already (or too many are).
    Replayed,
    /// The passkey is not the user's (removed meanwhile).
    Gone,
    /// Another use of the passkey was stored since it was read.
    Changed,
}

/// The answer to `take_factor_attempt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorAttempt {
    /// Counted: `taken` attempts in the window, this one included.
    Taken { taken: u32 },
    /// The window is full: no factor is checked for `retry_after` seconds.
    Refused { retry_after: i64 },
}

impl RegionStore {
    pub async fn get_factors(&self, user_id: &str) -> Result<Option<FactorsRecord>> {
        self.instrument
            .run("get_factors", self.read(&FACTORS, &key(user_id)))
            .await
    }

    /// Keeps `pending` as the user's enrolment waiting for its first code,
    /// replacing an earlier one (the confirmed app, if any, stays).
    pub async fn put_pending_totp(
        &self,
        user_id: &str,
        pending: &PendingTotp,
        now: UnixSeconds,
    ) -> Result<()> {
        self.change_factors("put_pending_totp", user_id, |r| {
            r.pending_totp = Some(pending.clone());
            r.updated_at = now;
            Some(())
        })
        .await
        .map(|_| ())
    }

    /// Makes the enrolment sealed as `sealed` the user's app, with `step`
    /// (the confirming code's) as its last step. `recovery` becomes the
    /// live recovery set when the user has none left.
    pub async fn activate_totp(
        &self,
        user_id: &str,
        sealed: &Sealed,
        step: u64,
        recovery: &[[u8; 32]],
        now: UnixSeconds,
    ) -> Result<Activation> {
        let out = self
            .change_factors("activate_totp", user_id, |r| {
                let p = r.pending_totp.as_ref()?;
                if p.sealed != *sealed || now >= p.expires_at {
                    return None;
                }
                r.totp = Some(TotpFactor {
                    sealed: sealed.clone(),
                    enrolled_at: now,
                    last_step: step,
                });
                r.pending_totp = None;
                r.updated_at = now;
                Some(install_recovery(r, recovery, now))
            })
            .await?;
        Ok(match out {
            Some(recovery_installed) => Activation::Activated { recovery_installed },
            None => Activation::NoEnrolment,
        })
    }

    /// Accepts TOTP `step` for the user if it is newer than the last one.
    pub async fn use_totp_step(
        &self,
        user_id: &str,
        step: u64,
        now: UnixSeconds,
    ) -> Result<StepUse> {
        // Decided again on each round of the cycle: the last decision is
        // the one that was written (or not).
        let mut found = StepUse::NoFactor;
        self.change_factors("use_totp_step", user_id, |r| {
            found = match &r.totp {
                None => StepUse::NoFactor,
                Some(t) if step <= t.last_step => StepUse::Replayed,
                Some(_) => StepUse::Accepted,
            };
            let t = r.totp.as_mut().filter(|_| found == StepUse::Accepted)?;
            t.last_step = step;
            r.updated_at = now;
            Some(())
        })
        .await?;
        Ok(found)
    }

    /// Removes the authenticator app; with it gone the user has no second
    /// factor, so the recovery codes (its backup) go too. `false` when
    /// there was none.
    pub async fn remove_totp(&self, user_id: &str, now: UnixSeconds) -> Result<bool> {
        Ok(self
            .change_factors("remove_totp", user_id, |r| {
                r.totp.take()?;
                r.pending_totp = None;
                drop_orphan_recovery(r);
                r.updated_at = now;
                Some(())
            })
            .await?
            .is_some())
    }

    // ---- passkeys ----

    /// Keeps a passkey registration waiting for the browser's answer
    /// (replacing a waiting one).
    pub async fn put_pending_passkey(
        &self,
        user_id: &str,
        pending: &PendingPasskey,
        now: UnixSeconds,
    ) -> Result<()> {
        self.change_factors("put_pending_passkey", user_id, |r| {
            r.pending_passkey = Some(pending.clone());
            r.updated_at = now;
            Some(())
        })
        .await
        .map(|_| ())
    }

    /// Adds `passkey`, answering the waiting registration whose state is
    /// `state` (it ends). `recovery` becomes the live recovery set when the
    /// user has none left. `NoEnrolment` when that registration is gone or
    /// expired, the credential is registered already, or the user has
    /// `max` passkeys.
    pub async fn add_passkey(
        &self,
        user_id: &str,
        state: &str,
        passkey: &PasskeyFactor,
        recovery: &[[u8; 32]],
        max: usize,
        now: UnixSeconds,
    ) -> Result<Activation> {
        let out = self
            .change_factors("add_passkey", user_id, |r| {
                let p = r.pending_passkey.as_ref()?;
                if p.state != state
                    || now >= p.expires_at
                    || r.passkeys.len() >= max
                    || r.passkeys.iter().any(|k| k.id == passkey.id)
                {
                    return None;
                }
                r.passkeys.push(passkey.clone());
                r.pending_passkey = None;
                r.updated_at = now;
                Some(install_recovery(r, recovery, now))
            })
            .await?;
        Ok(match out {
            Some(recovery_installed) => Activation::Activated { recovery_installed },
            None => Activation::NoEnrolment,
        })
    }

    /// Renames the user's passkey `id`; `false` when there is none.
    pub async fn rename_passkey(
        &self,
        user_id: &str,
        id: &str,
        name: &str,
        now: UnixSeconds,
    ) -> Result<bool> {
        Ok(self
            .change_factors("rename_passkey", user_id, |r| {
                let k = r.passkeys.iter_mut().find(|k| k.id == id)?;
                k.name = name.to_owned();
                r.updated_at = now;
                Some(())
            })
            .await?
            .is_some())
    }

    /// Removes the user's passkey `id` (and the recovery codes with the
    /// last factor); `false` when there is none.
    pub async fn remove_passkey(&self, user_id: &str, id: &str, now: UnixSeconds) -> Result<bool> {
        Ok(self
            .change_factors("remove_passkey", user_id, |r| {
                let before = r.passkeys.len();
                r.passkeys.retain(|k| k.id != id);
                if r.passkeys.len() == before {
                    return None;
                }
                drop_orphan_recovery(r);
                r.updated_at = now;
                Some(())
            })
            .await?
            .is_some())
    }

    /// Records a use of passkey `id`: its credential as updated by the
    /// sign-in (the signature counter) and when, if it is still the one
    /// the sign-in checked against (`read`; else `Changed`: another use
    /// came between, and its counter must not be overwritten), spending
    /// the ceremony's challenge (`spend`: its hash and until when it
    /// matters) in the same write: `Replayed` when it was spent already.
    pub async fn touch_passkey(
        &self,
        user_id: &str,
        id: &str,
        read: &str,
        credential: &str,
        spend: Option<([u8; 32], UnixSeconds)>,
        now: UnixSeconds,
    ) -> Result<PasskeyUse> {
        let mut refused = PasskeyUse::Gone;
        let touched = self
            .change_factors("touch_passkey", user_id, |r| {
                refused = PasskeyUse::Gone;
                r.spent_challenges.retain(|c| c.until > now);
                if let Some((hash, until)) = spend {
                    if r.spent_challenges.iter().any(|c| c.hash == hash)
                        || r.spent_challenges.len() >= MAX_SPENT_CHALLENGES
                    {
                        refused = PasskeyUse::Replayed;
                        return None;
                    }
                    r.spent_challenges.push(SpentChallenge { hash, until });
                }
                let k = r.passkeys.iter_mut().find(|k| k.id == id)?;
                if k.credential != read {
                    refused = PasskeyUse::Changed;
                    return None;
                }
                k.credential = credential.to_owned();
                k.last_used_at = Some(now);
                r.updated_at = now;
                Some(())
            })
            .await?;
        Ok(match touched {
            Some(()) => PasskeyUse::Used,
            None => refused,
        })
    }

    /// Replaces the recovery set (the old codes die). `false` when the user
    /// has no second factor for them to back up.
    pub async fn replace_recovery(
        &self,
        user_id: &str,
        hashes: &[[u8; 32]],
        now: UnixSeconds,
    ) -> Result<bool> {
        Ok(self
            .change_factors("replace_recovery", user_id, |r| {
                if !r.has_second_factor() {
                    return None;
                }
                r.recovery = slots(hashes);
                r.recovery_generated_at = Some(now);
                r.recovery_user_id = None;
                r.updated_at = now;
                Some(())
            })
            .await?
            .is_some())
    }

    /// Spends the recovery code whose keyed hash is `hash`, once.
    pub async fn use_recovery_code(
        &self,
        user_id: &str,
        hash: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<RecoveryUse> {
        let out = self
            .change_factors("use_recovery_code", user_id, |r| {
                let slot = r
                    .recovery
                    .iter_mut()
                    .find(|s| s.used_at.is_none() && same(&s.hash, hash))?;
                slot.used_at = Some(now);
                r.updated_at = now;
                Some(r.recovery_left())
            })
            .await?;
        Ok(match out {
            Some(left) => RecoveryUse::Accepted { left },
            None => RecoveryUse::Refused,
        })
    }

    /// Takes one attempt at a second factor of the user, before the
    /// factor is checked: refused (nothing written) while `max` attempts
    /// were taken in the last `window` seconds without a right one;
    /// otherwise counted, in one conditional write, so concurrent guesses
    /// cannot all pass one read of the count. A right factor clears the
    /// count (`clear_factor_failures`).
    pub async fn take_factor_attempt(
        &self,
        user_id: &str,
        max: u32,
        window: i64,
        now: UnixSeconds,
    ) -> Result<FactorAttempt> {
        let taken = self
            .change_factors("take_factor_attempt", user_id, |r| {
                let fresh = now >= r.failures_since + window || r.failures == 0;
                if !fresh && r.failures >= max {
                    return None;
                }
                if fresh {
                    r.failures = 0;
                    r.failures_since = now;
                }
                r.failures += 1;
                r.updated_at = now;
                Some(r.failures)
            })
            .await?;
        Ok(match taken {
            Some(taken) => FactorAttempt::Taken { taken },
            None => {
                let since = self
                    .get_factors(user_id)
                    .await?
                    .map_or(now, |r| r.failures_since);
                FactorAttempt::Refused {
                    retry_after: (since + window - now).max(1),
                }
            }
        })
    }

    /// Forgets the user's wrong second factors (a right one was given).
    pub async fn clear_factor_failures(&self, user_id: &str, now: UnixSeconds) -> Result<()> {
        self.change_factors("clear_factor_failures", user_id, |r| {
            if r.failures == 0 {
                return None;
            }
            r.failures = 0;
            r.updated_at = now;
            Some(())
        })
        .await
        .map(|_| ())
    }

    /// Read → change → conditional write of the user's factors row
    /// (created empty when absent): `change` returns `None` to write
    /// nothing, or what the operation reports.
    async fn change_factors<R: Send>(
        &self,
        op: &'static str,
        user_id: &str,
        mut change: impl FnMut(&mut FactorsRecord) -> Option<R> + Send,
    ) -> Result<Option<R>> {
        self.instrument
            .run(op, async {
                self.check_id(&FACTORS, ArtifactKind::User, user_id)?;
                self.modify(&FACTORS, &key(user_id), |current: Option<FactorsRecord>| {
                    let mut r = current.unwrap_or_else(|| FactorsRecord {
                        user_id: user_id.to_owned(),
                        totp: None,
                        pending_totp: None,
                        recovery: Vec::new(),
                        recovery_generated_at: None,
                        failures: 0,
                        failures_since: 0,
                        updated_at: 0,
                        passkeys: Vec::new(),
                        pending_passkey: None,
                        spent_challenges: Vec::new(),
                        recovery_user_id: None,
                    });
                    match change(&mut r) {
                        Some(out) => {
                            let value = self.encode(&FACTORS, &r)?;
                            Ok((Change::Put(value, Expiry::Never), Some(out)))
                        }
                        None => Ok((Change::Keep, None)),
                    }
                })
                .await
            })
            .await
    }

    // ---- pending sign-ins ----

    /// Stores a new pending sign-in (its token hash is fresh randomness).
    pub async fn insert_pending_sign_in(
        &self,
        r: &PendingSignInRecord,
        now: UnixSeconds,
    ) -> Result<crate::Applied> {
        self.instrument
            .run("insert_pending_sign_in", async {
                self.check_id(&PENDING_SIGN_INS, ArtifactKind::User, &r.user_id)?;
                let value = self.encode(&PENDING_SIGN_INS, r)?;
                let expiry = Expiry::At {
                    at: r.expires_at,
                    now,
                };
                self.insert_or_modify(
                    &PENDING_SIGN_INS,
                    &pending_key(&r.user_id, &r.token_hash),
                    None,
                    |current: Option<PendingSignInRecord>| {
                        Ok(match current {
                            None => (Change::Put(value.clone(), expiry), crate::Applied::Yes),
                            Some(_) => (Change::Keep, crate::Applied::No(())),
                        })
                    },
                )
                .await
            })
            .await
    }

    /// The live (unexpired, unfinished, not exhausted) pending sign-in.
    pub async fn get_pending_sign_in(
        &self,
        user_id: &str,
        token_hash: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<Option<PendingSignInRecord>> {
        let found: Option<PendingSignInRecord> = self
            .instrument
            .run(
                "get_pending_sign_in",
                self.read(&PENDING_SIGN_INS, &pending_key(user_id, token_hash)),
            )
            .await?;
        Ok(found.filter(|r| alive(r, now)))
    }

    /// Finishes the pending sign-in (`passed`: its second factor was
    /// accepted) or counts a wrong attempt against it.
    pub async fn settle_pending_sign_in(
        &self,
        user_id: &str,
        token_hash: &[u8; 32],
        passed: bool,
        now: UnixSeconds,
    ) -> Result<PendingOutcome> {
        self.instrument
            .run("settle_pending_sign_in", async {
                self.check_id(&PENDING_SIGN_INS, ArtifactKind::User, user_id)?;
                self.modify(
                    &PENDING_SIGN_INS,
                    &pending_key(user_id, token_hash),
                    |current: Option<PendingSignInRecord>| {
                        let mut r = match current {
                            Some(r) if alive(&r, now) && r.user_id == user_id => r,
                            _ => return Ok((Change::Keep, PendingOutcome::Dead)),
                        };
                        let expiry = Expiry::At {
                            at: r.expires_at,
                            now,
                        };
                        let out = if passed {
                            r.finished_at = Some(now);
                            PendingOutcome::Finished(r.clone())
                        } else {
                            r.attempts_left -= 1;
                            PendingOutcome::Counted {
                                attempts_left: r.attempts_left,
                            }
                        };
                        let value = self.encode(&PENDING_SIGN_INS, &r)?;
                        Ok((Change::Put(value, expiry), out))
                    },
                )
                .await
            })
            .await
    }

    // ---- compliance ----

    /// Writes a moved user's factors as they arrive (idempotent: a re-run
    /// of the move writes the same row).
    pub async fn import_factors(&self, r: &FactorsRecord) -> Result<()> {
        self.instrument
            .run("import_factors", async {
                self.check_id(&FACTORS, ArtifactKind::User, &r.user_id)?;
                let value = self.encode(&FACTORS, r)?;
                self.modify(&FACTORS, &key(&r.user_id), |_: Option<FactorsRecord>| {
                    Ok((Change::Put(value.clone(), Expiry::Never), ()))
                })
                .await
            })
            .await
    }

    /// The user's factors row and pending sign-ins (export).
    pub(crate) async fn export_factors(
        &self,
        user_id: &str,
    ) -> Result<(Option<FactorsRecord>, Vec<PendingSignInRecord>)> {
        let factors = self.read(&FACTORS, &key(user_id)).await?;
        let mut pending = Vec::new();
        for (_, v) in self
            .backend
            .rows(&PENDING_SIGN_INS, user_id.as_bytes(), usize::MAX)
            .await?
        {
            pending.push(self.decode(&PENDING_SIGN_INS, &v)?);
        }
        Ok((factors, pending))
    }

    /// Deletes the user's factors and pending sign-ins (erasure).
    /// Ends every pending sign-in of the user (a password reset: a sign-in
    /// begun with the old password must not finish).
    pub async fn end_pending_sign_ins(&self, user_id: &str) -> Result<()> {
        self.instrument
            .run("end_pending_sign_ins", async {
                self.check_id(&PENDING_SIGN_INS, ArtifactKind::User, user_id)?;
                self.backend
                    .delete_partition(&PENDING_SIGN_INS, user_id.as_bytes())
                    .await
            })
            .await
    }

    pub(crate) async fn erase_factors(&self, user_id: &str) -> Result<()> {
        self.backend
            .delete_partition(&PENDING_SIGN_INS, user_id.as_bytes())
            .await?;
        self.modify(&FACTORS, &key(user_id), |current: Option<FactorsRecord>| {
            Ok(match current {
                Some(_) => (Change::Delete, ()),
                None => (Change::Keep, ()),
            })
        })
        .await
    }
}

/// The first factor brings the recovery set `recovery` (when none is left
/// live): whether it was installed.
fn install_recovery(r: &mut FactorsRecord, recovery: &[[u8; 32]], now: UnixSeconds) -> bool {
    let install = r.recovery_left() == 0;
    if install {
        r.recovery = slots(recovery);
        r.recovery_generated_at = Some(now);
        r.recovery_user_id = None;
    }
    install
}

/// Recovery codes go with the last factor they back up.
fn drop_orphan_recovery(r: &mut FactorsRecord) {
    if !r.has_second_factor() {
        r.recovery.clear();
        r.recovery_generated_at = None;
        r.recovery_user_id = None;
    }
}

fn alive(r: &PendingSignInRecord, now: UnixSeconds) -> bool {
    r.finished_at.is_none() && r.attempts_left > 0 && now < r.expires_at
}

fn slots(hashes: &[[u8; 32]]) -> Vec<RecoverySlot> {
    hashes
        .iter()
        .map(|h| RecoverySlot {
            hash: *h,
            used_at: None,
        })
        .collect()
}
