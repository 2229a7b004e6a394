//! What the region store keeps. Each record is stored in a versioned format
//! (see `codec`): add fields with `#[serde(default)]`, and bump the format with
//! a migration when a change is not backward compatible.

use domicile_core::UnixSeconds;
use serde::{Deserialize, Serialize};

/// A user: all of it is personal data and lives only in the home region.
/// `Debug` shows the id, flags, times and version only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub user_id: String,
    /// Normalized email.
    pub email: String,
    pub email_verified: bool,
    /// Argon2id PHC string.
    pub password_hash: String,
    #[serde(default)]
    pub given_name: String,
    #[serde(default)]
    pub family_name: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub locale: String,
    /// A new address waiting for its verification code (an email change):
    /// the account's address stays `email` until the code is spent.
    #[serde(default)]
    pub pending_email: Option<String>,
    /// The account's phone number (E.164), a login identifier for codes by
    /// text message. Only a verified number is kept here.
    #[serde(default)]
    pub phone: Option<String>,
    /// A number waiting for its verification code: the account's number
    /// stays `phone` until the code is spent.
    #[serde(default)]
    pub pending_phone: Option<String>,
    /// A compliance pin: the user may not be moved out of this region
    /// until an operator unpins them.
    #[serde(default)]
    pub pin: Option<UserPin>,
    /// Set while a move to another region runs: the account signs in
    /// nowhere and changes nothing until the move is done.
    #[serde(default)]
    pub moving: Option<MovingMark>,
    pub created_at: UnixSeconds,
    pub updated_at: UnixSeconds,
    /// Optimistic concurrency: every update increments it.
    pub version: u64,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("user_id", &self.user_id)
            .field("email_verified", &self.email_verified)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Who pinned a user to their home region, when, and why (a reference
/// such as a ticket number; no personal data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPin {
    pub operator: String,
    pub at: UnixSeconds,
    #[serde(default)]
    pub reason: String,
}

/// The move a user is in: its operation and where it goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovingMark {
    pub operation_id: String,
    pub to_region: String,
    pub new_user_id: String,
    pub started_at: UnixSeconds,
}

/// A login session (the family of its refresh tokens).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: String,
    pub user_id: String,
    pub created_at: UnixSeconds,
    /// Absolute end of the session.
    pub expires_at: UnixSeconds,
    /// Set by logout or by refresh-token reuse.
    #[serde(default)]
    pub revoked_at: Option<UnixSeconds>,
    #[serde(default)]
    pub revoked_reason: Option<RevokeReason>,
    /// The OpenID Connect client the session was started for, and the
    /// scopes granted to it; `None` for the first-party gRPC API and for
    /// browser sessions.
    #[serde(default)]
    pub client: Option<SessionClient>,
    /// Set on a browser (single sign-on) session of the hosted pages: the
    /// SHA-256 of its cookie. Such a session has no tokens of its own.
    #[serde(default)]
    pub browser_hash: Option<[u8; 32]>,
    /// The browser session a client session was started from; ending that
    /// browser session (logout) ends this one too.
    #[serde(default)]
    pub browser_session: Option<String>,
    /// How the user authenticated (`amr` values); empty on sessions
    /// stored before this was kept, which mean a password.
    #[serde(default)]
    pub amr: Vec<String>,
}

/// The client of an OpenID Connect session and what it was granted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClient {
    pub client_id: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// Whether refresh tokens may be issued in this session.
    pub refresh: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    Logout,
    RefreshReuse,
    /// An authorization code of the session was presented again.
    CodeReplay,
    /// The user's password was reset.
    PasswordReset,
}

/// What a one-time code or link is for; a code of one purpose never
/// serves another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
    SignIn,
    /// Proves the user receives mail at the new address of an email change.
    ChangeEmail,
    /// Proves the user receives text messages at a new phone number.
    VerifyPhone,
    /// Confirms a password sign-in that looks unlike the user's others
    /// (a code only, bound to its pending sign-in).
    SignInCheck,
}

impl Purpose {
    pub const ALL: [Purpose; 6] = [
        Purpose::VerifyEmail,
        Purpose::ResetPassword,
        Purpose::ChangeEmail,
        Purpose::SignIn,
        Purpose::VerifyPhone,
        Purpose::SignInCheck,
    ];

    /// The purpose `as_str` names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::ResetPassword => "reset_password",
            Purpose::ChangeEmail => "change_email",
            Purpose::SignIn => "sign_in",
            Purpose::VerifyPhone => "verify_phone",
            Purpose::SignInCheck => "sign_in_check",
        }
    }
}

