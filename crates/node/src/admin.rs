//! The internal `Admin` gRPC service: compliance reports of what this
//! region stores and, on the index host, what the index holds; a user's
//! audit trail, from the user's home region only; signing-key rotation;
//! the region's admin log; residency proofs; the compliance operations
//! on one user (export, erase, pin, move) and a move's target half.
//! Served on the node's internal address only; the edge does not expose
//! it. Every call is authenticated first, by an operator's admin token
//! (`domicile_core::admin`: `authorization: Bearer <token>`), and needs a
//! role: reports, proofs, audit trails and the compliance operations
//! `compliance` (trails also `support`), key rotation `operator`; a
//! refused call does nothing. A call about one user is audited in that
//! user's trail with the operator's name; a call about the region as a
//! whole is written to the region's admin log before it answers. Each
//! call then converts, calls one use case, maps errors once.

use crate::error::status;
use domicile_core::{
    admin::{
        AdminAuthError, AdminCaller, LOCAL_OPERATOR_KEY, Operator, OperatorKey, Operators, Role,
    },
    index::IndexSecret,
    topology::Topology,
};
use domicile_identity::{Clock, Identity, IdentityError, index::IndexHost};
use domicile_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AdminService {
    pub identity: Arc<Identity>,
    /// Present on the index host.
    pub index: Option<IndexHost>,
    /// Who may call, with which roles.
    pub operators: Operators,
    pub clock: Arc<dyn Clock>,
}

/// The operators of `topology`: those listed, and the local operator (all
/// roles, its key derived from the federation secret) when one is set.
pub fn operators(topology: &Topology, secret: &IndexSecret) -> Operators {
    let local = topology.admin.local_operator.iter().map(|name| Operator {
        name: name.clone(),
        public_key: OperatorKey::from_seed(name, secret.derive(LOCAL_OPERATOR_KEY)).public_key(),
        roles: Role::ALL.to_vec(),
    });
    Operators::new(topology.admin.operators.iter().cloned().chain(local))
}

impl AdminService {
    /// The verified caller of `req`, if it holds one of `roles`.
    fn caller<T>(
        &self,
        req: &Request<T>,
        roles: &[Role],
        call: &str,
    ) -> Result<AdminCaller, Status> {
        self.caller_and_token(req, roles, call).map(|(c, _)| c)
    }

    /// `caller`, and the token as it came (a move passes it on to the
    /// target region, so the operator is the actor there too).
    fn caller_and_token<T>(
        &self,
        req: &Request<T>,
        roles: &[Role],
        call: &str,
    ) -> Result<(AdminCaller, String), Status> {
        let refused = |e: AdminAuthError| {
            tracing::warn!(call, reason = %e, "admin call refused");
            match e {
                AdminAuthError::NotGranted(_) | AdminAuthError::WrongRole(_) => {
                    Status::permission_denied(e.to_string())
                }
                _ => Status::unauthenticated(e.to_string()),
            }
        };
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        // Anything but a bearer token fails as malformed.
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or(header);
        let caller = self
            .operators
            .verify(token.trim(), self.clock.now())
            .map_err(refused)?;
        caller.require(roles).map_err(refused)?;
        tracing::info!(call, operator = %caller.operator, "admin call");
        Ok((caller, token.trim().to_owned()))
    }
}

impl AdminService {
    /// Writes a region-wide call to the region's admin log; a call whose
    /// log cannot be written fails (its work is done, but an unlogged
    /// admin action is not answered as a success).
    async fn log(&self, caller: &AdminCaller, call: &str, detail: String) -> Result<(), Status> {
        self.identity
            .record_admin(&caller.operator, call, detail)
            .await
            .map_err(status)
    }
}

