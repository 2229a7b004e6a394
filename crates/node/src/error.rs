//! The node's errors: why a node could not start ([`NodeError`]), and the
//! one mapping of the use cases' [`IdentityError`] to gRPC statuses
//! ([`status`]). No internal detail reaches a client: store faults, index
//! outages and our own faults are logged with their context and answered
//! with a fixed text.

use domicile_core::region::HOME_REGION_HEADER;
use domicile_identity::IdentityError;
use tonic::{Code, Status, metadata::MetadataMap};

/// Response metadata naming the user's home region on FAILED_PRECONDITION.
pub const HOME_REGION_METADATA: &str = HOME_REGION_HEADER;
/// Response metadata of a sign-in that waits for a second factor
/// (UNAUTHENTICATED): the pending token to present with it
/// (`CompleteSignIn`), and the factors the user can give.
pub const MFA_TOKEN_METADATA: &str = "domicile-mfa-token";
pub const MFA_METHODS_METADATA: &str = "domicile-mfa-methods";
/// Error metadata: with the `passkey` method, the options for
/// `navigator.credentials.get` (JSON).
pub const MFA_PASSKEY_METADATA: &str = "domicile-mfa-passkey-options";

/// Why a node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{what}: {detail}")]
    Start { what: &'static str, detail: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] domicile_store::StoreError),
}

impl NodeError {
    pub(crate) fn start(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Start {
            what,
            detail: detail.to_string(),
        }
    }
}

/// The gRPC status of a use case's error: the one mapping of the node's
/// gRPC services.
pub fn status(e: IdentityError) -> Status {
    let text = e.to_string();
    match e {
        IdentityError::Invalid { .. } => Status::invalid_argument(text),
        IdentityError::Unauthenticated(_) => Status::unauthenticated(text),
        IdentityError::WrongRegion { home } => {
            let mut md = MetadataMap::new();
            if let Ok(v) = home.as_str().parse() {
                md.insert(HOME_REGION_METADATA, v);
            }
            Status::with_metadata(Code::FailedPrecondition, text, md)
        }
        IdentityError::EmailTaken | IdentityError::PhoneTaken => Status::already_exists(text),
        IdentityError::Busy => Status::resource_exhausted(text),
        IdentityError::Throttled { retry_after } => {
            let mut md = MetadataMap::new();
            if let Ok(v) = retry_after.to_string().parse() {
                md.insert("retry-after", v);
            }
            Status::with_metadata(Code::ResourceExhausted, text, md)
        }
        IdentityError::CodeRefused(domicile_identity::one_time::CodeRefused::Malformed) => {
            Status::invalid_argument(format!("code: {text}"))
        }
        IdentityError::CodeRefused(_) => Status::permission_denied(text),
        IdentityError::VerificationRequired { .. } => Status::failed_precondition(text),
        IdentityError::SecondFactorRequired(c) => {
            let mut md = MetadataMap::new();
            if let Ok(v) = c.token.parse() {
                md.insert(MFA_TOKEN_METADATA, v);
            }
            if let Ok(v) = c.methods.join(",").parse() {
                md.insert(MFA_METHODS_METADATA, v);
            }
            if let Some(Ok(v)) = c.passkey_options.as_deref().map(str::parse) {
                md.insert(MFA_PASSKEY_METADATA, v);
            }
            Status::with_metadata(Code::Unauthenticated, text, md)
        }
        IdentityError::SecondFactorRefused(_)
        | IdentityError::SecondFactorUnavailable(_)
        | IdentityError::StepUpRequired => Status::permission_denied(text),
        IdentityError::NotOffered(_) => Status::unimplemented(text),
        IdentityError::Conflict(_) => Status::aborted(text),
        // Grants are the token endpoint's (HTTP); no RPC makes one.
        IdentityError::Grant(_) => Status::invalid_argument(text),
        IdentityError::NotIndexHost { .. } | IdentityError::Refused(_) => {
            Status::failed_precondition(text)
        }
        IdentityError::NoSuchUser(_) => Status::not_found(text),
        IdentityError::Moving { retry_after } => {
            let mut md = MetadataMap::new();
            if let Ok(v) = retry_after.to_string().parse() {
                md.insert("retry-after", v);
            }
            Status::with_metadata(Code::Unavailable, text, md)
        }
        IdentityError::IndexUnavailable { op, detail } => {
            tracing::warn!(op, error = %detail, "home-region index unavailable");
            Status::unavailable("the home-region index is unavailable; retry shortly")
        }
        IdentityError::Store(e @ domicile_store::StoreError::Unavailable { .. }) => {
            tracing::warn!(error = %e, "store unavailable");
            Status::unavailable("a store this request needs is unavailable; retry shortly")
        }
        IdentityError::Store(e) => {
            tracing::error!(error = %e, "store error");
            Status::internal("internal error")
        }
        IdentityError::Internal { op, detail } => {
            tracing::error!(op, error = %detail, "internal error");
            Status::internal("internal error")
        }
    }
}
