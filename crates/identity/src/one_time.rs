//! One-time codes and links, the proof that a user received a message
//! (email and phone verification, password reset, passwordless sign-in):
//! issuing one for a user and a purpose, and checking a typed code or a
//! clicked link.
//!
//! A code is six random digits, a link a region-tagged `OneTimeLink`
//! naming its user (the edge routes the click home); both are issued
//! together, live [`TTL_SECONDS`], and are single use: accepting either
//! spends both. A wrong code counts against [`ATTEMPTS`]; after that the
//! code is dead even for the right digits. A code serves only its purpose
//! and its user, and the channel it went by: a code sent by text message
//! is accepted only with the phone number, one sent by email only with the
//! address (the channel is part of the code's hash). The store keeps a
//! keyed hash of the code (HMAC-SHA256 under a key derived from the
//! federation secret, bound to the user, purpose and channel, so a stolen
//! store cannot try the million codes offline) and the SHA-256 of the
//! link, in the user's home region. A text message carries no link.
//!
//! Sending the message is not here: the caller hands the code and link to
//! a sender.

use crate::{
    Identity, IdentityError,
    env::random,
    messages::{Channel, Login},
};
use domicile_core::ids::{OneTimeLink, UserId};
use domicile_store::{AuditKind, OneTimeRecord, Presented, Purpose, Spend, UserRecord};
use hmac::Mac;

/// How long a code and its link live.
pub const TTL_SECONDS: i64 = 15 * 60;
/// Wrong codes allowed before the code is dead.
pub const ATTEMPTS: u32 = 5;
/// Digits of a code.
pub const DIGITS: usize = 6;

/// A fresh code and its link, to be sent to the user. Secrets: `Debug`
/// shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    pub code: String,
    pub link: String,
    /// Seconds.
    pub expires_in: i64,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Why a code or link was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeRefused {
    #[error("the code is not right ({attempts_left} attempts left)")]
    Wrong { attempts_left: u32 },
    #[error("the code or link is unknown, used, expired or out of attempts")]
    Dead,
    #[error("the code must be {DIGITS} digits")]
    Malformed,
}

/// Six digits from `bytes`, uniformly (rejection of the biased tail).
fn digits_from(bytes: &[u8; 32]) -> Option<String> {
    const RANGE: u32 = 1_000_000;
    const LIMIT: u32 = u32::MAX - (u32::MAX % RANGE);
    bytes.chunks_exact(4).find_map(|c| {
        let n = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        (n < LIMIT).then(|| format!("{:06}", n % RANGE))
    })
}

impl Identity {
    /// The keyed hash of `code` for `user_id`, `purpose` and `channel`.
    fn code_hash(&self, user_id: &str, purpose: Purpose, channel: Channel, code: &str) -> [u8; 32] {
        let key = self.secret.derive("one-time-codes");
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key) else {
            // HMAC accepts keys of any length; unreachable in practice.
            return [0; 32];
        };
        // Email codes hash as they did before text messages existed, so
        // codes outstanding at an upgrade keep working.
        let parts: &[&str] = match channel {
            Channel::Email => &[user_id, purpose.as_str(), code],
            Channel::Sms => &[user_id, purpose.as_str(), "sms", code],
        };
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    /// Issues a code and a link for `user_id` (homed here) and `purpose`,
    /// replacing the user's earlier ones of that purpose.
    pub async fn issue_one_time(
        &self,
        user_id: &str,
        purpose: Purpose,
    ) -> Result<Issued, IdentityError> {
        self.issue_one_time_for(user_id, purpose, Channel::Email, None)
            .await
    }