/// A user's live one-time code for one purpose, and the link issued with
/// it: what proves the user received a message. Only keyed hashes are kept
/// (`code_hash`: a keyed hash of the typed code, so a stolen store cannot
/// try the few million codes offline; `link_hash`: the SHA-256 of the
/// link's secret). One per user and purpose: a new one replaces the last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimeRecord {
    pub user_id: String,
    pub purpose: Purpose,
    pub code_hash: [u8; 32],
    pub link_hash: [u8; 32],
    pub issued_at: UnixSeconds,
    /// Refused from this instant; the row is dropped then too.
    pub expires_at: UnixSeconds,
    /// Wrong codes still allowed; at 0 the code is dead.
    pub attempts_left: u32,
    /// Set when the code or link was accepted (single use).
    #[serde(default)]
    pub used_at: Option<UnixSeconds>,
    /// What the code was issued for beyond its user and purpose (an email
    /// change's new address, as its identifier key), checked by the use
    /// case when the code is spent. No personal data: a keyed hash.
    #[serde(default)]
    pub subject: Option<[u8; 32]>,
}

/// An OpenID Connect authorization code, stored by the SHA-256 of its text:
/// what the token endpoint needs to finish the flow. The row is kept past
/// the code's own expiry (`kept_until`) so that a replay is recognised as
/// one, and what the code issued can be revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub code_hash: [u8; 32],
    pub user_id: String,
    pub session_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    #[serde(default)]
    pub nonce: Option<String>,
    /// The S256 PKCE challenge, when the request had one.
    #[serde(default)]
    pub code_challenge: Option<String>,
    /// When the user entered their password.
    pub auth_time: UnixSeconds,
    pub issued_at: UnixSeconds,
    /// The code is refused from this instant.
    pub expires_at: UnixSeconds,
    /// The row is dropped from this instant.
    pub kept_until: UnixSeconds,
    /// Set by the first redemption.
    #[serde(default)]
    pub redeemed_at: Option<UnixSeconds>,
}

/// A refresh token, stored by the SHA-256 of its text (never the text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub token_hash: [u8; 32],
    pub session_id: String,
    pub user_id: String,
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    /// When it was exchanged; a second exchange is reuse.
    #[serde(default)]
    pub used_at: Option<UnixSeconds>,
}

/// A region's signing key. The seed is a secret: it never leaves the region.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    /// `<region>-<n>`
    pub kid: String,
    pub seed: [u8; 32],
    pub created_at: UnixSeconds,
    /// After this, the key no longer signs (it stays published until its
    /// last token has expired).
    #[serde(default)]
    pub retire_at: Option<UnixSeconds>,
    /// The key signs from this time on (published before it, so verifiers
    /// have it first); `None`: from creation.
    #[serde(default)]
    pub not_before: Option<UnixSeconds>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// One entry of a user's audit trail. It is that user's personal data and
/// lives only in the home region, next to the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// A ULID: unique, and ordered by time.
    pub event_id: String,
    pub user_id: String,
    pub at: UnixSeconds,
    pub kind: AuditKind,
    /// The session involved, where there is one.
    #[serde(default)]
    pub session_id: Option<String>,
    /// What changed (field names), never values of secrets.
    #[serde(default)]
    pub detail: String,
    /// When the store may drop it.
    pub expires_at: UnixSeconds,
}

/// A user's second factors: one row per user. Secrets are sealed
/// (`core::mfa::seal`, bound to the user) or kept as keyed hashes; the
/// record holds nothing an attacker with a copy of the store could sign
/// in with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorsRecord {
    pub user_id: String,
    /// The confirmed authenticator app.
    #[serde(default)]
    pub totp: Option<TotpFactor>,
    /// An enrolment waiting for its first code.
    #[serde(default)]
    pub pending_totp: Option<PendingTotp>,
    /// The live recovery codes' keyed hashes (a spent one keeps its slot,
    /// marked used, so the count left is known).
    #[serde(default)]
    pub recovery: Vec<RecoverySlot>,
    #[serde(default)]
    pub recovery_generated_at: Option<UnixSeconds>,
    /// Wrong second factors in the current window (across every pending
    /// sign-in of the user), and when the window began.
    #[serde(default)]
    pub failures: u32,
    #[serde(default)]
    pub failures_since: UnixSeconds,
    pub updated_at: UnixSeconds,
    /// Registered passkeys (WebAuthn credentials: public keys only).
    #[serde(default)]
    pub passkeys: Vec<PasskeyFactor>,
    /// A passkey registration waiting for the browser's answer.
    #[serde(default)]
    pub pending_passkey: Option<PendingPasskey>,
    /// The challenges of passwordless passkey sign-ins spent while their
    /// ceremony could still be answered (SHA-256 of the ceremony's
    /// state, and when it stops mattering): a replayed answer is refused.
    #[serde(default)]
    pub spent_challenges: Vec<SpentChallenge>,
    /// The user id the recovery codes' keyed hashes were made for, when it
    /// is not `user_id` (the codes of a moved user keep working).
    #[serde(default)]
    pub recovery_user_id: Option<String>,
}

