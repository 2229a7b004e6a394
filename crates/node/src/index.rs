//! The home-region index over gRPC: the client other regions' nodes use to
//! reach the index host ([`RemoteIndex`], the use cases' `HomeIndex` there),
//! and the `HomeIndex` service the index host's nodes serve over the
//! `IndexHost` use cases. Conversion between wire and domain entries lives
//! here only.

use crate::error::status;
use async_trait::async_trait;
use domicile_core::{
    RegionCode,
    ids::UserId,
    index::{IdentifierKey, IndexEntry, IndexState},
};
use domicile_identity::{IdentityError, index::IndexHost, ports::HomeIndex};
use domicile_proto::v1 as pb;
use domicile_store::Claim;
use std::time::Duration;
use tonic::{Request, Response, Status, transport::Channel};

/// A lazily connecting client to the index host's nodes.
#[derive(Clone)]
pub struct RemoteIndex(pb::home_index_client::HomeIndexClient<Channel>);

impl RemoteIndex {
    pub fn new(addresses: &[std::net::SocketAddr]) -> Result<Self, crate::NodeError> {
        domicile_proto::home_index_client(addresses, Duration::from_secs(2), Duration::from_secs(5))
            .map(Self)
            .map_err(|e| crate::NodeError::start("index endpoint", e))
    }

    /// A claim, taking over `abandoned`'s pending claim when given.
    async fn claim_over(
        &self,
        key: &IdentifierKey,
        entry: &IndexEntry,
        abandoned: Option<&UserId>,
    ) -> Result<Claim, IdentityError> {
        let req = pb::IndexClaimRequest {
            key: key.0.to_vec(),
            region: entry.region.to_string(),
            user_id: entry.user_id.to_string(),
            abandoned_user_id: abandoned.map(UserId::to_string).unwrap_or_default(),
        };
        let r = self
            .0
            .clone()
            .claim(req)
            .await
            .map_err(unavailable("claim"))?
            .into_inner();
        match (r.applied, r.holder) {
            (true, _) => Ok(Claim::Applied),
            (false, Some(h)) => Ok(Claim::Held(entry_from_pb("claim", h)?)),
            (false, None) => Err(malformed("claim", "refused without a holder")),
        }
    }
}

/// The index did not answer `op` usefully (the status is logged, never
/// shown to a client).
fn unavailable(op: &'static str) -> impl Fn(Status) -> IdentityError {
    move |s| IdentityError::IndexUnavailable {
        op,
        detail: format!("{:?}: {}", s.code(), s.message()),
    }
}

fn malformed(op: &'static str, what: &str) -> IdentityError {
    IdentityError::IndexUnavailable {
        op,
        detail: format!("index answered a malformed entry ({what})"),
    }
}

fn entry_from_pb(op: &'static str, e: pb::IndexEntry) -> Result<IndexEntry, IdentityError> {
    Ok(IndexEntry {
        region: RegionCode::parse(&e.region).map_err(|_| malformed(op, "region"))?,
        user_id: UserId::parse(&e.user_id).map_err(|_| malformed(op, "user id"))?,
        state: match pb::IndexState::try_from(e.state) {
            Ok(pb::IndexState::Pending) => IndexState::Pending,
            Ok(pb::IndexState::Active) => IndexState::Active,
            _ => return Err(malformed(op, "state")),
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

#[async_trait]
impl HomeIndex for RemoteIndex {
    async fn lookup(&self, key: &IdentifierKey) -> Result<Option<IndexEntry>, IdentityError> {
        let r = self
            .0
            .clone()
            .lookup(pb::IndexLookupRequest {
                key: key.0.to_vec(),
            })
            .await
            .map_err(unavailable("lookup"))?;
        r.into_inner()
            .entry
            .map(|e| entry_from_pb("lookup", e))
            .transpose()
    }

    async fn claim(&self, key: &IdentifierKey, entry: &IndexEntry) -> Result<Claim, IdentityError> {
        self.claim_over(key, entry, None).await
    }

    async fn take_over(
        &self,
        key: &IdentifierKey,
        entry: &IndexEntry,
        abandoned: &UserId,
    ) -> Result<Claim, IdentityError> {
        self.claim_over(key, entry, Some(abandoned)).await
    }

    async fn confirm(&self, key: &IdentifierKey, user_id: &UserId) -> Result<bool, IdentityError> {
        let req = pb::IndexConfirmRequest {
            key: key.0.to_vec(),
            user_id: user_id.to_string(),
        };
        Ok(self
            .0
            .clone()
            .confirm(req)
            .await
            .map_err(unavailable("confirm"))?
            .into_inner()
            .applied)
    }

    async fn release(&self, key: &IdentifierKey, user_id: &UserId) -> Result<bool, IdentityError> {
        let req = pb::IndexReleaseRequest {
            key: key.0.to_vec(),
            user_id: user_id.to_string(),
        };
        Ok(self
            .0
            .clone()
            .release(req)
            .await
            .map_err(unavailable("release"))?
            .into_inner()
            .applied)
    }

    async fn switch(
        &self,
        key: &IdentifierKey,
        from: &UserId,
        to: &UserId,
    ) -> Result<bool, IdentityError> {
        let req = pb::IndexSwitchRequest {
            key: key.0.to_vec(),
            from_user_id: from.to_string(),
            to_user_id: to.to_string(),
        };
        Ok(self
            .0
            .clone()
            .switch(req)
            .await
            .map_err(unavailable("switch"))?
            .into_inner()
            .applied)
    }
}

/// The `HomeIndex` gRPC service, served by the index host's nodes.
pub struct IndexService(pub IndexHost);

#[tonic::async_trait]
impl pb::home_index_server::HomeIndex for IndexService {
    async fn lookup(
        &self,
        req: Request<pb::IndexLookupRequest>,
    ) -> Result<Response<pb::IndexLookupResponse>, Status> {
        let entry = self
            .0
            .lookup_bytes(&req.get_ref().key)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::IndexLookupResponse {
            entry: entry.as_ref().map(entry_to_pb),
        }))
    }

    async fn claim(
        &self,
        req: Request<pb::IndexClaimRequest>,
    ) -> Result<Response<pb::IndexClaimResponse>, Status> {
        let r = req.into_inner();
        let out = match self
            .0
            .claim_for(&r.key, &r.region, &r.user_id, &r.abandoned_user_id)
            .await
            .map_err(status)?
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
        let applied = self
            .0
            .confirm_for(&r.key, &r.user_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::IndexConfirmResponse { applied }))
    }

    async fn release(
        &self,
        req: Request<pb::IndexReleaseRequest>,
    ) -> Result<Response<pb::IndexReleaseResponse>, Status> {
        let r = req.into_inner();
        let applied = self
            .0
            .release_for(&r.key, &r.user_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::IndexReleaseResponse { applied }))
    }

    async fn switch(
        &self,
        req: Request<pb::IndexSwitchRequest>,
    ) -> Result<Response<pb::IndexSwitchResponse>, Status> {
        let r = req.into_inner();
        let applied = self
            .0
            .switch_for(&r.key, &r.from_user_id, &r.to_user_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::IndexSwitchResponse { applied }))
    }
}
