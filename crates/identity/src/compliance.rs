//! Compliance operations on one user, asked by an operator through the
//! Admin service: `export_user` (GDPR articles 15 and 20: one JSON
//! document of everything the home region holds, secrets left out),
//! `erase_user` (article 17: everything, index entries included, then a
//! tombstone without personal data and a signed receipt), `pin_user` /
//! `unpin_user` (a user who may not be moved), and `move_user` with its
//! target half `import_moved_user` (the user's records copied to another
//! region under a new id, the index switched, the source erased, a
//! receipt signed by both regions).
//!
//! A move and an erasure are journaled (`store::OperationRecord`, by the
//! user's id) before their first change and advanced after each durable
//! step, every step idempotent, so running the same operation again
//! finishes an interrupted one. Throughout a move the index names exactly
//! one region for the user: the source until the switch, the target after
//! it; the target's copy is inert until then (no identifier routes to
//! it, its id was never handed out).
//!
//! It does not authenticate operators (the node does, before calling) and
//! knows no transport: the target region is reached through
//! [`ports::Peers`](crate::ports::Peers).

use crate::{Identity, IdentityError, env::random};
use domicile_core::{
    RegionCode, UnixSeconds,
    ids::UserId,
    index::IdentifierKey,
    mfa,
    receipt::{Operation, Part, ReceiptClaims},
    residency,
};
use domicile_store::{
    AuditKind, AuditRecord, FactorsRecord, MovingMark, OperationRecord, OperationStep,
    SignInHistory, UserExport, UserPin, UserRecord,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// What a frozen account's callers are told to wait.
pub const MOVE_RETRY_SECONDS: i64 = 30;
/// The format of an export document.
pub const EXPORT_FORMAT: &str = "domicile.user-export/1";
/// The format of a move's bundle between regions.
pub const BUNDLE_FORMAT: &str = "domicile.move-bundle/1";
/// Longest pin reason.
pub const MAX_REASON: usize = 200;
/// Largest bundle a target reads.
pub const MAX_BUNDLE: usize = 4 << 20;

/// A signed receipt: every region's part, as signed, and what each says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub operation_id: String,
    /// Compact JWS parts (`typ: receipt+jwt`), the target's first.
    pub parts: Vec<String>,
    pub claims: Vec<ReceiptClaims>,
}

/// A moved user's records as the source hands them to the target, already
/// under the new id. Personal data: it travels only from the source's
/// nodes to the target's, over the internal network.
#[derive(Clone, Serialize, Deserialize)]
pub struct MoveBundle {
    pub format: String,
    pub operation_id: String,
    pub operator: String,
    pub from_region: String,
    pub old_user_id: String,
    pub new_user_id: String,
    pub started_at: UnixSeconds,
    pub user: UserRecord,
    /// Identifier keys (keyed hashes, hex) the user holds.
    pub identifiers: Vec<String>,
    /// The trail, events under the new id.
    pub audit: Vec<AuditRecord>,
    /// Second factors under the new id; the TOTP secret still sealed by
    /// the source (the target re-seals it).
    pub factors: Option<FactorsRecord>,
    pub history: Option<SignInHistory>,
}

impl std::fmt::Debug for MoveBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoveBundle")
            .field("operation_id", &self.operation_id)
            .field("old_user_id", &self.old_user_id)
            .field("new_user_id", &self.new_user_id)
            .field("identifiers", &self.identifiers.len())
            .field("audit", &self.audit.len())
            .finish_non_exhaustive()
    }
}

/// Records per table of one user's export (what an erasure deletes, or a
/// scan still finds). Tombstones (`moved_out`, `erased`) are not counted:
/// they are what is meant to remain.
pub fn table_counts(e: &UserExport) -> BTreeMap<String, u64> {
    let audit = e
        .audit
        .iter()
        .filter(|a| !matches!(a.kind, AuditKind::MovedOut | AuditKind::Erased))
        .count();
    BTreeMap::from([
        ("users".to_owned(), u64::from(e.user.is_some())),
        ("users_by_identifier".to_owned(), e.identifiers.len() as u64),
        ("sessions".to_owned(), e.sessions.len() as u64),
        (
            "refresh_tokens_by_session".to_owned(),
            e.refresh_tokens.len() as u64,
        ),
        ("audit_log".to_owned(), audit as u64),
        ("mfa_factors".to_owned(), u64::from(e.factors.is_some())),
        (
            "pending_sign_ins".to_owned(),
            e.pending_sign_ins.len() as u64,
        ),
        ("sign_in_history".to_owned(), u64::from(e.history.is_some())),
    ])
}

fn nonzero(counts: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    counts.into_iter().filter(|(_, n)| *n > 0).collect()
}

fn hex_key(s: &str) -> Result<IdentifierKey, IdentityError> {
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| IdentityError::invalid("bundle", "an identifier key is not hex"))?;
    IdentifierKey::from_slice(&bytes)
        .ok_or_else(|| IdentityError::invalid("bundle", "an identifier key is not 32 bytes"))
}

impl Identity {
    /// The user `user_id` names, homed here, as stored.
    async fn compliance_user(&self, user_id: &str) -> Result<(UserId, UserRecord), IdentityError> {
        let id = UserId::parse(user_id).map_err(|e| IdentityError::invalid("user_id", e))?;
        self.check_home(id.region(), "user_id")?;
        let user = self
            .store
            .get_user(id.as_str())
            .await?
            .ok_or_else(|| IdentityError::NoSuchUser(id.to_string()))?;
        Ok((id, user))
    }