    /// `issue_one_time` for a code sent by `channel`, bound to `subject`
    /// too (a change's new address or number): spending it yields the
    /// subject for the use case to check.
    pub(crate) async fn issue_one_time_for(
        &self,
        user_id: &str,
        purpose: Purpose,
        channel: Channel,
        subject: Option<[u8; 32]>,
    ) -> Result<Issued, IdentityError> {
        let user = UserId::parse(user_id).map_err(|e| IdentityError::invalid("user_id", e))?;
        self.check_home(user.region(), "user_id")?;
        let code = loop {
            if let Some(c) = digits_from(&random::<32>(self.entropy.as_ref())) {
                break c;
            }
        };
        let link = OneTimeLink::new(&user, random::<32>(self.entropy.as_ref()));
        let now = self.now();
        let record = OneTimeRecord {
            user_id: user_id.to_owned(),
            purpose,
            code_hash: self.code_hash(user_id, purpose, channel, &code),
            link_hash: link.storage_hash(),
            issued_at: now,
            expires_at: now + TTL_SECONDS,
            attempts_left: ATTEMPTS,
            used_at: None,
            subject,
        };
        self.store.put_one_time(&record, now).await?;
        Ok(Issued {
            code,
            link: link.expose().to_owned(),
            expires_in: TTL_SECONDS,
        })
    }

    /// Checks a typed code of `user_id` for `purpose`; accepted once.
    pub async fn check_one_time_code(
        &self,
        user_id: &str,
        purpose: Purpose,
        code: &str,
    ) -> Result<Result<(), CodeRefused>, IdentityError> {
        Ok(self
            .spend_code(user_id, purpose, Channel::Email, code)
            .await?
            .map(|_| ()))
    }

    /// Spends a typed code sent by `channel`: its record.
    pub(crate) async fn spend_code(
        &self,
        user_id: &str,
        purpose: Purpose,
        channel: Channel,
        code: &str,
    ) -> Result<Result<OneTimeRecord, CodeRefused>, IdentityError> {
        let user = UserId::parse(user_id).map_err(|e| IdentityError::invalid("user_id", e))?;
        self.check_home(user.region(), "user_id")?;
        let code = code.trim();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Err(CodeRefused::Malformed));
        }
        let hash = self.code_hash(user_id, purpose, channel, code);
        let spent = self
            .store
            .spend_one_time(user_id, purpose, Presented::Code(&hash), self.now())
            .await?;
        Ok(refusal(spent))
    }

    /// Checks a clicked link for `purpose`: the user it was issued to.
    pub async fn check_one_time_link(
        &self,
        link: &str,
        purpose: Purpose,
    ) -> Result<Result<String, CodeRefused>, IdentityError> {
        Ok(self.spend_link(link, purpose).await?.map(|r| r.user_id))
    }

    /// Spends a clicked link: its record.
    async fn spend_link(
        &self,
        link: &str,
        purpose: Purpose,
    ) -> Result<Result<OneTimeRecord, CodeRefused>, IdentityError> {
        let Ok(link) = OneTimeLink::parse(link) else {
            return Ok(Err(CodeRefused::Dead));
        };
        self.check_home(link.region(), "link")?;
        let spent = self
            .store
            .spend_one_time(
                link.user().as_str(),
                purpose,
                Presented::Link(&link.storage_hash()),
                self.now(),
            )
            .await?;
        Ok(refusal(spent))
    }
}

/// What a user presents for a code's purpose: the code they typed with
/// the address or number it was sent to, or the link they clicked.
/// Secrets: `Debug` shows neither.
pub enum Proof<'a> {
    Code { login: Login<'a>, code: &'a str },
    Link(&'a str),
}

impl Proof<'_> {
    /// The channel the proof's code or link came by: a link is always
    /// emailed.
    pub fn channel(&self) -> Channel {
        match self {
            Proof::Code {
                login: Login::Phone(_),
                ..
            } => Channel::Sms,
            Proof::Code { .. } | Proof::Link(_) => Channel::Email,
        }
    }
}

impl std::fmt::Debug for Proof<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proof::Code { .. } => "Proof::Code",
            Proof::Link(_) => "Proof::Link",
        })
    }
}