/// A passkey ceremony's challenge that was answered once.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpentChallenge {
    pub hash: [u8; 32],
    pub until: UnixSeconds,
}

impl FactorsRecord {
    /// Whether any second factor is set up (recovery codes alone are not
    /// one: they back a factor up).
    pub fn has_second_factor(&self) -> bool {
        self.totp.is_some() || !self.passkeys.is_empty()
    }

    /// Recovery codes not yet used.
    pub fn recovery_left(&self) -> usize {
        self.recovery.iter().filter(|r| r.used_at.is_none()).count()
    }
}

/// A registered passkey: its credential id (base64url), the name the user
/// gave it, and the credential as the WebAuthn library keeps it (JSON: the
/// public key, its algorithm, the signature counter and backup flags; no
/// secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyFactor {
    pub id: String,
    pub name: String,
    pub credential: String,
    pub created_at: UnixSeconds,
    #[serde(default)]
    pub last_used_at: Option<UnixSeconds>,
}

/// A passkey registration waiting for the browser's answer: the name it
/// will have and the ceremony's state (JSON: its challenge and policy),
/// until `expires_at`. A new registration replaces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPasskey {
    pub name: String,
    pub state: String,
    pub created_at: UnixSeconds,
    pub expires_at: UnixSeconds,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpFactor {
    pub sealed: domicile_core::mfa::Sealed,
    pub enrolled_at: UnixSeconds,
    /// The last TOTP step accepted: a code of this step or an earlier one
    /// is a replay.
    pub last_step: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTotp {
    pub sealed: domicile_core::mfa::Sealed,
    pub created_at: UnixSeconds,
    pub expires_at: UnixSeconds,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverySlot {
    /// Keyed hash of the normalized code.
    pub hash: [u8; 32],
    #[serde(default)]
    pub used_at: Option<UnixSeconds>,
}

/// A sign-in whose first factor passed, waiting for its second: kept by the
/// SHA-256 of its `mfa_<region>_…` token in the user's partition, for a
/// few minutes. `target` is what the sign-in ends in (opaque here: the use
/// cases' serialized form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignInRecord {
    pub user_id: String,
    pub token_hash: [u8; 32],
    /// The methods already passed (`amr` values).
    pub amr: Vec<String>,
    /// When the first factor passed.
    pub auth_time: UnixSeconds,
    pub created_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    /// Wrong second factors still allowed; at 0 the sign-in is dead.
    pub attempts_left: u32,
    /// What the sign-in ends in.
    pub target: String,
    /// Why a second factor was asked (reason names, no personal data).
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub finished_at: Option<UnixSeconds>,
}

/// What the home region remembers of a user's sign-ins, to notice one
/// unlike the others: the countries signed in from (ISO codes) and the
/// devices (keyed hashes of their ids), newest last, each list bounded;
/// and the coarse place (about 11 km) and time of the last sign-in whose
/// place was known. Personal data: it lives only in the home region, like
/// the user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignInHistory {
    pub user_id: String,
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub devices: Vec<[u8; 32]>,
    #[serde(default)]
    pub last_location: Option<domicile_core::risk::Location>,
    #[serde(default)]
    pub last_located_at: Option<UnixSeconds>,
    /// Sign-ins recorded.
    pub sign_ins: u64,
    pub updated_at: UnixSeconds,
}

impl SignInHistory {
    /// The history as `risk::assess` compares a sign-in with it.
    pub fn past(&self) -> domicile_core::risk::Past<'_> {
        domicile_core::risk::Past {
            countries: &self.countries,
            devices: &self.devices,
            last: self.last_location.zip(self.last_located_at),
        }
    }
}

