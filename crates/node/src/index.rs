//! Access to the home-region index: the local store on the region that hosts
//! it, a gRPC client elsewhere. Also the `HomeIndex` gRPC service.

use crate::{Clock, error::NodeError};
use domicile_core::{
    RegionCode,
    ids::UserId,
    index::{IdentifierKey, IndexEntry, IndexState},
};
use domicile_proto::v1 as pb;
use domicile_store::{Applied, Claim, IndexStore};
use std::{sync::Arc, time::Duration};
use tonic::{Request, Response, Status, transport::Channel};

/// Where this node reaches the index.
#[derive(Clone)]
pub enum IndexAccess {
    Local {
        store: Arc<dyn IndexStore>,
        clock: Arc<dyn Clock>,
    },
    Remote(pb::home_index_client::HomeIndexClient<Channel>),
}

impl IndexAccess {
    /// A lazily connecting client to the index host's nodes.
    pub fn remote(addresses: &[std::net::SocketAddr]) -> Result<Self, NodeError> {
        domicile_proto::home_index_client(addresses, Duration::from_secs(2), Duration::from_secs(5))
            .map(Self::Remote)
            .map_err(|e| NodeError::Internal(format!("bad index endpoint: {e}")))
    }

    pub async fn lookup(&self, key: &IdentifierKey) -> Result<Option<IndexEntry>, NodeError> {
        match self {
            Self::Local { store, clock } => Ok(store.lookup(key, clock.now()).await?),
            Self::Remote(c) => {
                let r = c
                    .clone()
                    .lookup(pb::IndexLookupRequest {
                        key: key.0.to_vec(),
                    })
                    .await
                    .map_err(unavailable)?;
                r.into_inner().entry.map(entry_from_pb).transpose()
            }
        }
    }

    pub async fn claim(&self, key: &IdentifierKey, entry: &IndexEntry) -> Result<Claim, NodeError> {
        match self {
            Self::Local { store, clock } => Ok(store.claim(key, entry, clock.now()).await?),
            Self::Remote(c) => {
                let req = pb::IndexClaimRequest {
                    key: key.0.to_vec(),
                    region: entry.region.to_string(),
                    user_id: entry.user_id.to_string(),
                };
                let r = c
                    .clone()
                    .claim(req)
                    .await
                    .map_err(unavailable)?
                    .into_inner();
                match (r.applied, r.holder) {
                    (true, _) => Ok(Claim::Applied),
                    (false, Some(h)) => Ok(Claim::Held(entry_from_pb(h)?)),
                    (false, None) => Err(NodeError::IndexUnavailable(
                        "claim refused without a holder".into(),
                    )),
                }
            }
        }
    }

    pub async fn confirm(&self, key: &IdentifierKey, user_id: &UserId) -> Result<bool, NodeError> {
        match self {
            Self::Local { store, clock } => Ok(store
                .confirm(key, user_id.as_str(), clock.now())
                .await?
                .is_applied()),
            Self::Remote(c) => {
                let req = pb::IndexConfirmRequest {
                    key: key.0.to_vec(),
                    user_id: user_id.to_string(),
                };
                Ok(c.clone()
                    .confirm(req)
                    .await
                    .map_err(unavailable)?
                    .into_inner()
                    .applied)
            }
        }
    }

    pub async fn release(&self, key: &IdentifierKey, user_id: &UserId) -> Result<bool, NodeError> {
        match self {
            Self::Local { store, .. } => {
                Ok(store.release(key, user_id.as_str()).await?.is_applied())
            }
            Self::Remote(c) => {
                let req = pb::IndexReleaseRequest {
                    key: key.0.to_vec(),
                    user_id: user_id.to_string(),
                };
                Ok(c.clone()
                    .release(req)
                    .await
                    .map_err(unavailable)?
                    .into_inner()
                    .applied)
            }
        }
    }
}

fn unavailable(s: Status) -> NodeError {
    NodeError::IndexUnavailable(format!("{:?}: {}", s.code(), s.message()))
}

