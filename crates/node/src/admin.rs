//! The internal `Admin` service: compliance reports of what this region
//! stores and, on the index host, what the index holds; a user's audit
//! trail, from the user's home region only. Served on the node's
//! internal address only; the edge does not expose it.

use crate::{
    error::NodeError,
    keys::{self, KeyRing},
    service::IdentityCore,
};
use domicile_core::{ids::UserId, index::IndexState};
use domicile_proto::v1 as pb;
use domicile_store::IndexStore;
use std::{collections::HashMap, sync::Arc};
use tonic::{Request, Response, Status};

pub struct AdminService {
    pub core: Arc<IdentityCore>,
    /// Present on the index host.
    pub index: Option<Arc<dyn IndexStore>>,
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn region_report(
        &self,
        req: Request<pb::RegionReportRequest>,
    ) -> Result<Response<pb::RegionReportResponse>, Status> {
        let core = &self.core;
        let users = core.store.scan_users().await.map_err(NodeError::from)?;
        let foreign: Vec<String> = users
            .iter()
            .filter(|u| UserId::parse(&u.user_id).map_or(true, |id| id.region() != &core.region))
            .map(|u| u.user_id.clone())
            .collect();
        let identifiers = if req.get_ref().include_identifiers {
            let mut emails: Vec<String> = users.iter().map(|u| u.email.clone()).collect();
            emails.sort();
            emails
        } else {
            Vec::new()
        };
        let residency = core
            .topology
            .region(&core.region)
            .map(|r| r.residency.clone())
            .unwrap_or_default();
        tracing::info!(region = %core.region, with_identifiers = req.get_ref().include_identifiers, "residency report served");
        Ok(Response::new(pb::RegionReportResponse {
            region: core.region.to_string(),
            residency,
            users: users.len() as u64,
            identifiers,
            foreign_users: foreign.len() as u64,
            foreign_user_ids: foreign,
            sessions: core.store.count_sessions().await.map_err(NodeError::from)?,
        }))
    }

    async fn user_audit(
        &self,
        req: Request<pb::UserAuditRequest>,
    ) -> Result<Response<pb::UserAuditResponse>, Status> {
        let core = &self.core;
        let pb::UserAuditRequest { user_id, limit } = req.into_inner();
        let id =
            UserId::parse(&user_id).map_err(|e| NodeError::Invalid(format!("user_id: {e}")))?;
        if id.region() != &core.region {
            // Another region's trail is never read (or cached) here.
            return Err(match core.topology.region(id.region()) {
                Some(_) => NodeError::WrongRegion(id.region().clone()),
                None => NodeError::Invalid(format!("user_id: unknown region {}", id.region())),
            }
            .into());
        }
        let limit = match limit {
            0 => 100,
            n @ 1..=1000 => n as usize,
            n => {
                return Err(NodeError::Invalid(format!("limit: {n} is more than 1000")).into());
            }
        };
        let events = core
            .store
            .audit_for_user(id.as_str(), limit)
            .await
            .map_err(NodeError::from)?
            .into_iter()
            .map(|e| pb::AuditEvent {
                event_id: e.event_id,
                at: e.at,
                kind: e.kind.as_str().to_owned(),
                session_id: e.session_id.unwrap_or_default(),
                detail: e.detail,
            })
            .collect();
        tracing::info!(region = %core.region, "audit trail served");
        Ok(Response::new(pb::UserAuditResponse {
            user_id: id.to_string(),
            region: core.region.to_string(),
            events,
        }))
    }

    async fn rotate_signing_key(
        &self,
        req: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::RotateSigningKeyResponse>, Status> {
        let core = &self.core;
        let lead = match req.into_inner().activate_in_seconds {
            0 => 600,
            n @ 1..=604_800 => i64::from(n),
            n => {
                return Err(NodeError::Invalid(format!(
                    "activate_in_seconds: {n} is more than 604800 (7 days)"
                ))
                .into());
            }
        };
        let now = core.clock.now();
        let previous = core.keys.load().signing_kid(now).unwrap_or_default();
        let record = keys::rotate(
            core.store.as_ref(),
            &core.region,
            core.entropy.as_ref(),
            now,
            lead,
        )
        .await?;
        let ring = KeyRing::load(
            core.store.as_ref(),
            &core.region,
            core.topology.tokens.access_ttl_seconds,
        )
        .await?;
        core.keys.store(Arc::new(ring));
        tracing::info!(region = %core.region, kid = %record.kid, activates_at = now + lead, "signing key rotation started");
        Ok(Response::new(pb::RotateSigningKeyResponse {
            region: core.region.to_string(),
            kid: record.kid,
            activates_at: now + lead,
            previous_kid: previous,
        }))
    }

    async fn index_report(
        &self,
        _req: Request<pb::IndexReportRequest>,
    ) -> Result<Response<pb::IndexReportResponse>, Status> {
        let Some(index) = &self.index else {
            return Err(Status::failed_precondition(format!(
                "region {} does not host the index; ask region {}",
                self.core.region, self.core.topology.index.host_region
            )));
        };
        let entries = index
            .scan(self.core.clock.now())
            .await
            .map_err(NodeError::from)?;
        let mut active_by_region: HashMap<String, u64> = HashMap::new();
        let mut pending = 0;
        let mut plaintext_suspects = 0;
        for (_, e) in &entries {
            match e.state {
                IndexState::Active => {
                    *active_by_region.entry(e.region.to_string()).or_default() += 1
                }
                IndexState::Pending => pending += 1,
            }
            // The stored fields are a region code and a user id; neither can
            // hold an '@'. Count any that do as a leak.
            if e.region.as_str().contains('@') || e.user_id.as_str().contains('@') {
                plaintext_suspects += 1;
            }
        }
        Ok(Response::new(pb::IndexReportResponse {
            entries: entries.len() as u64,
            active_by_region,
            pending,
            // `IdentifierKey` is 32 bytes by construction; the embedded
            // backend refuses other keys on read (corrupt record).
            malformed_keys: 0,
            plaintext_suspects,
        }))
    }
}
