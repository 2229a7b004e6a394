//! The internal `Admin` gRPC service: compliance reports of what this
//! region stores and, on the index host, what the index holds; a user's
//! audit trail, from the user's home region only; signing-key rotation.
//! Served on the node's internal address only; the edge does not expose
//! it. Each call converts, calls one use case, maps errors once.

use crate::error::status;
use domicile_identity::{Identity, IdentityError, index::IndexHost};
use domicile_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AdminService {
    pub identity: Arc<Identity>,
    /// Present on the index host.
    pub index: Option<IndexHost>,
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn region_report(
        &self,
        req: Request<pb::RegionReportRequest>,
    ) -> Result<Response<pb::RegionReportResponse>, Status> {
        let r = self
            .identity
            .region_report(req.get_ref().include_identifiers)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RegionReportResponse {
            region: r.region.to_string(),
            residency: r.residency,
            users: r.users,
            identifiers: r.identifiers,
            foreign_users: r.foreign_user_ids.len() as u64,
            foreign_user_ids: r.foreign_user_ids,
            sessions: r.sessions,
            placement: r.placement,
            placement_violations: r.placement_violations,
        }))
    }

    async fn user_audit(
        &self,
        req: Request<pb::UserAuditRequest>,
    ) -> Result<Response<pb::UserAuditResponse>, Status> {
        let pb::UserAuditRequest { user_id, limit } = req.into_inner();
        let (id, events) = self
            .identity
            .user_audit(&user_id, limit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UserAuditResponse {
            user_id: id.to_string(),
            region: self.identity.region().to_string(),
            events: events
                .into_iter()
                .map(|e| pb::AuditEvent {
                    event_id: e.event_id,
                    at: e.at,
                    kind: e.kind.as_str().to_owned(),
                    session_id: e.session_id.unwrap_or_default(),
                    detail: e.detail,
                })
                .collect(),
        }))
    }

    async fn rotate_signing_key(
        &self,
        req: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::RotateSigningKeyResponse>, Status> {
        let r = self
            .identity
            .rotate_signing_key(req.into_inner().activate_in_seconds)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RotateSigningKeyResponse {
            region: self.identity.region().to_string(),
            kid: r.kid,
            activates_at: r.activates_at,
            previous_kid: r.previous_kid,
        }))
    }

    async fn index_report(
        &self,
        _req: Request<pb::IndexReportRequest>,
    ) -> Result<Response<pb::IndexReportResponse>, Status> {
        let Some(index) = &self.index else {
            let id = &self.identity;
            return Err(status(IdentityError::NotIndexHost {
                region: id.region().clone(),
                host: id.topology().index.host_region.clone(),
            }));
        };
        let r = index.report().await.map_err(status)?;
        Ok(Response::new(pb::IndexReportResponse {
            entries: r.entries,
            active_by_region: r.active_by_region,
            pending: r.pending,
            malformed_keys: r.malformed_keys,
            plaintext_suspects: r.plaintext_suspects,
        }))
    }
}