impl Identity {
    /// Spends `proof` for `purpose`: the user homed here it was issued
    /// to. A typed code for an address no account has is checked against
    /// a user id nobody holds (the same store work) and refused; every
    /// refusal of a typed code reads the same (`Dead`), so the answer
    /// never tells whether the account exists.
    pub(crate) async fn spend_proof(
        &self,
        proof: &Proof<'_>,
        purpose: Purpose,
    ) -> Result<UserRecord, IdentityError> {
        Ok(self.spend_proof_with(proof, purpose).await?.0)
    }

    /// `spend_proof`, with the spent code's subject (`issue_one_time_for`).
    pub(crate) async fn spend_proof_with(
        &self,
        proof: &Proof<'_>,
        purpose: Purpose,
    ) -> Result<(UserRecord, Option<[u8; 32]>), IdentityError> {
        let record = match proof {
            Proof::Code { login, code } => {
                let (key, channel) = self.resolve(*login)?;
                let holder = self.store.get_identifier(&key).await?;
                let checked = holder.clone().unwrap_or_else(|| self.nobody());
                match self.spend_code(&checked, purpose, channel, code).await? {
                    // A texted sign-in or reset code serves only the number
                    // it was sent to (a number replaced since names no one
                    // or someone else).
                    Ok(r)
                        if channel == Channel::Sms
                            && purpose != Purpose::VerifyPhone
                            && r.subject != Some(key.0) =>
                    {
                        return Err(IdentityError::CodeRefused(CodeRefused::Dead));
                    }
                    Ok(r) => r,
                    Err(CodeRefused::Malformed) => {
                        return Err(IdentityError::CodeRefused(CodeRefused::Malformed));
                    }
                    Err(_) => return Err(IdentityError::CodeRefused(CodeRefused::Dead)),
                }
            }
            Proof::Link(link) => self
                .spend_link(link, purpose)
                .await?
                .map_err(IdentityError::CodeRefused)?,
        };
        let user = self
            .store
            .get_user(&record.user_id)
            .await?
            .ok_or(IdentityError::CodeRefused(CodeRefused::Dead))?;
        Ok((user, record.subject))
    }

    /// Marks `user`'s email verified when `proof` came by email (they
    /// proved they receive its mail; a code by text message proves only
    /// the number), retrying once on a concurrent change: the user as now
    /// stored.
    pub(crate) async fn mark_verified(
        &self,
        user: UserRecord,
        proof: &Proof<'_>,
    ) -> Result<UserRecord, IdentityError> {
        if proof.channel() != Channel::Email {
            return Ok(user);
        }
        let mut current = user;
        for _ in 0..2 {
            if current.email_verified {
                return Ok(current);
            }
            match self.save_user(&current, |u| u.email_verified = true).await {
                Ok(updated) => {
                    self.audit.record(
                        &updated.user_id,
                        AuditKind::EmailVerified,
                        None,
                        String::new(),
                    );
                    return Ok(updated);
                }
                Err(IdentityError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            current = self.store.get_user(&current.user_id).await?.ok_or(
                IdentityError::Unauthenticated(crate::Unauthenticated::UserGone),
            )?;
        }
        Err(crate::Conflict::ProfileChanged.into())
    }
}

fn refusal(spent: Spend) -> Result<OneTimeRecord, CodeRefused> {
    match spent {
        Spend::Accepted(r) => Ok(r),
        Spend::Wrong { attempts_left } => Err(CodeRefused::Wrong { attempts_left }),
        Spend::Dead => Err(CodeRefused::Dead),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_unbiased_draws_are_rejected() {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(digits_from(&b).as_deref(), Some("000007"));
        // A draw in the biased tail is skipped for the next one.
        b[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        b[4..8].copy_from_slice(&123_456u32.to_le_bytes());
        assert_eq!(digits_from(&b).as_deref(), Some("123456"));
        assert_eq!(digits_from(&[0xff; 32]), None);
    }

    #[test]
    fn issued_codes_do_not_print() {
        let i = Issued {
            code: "123456".into(),
            link: "ol_eu_secret".into(),
            expires_in: 900,
        };
        let shown = format!("{i:?}");
        assert!(
            !shown.contains("123456") && !shown.contains("secret"),
            "{shown}"
        );
    }
}
