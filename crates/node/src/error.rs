//! The node's errors and their one mapping to gRPC statuses.

use domicile_core::RegionCode;
use tonic::{Code, Status, metadata::MetadataMap};

/// Response metadata naming the user's home region on FAILED_PRECONDITION.
pub const HOME_REGION_METADATA: &str = "domicile-home-region";

/// Everything a node request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("user is homed in region {0}")]
    WrongRegion(RegionCode),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("too many password hashes in progress; retry shortly")]
    Busy,
    #[error("{0}")]
    Aborted(String),
    #[error("home-region index unavailable: {0}")]
    IndexUnavailable(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<domicile_store::StoreError> for NodeError {
    fn from(e: domicile_store::StoreError) -> Self {
        NodeError::Internal(e.to_string())
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        match &e {
            NodeError::Invalid(m) => Status::invalid_argument(m.clone()),
            NodeError::Unauthenticated(m) => Status::unauthenticated(m.clone()),
            NodeError::WrongRegion(region) => {
                let mut md = MetadataMap::new();
                if let Ok(v) = region.as_str().parse() {
                    md.insert(HOME_REGION_METADATA, v);
                }
                Status::with_metadata(Code::FailedPrecondition, e.to_string(), md)
            }
            NodeError::AlreadyExists(m) => Status::already_exists(m.clone()),
            NodeError::Busy => Status::resource_exhausted(e.to_string()),
            NodeError::Aborted(m) => Status::aborted(m.clone()),
            NodeError::IndexUnavailable(_) => Status::unavailable(e.to_string()),
            NodeError::NotFound(m) => Status::not_found(m.clone()),
            NodeError::Internal(m) => {
                // Details go to the log, not to the client.
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