    /// Appends `kind` to `user_id`'s trail now and durably (not through
    /// the queue: a tombstone must exist before its receipt does).
    async fn record_now(
        &self,
        user_id: &str,
        kind: AuditKind,
        detail: String,
    ) -> Result<(), IdentityError> {
        let (event_id, now) = self.audit.next_event_id();
        let event = AuditRecord {
            event_id,
            user_id: user_id.to_owned(),
            at: now,
            kind,
            session_id: None,
            detail,
            expires_at: now.saturating_add(self.topology.audit.retention_seconds),
        };
        Ok(self.store.append_audit(&[event]).await?)
    }

    fn new_operation_id(&self) -> String {
        format!(
            "op_{}_{}",
            self.region,
            ulid::Ulid::from_parts(self.clock.now_ms(), self.random_u128())
        )
    }

    /// `user` as it may be used now: as it is when no move touches it; a
    /// copy that arrived by a move once the index names it (the mark is
    /// taken off, once); `Moving` while it leaves or before it arrived.
    pub(crate) async fn settle(&self, user: UserRecord) -> Result<UserRecord, IdentityError> {
        let Some(mark) = &user.moving else {
            return Ok(user);
        };
        let moving = || IdentityError::Moving {
            retry_after: MOVE_RETRY_SECONDS,
        };
        if mark.new_user_id != user.user_id {
            return Err(moving());
        }
        let email = domicile_core::email::Email::parse(&user.email)
            .map_err(|e| IdentityError::internal("settle", e))?;
        match self.index.lookup(&self.secret.email_key(&email)).await? {
            Some(e) if e.user_id.as_str() == user.user_id => {
                match self.write_user(&user, |u| u.moving = None).await {
                    Ok(settled) => Ok(settled),
                    // Settled by another call meanwhile: read it back.
                    Err(IdentityError::Conflict(_)) => self
                        .store
                        .get_user(&user.user_id)
                        .await?
                        .filter(|u| u.moving.is_none())
                        .ok_or_else(moving),
                    Err(e) => Err(e),
                }
            }
            _ => Err(moving()),
        }
    }

    // ---- export ----

    /// Everything this region holds about `user_id`, as one JSON document
    /// (format [`EXPORT_FORMAT`]): the account, sessions and refresh
    /// tokens (times and clients, no token), second factors (names and
    /// times, no secret or public key), the sign-in history (countries,
    /// how many devices, the coarse last place), the audit trail, and how
    /// many identifier keys route to the user. Password hashes, sealed
    /// secrets and keyed hashes are left out.
    pub async fn export_user(&self, user_id: &str) -> Result<serde_json::Value, IdentityError> {
        let (id, _) = self.compliance_user(user_id).await?;
        let e = self.store.export_user(id.as_str()).await?;
        let Some(u) = &e.user else {
            return Err(IdentityError::NoSuchUser(id.to_string()));
        };
        let residency = self
            .topology
            .region(&self.region)
            .map(|r| r.residency.clone())
            .unwrap_or_default();
        let sessions: Vec<_> = e
            .sessions
            .iter()
            .map(|s| {
                json!({
                    "session_id": s.session_id,
                    "kind": if s.browser_hash.is_some() { "browser" }
                        else if s.client.is_some() { "app" } else { "first_party" },
                    "client_id": s.client.as_ref().map(|c| &c.client_id),
                    "scope": s.client.as_ref().map(|c| &c.scope),
                    "created_at": s.created_at,
                    "expires_at": s.expires_at,
                    "revoked_at": s.revoked_at,
                    "revoked_reason": s.revoked_reason,
                    "amr": s.amr,
                })
            })
            .collect();
        let refresh: Vec<_> = e
            .refresh_tokens
            .iter()
            .map(|r| {
                json!({
                    "session_id": r.session_id,
                    "issued_at": r.issued_at,
                    "expires_at": r.expires_at,
                    "used_at": r.used_at,
                })
            })
            .collect();
        let factors = e.factors.as_ref().map(|f| {
            json!({
                "authenticator_app": f.totp.as_ref().map(|t| json!({"enrolled_at": t.enrolled_at})),
                "recovery_codes_left": f.recovery_left(),
                "recovery_codes_generated_at": f.recovery_generated_at,
                "passkeys": f.passkeys.iter().map(|p| json!({
                    "name": p.name,
                    "created_at": p.created_at,
                    "last_used_at": p.last_used_at,
                })).collect::<Vec<_>>(),
            })
        });
        let history = e.history.as_ref().map(|h| {
            json!({
                "countries": h.countries,
                "devices": h.devices.len(),
                "last_location": h.last_location.map(|l| json!({
                    "latitude": l.latitude, "longitude": l.longitude,
                })),
                "last_located_at": h.last_located_at,
                "sign_ins": h.sign_ins,
            })
        });
        let audit: Vec<_> = e
            .audit
            .iter()
            .map(|a| {
                json!({
                    "event_id": a.event_id,
                    "at": a.at,
                    "kind": a.kind.as_str(),
                    "session_id": a.session_id,
                    "detail": a.detail,
                })
            })
            .collect();
        tracing::info!(region = %self.region, user_id = %id, "user export served");
        Ok(json!({
            "format": EXPORT_FORMAT,
            "region": self.region.as_str(),
            "residency": residency,
            "user_id": id.as_str(),
            "exported_at": self.now(),
            "account": {
                "email": u.email,
                "email_verified": u.email_verified,
                "pending_email": u.pending_email,
                "phone_number": u.phone,
                "pending_phone_number": u.pending_phone,
                "given_name": u.given_name,
                "family_name": u.family_name,
                "display_name": u.display_name,
                "locale": u.locale,
                "created_at": u.created_at,
                "updated_at": u.updated_at,
                "pinned": u.pin.as_ref().map(|p| json!({
                    "by": p.operator, "at": p.at, "reason": p.reason,
                })),
            },
            "identifier_keys": e.identifiers.len(),
            "sessions": sessions,
            "refresh_tokens": refresh,
            "second_factors": factors,
            "sign_in_history": history,
            "audit": audit,
        }))
    }

