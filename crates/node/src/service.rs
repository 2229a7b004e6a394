//! The `Identity` gRPC service: registration, login, refresh, logout, profile.
//!
//! Residency is enforced here: every request is checked against the region
//! that homes its user (the artifact's region tag, the home-region index, a
//! compliance pin) before anything is read or written.

use crate::{
    Clock, Entropy,
    audit::AuditLog,
    convert::{self, LoginInput, ProfileInput, RegisterInput},
    env::{random, random_u128},
    error::NodeError,
    hashing::HashPool,
    index::IndexAccess,
    keys::KeyRing,
};
use domicile_core::{
    RegionCode, UnixSeconds,
    email::Email,
    ids::{RefreshToken, SessionId, UserId, ulid_ms},
    index::{IdentifierKey, IndexEntry, IndexSecret, IndexState},
    password::{self, Verified},
    token::{AccessClaims, Expectations, TokenError},
    topology::Topology,
};
use domicile_proto::v1 as pb;
use domicile_store::{
    Applied, AuditKind, Claim, RefreshRecord, RegionStore, RevokeReason, SessionRecord, UserRecord,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Scope of first-party access tokens.
const SCOPE: &str = "openid profile email";
/// `client_id` of tokens issued through the first-party API.
const CLIENT_ID: &str = "domicile";
const BAD_LOGIN: &str = "invalid email or password";

pub struct IdentityCore {
    pub region: RegionCode,
    pub topology: Arc<Topology>,
    pub store: Arc<dyn RegionStore>,
    pub index: IndexAccess,
    pub secret: IndexSecret,
    /// Reloaded from the store periodically (rotation).
    pub keys: arc_swap::ArcSwap<KeyRing>,
    pub pool: HashPool,
    /// Verified against when the user does not exist, so unknown users cost
    /// as much as wrong passwords.
    pub dummy_hash: String,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub audit: AuditLog,
    /// Set when the node drains before exit: `/readyz` fails so the edge
    /// moves traffic away, while calls are still served.
    pub draining: std::sync::atomic::AtomicBool,
    pub metrics: Arc<crate::metrics::NodeMetrics>,
}

#[derive(Clone)]
pub struct IdentityService(pub Arc<IdentityCore>);

impl IdentityCore {
    fn now(&self) -> UnixSeconds {
        self.clock.now()
    }

    fn new_user_id(&self) -> UserId {
        UserId::new(
            &self.region,
            self.clock.now_ms(),
            random_u128(self.entropy.as_ref()),
        )
    }

    /// Where an email must live by compliance rule or the user's own choice;
    /// `None` when any region may take it (GeoIP and default are hints).
    fn required_region(
        &self,
        email: &Email,
        preference: Option<&str>,
    ) -> Result<Option<RegionCode>, NodeError> {
        if let Some(pinned) = self.topology.region_for_domain(email.domain()) {
            return Ok(Some(pinned.clone()));
        }
        match preference {
            None => Ok(None),
            Some(_) if !self.topology.federation.allow_region_preference => {
                Err(NodeError::Invalid(
                    "region_preference: this federation does not let users choose a region".into(),
                ))
            }
            Some(code) => match self.topology.known_region(code) {
                Some(r) => Ok(Some(r.clone())),
                None => Err(NodeError::Invalid(format!(
                    "region_preference: unknown region {code:?}"
                ))),
            },
        }
    }

    async fn hash(&self, password: String) -> Result<String, NodeError> {
        let params = self.topology.passwords.params;
        let salt = random::<16>(self.entropy.as_ref());
        self.pool
            .run("hash", move |scratch| {
                password::hash_with(&password, &params, salt, scratch)
            })
            .await?
            .map_err(|e| NodeError::Internal(e.to_string()))
    }

    async fn verify(&self, password: String, phc: String) -> Result<Verified, NodeError> {
        let policy = self.topology.passwords.params;
        self.pool
            .run("verify", move |scratch| {
                password::verify_with(&password, &phc, &policy, scratch)
            })
            .await?
            .map_err(|e| NodeError::Internal(e.to_string()))
    }

    pub async fn register(&self, input: RegisterInput) -> Result<pb::AuthResponse, NodeError> {
        if let Some(required) = self.required_region(&input.email, input.preference.as_deref())?
            && required != self.region
        {
            return Err(NodeError::WrongRegion(required));
        }
        let key = self.secret.email_key(&input.email);
        let user_id = self.new_user_id();
        let now = self.now();
        let pending = IndexEntry {
            region: self.region.clone(),
            user_id: user_id.clone(),
            state: IndexState::Pending,
            created_at: now,
            expires_at: Some(now + self.topology.index.claim_ttl_seconds),
        };
        // 1. Claim the identifier federation-wide (the uniqueness authority).
        if let Claim::Held(holder) = self.index.claim(&key, &pending).await? {
            return Err(if holder.region != self.region {
                NodeError::WrongRegion(holder.region)
            } else {
                NodeError::AlreadyExists("an account with this email already exists".into())
            });
        }
        match self.create_user(&key, &user_id, input).await {
            Ok(user) => {
                // 3. Make the claim permanent. If it was lost (the claim
                //    expired and another registration took it), undo.
                if !self.index.confirm(&key, &user_id).await? {
                    self.store.delete_identifier(&key, user_id.as_str()).await?;
                    self.store.delete_user(user_id.as_str()).await?;
                    return Err(NodeError::Aborted(
                        "registration took too long and lost its claim; try again".into(),
                    ));
                }
                let r = self.start_session(&user).await?;
                self.audit_event(&user.user_id, AuditKind::Registered, &r.session_id);
                Ok(r)
            }
            Err(e) => {
                // Give the identifier back; if this fails the claim expires.
                if let Err(release) = self.index.release(&key, &user_id).await {
                    tracing::warn!(error = %release, "could not release index claim; it will expire");
                }
                Err(e)
            }
        }
    }

    /// 2. Hash, then create the user and its regional identifier row.
    async fn create_user(
        &self,
        key: &IdentifierKey,
        user_id: &UserId,
        input: RegisterInput,
    ) -> Result<UserRecord, NodeError> {
        let password_hash = self.hash(input.password).await?;
        let now = self.now();
        let p = input.profile;
        let user = UserRecord {
            user_id: user_id.to_string(),
            email: input.email.as_str().to_owned(),
            email_verified: false,
            password_hash,
            given_name: p.given_name.unwrap_or_default(),
            family_name: p.family_name.unwrap_or_default(),
            display_name: p.display_name.unwrap_or_default(),
            locale: p.locale.unwrap_or_default(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        if let Applied::No(holder) = self.store.insert_identifier(key, user_id.as_str()).await? {
            // A row left by a registration that crashed before creating its
            // user may be taken over; a row with a live user may not.
            let orphan = self.store.get_user(&holder).await?.is_none();
            if !orphan
                || !self
                    .store
                    .replace_identifier(key, &holder, user_id.as_str())
                    .await?
                    .is_applied()
            {
                return Err(NodeError::AlreadyExists(
                    "an account with this email already exists".into(),
                ));
            }
        }
        if !self.store.insert_user(&user).await?.is_applied() {
            self.store.delete_identifier(key, user_id.as_str()).await?;
            return Err(NodeError::Internal("user id collision".into()));
        }
        Ok(user)
    }

    pub async fn login(&self, input: LoginInput) -> Result<pb::AuthResponse, NodeError> {
        let key = self.secret.email_key(&input.email);
        let user = match self.store.get_identifier(&key).await? {
            Some(id) => self.store.get_user(&id).await?,
            None => None,
        };
        let Some(user) = user else {
            // Not homed here: if the index homes the user elsewhere, say so
            // (the edge follows it); otherwise fail exactly like a wrong
            // password, after a hash of the same cost.
            if let Some(entry) = self.index.lookup(&key).await?
                && entry.region != self.region
                && entry.state == IndexState::Active
            {
                return Err(NodeError::WrongRegion(entry.region));
            }
            self.verify(input.password, self.dummy_hash.clone()).await?;
            return Err(NodeError::Unauthenticated(BAD_LOGIN.into()));
        };
        match self
            .verify(input.password.clone(), user.password_hash.clone())
            .await?
        {
            Verified::No => {
                self.audit
                    .record(&user.user_id, AuditKind::LoginFailed, None, String::new());
                Err(NodeError::Unauthenticated(BAD_LOGIN.into()))
            }
            Verified::Yes => self.login_session(&user).await,
            Verified::YesRehash => {
                let mut updated = user.clone();
                updated.password_hash = self.hash(input.password).await?;
                updated.version += 1;
                updated.updated_at = self.now();
                // Best effort: a concurrent update wins and the next login retries.
                self.store.update_user(&updated, user.version).await?;
                self.login_session(&updated).await
            }
        }
    }

    async fn login_session(&self, user: &UserRecord) -> Result<pb::AuthResponse, NodeError> {
        let r = self.start_session(user).await?;
        self.audit_event(&user.user_id, AuditKind::LoginSucceeded, &r.session_id);
        Ok(r)
    }

    fn audit_event(&self, user_id: &str, kind: AuditKind, session_id: &str) {
        self.audit
            .record(user_id, kind, Some(session_id), String::new());
    }

    async fn start_session(&self, user: &UserRecord) -> Result<pb::AuthResponse, NodeError> {
        let now = self.now();
        let session = SessionRecord {
            session_id: SessionId::new(
                &self.region,
                self.clock.now_ms(),
                random_u128(self.entropy.as_ref()),
            )
            .to_string(),
            user_id: user.user_id.clone(),
            created_at: now,
            expires_at: now + self.topology.tokens.session_ttl_seconds,
            revoked_at: None,
            revoked_reason: None,
        };
        if !self.store.insert_session(&session, now).await?.is_applied() {
            return Err(NodeError::Internal("session id collision".into()));
        }
        self.issue(user.user_id.clone(), &session).await
    }

    /// A new refresh token in `session` and an access token.
    async fn issue(
        &self,
        user_id: String,
        session: &SessionRecord,
    ) -> Result<pb::AuthResponse, NodeError> {
        let now = self.now();
        let token = RefreshToken::new(&self.region, random::<32>(self.entropy.as_ref()));
        let refresh_expires =
            (now + self.topology.tokens.refresh_ttl_seconds).min(session.expires_at);
        let record = RefreshRecord {
            token_hash: token.storage_hash(),
            session_id: session.session_id.clone(),
            user_id: user_id.clone(),
            issued_at: now,
            expires_at: refresh_expires,
            used_at: None,
        };
        if !self.store.insert_refresh(&record, now).await?.is_applied() {
            return Err(NodeError::Internal("refresh token collision".into()));
        }
        let ttl = self.topology.tokens.access_ttl_seconds;
        let fed = &self.topology.federation;
        let jti = ulid::Ulid::from_parts(ulid_ms(now, 0), random_u128(self.entropy.as_ref()));
        let claims = AccessClaims {
            iss: fed.issuer.clone(),
            sub: user_id.clone(),
            aud: fed.audience.clone(),
            exp: now + ttl,
            iat: now,
            nbf: now,
            jti: jti.to_string(),
            client_id: CLIENT_ID.into(),
            scope: SCOPE.into(),
            rgn: self.region.to_string(),
            sid: session.session_id.clone(),
        };
        Ok(pb::AuthResponse {
            user_id,
            region: self.region.to_string(),
            access_token: self.keys.load().sign(&claims, now)?,
            token_type: "Bearer".into(),
            expires_in: ttl,
            refresh_token: token.expose().to_owned(),
            refresh_expires_in: refresh_expires - now,
            session_id: session.session_id.clone(),
        })
    }

    fn check_artifact_region(&self, region: Option<RegionCode>) -> Result<(), NodeError> {
        match region {
            Some(r) if r != self.region => Err(NodeError::WrongRegion(r)),
            _ => Ok(()),
        }
    }

    pub async fn refresh(&self, token: RefreshToken) -> Result<pb::AuthResponse, NodeError> {
        self.check_artifact_region(token.region())?;
        let now = self.now();
        let invalid = || NodeError::Unauthenticated("refresh token is invalid or expired".into());
        let record = self
            .store
            .get_refresh(&token.storage_hash(), now)
            .await?
            .ok_or_else(invalid)?;
        let session = self
            .store
            .get_session(&record.session_id, now)
            .await?
            .ok_or_else(invalid)?;
        if session.revoked_at.is_some() {
            return Err(invalid());
        }
        let won = record.used_at.is_none()
            && self
                .store
                .mark_refresh_used(&record.token_hash, now)
                .await?
                .is_applied();
        if !won {
            // Reuse of a rotated token: someone else holds the family. End it.
            self.store
                .revoke_session(&session.session_id, now, RevokeReason::RefreshReuse)
                .await?;
            tracing::warn!(session = %session.session_id, "refresh token reuse; session revoked");
            self.audit_event(
                &session.user_id,
                AuditKind::RefreshReuse,
                &session.session_id,
            );
            return Err(NodeError::Unauthenticated(
                "refresh token was already used; the session has been revoked".into(),
            ));
        }
        self.issue(record.user_id, &session).await
    }

    /// Verifies a bearer access token issued by this region for a live session.
    async fn authorize(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<AccessClaims, NodeError> {
        let token = convert::bearer(metadata)?;
        let fed = &self.topology.federation;
        let want = Expectations {
            issuer: &fed.issuer,
            audience: &fed.audience,
            region: Some(&self.region),
        };
        let claims = self
            .keys
            .load()
            .verifier()
            .verify(&token, &want, self.now())
            .map_err(|e| match e {
                TokenError::ForeignRegion(r) if self.topology.region(&r).is_some() => {
                    NodeError::WrongRegion(r)
                }
                other => NodeError::Unauthenticated(other.to_string()),
            })?;
        let session = self.store.get_session(&claims.sid, self.now()).await?;
        match session {
            Some(s) if s.revoked_at.is_none() && s.user_id == claims.sub => Ok(claims),
            _ => Err(NodeError::Unauthenticated(
                "the session of this access token has ended".into(),
            )),
        }
    }

    pub async fn logout(
        &self,
        refresh: Option<RefreshToken>,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<pb::LogoutResponse, NodeError> {
        let now = self.now();
        let (session_id, user_id) = match refresh {
            Some(token) => {
                self.check_artifact_region(token.region())?;
                let record = self
                    .store
                    .get_refresh(&token.storage_hash(), now)
                    .await?
                    .ok_or_else(|| {
                        NodeError::Unauthenticated("refresh token is invalid or expired".into())
                    })?;
                (record.session_id, record.user_id)
            }
            None => {
                let claims = self.authorize(metadata).await?;
                (claims.sid, claims.sub)
            }
        };
        if self
            .store
            .revoke_session(&session_id, now, RevokeReason::Logout)
            .await?
            .is_applied()
        {
            self.audit_event(&user_id, AuditKind::Logout, &session_id);
        }
        Ok(pb::LogoutResponse { session_id })
    }

    async fn user(&self, claims: &AccessClaims) -> Result<UserRecord, NodeError> {
        self.store
            .get_user(&claims.sub)
            .await?
            .ok_or_else(|| NodeError::Unauthenticated("user no longer exists".into()))
    }

    pub async fn get_profile(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<pb::Profile, NodeError> {
        let claims = self.authorize(metadata).await?;
        Ok(self.profile(&self.user(&claims).await?))
    }

    pub async fn update_profile(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        change: ProfileInput,
    ) -> Result<pb::Profile, NodeError> {
        let claims = self.authorize(metadata).await?;
        // Optimistic concurrency: retry a few times on a concurrent update.
        for _ in 0..5 {
            let current = self.user(&claims).await?;
            let mut next = current.clone();
            let apply = |field: &mut String, v: &Option<String>| {
                if let Some(v) = v {
                    field.clone_from(v);
                }
            };
            apply(&mut next.given_name, &change.given_name);
            apply(&mut next.family_name, &change.family_name);
            apply(&mut next.display_name, &change.display_name);
            apply(&mut next.locale, &change.locale);
            next.version = current.version + 1;
            next.updated_at = self.now();
            if self
                .store
                .update_user(&next, current.version)
                .await?
                .is_applied()
            {
                let changed: Vec<&str> = [
                    ("given_name", current.given_name != next.given_name),
                    ("family_name", current.family_name != next.family_name),
                    ("display_name", current.display_name != next.display_name),
                    ("locale", current.locale != next.locale),
                ]
                .into_iter()
                .filter_map(|(name, differs)| differs.then_some(name))
                .collect();
                self.audit.record(
                    &next.user_id,
                    AuditKind::ProfileUpdated,
                    Some(&claims.sid),
                    format!("changed: {}", changed.join(", ")),
                );
                return Ok(self.profile(&next));
            }
        }
        Err(NodeError::Aborted(
            "the profile changed concurrently; try again".into(),
        ))
    }

    fn profile(&self, u: &UserRecord) -> pb::Profile {
        pb::Profile {
            user_id: u.user_id.clone(),
            region: self.region.to_string(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            given_name: u.given_name.clone(),
            family_name: u.family_name.clone(),
            display_name: u.display_name.clone(),
            locale: u.locale.clone(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[tonic::async_trait]
impl pb::identity_server::Identity for IdentityService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::AuthResponse>, Status> {
        let input = RegisterInput::try_from(req.into_inner())?;
        Ok(Response::new(self.0.register(input).await?))
    }

    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::AuthResponse>, Status> {
        let input = LoginInput::try_from(req.into_inner())?;
        Ok(Response::new(self.0.login(input).await?))
    }

    async fn refresh(
        &self,
        req: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::AuthResponse>, Status> {
        let token = convert::refresh_token(&req.get_ref().refresh_token)?;
        Ok(Response::new(self.0.refresh(token).await?))
    }

    async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let token = match req.get_ref().refresh_token.as_str() {
            "" => None,
            t => Some(convert::refresh_token(t)?),
        };
        Ok(Response::new(self.0.logout(token, req.metadata()).await?))
    }

    async fn get_profile(
        &self,
        req: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::Profile>, Status> {
        Ok(Response::new(self.0.get_profile(req.metadata()).await?))
    }

    async fn update_profile(
        &self,
        req: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::Profile>, Status> {
        let (metadata, _, body) = req.into_parts();
        let change = ProfileInput::try_from(body)?;
        Ok(Response::new(
            self.0.update_profile(&metadata, change).await?,
        ))
    }
}
