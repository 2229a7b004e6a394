//! The `Identity` gRPC service: each call converts its request (`convert`),
//! calls one use case, and maps errors with the one mapping (`error::status`).
//! The one-time code calls (`RequestCode`, `ResetPassword`,
//! `SignInWithCode`, `SendVerification`, `VerifyEmail`) drive the same use
//! cases as the hosted pages.

use crate::{convert, error::status};
use domicile_identity::{
    Identity, IdentityError,
    mfa::{Caller, Reauthentication},
    passkey_sign_in::PasskeyAssertion,
    second_factor::{Concluded, Factor, Surface},
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
        let (md, _, r) = req.into_parts();
        let input = convert::credentials(&md, r).map_err(status)?;
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

    async fn request_code(
        &self,
        req: Request<pb::RequestCodeRequest>,
    ) -> Result<Response<pb::RequestCodeResponse>, Status> {
        let asked = convert::asked(req.metadata(), req.get_ref()).map_err(status)?;
        let m = req.into_inner();
        let identity = &self.0;
        let login = convert::login(&m.email, &m.phone).map_err(status)?;
        match pb::CodePurpose::try_from(m.purpose) {
            Ok(pb::CodePurpose::ResetPassword) => {
                identity.request_password_reset(login, &asked).await
            }
            Ok(pb::CodePurpose::SignIn) => identity.request_sign_in_code(login, &asked).await,
            _ => Err(IdentityError::Invalid {
                field: "purpose",
                reason: "must be CODE_PURPOSE_RESET_PASSWORD or CODE_PURPOSE_SIGN_IN".into(),
            }),
        }
        .map_err(status)?;
        Ok(Response::new(pb::RequestCodeResponse {}))
    }

    async fn reset_password(
        &self,
        req: Request<pb::ResetPasswordRequest>,
    ) -> Result<Response<pb::ResetPasswordResponse>, Status> {
        let asked = convert::asked_from(req.metadata());
        let m = req.into_inner();
        let proof = convert::proof(&m.email, &m.phone, &m.link, &m.code).map_err(status)?;
        let reset = self
            .0
            .reset_password(&proof, m.new_password, None, &asked)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ResetPasswordResponse {
            sessions_ended: u32::try_from(reset.sessions_ended).unwrap_or(u32::MAX),
        }))
    }

    async fn sign_in_with_code(
        &self,
        req: Request<pb::SignInWithCodeRequest>,
    ) -> Result<Response<pb::AuthResponse>, Status> {
        let context = convert::context(req.metadata()).map_err(status)?;
        let m = req.into_inner();
        let proof = convert::proof(&m.email, &m.phone, &m.link, &m.code).map_err(status)?;
        let out = self
            .0
            .login_with_code(&proof, &context)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::auth_response(out)))
    }

    async fn send_verification(
        &self,
        req: Request<pb::SendVerificationRequest>,
    ) -> Result<Response<pb::SendVerificationResponse>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let claims = self.0.authorize(&bearer).await.map_err(status)?;
        let asked = convert::asked_from(req.metadata());
        self.0
            .send_verification(&claims.sub, &asked)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SendVerificationResponse {}))
    }

    async fn verify_email(
        &self,
        req: Request<pb::VerifyEmailRequest>,
    ) -> Result<Response<pb::VerifyEmailResponse>, Status> {
        let m = req.into_inner();
        let proof = convert::proof(&m.email, "", &m.link, &m.code).map_err(status)?;
        let user = self.0.verify_email(&proof).await.map_err(status)?;
        Ok(Response::new(pb::VerifyEmailResponse {
            user_id: user.user_id,
        }))
    }

    async fn request_email_change(
        &self,
        req: Request<pb::RequestEmailChangeRequest>,
    ) -> Result<Response<pb::RequestEmailChangeResponse>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let asked = convert::asked_from(req.metadata());
        self.0
            .request_email_change(&bearer, &req.get_ref().new_email, &asked)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RequestEmailChangeResponse {}))
    }

    async fn confirm_email_change(
        &self,
        req: Request<pb::ConfirmEmailChangeRequest>,
    ) -> Result<Response<pb::Profile>, Status> {
        let m = req.get_ref();
        let user = match (m.link.is_empty(), m.code.is_empty()) {
            (false, true) => {
                self.0
                    .confirm_email_change(&domicile_identity::one_time::Proof::Link(&m.link))
                    .await
            }
            (true, false) => {
                let bearer = convert::bearer(req.metadata()).map_err(status)?;
                self.0.confirm_email_change_by_code(&bearer, &m.code).await
            }
            _ => Err(IdentityError::Invalid {
                field: "link",
                reason: "give the code (with the bearer token) or the link".into(),
            }),
        }
        .map_err(status)?;
        Ok(Response::new(convert::profile(user)))
    }

    async fn set_phone(
        &self,
        req: Request<pb::SetPhoneRequest>,
    ) -> Result<Response<pb::SetPhoneResponse>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let asked = convert::asked_from(req.metadata());
        let sent_to = self
            .0
            .request_phone(&bearer, &req.get_ref().phone, &asked)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SetPhoneResponse { sent_to }))
    }

    async fn confirm_phone(
        &self,
        req: Request<pb::ConfirmPhoneRequest>,
    ) -> Result<Response<pb::Profile>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let profile = self
            .0
            .confirm_phone(&bearer, &req.get_ref().code)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::profile(profile)))
    }

    async fn remove_phone(
        &self,
        req: Request<pb::RemovePhoneRequest>,
    ) -> Result<Response<pb::Profile>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let profile = self.0.remove_phone(&bearer).await.map_err(status)?;
        Ok(Response::new(convert::profile(profile)))
    }

    async fn complete_sign_in(
        &self,
        req: Request<pb::CompleteSignInRequest>,
    ) -> Result<Response<pb::AuthResponse>, Status> {
        let m = req.into_inner();
        let factor = Factor::from_fields(&m.totp_code, &m.recovery_code, &m.passkey_credential)
            .map_err(status)?;
        match self
            .0
            .complete_sign_in(&m.mfa_token, &factor, Surface::Api)
            .await
            .map_err(status)?
        {
            Concluded::Session(out) => Ok(Response::new(convert::auth_response(out))),
            Concluded::Code(..) => Err(Status::internal("an API sign-in ended without a session")),
        }
    }

    async fn get_factors(
        &self,
        req: Request<pb::GetFactorsRequest>,
    ) -> Result<Response<pb::Factors>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let f = self
            .0
            .factor_status(Caller::Bearer(&bearer))
            .await
            .map_err(status)?;
        Ok(Response::new(convert::factors(f)))
    }

    async fn enroll_totp(
        &self,
        req: Request<pb::EnrollTotpRequest>,
    ) -> Result<Response<pb::EnrollTotpResponse>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let client_id = Some(req.get_ref().client_id.trim()).filter(|c| !c.is_empty());
        let e = self
            .0
            .enroll_totp(Caller::Bearer(&bearer), client_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::EnrollTotpResponse {
            secret: e.secret,
            otpauth_uri: e.otpauth_uri,
            expires_in: e.expires_in,
        }))
    }

    async fn confirm_totp(
        &self,
        req: Request<pb::ConfirmTotpRequest>,
    ) -> Result<Response<pb::ConfirmTotpResponse>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let codes = self
            .0
            .confirm_totp(Caller::Bearer(&bearer), &req.get_ref().code)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ConfirmTotpResponse {
            recovery_codes: codes.map(|c| c.0).unwrap_or_default(),
        }))
    }

    async fn remove_totp(
        &self,
        req: Request<pb::RemoveTotpRequest>,
    ) -> Result<Response<pb::Factors>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let password = Reauthentication::new(req.into_inner().password).map_err(status)?;
        let f = self
            .0
            .remove_totp(Caller::Bearer(&bearer), password)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::factors(f)))
    }

    async fn regenerate_recovery_codes(
        &self,
        req: Request<pb::RegenerateRecoveryCodesRequest>,
    ) -> Result<Response<pb::ConfirmTotpResponse>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let password = Reauthentication::new(req.into_inner().password).map_err(status)?;
        let codes = self
            .0
            .regenerate_recovery_codes(Caller::Bearer(&bearer), password)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ConfirmTotpResponse {
            recovery_codes: codes.0,
        }))
    }

    async fn start_passkey_registration(
        &self,
        req: Request<pb::StartPasskeyRegistrationRequest>,
    ) -> Result<Response<pb::StartPasskeyRegistrationResponse>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let options_json = self
            .0
            .start_passkey_registration(
                Caller::Bearer(&bearer),
                &req.get_ref().name,
                Reauthentication::new(req.get_ref().password.clone()).map_err(status)?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::StartPasskeyRegistrationResponse {
            options_json,
        }))
    }

    async fn start_passkey_sign_in(
        &self,
        _req: Request<pb::StartPasskeySignInRequest>,
    ) -> Result<Response<pb::StartPasskeySignInResponse>, Status> {
        let c = self.0.start_passkey_sign_in().map_err(status)?;
        Ok(Response::new(pb::StartPasskeySignInResponse {
            options_json: c.options,
            state: c.state,
            expires_in: c.expires_in,
        }))
    }

    async fn passkey_sign_in(
        &self,
        req: Request<pb::PasskeySignInRequest>,
    ) -> Result<Response<pb::AuthResponse>, Status> {
        let (md, _, m) = req.into_parts();
        let mut answer = PasskeyAssertion::new(&m.state, &m.credential_json).map_err(status)?;
        answer.context = convert::context(&md).map_err(status)?;
        let out = self.0.sign_in_with_passkey(answer).await.map_err(status)?;
        Ok(Response::new(convert::auth_response(out)))
    }

    async fn finish_passkey_registration(
        &self,
        req: Request<pb::FinishPasskeyRegistrationRequest>,
    ) -> Result<Response<pb::FinishPasskeyRegistrationResponse>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let (passkey, codes) = self
            .0
            .finish_passkey_registration(Caller::Bearer(&bearer), &req.get_ref().credential_json)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::FinishPasskeyRegistrationResponse {
            passkey: Some(convert::passkey(passkey)),
            recovery_codes: codes.map(|c| c.0).unwrap_or_default(),
        }))
    }

    async fn list_passkeys(
        &self,
        req: Request<pb::ListPasskeysRequest>,
    ) -> Result<Response<pb::Passkeys>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let list = self
            .0
            .list_passkeys(Caller::Bearer(&bearer))
            .await
            .map_err(status)?;
        Ok(Response::new(convert::passkeys(list)))
    }

    async fn rename_passkey(
        &self,
        req: Request<pb::RenamePasskeyRequest>,
    ) -> Result<Response<pb::Passkeys>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let m = req.get_ref();
        let list = self
            .0
            .rename_passkey(Caller::Bearer(&bearer), &m.id, &m.name)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::passkeys(list)))
    }

    async fn remove_passkey(
        &self,
        req: Request<pb::RemovePasskeyRequest>,
    ) -> Result<Response<pb::Passkeys>, Status> {
        let bearer = convert::bearer(req.metadata()).map_err(status)?;
        let m = req.into_inner();
        let password = Reauthentication::new(m.password).map_err(status)?;
        let list = self
            .0
            .remove_passkey(Caller::Bearer(&bearer), &m.id, password)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::passkeys(list)))
    }
}