    // ---- pins ----

    /// Pins the user to this region: a move is refused until unpinned.
    /// `reason` is a reference (a ticket), no personal data. The pin, and
    /// whether this call set it (an existing pin is kept as it is).
    pub async fn pin_user(
        &self,
        user_id: &str,
        operator: &str,
        reason: &str,
    ) -> Result<(UserPin, bool), IdentityError> {
        let reason = reason.trim();
        if reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(IdentityError::invalid(
                "reason",
                format!("at most {MAX_REASON} bytes, no control characters"),
            ));
        }
        let (_, user) = self.compliance_user(user_id).await?;
        if let Some(pin) = &user.pin {
            return Ok((pin.clone(), false));
        }
        let pin = UserPin {
            operator: operator.to_owned(),
            at: self.now(),
            reason: reason.to_owned(),
        };
        let p = pin.clone();
        self.save_user(&user, |u| u.pin = Some(p)).await?;
        self.audit.record(
            &user.user_id,
            AuditKind::Pinned,
            None,
            format!("operator={operator} region={}", self.region),
        );
        Ok((pin, true))
    }

    /// Takes the user's pin off; `false` when there was none.
    pub async fn unpin_user(&self, user_id: &str, operator: &str) -> Result<bool, IdentityError> {
        let (_, user) = self.compliance_user(user_id).await?;
        if user.pin.is_none() {
            return Ok(false);
        }
        self.save_user(&user, |u| u.pin = None).await?;
        self.audit.record(
            &user.user_id,
            AuditKind::Unpinned,
            None,
            format!("operator={operator}"),
        );
        Ok(true)
    }

    /// Why `user` may not move to `to`, if a compliance rule says so: a
    /// pin, or an email-domain rule that homes the address elsewhere.
    fn move_refusal(&self, user: &UserRecord, to: &RegionCode) -> Option<String> {
        if let Some(pin) = &user.pin {
            return Some(format!(
                "the user is pinned to {} (by {} at {}{}): unpin first",
                self.region,
                pin.operator,
                pin.at,
                if pin.reason.is_empty() {
                    String::new()
                } else {
                    format!(", {}", pin.reason)
                }
            ));
        }
        let domain = user.email.rsplit_once('@').map(|(_, d)| d)?;
        let placement = residency::placement(&self.topology, Some(domain), None).ok()?;
        match placement.required() {
            Some(home) if home != to => {
                Some(format!("the email-domain rules pin {domain} to {home}"))
            }
            _ => None,
        }
    }

    // ---- erase ----

    /// Erases everything this region holds about `user_id`: its index
    /// entries, then every aggregate (sessions first), then leaves a
    /// tombstone (`erased`: the operator and the operation, nothing
    /// personal) and signs the receipt with the counts of what was
    /// deleted and what a scan still finds (nothing, for a clean one).
    /// Running it again after an interruption finishes it; after it
    /// finished, it returns the same receipt.
    pub async fn erase_user(
        &self,
        user_id: &str,
        operator: &str,
    ) -> Result<Receipt, IdentityError> {
        let id = UserId::parse(user_id).map_err(|e| IdentityError::invalid("user_id", e))?;
        self.check_home(id.region(), "user_id")?;
        let op = match self.store.get_operation(id.as_str()).await? {
            Some(op) if op.operation == Operation::Erase => op,
            Some(op) if op.step == OperationStep::Done => {
                return Err(IdentityError::Refused(format!(
                    "the user was moved to {} by operation {}; erase them there",
                    op.to_region.unwrap_or_default(),
                    op.operation_id
                )));
            }
            Some(op) => {
                return Err(IdentityError::Refused(format!(
                    "operation {} is moving the user to {}: finish it or call it off first",
                    op.operation_id,
                    op.to_region.unwrap_or_default()
                )));
            }
            None => {
                let (_, user) = self.compliance_user(id.as_str()).await?;
                // Not while it leaves, nor before it arrived.
                self.settle(user).await?;
                self.journal(OperationRecord {
                    operation_id: self.new_operation_id(),
                    operation: Operation::Erase,
                    user_id: id.to_string(),
                    new_user_id: None,
                    to_region: None,
                    operator: operator.to_owned(),
                    started_at: self.now(),
                    step: OperationStep::Started,
                    counts: nonzero(table_counts(&self.store.export_user(id.as_str()).await?)),
                    target_receipt: None,
                    receipt: None,
                    finished_at: None,
                    aborting: false,
                })
                .await?
            }
        };
        if op.operation != Operation::Erase {
            // A move journaled first, meanwhile.
            return Err(IdentityError::Moving {
                retry_after: MOVE_RETRY_SECONDS,
            });
        }
        if op.step == OperationStep::Done {
            return self.receipt_of(&op);
        }
        // The index first: from now on nothing routes to the user.
        if let Some(user) = self.store.get_user(id.as_str()).await? {
            for key in self.index_keys(&user, id.as_str()).await? {
                self.index.release(&key, &id).await?;
            }
        }
        self.store.erase_user(id.as_str()).await?;
        self.record_now(
            id.as_str(),
            AuditKind::Erased,
            format!("operator={} operation={}", op.operator, op.operation_id),
        )
        .await?;
        let done = self.finish_operation(op, Part::Source, &id).await?;
        tracing::info!(region = %self.region, user_id = %id, operation = %done.operation_id, "user erased");
        self.receipt_of(&done)
    }

    /// The index keys `user` may hold: every identifier row of the user,
    /// and the keys of a pending email or phone (claims in the index
    /// without a row here).
    async fn index_keys(
        &self,
        user: &UserRecord,
        user_id: &str,
    ) -> Result<Vec<IdentifierKey>, IdentityError> {
        let mut keys = self.store.export_identifiers(user_id).await?;
        if let Some(e) = user
            .pending_email
            .as_deref()
            .and_then(|e| domicile_core::email::Email::parse(e).ok())
        {
            keys.push(self.secret.email_key(&e));
        }
        if let Some(p) = &user.pending_phone {
            keys.push(self.secret.phone_key_e164(p));
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Journals `op`, or returns the journal already there for its user.
    async fn journal(&self, op: OperationRecord) -> Result<OperationRecord, IdentityError> {
        Ok(match self.store.start_operation(&op).await? {
            domicile_store::Applied::Yes => op,
            domicile_store::Applied::No(stored) => stored,
        })
    }

    /// Advances the journal to `op`.
    async fn advance(&self, op: &OperationRecord) -> Result<(), IdentityError> {
        if self.store.advance_operation(op).await?.is_applied() {
            Ok(())
        } else {
            Err(IdentityError::Refused(format!(
                "operation {} was changed by another run; run it again",
                op.operation_id
            )))
        }
    }

    /// The post-check, this region's signed part, and the journal done.
    async fn finish_operation(
        &self,
        mut op: OperationRecord,
        part: Part,
        id: &UserId,
    ) -> Result<OperationRecord, IdentityError> {
        let left = self.store.export_user(id.as_str()).await?;
        let remaining = table_counts(&left);
        let now = self.now();
        let claims = ReceiptClaims {
            operation_id: op.operation_id.clone(),
            operation: op.operation,
            part,
            region: self.region.to_string(),
            user_id: op.user_id.clone(),
            new_user_id: op.new_user_id.clone(),
            from_region: self.region.to_string(),
            to_region: op.to_region.clone(),
            operator: op.operator.clone(),
            started_at: op.started_at,
            iat: now,
            counts: op.counts.clone(),
            remaining,
        };
        op.receipt = Some(self.keys.load().sign_receipt(&claims, now)?);
        op.step = OperationStep::Done;
        op.finished_at = Some(now);
        self.advance(&op).await?;
        Ok(op)
    }

    /// The receipt of a finished operation, its parts verified against
    /// the keys this node knows (the target's part: by the JWKS the node
    /// does not hold, so only decoded; the CLI verifies every part).
    fn receipt_of(&self, op: &OperationRecord) -> Result<Receipt, IdentityError> {
        let parts: Vec<String> = op
            .target_receipt
            .iter()
            .chain(op.receipt.iter())
            .cloned()
            .collect();
        let claims = parts
            .iter()
            .map(|p| decode_part(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Receipt {
            operation_id: op.operation_id.clone(),
            parts,
            claims,
        })
    }

    // ---- move ----

    /// Moves `user_id` to region `to`, as [`move_user_until`] with no stop.
    ///
    /// [`move_user_until`]: Self::move_user_until
    pub async fn move_user(
        &self,
        user_id: &str,
        to: &str,
        operator: &str,
        authority: &str,
    ) -> Result<Receipt, IdentityError> {
        self.move_user_until(user_id, to, operator, authority, None)
            .await
    }

    /// Moves `user_id` to region `to` under a new id: journal it, freeze
    /// the account and end its sessions; copy its records to `to` (which
    /// signs for what it wrote); switch its index entries conditionally;
    /// erase it here, leaving a `moved_out` tombstone that names the new
    /// id; sign the receipt. Each step is durable before the next, and
    /// the same call finishes an interrupted move. Refused, naming the
    /// rule, for a pinned user or one whose email domain a rule homes
    /// elsewhere. `stop` ends the run right after that step (the crash
    /// tests' way to interrupt it where a crash could).
    pub async fn move_user_until(
        &self,
        user_id: &str,
        to: &str,
        operator: &str,
        authority: &str,
        stop: Option<OperationStep>,
    ) -> Result<Receipt, IdentityError> {
        let id = UserId::parse(user_id).map_err(|e| IdentityError::invalid("user_id", e))?;
        self.check_home(id.region(), "user_id")?;
        let to = self
            .topology
            .known_region(to)
            .cloned()
            .ok_or_else(|| IdentityError::invalid("to", format!("unknown region {to:?}")))?;
        if to == self.region {
            return Err(IdentityError::invalid("to", "the user lives there already"));
        }
        let mut op = match self.store.get_operation(id.as_str()).await? {
            Some(mut op) if op.operation == Operation::Move => {
                if op.aborting {
                    // An abort that met a switch already begun cannot
                    // finish: then the move must, and takes the mark off.
                    let new_id = op.new_user_id.clone().unwrap_or_default();
                    let keys = self.store.export_identifiers(id.as_str()).await?;
                    if !self.switch_begun(&keys, &new_id).await?
                        || !self
                            .store
                            .clear_abort(id.as_str(), &op.operation_id)
                            .await?
                            .is_applied()
                    {
                        return Err(IdentityError::Refused(format!(
                            "operation {} is being called off: run the abort again to finish that",
                            op.operation_id
                        )));
                    }
                    op.aborting = false;
                }
                if op.to_region.as_deref() != Some(to.as_str()) {
                    return Err(IdentityError::Refused(format!(
                        "operation {} moves the user to {}; run that move again to finish it",
                        op.operation_id,
                        op.to_region.unwrap_or_default()
                    )));
                }
                op
            }
            Some(op) => {
                return Err(IdentityError::Refused(format!(
                    "the user was erased by operation {}",
                    op.operation_id
                )));
            }
            None => self.start_move(&id, &to, operator).await?,
        };
        if op.step == OperationStep::Done {
            return self.receipt_of(&op);
        }
        let new_id = op
            .new_user_id
            .as_deref()
            .map(UserId::parse)
            .transpose()
            .map_err(|e| IdentityError::internal("move", e))?
            .ok_or_else(|| IdentityError::internal("move", "the journal has no new id"))?;
        if op.step == OperationStep::Started {
            // The rules again: a pin may have come since the journal.
            if let Some(user) = self.store.get_user(id.as_str()).await?
                && let Some(why) = self.move_refusal(&user, &to)
            {
                return Err(IdentityError::Refused(format!("move refused: {why}")));
            }
            self.freeze(&id, &op).await?;
            let mut bundle = self.bundle(&op, &id, &new_id).await?;
            // The target acts for whoever runs this step now.
            bundle.operator = operator.to_owned();
            let bytes = serde_json::to_vec(&bundle)
                .map_err(|e| IdentityError::internal("move bundle", e))?;
            let part = self.peers.import(&to, &bytes, authority).await?;
            let claims = decode_part(&part)?;
            if claims.operation_id != op.operation_id
                || claims.part != Part::Target
                || claims.region != to.as_str()
            {
                return Err(IdentityError::internal(
                    "move",
                    "the target signed another operation",
                ));
            }
            op.target_receipt = Some(part);
            op.step = OperationStep::Copied;
            self.advance(&op).await?;
        }
        if stop == Some(OperationStep::Copied) {
            return Err(IdentityError::internal("move", "stopped after the copy"));
        }
        if op.step == OperationStep::Copied {
            // The user's row is still here until the erasure below.
            if let Some(user) = self.store.get_user(id.as_str()).await? {
                for key in self.store.export_identifiers(id.as_str()).await? {
                    if self.index.switch(&key, &id, &new_id).await? {
                        continue;
                    }
                    // Not switched: a region-local row (a passkey handle)
                    // has no entry, and is forwarded to the target (its
                    // tag names this region); any other holder is a fault
                    // to stop at.
                    if let Some(e) = self.index.lookup(&key).await? {
                        return Err(IdentityError::internal(
                            "move",
                            format!(
                                "the index names {} for an identifier of the user",
                                e.user_id
                            ),
                        ));
                    }
                    self.store.forward_identifier(&key, to.as_str()).await?;
                }
                // A pending change's claim is not carried: released.
                for key in self.index_keys(&user, id.as_str()).await? {
                    self.index.release(&key, &id).await?;
                }
            }
            op.step = OperationStep::Switched;
            self.advance(&op).await?;
        }
        if stop == Some(OperationStep::Switched) {
            return Err(IdentityError::internal("move", "stopped after the switch"));
        }
        // Erase: the identifier rows and sessions first…
        self.store.erase_identifiers(id.as_str()).await?;
        self.store.erase_sessions(id.as_str()).await?;
        if stop == Some(OperationStep::Done) {
            return Err(IdentityError::internal(
                "move",
                "stopped during the erasure",
            ));
        }
        // …then everything else, the tombstone, the receipt.
        self.store.erase_user(id.as_str()).await?;
        self.record_now(
            id.as_str(),
            AuditKind::MovedOut,
            format!(
                "to={to} new_user_id={new_id} operation={} operator={}",
                op.operation_id, op.operator
            ),
        )
        .await?;
        let done = self.finish_operation(op, Part::Source, &id).await?;
        tracing::info!(region = %self.region, user_id = %id, to = %to, new_user_id = %new_id, operation = %done.operation_id, "user moved");
        self.receipt_of(&done)
    }

    /// Calls off `user_id`'s move before its index switch: the target
    /// deletes its arriving copy, the account thaws here (sessions stay
    /// ended), the journal goes, and `move_aborted` is audited. After the
    /// switch the move can only be finished (run it again). Returns the
    /// aborted operation's id.
    pub async fn abort_move(
        &self,
        user_id: &str,
        operator: &str,
        authority: &str,
    ) -> Result<String, IdentityError> {
        let id = UserId::parse(user_id).map_err(|e| IdentityError::invalid("user_id", e))?;
        self.check_home(id.region(), "user_id")?;
        let Some(mut op) = self.store.get_operation(id.as_str()).await? else {
            return Err(IdentityError::Refused("the user is in no move".into()));
        };
        let past_switch = || {
            IdentityError::Refused(format!(
                "operation {} is past its index switch (or is no move): run it again to finish it",
                op.operation_id
            ))
        };
        if op.operation != Operation::Move || op.step >= OperationStep::Switched {
            return Err(past_switch());
        }
        let to = op
            .to_region
            .as_deref()
            .and_then(|r| self.topology.known_region(r).cloned())
            .ok_or_else(|| IdentityError::internal("abort move", "the journal names no region"))?;
        let new_id = op.new_user_id.clone().unwrap_or_default();
        let keys = self.store.export_identifiers(id.as_str()).await?;
        if !op.aborting {
            // A switch that began (a run cut off inside it) is finished,
            // not undone.
            if self.switch_begun(&keys, &new_id).await? {
                return Err(past_switch());
            }
            // From here no run advances the move: `move` refuses it.
            let mut marked = op.clone();
            marked.aborting = true;
            if !self.store.advance_operation(&marked).await?.is_applied() {
                return Err(IdentityError::Refused(format!(
                    "operation {} changed meanwhile; look again",
                    op.operation_id
                )));
            }
            op = marked;
        }
        self.peers
            .discard(&to, &new_id, &op.operation_id, authority)
            .await?;
        for key in &keys {
            self.store.unforward_identifier(key, to.as_str()).await?;
        }
        if let Some(user) = self.store.get_user(id.as_str()).await?
            && user
                .moving
                .as_ref()
                .is_some_and(|m| m.operation_id == op.operation_id)
        {
            self.write_user(&user, |u| u.moving = None).await?;
        }
        self.record_now(
            id.as_str(),
            AuditKind::MoveAborted,
            format!("operator={operator} operation={}", op.operation_id),
        )
        .await?;
        if !self
            .store
            .drop_operation(id.as_str(), &op.operation_id)
            .await?
            .is_applied()
        {
            return Err(IdentityError::Refused(format!(
                "operation {} changed meanwhile; look again",
                op.operation_id
            )));
        }
        tracing::info!(region = %self.region, user_id = %id, operation = %op.operation_id, "move aborted");
        Ok(op.operation_id)
    }

    /// Whether the index names `new_id` for any of `keys` (a move's
    /// switch began: it can only be finished).
    async fn switch_begun(
        &self,
        keys: &[IdentifierKey],
        new_id: &str,
    ) -> Result<bool, IdentityError> {
        for key in keys {
            if self
                .index
                .lookup(key)
                .await?
                .is_some_and(|e| e.user_id.as_str() == new_id)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The target's half of an abort: deletes the arriving copy
    /// `new_user_id` of `operation_id`, which nothing routes to (refused
    /// if the index names it, or if it is not that move's copy).
    pub async fn discard_moved_user(
        &self,
        new_user_id: &str,
        operation_id: &str,
    ) -> Result<(), IdentityError> {
        let id =
            UserId::parse(new_user_id).map_err(|e| IdentityError::invalid("new_user_id", e))?;
        self.check_home(id.region(), "new_user_id")?;
        let Some(user) = self.store.get_user(id.as_str()).await? else {
            // Never imported, or discarded already: identifier rows of a
            // refused import are checked before the row is written.
            return Ok(());
        };
        let arriving = user
            .moving
            .as_ref()
            .is_some_and(|m| m.operation_id == operation_id && m.new_user_id == user.user_id);
        if !arriving {
            return Err(IdentityError::Refused(
                "the user is not this move's arriving copy".into(),
            ));
        }
        for key in self.store.export_identifiers(id.as_str()).await? {
            if let Some(e) = self.index.lookup(&key).await?
                && e.user_id == id
            {
                return Err(IdentityError::Refused(
                    "the index names the copy already: the move can only be finished".into(),
                ));
            }
        }
        self.store.erase_user(id.as_str()).await?;
        tracing::info!(region = %self.region, new_user_id = %id, operation = operation_id, "arriving copy discarded");
        Ok(())
    }

    /// Journals a new move of `id` to `to` after the rules allow it.
    async fn start_move(
        &self,
        id: &UserId,
        to: &RegionCode,
        operator: &str,
    ) -> Result<OperationRecord, IdentityError> {
        let (_, user) = self.compliance_user(id.as_str()).await?;
        // A user that arrived by a move leaves only once it has arrived.
        let user = self.settle(user).await?;
        if let Some(why) = self.move_refusal(&user, to) {
            return Err(IdentityError::Refused(format!("move refused: {why}")));
        }
        let now = self.now();
        let new_id = UserId::new(to, self.clock.now_ms(), self.random_u128());
        let op = self
            .journal(OperationRecord {
                operation_id: self.new_operation_id(),
                operation: Operation::Move,
                user_id: id.to_string(),
                new_user_id: Some(new_id.to_string()),
                to_region: Some(to.to_string()),
                operator: operator.to_owned(),
                started_at: now,
                step: OperationStep::Started,
                counts: nonzero(table_counts(&self.store.export_user(id.as_str()).await?)),
                target_receipt: None,
                receipt: None,
                finished_at: None,
                aborting: false,
            })
            .await?;
        if op.operation != Operation::Move || op.to_region.as_deref() != Some(to.as_str()) {
            return Err(IdentityError::Refused(format!(
                "operation {} runs on this user already",
                op.operation_id
            )));
        }
        Ok(op)
    }

    /// Freezes the account for `op` (no sign-in, no change) and ends every
    /// session; idempotent.
    async fn freeze(&self, id: &UserId, op: &OperationRecord) -> Result<(), IdentityError> {
        let user = self
            .store
            .get_user(id.as_str())
            .await?
            .ok_or_else(|| IdentityError::NoSuchUser(id.to_string()))?;
        let mark = MovingMark {
            operation_id: op.operation_id.clone(),
            to_region: op.to_region.clone().unwrap_or_default(),
            new_user_id: op.new_user_id.clone().unwrap_or_default(),
            started_at: op.started_at,
        };
        if user.moving.as_ref() != Some(&mark) {
            self.write_user(&user, |u| u.moving = Some(mark)).await?;
        }
        self.store.erase_sessions(id.as_str()).await?;
        Ok(())
    }

    /// The user's records under `new_id`, for the target.
    async fn bundle(
        &self,
        op: &OperationRecord,
        id: &UserId,
        new_id: &UserId,
    ) -> Result<MoveBundle, IdentityError> {
        let e = self.store.export_user(id.as_str()).await?;
        let mut user = e
            .user
            .ok_or_else(|| IdentityError::NoSuchUser(id.to_string()))?;
        let new = new_id.to_string();
        user.user_id = new.clone();
        // Arriving: the copy stays inert (no sign-in, no change) until the
        // index names it (`settle`).
        user.moving = Some(MovingMark {
            operation_id: op.operation_id.clone(),
            to_region: op.to_region.clone().unwrap_or_default(),
            new_user_id: new.clone(),
            started_at: op.started_at,
        });
        user.pin = None;
        // A pending change's claim stays behind (it is released).
        user.pending_email = None;
        user.pending_phone = None;
        user.version += 1;
        let audit = e
            .audit
            .into_iter()
            .map(|mut a| {
                a.user_id = new.clone();
                // Sessions do not move: the events keep no session id.
                a.session_id = None;
                a
            })
            .collect();
        let factors = e.factors.map(|mut f| {
            f.recovery_user_id = Some(f.recovery_user_id.take().unwrap_or(f.user_id.clone()));
            f.user_id = new.clone();
            f.pending_totp = None;
            f.pending_passkey = None;
            f.spent_challenges.clear();
            f
        });
        let history = e.history.map(|mut h| {
            h.user_id = new.clone();
            h
        });
        Ok(MoveBundle {
            format: BUNDLE_FORMAT.to_owned(),
            operation_id: op.operation_id.clone(),
            operator: op.operator.clone(),
            from_region: self.region.to_string(),
            old_user_id: id.to_string(),
            new_user_id: new,
            started_at: op.started_at,
            user,
            identifiers: e.identifiers.iter().map(IdentifierKey::to_hex).collect(),
            audit,
            factors,
            history,
        })
    }

    /// The target's half of a move: checks the bundle (its format, the new
    /// id of this region, the old of another, the operator the caller is),
    /// writes every record (idempotently), re-seals the TOTP secret under
    /// this region's key, records `moved_in`, and signs what it wrote.
    pub async fn import_moved_user(
        &self,
        bytes: &[u8],
        operator: &str,
    ) -> Result<String, IdentityError> {
        if bytes.len() > MAX_BUNDLE {
            return Err(IdentityError::invalid("bundle", "too large"));
        }
        let b: MoveBundle = serde_json::from_slice(bytes)
            .map_err(|_| IdentityError::invalid("bundle", "malformed JSON"))?;
        if b.format != BUNDLE_FORMAT {
            return Err(IdentityError::invalid("bundle", "unknown format"));
        }
        if b.operator != operator {
            return Err(IdentityError::invalid(
                "bundle",
                "the move was asked by another operator",
            ));
        }
        let new_id =
            UserId::parse(&b.new_user_id).map_err(|e| IdentityError::invalid("bundle", e))?;
        let old_id =
            UserId::parse(&b.old_user_id).map_err(|e| IdentityError::invalid("bundle", e))?;
        self.check_home(new_id.region(), "new_user_id")?;
        let from =
            RegionCode::parse(&b.from_region).map_err(|e| IdentityError::invalid("bundle", e))?;
        if old_id.region() != &from || from == self.region || self.topology.region(&from).is_none()
        {
            return Err(IdentityError::invalid(
                "bundle",
                "the old id is not of another region of the federation",
            ));
        }
        let records_of = |id: &str| id == b.new_user_id;
        if !records_of(&b.user.user_id)
            || !b.audit.iter().all(|a| records_of(&a.user_id))
            || !b.factors.iter().all(|f| records_of(&f.user_id))
            || !b.history.iter().all(|h| records_of(&h.user_id))
        {
            return Err(IdentityError::invalid(
                "bundle",
                "a record is not under the new id",
            ));
        }
        let keys = b
            .identifiers
            .iter()
            .map(|k| hex_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        match &b.user.moving {
            Some(m) if m.new_user_id == b.new_user_id && m.operation_id == b.operation_id => {}
            _ => {
                return Err(IdentityError::invalid(
                    "bundle",
                    "the user is not marked as arriving by this operation",
                ));
            }
        }
        // The residency rules hold here as at registration.
        let email = domicile_core::email::Email::parse(&b.user.email)
            .map_err(|e| IdentityError::invalid("bundle", e))?;
        self.check_placement(&email, None)?;
        // Everything that can refuse is checked before anything is
        // written: no partial copy of a refused bundle stays here.
        let taken = || {
            IdentityError::Refused(
                "an identifier of the user is held by another user of the target region".into(),
            )
        };
        for key in &keys {
            if let Some(holder) = self.store.get_identifier(key).await?
                && holder != new_id.as_str()
            {
                return Err(taken());
            }
        }
        let mut factors = b.factors.clone();
        if let Some(t) = factors.as_mut().and_then(|f| f.totp.as_mut()) {
            let secret = mfa::open(&self.factor_key_of(&from), old_id.as_str(), &t.sealed)
                .map_err(|e| IdentityError::internal("move totp", e))?;
            t.sealed = mfa::seal(
                &self.factor_key(),
                random::<12>(self.entropy.as_ref()),
                new_id.as_str(),
                &secret,
            )
            .map_err(|e| IdentityError::internal("move totp", e))?;
        }
        // The user row first (inert: marked arriving, no identifier routes
        // to it yet), then what hangs off it. A row that is not this
        // operation's arriving copy (a settled user, another user) is
        // never overwritten.
        if !self
            .store
            .import_user_record(&b.user, &b.operation_id)
            .await?
            .is_applied()
        {
            return Err(IdentityError::Refused(
                "the target holds this user id already, and not as this move's arriving copy"
                    .into(),
            ));
        }
        for key in &keys {
            if let domicile_store::Applied::No(holder) =
                self.store.insert_identifier(key, new_id.as_str()).await?
                && holder != new_id.as_str()
            {
                return Err(taken());
            }
        }
        self.store.append_audit(&b.audit).await?;
        let mut counts = BTreeMap::from([
            ("users".to_owned(), 1),
            ("users_by_identifier".to_owned(), keys.len() as u64),
            ("audit_log".to_owned(), b.audit.len() as u64),
        ]);
        if let Some(f) = &factors {
            self.store.import_factors(f).await?;
            counts.insert("mfa_factors".into(), 1);
        }
        if let Some(h) = &b.history {
            self.store.import_history(h).await?;
            counts.insert("sign_in_history".into(), 1);
        }
        // The arrival, once per operation (an event id of its own).
        let arrived = self
            .store
            .audit_for_user(new_id.as_str(), crate::audit::MAX_TRAIL as usize)
            .await?
            .iter()
            .any(|a| a.kind == AuditKind::MovedIn && a.detail.contains(&b.operation_id));
        if !arrived {
            self.record_now(
                new_id.as_str(),
                AuditKind::MovedIn,
                format!(
                    "from={from} old_user_id={old_id} operation={} operator={}",
                    b.operation_id, b.operator
                ),
            )
            .await?;
        }
        let now = self.now();
        let claims = ReceiptClaims {
            operation_id: b.operation_id.clone(),
            operation: Operation::Move,
            part: Part::Target,
            region: self.region.to_string(),
            user_id: old_id.to_string(),
            new_user_id: Some(new_id.to_string()),
            from_region: from.to_string(),
            to_region: Some(self.region.to_string()),
            operator: b.operator.clone(),
            started_at: b.started_at,
            iat: now,
            counts,
            remaining: BTreeMap::new(),
        };
        tracing::info!(region = %self.region, new_user_id = %new_id, operation = %b.operation_id, "moved user imported");
        self.keys.load().sign_receipt(&claims, now)
    }
}

/// The claims of a receipt part of this region's own journal (not
/// verified: verifiers use `KeySet::verify_receipt`).
fn decode_part(jws: &str) -> Result<ReceiptClaims, IdentityError> {
    domicile_core::receipt::unverified_claims(jws)
        .map_err(|e| IdentityError::internal("receipt", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table holding a user's data is counted by an export (or is
    /// the per-user list of one that is): a new user table that the
    /// export, erasure and move do not know fails here.
    #[test]
    fn every_user_table_is_counted() {
        let empty = UserExport {
            user: None,
            identifiers: vec![],
            sessions: vec![],
            refresh_tokens: vec![],
            audit: vec![],
            factors: None,
            pending_sign_ins: vec![],
            history: None,
        };
        let counted = table_counts(&empty);
        // The per-user lists that an export reads through.
        let lists = ["identifiers_by_user", "sessions_by_user"];
        for (table, role) in domicile_store::TABLE_ROLES {
            if *role == domicile_store::TableRole::User && !lists.contains(table) {
                assert!(counted.contains_key(*table), "{table} is not counted");
            }
        }
        for table in counted.keys() {
            assert!(
                domicile_store::TABLE_ROLES
                    .iter()
                    .any(|(t, r)| t == table && *r == domicile_store::TableRole::User),
                "{table} is counted but is no user table"
            );
        }
    }

    #[test]
    fn identifier_keys_round_trip_through_hex_and_refuse_the_rest() {
        let k = IdentifierKey([0xab; 32]);
        assert_eq!(hex_key(&k.to_hex()).unwrap(), k);
        for bad in ["", "zz", &"ab".repeat(31), &"ab".repeat(33), "é"] {
            assert!(hex_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bundles_do_not_print_personal_data() {
        let b = MoveBundle {
            format: BUNDLE_FORMAT.into(),
            operation_id: "op_eu_1".into(),
            operator: "ada".into(),
            from_region: "eu".into(),
            old_user_id: "usr_eu_1".into(),
            new_user_id: "usr_us_1".into(),
            started_at: 1,
            user: UserRecord {
                user_id: "usr_us_1".into(),
                email: "grace@example.net".into(),
                email_verified: true,
                password_hash: "$argon2id$secret".into(),
                given_name: "Grace".into(),
                family_name: String::new(),
                display_name: String::new(),
                locale: String::new(),
                pending_email: None,
                phone: Some("+15555550100".into()),
                pending_phone: None,
                pin: None,
                moving: None,
                created_at: 1,
                updated_at: 1,
                version: 1,
            },
            identifiers: vec![],
            audit: vec![],
            factors: None,
            history: None,
        };
        let shown = format!("{b:?}");
        for secret in ["grace", "argon2", "Grace", "+1555"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
