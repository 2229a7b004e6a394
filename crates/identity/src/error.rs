//! The use cases' one error type. Variants say what went wrong with typed
//! context (field, region, operation); transports map each variant once.
//! Display texts of client-facing variants are safe to show a client;
//! `IndexUnavailable`, `Store` and `Internal` carry details for logs only.

use domicile_core::RegionCode;
use domicile_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Bad input: nothing was read or written.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    Unauthenticated(Unauthenticated),
    /// The user (or identifier) is homed in another region.
    #[error("user is homed in region {home}")]
    WrongRegion { home: RegionCode },
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("another account has this phone number")]
    PhoneTaken,
    /// The bounded hashing pool is full.
    #[error("too many password hashes in progress; retry shortly")]
    Busy,
    /// A concurrent change won; nothing was changed, the caller may retry.
    #[error("{0}")]
    Conflict(Conflict),
    /// Asked of a region that does not host the home-region index.
    #[error("region {region} does not host the index; ask region {host}")]
    NotIndexHost {
        region: RegionCode,
        host: RegionCode,
    },
    /// The home-region index did not answer (`op`: lookup, claim, ...).
    #[error("home-region index unavailable during {op}: {detail}")]
    IndexUnavailable { op: &'static str, detail: String },
    /// An OAuth 2.0 grant refused at the token endpoint (RFC 6749 §5.2).
    #[error("{0}")]
    Grant(GrantError),
    /// Too many requests of this kind for this identifier or address;
    /// nothing was done. Ask again after `retry_after` seconds.
    #[error("too many requests; retry in {retry_after} seconds")]
    Throttled { retry_after: i64 },
    /// A one-time code or link was refused (the texts say no more than a
    /// client may see; whether an account exists is never among them).
    #[error("{0}")]
    CodeRefused(crate::one_time::CodeRefused),
    /// Not a failure: the user's password was right (or the account was
    /// just created), but sign-in for this client waits for the email to
    /// be verified. Nothing was issued; the transport asks for the code.
    #[error("the email address must be verified before signing in")]
    VerificationRequired { user_id: String },
    /// This region cannot do what was asked (no email sender configured,
    /// or the federation turned the journey off).
    #[error("{0} is not offered here")]
    NotOffered(&'static str),
    /// Not a failure: the first factor passed, and the sign-in waits for a
    /// second one. Nothing was issued; the transport asks for it and
    /// presents it with the challenge's token.
    #[error("a second factor is required to finish signing in")]
    SecondFactorRequired(crate::second_factor::Challenge),
    /// A second factor (or its pending sign-in) was refused.
    #[error("{0}")]
    SecondFactorRefused(crate::second_factor::FactorRefused),
    /// The app requires two-step sign-in and the user has no second factor
    /// set up. Nothing was issued to the app. On the hosted pages the
    /// browser gets a session of the one factor that passed (`Some`), for
    /// the account page where the user sets one up and then signs in again.
    /// A change to the second factor asked by a sign-in that did not pass
    /// it. Nothing was changed.
    #[error("this change needs a sign-in with your second factor: sign in again with it")]
    StepUpRequired,
    #[error("this app requires two-step sign-in: add an authenticator app to your account first")]
    SecondFactorUnavailable(Option<crate::browser::BrowserCookie>),
    /// The account is in a compliance move between regions: it signs in
    /// nowhere and changes nothing until the move is done (seconds).
    #[error("this account is being moved between regions; retry in {retry_after} seconds")]
    Moving { retry_after: i64 },
    /// An admin call named a user this region does not have.
    #[error("no user {0} in this region")]
    NoSuchUser(String),
    /// A compliance rule refuses the operation (the text names the rule).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A fault of ours (`op` names what was being done).
    #[error("{op}: {detail}")]
    Internal { op: &'static str, detail: String },
}

/// Why a caller is not authenticated. The texts are what clients see.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    /// Unknown user and wrong password alike.
    #[error("invalid email or password")]
    BadCredentials,
    #[error("refresh token is invalid or expired")]
    InvalidRefreshToken,
    #[error("refresh token was already used; the session has been revoked")]
    RefreshReused,
    #[error("missing authorization (Bearer access token)")]
    MissingBearer,
    #[error("authorization must be \"Bearer <token>\"")]
    MalformedBearer,
    /// The access token failed verification (the reason is a token error's text).
    #[error("{0}")]
    BadAccessToken(String),
    #[error("the session of this access token has ended")]
    SessionEnded,
    #[error("user no longer exists")]
    UserGone,
    /// A passwordless passkey sign-in's answer was refused (unknown
    /// handle or credential, forged, expired or spent ceremony, failed
    /// check: alike).
    #[error("the passkey was not accepted; try again or sign in another way")]
    PasskeyRefused,
}

/// Why the token endpoint refuses a grant; `code()` is the RFC 6749 error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The code or refresh token is unknown, expired, used, or not the
    /// client's; or the PKCE verifier or redirect URI does not match.
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// The client may not use this grant (e.g. a refresh token it was not
    /// issued).
    #[error("{0}")]
    UnauthorizedClient(&'static str),
}

impl GrantError {
    pub fn code(&self) -> &'static str {
        match self {
            GrantError::InvalidGrant(_) => "invalid_grant",
            GrantError::UnauthorizedClient(_) => "unauthorized_client",
        }
    }
}

impl From<GrantError> for IdentityError {
    fn from(g: GrantError) -> Self {
        Self::Grant(g)
    }
}

/// What lost to a concurrent change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error(
        "registration lost its claim on the email (another registration of it took over, or it took too long); try again"
    )]
    ClaimLost,
    #[error("the profile changed concurrently; try again")]
    ProfileChanged,
    #[error("{kid} was created concurrently; nothing changed, try again")]
    KeyCreated { kid: String },
}

impl IdentityError {
    pub(crate) fn invalid(field: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn internal(op: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Internal {
            op,
            detail: detail.to_string(),
        }
    }
}

impl From<Unauthenticated> for IdentityError {
    fn from(u: Unauthenticated) -> Self {
        Self::Unauthenticated(u)
    }
}

impl From<Conflict> for IdentityError {
    fn from(c: Conflict) -> Self {
        Self::Conflict(c)
    }
}