/// A compliance operation on one user (a move or an erasure), kept by the
/// user's old id in the region that ran it: the journal that lets a
/// re-run finish an interrupted operation, and its receipt once done. It
/// holds ids, regions, counts and signatures: nothing personal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRecord {
    pub operation_id: String,
    pub operation: domicile_core::receipt::Operation,
    pub user_id: String,
    #[serde(default)]
    pub new_user_id: Option<String>,
    #[serde(default)]
    pub to_region: Option<String>,
    pub operator: String,
    pub started_at: UnixSeconds,
    pub step: OperationStep,
    /// Records per table the source holds of the user when it started
    /// (what the erasure deletes).
    pub counts: std::collections::BTreeMap<String, u64>,
    /// The target region's signed part (a move, once copied).
    #[serde(default)]
    pub target_receipt: Option<String>,
    /// This region's signed part, once done.
    #[serde(default)]
    pub receipt: Option<String>,
    #[serde(default)]
    pub finished_at: Option<UnixSeconds>,
    /// A move being called off: no run may advance it any more.
    #[serde(default)]
    pub aborting: bool,
}

/// How far an operation got; each step is durable before the next begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStep {
    /// Journaled (and, for a move, the user frozen and the sessions
    /// ended).
    Started,
    /// The target holds the copy and signed for it.
    Copied,
    /// The index names the target.
    Switched,
    /// The source holds nothing of the user; the receipt is signed.
    Done,
}

/// One admin call about the region as a whole (a report, a proof, a key
/// rotation): who, which call, what it did (ids and counts only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEvent {
    /// A ULID: unique, and ordered by time.
    pub event_id: String,
    pub at: UnixSeconds,
    pub operator: String,
    pub call: String,
    #[serde(default)]
    pub detail: String,
    /// When the store may drop it (the audit retention).
    pub expires_at: UnixSeconds,
}

/// What an audit event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Registered,
    LoginSucceeded,
    LoginFailed,
    RefreshReuse,
    Logout,
    ProfileUpdated,
    /// An authorization code was presented again; its session was ended.
    CodeReplay,
    /// A client session was started from a browser session without a
    /// password (single sign-on).
    SingleSignOn,
    /// The password was replaced through a reset code or link.
    PasswordReset,
    /// The user proved they receive mail at their address.
    EmailVerified,
    /// A sign-in by an emailed code or link instead of the password.
    SignInByCode,
    /// The account's address was replaced by a verified new one.
    EmailChanged,
    /// A phone number was verified and became the account's (added or
    /// replacing the last).
    PhoneVerified,
    /// The account's phone number was removed.
    PhoneRemoved,
    /// An authenticator app (TOTP) was confirmed as a second factor.
    TotpEnrolled,
    /// The authenticator app was removed (after the password was entered).
    TotpRemoved,
    /// A new set of recovery codes replaced the last.
    RecoveryCodesGenerated,
    /// A recovery code stood in for the second factor (detail: how many
    /// are left).
    RecoveryCodeUsed,
    /// A sign-in's first factor passed and a second one is asked for
    /// (detail: why, as reason names).
    SecondFactorAsked,
    /// A wrong or replayed second factor was presented.
    SecondFactorFailed,
    /// Too many wrong second factors: the account's second step refuses
    /// every factor until its window ends (detail: the window's seconds).
    SecondFactorLocked,
    /// A sign-in looked unlike the user's others: the signals by name and
    /// the step they led to, no places or devices.
    SignInRisk,
    PasskeyAdded,
    PasskeyRemoved,
    /// A sign-in with a passkey alone (no address typed, no password).
    SignInByPasskey,
    /// An operator read the user's state through the Admin service
    /// (detail: the operator's name and the call).
    AdminAccess,
    /// An operator pinned the user to this region (detail: operator and
    /// reason), or took the pin off.
    Pinned,
    Unpinned,
    /// The tombstone of a user moved away (kept under the old id: the
    /// target region, the new id, the operation and the operator).
    MovedOut,
    /// The user arrived from another region (detail: the old id, the
    /// source region, the operation).
    MovedIn,
    /// The tombstone of an erased user (detail: operator and operation;
    /// nothing personal is left).
    Erased,
    /// A move was called off before the index switched: the user stays
    /// (detail: operator and operation).
    MoveAborted,
}