fn entry_from_pb(e: pb::IndexEntry) -> Result<IndexEntry, NodeError> {
    let bad = |what: &str| {
        NodeError::IndexUnavailable(format!("index answered a malformed entry ({what})"))
    };
    Ok(IndexEntry {
        region: RegionCode::parse(&e.region).map_err(|_| bad("region"))?,
        user_id: UserId::parse(&e.user_id).map_err(|_| bad("user id"))?,
        state: match pb::IndexState::try_from(e.state) {
            Ok(pb::IndexState::Pending) => IndexState::Pending,
            Ok(pb::IndexState::Active) => IndexState::Active,
            _ => return Err(bad("state")),
        },
        created_at: e.created_at,
        expires_at: (e.expires_at != 0).then_some(e.expires_at),
    })
}

fn entry_to_pb(e: &IndexEntry) -> pb::IndexEntry {
    pb::IndexEntry {
        region: e.region.to_string(),
        user_id: e.user_id.to_string(),
        state: match e.state {
            IndexState::Pending => pb::IndexState::Pending,
            IndexState::Active => pb::IndexState::Active,
        } as i32,
        created_at: e.created_at,
        expires_at: e.expires_at.unwrap_or(0),
    }
}

/// The `HomeIndex` gRPC service, served by the index host's nodes.
pub struct IndexService {
    pub store: Arc<dyn IndexStore>,
    pub clock: Arc<dyn Clock>,
    pub claim_ttl: i64,
    pub topology: Arc<domicile_core::topology::Topology>,
}

fn key_of(bytes: &[u8]) -> Result<IdentifierKey, Status> {
    IdentifierKey::from_slice(bytes).ok_or_else(|| Status::invalid_argument("key must be 32 bytes"))
}

fn user_of(s: &str) -> Result<UserId, Status> {
    UserId::parse(s).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn store_err(e: domicile_store::StoreError) -> Status {
    Status::from(NodeError::from(e))
}

#[tonic::async_trait]
impl pb::home_index_server::HomeIndex for IndexService {
    async fn lookup(
        &self,
        req: Request<pb::IndexLookupRequest>,
    ) -> Result<Response<pb::IndexLookupResponse>, Status> {
        let key = key_of(&req.get_ref().key)?;
        let entry = self
            .store
            .lookup(&key, self.clock.now())
            .await
            .map_err(store_err)?;
        Ok(Response::new(pb::IndexLookupResponse {
            entry: entry.as_ref().map(entry_to_pb),
        }))
    }

    async fn claim(
        &self,
        req: Request<pb::IndexClaimRequest>,
    ) -> Result<Response<pb::IndexClaimResponse>, Status> {
        let r = req.into_inner();
        let key = key_of(&r.key)?;
        let user_id = user_of(&r.user_id)?;
        let region = self
            .topology
            .known_region(&r.region)
            .cloned()
            .ok_or_else(|| Status::invalid_argument(format!("unknown region {:?}", r.region)))?;
        if user_id.region() != &region {
            return Err(Status::invalid_argument("user id and region disagree"));
        }
        let now = self.clock.now();
        let entry = IndexEntry {
            region,
            user_id,
            state: IndexState::Pending,
            created_at: now,
            expires_at: Some(now + self.claim_ttl),
        };
        let out = match self
            .store
            .claim(&key, &entry, now)
            .await
            .map_err(store_err)?
        {
            Claim::Applied => pb::IndexClaimResponse {
                applied: true,
                holder: None,
            },
            Claim::Held(h) => pb::IndexClaimResponse {
                applied: false,
                holder: Some(entry_to_pb(&h)),
            },
        };
        Ok(Response::new(out))
    }

    async fn confirm(
        &self,
        req: Request<pb::IndexConfirmRequest>,
    ) -> Result<Response<pb::IndexConfirmResponse>, Status> {
        let r = req.into_inner();
        let (key, user) = (key_of(&r.key)?, user_of(&r.user_id)?);
        let applied = self
            .store
            .confirm(&key, user.as_str(), self.clock.now())
            .await
            .map_err(store_err)?;
        Ok(Response::new(pb::IndexConfirmResponse {
            applied: applied == Applied::Yes,
        }))
    }

    async fn release(
        &self,
        req: Request<pb::IndexReleaseRequest>,
    ) -> Result<Response<pb::IndexReleaseResponse>, Status> {
        let r = req.into_inner();
        let (key, user) = (key_of(&r.key)?, user_of(&r.user_id)?);
        let applied = self
            .store
            .release(&key, user.as_str())
            .await
            .map_err(store_err)?;
        Ok(Response::new(pb::IndexReleaseResponse {
            applied: applied == Applied::Yes,
        }))
    }
}