fn receipt_pb(r: domicile_identity::compliance::Receipt) -> pb::ComplianceReceipt {
    pb::ComplianceReceipt {
        new_user_id: r
            .claims
            .iter()
            .find_map(|c| c.new_user_id.clone())
            .unwrap_or_default(),
        operation_id: r.operation_id,
        parts: r.parts,
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn region_report(
        &self,
        req: Request<pb::RegionReportRequest>,
    ) -> Result<Response<pb::RegionReportResponse>, Status> {
        let caller = self.caller(&req, &[Role::Compliance], "region_report")?;
        let with = req.get_ref().include_identifiers;
        let r = self.identity.region_report(with).await.map_err(status)?;
        self.log(
            &caller,
            "region_report",
            format!("users={} with_identifiers={with}", r.users),
        )
        .await?;
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
        let caller = self.caller(&req, &[Role::Compliance, Role::Support], "user_audit")?;
        let pb::UserAuditRequest { user_id, limit } = req.into_inner();
        let (id, events) = self
            .identity
            .user_audit(&user_id, limit)
            .await
            .map_err(status)?;
        self.identity
            .admin_accessed(id.as_str(), &caller.operator, "user_audit");
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
        let caller = self.caller(&req, &[Role::Operator], "rotate_signing_key")?;
        let r = self
            .identity
            .rotate_signing_key(req.into_inner().activate_in_seconds)
            .await
            .map_err(status)?;
        self.log(
            &caller,
            "rotate_signing_key",
            format!("kid={} activates_at={}", r.kid, r.activates_at),
        )
        .await?;
        Ok(Response::new(pb::RotateSigningKeyResponse {
            region: self.identity.region().to_string(),
            kid: r.kid,
            activates_at: r.activates_at,
            previous_kid: r.previous_kid,
        }))
    }

    async fn admin_log(
        &self,
        req: Request<pb::AdminLogRequest>,
    ) -> Result<Response<pb::AdminLogResponse>, Status> {
        self.caller(&req, &[Role::Compliance, Role::Operator], "admin_log")?;
        let events = self
            .identity
            .admin_log(req.into_inner().limit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AdminLogResponse {
            region: self.identity.region().to_string(),
            events: events
                .into_iter()
                .map(|e| pb::AdminLogEvent {
                    event_id: e.event_id,
                    at: e.at,
                    operator: e.operator,
                    call: e.call,
                    detail: e.detail,
                })
                .collect(),
        }))
    }

    async fn export_user(
        &self,
        req: Request<pb::ExportUserRequest>,
    ) -> Result<Response<pb::ExportUserResponse>, Status> {
        let caller = self.caller(&req, &[Role::Compliance], "export_user")?;
        let user_id = req.into_inner().user_id;
        let doc = self.identity.export_user(&user_id).await.map_err(status)?;
        self.identity
            .admin_accessed(&user_id, &caller.operator, "export_user");
        Ok(Response::new(pb::ExportUserResponse {
            document: doc.to_string(),
        }))
    }

    async fn erase_user(
        &self,
        req: Request<pb::EraseUserRequest>,
    ) -> Result<Response<pb::ComplianceReceipt>, Status> {
        let caller = self.caller(&req, &[Role::Compliance], "erase_user")?;
        let r = self
            .identity
            .erase_user(&req.into_inner().user_id, &caller.operator)
            .await
            .map_err(status)?;
        Ok(Response::new(receipt_pb(r)))
    }

    async fn pin_user(
        &self,
        req: Request<pb::PinUserRequest>,
    ) -> Result<Response<pb::PinUserResponse>, Status> {
        let caller = self.caller(&req, &[Role::Compliance], "pin_user")?;
        let pb::PinUserRequest { user_id, reason } = req.into_inner();
        let (pin, changed) = self
            .identity
            .pin_user(&user_id, &caller.operator, &reason)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PinUserResponse {
            pinned: true,
            region: self.identity.region().to_string(),
            pinned_by: pin.operator,
            pinned_at: pin.at,
            changed,
        }))
    }

    async fn unpin_user(
        &self,
        req: Request<pb::UnpinUserRequest>,
    ) -> Result<Response<pb::PinUserResponse>, Status> {
        let caller = self.caller(&req, &[Role::Compliance], "unpin_user")?;
        let changed = self
            .identity
            .unpin_user(&req.into_inner().user_id, &caller.operator)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PinUserResponse {
            pinned: false,
            region: self.identity.region().to_string(),
            pinned_by: String::new(),
            pinned_at: 0,
            changed,
        }))
    }

    async fn move_user(
        &self,
        req: Request<pb::MoveUserRequest>,
    ) -> Result<Response<pb::ComplianceReceipt>, Status> {
        let (caller, token) = self.caller_and_token(&req, &[Role::Compliance], "move_user")?;
        let pb::MoveUserRequest { user_id, to } = req.into_inner();
        let r = self
            .identity
            .move_user(&user_id, &to, &caller.operator, &token)
            .await
            .map_err(status)?;
        Ok(Response::new(receipt_pb(r)))
    }

    async fn residency_proof(
        &self,
        req: Request<pb::ResidencyProofRequest>,
    ) -> Result<Response<pb::ResidencyProofResponse>, Status> {
        let caller = self.caller(&req, &[Role::Compliance], "residency_proof")?;
        let index = match &self.index {
            Some(ix) => Some(ix.report().await.map_err(status)?),
            None => None,
        };
        let proof = self.identity.residency_proof(index).await.map_err(status)?;
        let findings = proof.claims.findings();
        self.log(
            &caller,
            "residency_proof",
            format!("users={} findings={}", proof.claims.users, findings.len()),
        )
        .await?;
        Ok(Response::new(pb::ResidencyProofResponse {
            findings,
            proof: proof.jws,
        }))
    }

    async fn abort_move(
        &self,
        req: Request<pb::AbortMoveRequest>,
    ) -> Result<Response<pb::AbortMoveResponse>, Status> {
        let (caller, token) = self.caller_and_token(&req, &[Role::Compliance], "abort_move")?;
        let operation_id = self
            .identity
            .abort_move(&req.into_inner().user_id, &caller.operator, &token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AbortMoveResponse { operation_id }))
    }

    async fn discard_moved_user(
        &self,
        req: Request<pb::DiscardMovedUserRequest>,
    ) -> Result<Response<pb::DiscardMovedUserResponse>, Status> {
        self.caller(&req, &[Role::Compliance], "discard_moved_user")?;
        let r = req.into_inner();
        self.identity
            .discard_moved_user(&r.new_user_id, &r.operation_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DiscardMovedUserResponse {}))
    }

    async fn import_moved_user(
        &self,
        req: Request<pb::ImportMovedUserRequest>,
    ) -> Result<Response<pb::ImportMovedUserResponse>, Status> {
        let caller = self.caller(&req, &[Role::Compliance], "import_moved_user")?;
        let part = self
            .identity
            .import_moved_user(&req.into_inner().bundle, &caller.operator)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ImportMovedUserResponse {
            receipt_part: part,
        }))
    }

    async fn index_report(
        &self,
        req: Request<pb::IndexReportRequest>,
    ) -> Result<Response<pb::IndexReportResponse>, Status> {
        let caller = self.caller(&req, &[Role::Compliance], "index_report")?;
        let Some(index) = &self.index else {
            let id = &self.identity;
            return Err(status(IdentityError::NotIndexHost {
                region: id.region().clone(),
                host: id.topology().index.host_region.clone(),
            }));
        };
        let r = index.report().await.map_err(status)?;
        self.log(&caller, "index_report", format!("entries={}", r.entries))
            .await?;
        Ok(Response::new(pb::IndexReportResponse {
            entries: r.entries,
            active_by_region: r.active_by_region,
            pending: r.pending,
            malformed_keys: r.malformed_keys,
            plaintext_suspects: r.plaintext_suspects,
        }))
    }
}