impl AuditKind {
    pub const ALL: [AuditKind; 32] = [
        AuditKind::Registered,
        AuditKind::LoginSucceeded,
        AuditKind::LoginFailed,
        AuditKind::RefreshReuse,
        AuditKind::Logout,
        AuditKind::ProfileUpdated,
        AuditKind::CodeReplay,
        AuditKind::SingleSignOn,
        AuditKind::PasswordReset,
        AuditKind::EmailVerified,
        AuditKind::SignInByCode,
        AuditKind::EmailChanged,
        AuditKind::PhoneVerified,
        AuditKind::PhoneRemoved,
        AuditKind::TotpEnrolled,
        AuditKind::TotpRemoved,
        AuditKind::RecoveryCodesGenerated,
        AuditKind::RecoveryCodeUsed,
        AuditKind::SecondFactorAsked,
        AuditKind::SecondFactorFailed,
        AuditKind::SecondFactorLocked,
        AuditKind::SignInRisk,
        AuditKind::PasskeyAdded,
        AuditKind::PasskeyRemoved,
        AuditKind::SignInByPasskey,
        AuditKind::AdminAccess,
        AuditKind::Pinned,
        AuditKind::Unpinned,
        AuditKind::MovedOut,
        AuditKind::MovedIn,
        AuditKind::Erased,
        AuditKind::MoveAborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Registered => "registered",
            AuditKind::LoginSucceeded => "login_succeeded",
            AuditKind::LoginFailed => "login_failed",
            AuditKind::RefreshReuse => "refresh_reuse",
            AuditKind::Logout => "logout",
            AuditKind::ProfileUpdated => "profile_updated",
            AuditKind::CodeReplay => "code_replay",
            AuditKind::SingleSignOn => "single_sign_on",
            AuditKind::PasswordReset => "password_reset",
            AuditKind::EmailVerified => "email_verified",
            AuditKind::SignInByCode => "sign_in_by_code",
            AuditKind::EmailChanged => "email_changed",
            AuditKind::PhoneVerified => "phone_verified",
            AuditKind::PhoneRemoved => "phone_removed",
            AuditKind::TotpEnrolled => "totp_enrolled",
            AuditKind::TotpRemoved => "totp_removed",
            AuditKind::RecoveryCodesGenerated => "recovery_codes_generated",
            AuditKind::RecoveryCodeUsed => "recovery_code_used",
            AuditKind::SecondFactorAsked => "second_factor_asked",
            AuditKind::SecondFactorFailed => "second_factor_failed",
            AuditKind::SecondFactorLocked => "second_factor_locked",
            AuditKind::SignInRisk => "sign_in_risk",
            AuditKind::PasskeyAdded => "passkey_added",
            AuditKind::PasskeyRemoved => "passkey_removed",
            AuditKind::SignInByPasskey => "sign_in_by_passkey",
            AuditKind::AdminAccess => "admin_access",
            AuditKind::Pinned => "pinned",
            AuditKind::Unpinned => "unpinned",
            AuditKind::MovedOut => "moved_out",
            AuditKind::MovedIn => "moved_in",
            AuditKind::Erased => "erased",
            AuditKind::MoveAborted => "move_aborted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserExport;

    fn user() -> UserRecord {
        UserRecord {
            user_id: "usr_eu_01JD0000000000000000000001".into(),
            email: "ada@example.com".into(),
            email_verified: true,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$c2VjcmV0".into(),
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            display_name: "Countess".into(),
            locale: "en".into(),
            pending_email: None,
            phone: None,
            pending_phone: None,
            pin: None,
            moving: None,
            created_at: 1,
            updated_at: 2,
            version: 3,
        }
    }

    /// Formats `value` with `{:?}` and `{:#?}` and looks for each secret.
    fn check_redacted(value: &impl std::fmt::Debug, secrets: &[&str]) {
        for text in [format!("{value:?}"), format!("{value:#?}")] {
            for s in secrets {
                assert!(!text.contains(s), "{s:?} leaks in {text}");
            }
        }
    }

    #[test]
    fn personal_data_types_redact_themselves() {
        let u = user();
        let secrets = [
            "ada@example.com",
            "argon2id",
            "c2VjcmV0",
            "Lovelace",
            "Countess",
        ];
        check_redacted(&u, &secrets);
        assert!(format!("{u:?}").contains("usr_eu_01JD0000000000000000000001"));
        let export = UserExport {
            user: Some(u),
            identifiers: vec![],
            sessions: vec![],
            refresh_tokens: vec![],
            audit: vec![],
            factors: None,
            pending_sign_ins: vec![],
            history: None,
        };
        check_redacted(&export, &secrets);
        check_redacted(
            &SigningKeyRecord {
                kid: "eu-1".into(),
                seed: [0xAB; 32],
                created_at: 1,
                retire_at: None,
                not_before: None,
            },
            &["171", "0xab", "AB"],
        );
    }
}
