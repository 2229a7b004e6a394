//! The `Identity` gRPC service: each call converts its request (`convert`),
//! calls one use case, and maps errors with the one mapping (`error::status`).

use crate::{convert, error::status};
use domicile_identity::{
    Identity,
    sessions::{self, LogoutBy},
};
use domicile_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct IdentityService(pub Arc<Identity>);

#[tonic::async_trait]
impl pb::identity_server::Identity for IdentityService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::AuthResponse>, Status> {
        let input = convert::registration(req.into_inner()).map_err(status)?;
        let out = self.0.register(input).await.map_err(status)?;
        Ok(Response::new(convert::auth_response(out)))
    }

    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::AuthResponse>, Status> {
        let input = convert::credentials(req.into_inner()).map_err(status)?;
        let out = self.0.login(input).await.map_err(status)?;
        Ok(Response::new(convert::auth_response(out)))
    }

    async fn refresh(
        &self,
        req: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::AuthResponse>, Status> {
        let token = sessions::refresh_token(&req.get_ref().refresh_token).map_err(status)?;
        let out = self.0.refresh(&token).await.map_err(status)?;
        Ok(Response::new(convert::auth_response(out)))
    }

    async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let bearer;
        let by = match req.get_ref().refresh_token.as_str() {
            "" => {
                bearer = convert::bearer(req.metadata()).map_err(status)?;
                LogoutBy::Bearer(&bearer)
            }
            t => LogoutBy::Refresh(sessions::refresh_token(t).map_err(status)?),
        };
        let session_id = self.0.logout(by).await.map_err(status)?;
        Ok(Response::new(pb::LogoutResponse { session_id }))
    }

    async fn get_profile(
        &self,
        req: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::Profile>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let out = self.0.get_profile(&bearer).await.map_err(status)?;
        Ok(Response::new(convert::profile(out)))
    }

    async fn update_profile(
        &self,
        req: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::Profile>, Status> {
        let (metadata, _, body) = req.into_parts();
        let change = convert::profile_change(body).map_err(status)?;
        let bearer = convert::bearer(&metadata).map_err(status)?;
        let out = self
            .0
            .update_profile(&bearer, &change)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::profile(out)))
    }
}
