//! The node's side of the residency rule, and the compliance reports.
//!
//! Before anything is read or written, every use case checks that the user
//! is homed in this region: an artifact's region tag ([`Identity::check_home`]),
//! the shared placement rule for new identifiers
//! (`domicile_core::residency::placement`, the same function the edge
//! routes with), or the index's answer. A user homed elsewhere gets
//! [`IdentityError::WrongRegion`]; nothing is read or written.
//!
//! The region report lists what this region stores, so a compliance team
//! can check that no other region's user is in it, and where the store
//! keeps it (a CQL keyspace's replication as the server reports it: only
//! the region's own datacenter may hold replicas).

use crate::{Identity, IdentityError};
use domicile_core::{
    RegionCode,
    email::Email,
    ids::UserId,
    index::{IdentifierKey, IndexState},
    receipt::{IndexClaims, MAX_LISTED, ResidencyClaims, STALE_MOVE_SECONDS},
    residency::{self, Placement},
    topology::StoreConfig,
};

/// What a region stores, for compliance.
#[derive(Clone, PartialEq, Eq)]
pub struct RegionReport {
    pub region: RegionCode,
    /// The region's residency label (EU, US, ...).
    pub residency: String,
    pub users: u64,
    /// Users whose id names another region (a residency violation).
    pub foreign_user_ids: Vec<String>,
    /// Every stored email, sorted, when asked for (personal data: the
    /// report is read on the region's internal address only).
    pub identifiers: Vec<String>,
    pub sessions: u64,
    /// Where the store keeps the data, as the backend reports it.
    pub placement: String,
    /// Why that placement breaks residency (replicas outside the region's
    /// datacenter); empty when it does not.
    pub placement_violations: Vec<String>,
}

impl std::fmt::Debug for RegionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionReport")
            .field("region", &self.region)
            .field("users", &self.users)
            .field("foreign_user_ids", &self.foreign_user_ids)
            .field("identifiers", &self.identifiers.len())
            .field("sessions", &self.sessions)
            .field("placement", &self.placement)
            .field("placement_violations", &self.placement_violations)
            .finish()
    }
}

/// A residency proof as signed, and what it says.
#[derive(Clone, Debug)]
pub struct Proof {
    pub jws: String,
    pub claims: ResidencyClaims,
}

impl Identity {
    /// Refuses an artifact (user id, token, session) of another region:
    /// `WrongRegion` for a region of the federation, `Invalid` (naming
    /// `field`) for one it does not have.
    pub(crate) fn check_home(
        &self,
        region: &RegionCode,
        field: &'static str,
    ) -> Result<(), IdentityError> {
        if region == &self.region {
            Ok(())
        } else if self.topology.region(region).is_some() {
            Err(IdentityError::WrongRegion {
                home: region.clone(),
            })
        } else {
            Err(IdentityError::invalid(
                field,
                format!("unknown region {region}"),
            ))
        }
    }

    /// Refuses a new identifier that the residency rule homes elsewhere, or
    /// a preference it cannot honour.
    pub(crate) fn check_placement(
        &self,
        email: &Email,
        preference: Option<&str>,
    ) -> Result<Placement, IdentityError> {
        let placement = residency::placement(&self.topology, Some(email.domain()), preference)
            .map_err(|e| IdentityError::invalid("region_preference", e))?;
        match placement.required() {
            Some(home) if home != &self.region => {
                Err(IdentityError::WrongRegion { home: home.clone() })
            }
            _ => Ok(placement),
        }
    }

    /// What this region stores: users (with any of another region), their
    /// emails when asked, sessions.
    pub async fn region_report(
        &self,
        include_identifiers: bool,
    ) -> Result<RegionReport, IdentityError> {
        let users = self.store.scan_users().await?;
        let foreign_user_ids = users
            .iter()
            .filter(|u| UserId::parse(&u.user_id).map_or(true, |id| id.region() != &self.region))
            .map(|u| u.user_id.clone())
            .collect();
        let mut identifiers: Vec<String> = if include_identifiers {
            users.iter().map(|u| u.email.clone()).collect()
        } else {
            Vec::new()
        };
        identifiers.sort();
        let placed = self.placed().await?;
        tracing::info!(region = %self.region, with_identifiers = include_identifiers, "residency report served");
        Ok(RegionReport {
            region: self.region.clone(),
            residency: placed.residency,
            users: users.len() as u64,
            foreign_user_ids,
            identifiers,
            sessions: self.store.count_sessions().await?,
            placement_violations: placed.violations,
            placement: placed.placement,
        })
    }

    /// The region's residency label, and where its store keeps the data
    /// with why that breaks residency (replicas outside the region's own
    /// datacenter; a local file has no datacenter and no replicas
    /// elsewhere).
    async fn placed(&self) -> Result<Placed, IdentityError> {
        let region = self.topology.region(&self.region);
        let own = match region.map(|r| &r.store) {
            Some(StoreConfig::Scylla(c)) => c.datacenter.clone(),
            _ => String::new(),
        };
        let placement = self.store.placement().await?;
        Ok(Placed {
            residency: region.map(|r| r.residency.clone()).unwrap_or_default(),
            violations: placement.violations(&own),
            placement: placement.to_string(),
        })
    }
}

/// What `placed` found.
struct Placed {
    residency: String,
    placement: String,
    violations: Vec<String>,
}

impl Identity {
    /// Scans this region's whole store and signs what it found
    /// (`docs/compliance.md`, residency proof): the users it homes and
    /// their id range; every record naming another region; identifier
    /// keys in the clear; every stored user's email and phone checked
    /// against the index (users in a move are counted apart); the store's
    /// placement; and, on the index host, the index's own count
    /// (`index`, from the caller). A compliance scan: its cost grows with
    /// the store (one index lookup per identifier), never on a request
    /// path.
    pub async fn residency_proof(
        &self,
        index: Option<crate::index::IndexReport>,
    ) -> Result<Proof, IdentityError> {
        let placed = self.placed().await?;
        let scan = self.store.residency_scan().await?;
        let mut users = self.store.scan_users().await?;
        users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        let mut claims = ResidencyClaims {
            region: self.region.to_string(),
            residency: placed.residency,
            iat: self.now(),
            users: users.len() as u64,
            first_user_id: users.first().map(|u| u.user_id.clone()).unwrap_or_default(),
            last_user_id: users.last().map(|u| u.user_id.clone()).unwrap_or_default(),
            rows_scanned: scan.rows,
            foreign_count: scan.foreign.len() as u64,
            foreign_records: scan.foreign.into_iter().take(MAX_LISTED).collect(),
            plaintext_keys: scan
                .keys
                .iter()
                .filter(|(_, k)| crate::index::looks_like_plaintext(k))
                .count() as u64,
            placement: placed.placement,
            placement_violations: placed.violations,
            index: index.map(|ix| IndexClaims {
                entries: ix.entries,
                active_by_region: ix.active_by_region.into_iter().collect(),
                pending: ix.pending,
                malformed: ix.malformed_keys,
                plaintext_keys: ix.plaintext_suspects,
            }),
            ..ResidencyClaims::default()
        };
        for u in &users {
            let mut keys: Vec<IdentifierKey> = Vec::new();
            // A stored address that does not parse has no key: unindexed.
            let mut all = match Email::parse(&u.email) {
                Ok(e) => {
                    keys.push(self.secret.email_key(&e));
                    true
                }
                Err(_) => false,
            };
            if let Some(p) = &u.phone {
                keys.push(self.secret.phone_key_e164(p));
            }
            let mut confirmed = 0;
            for key in keys {
                match self.index.lookup(&key).await? {
                    Some(e)
                        if e.user_id.as_str() == u.user_id
                            && e.region == self.region
                            && e.state == IndexState::Active =>
                    {
                        confirmed += 1;
                    }
                    _ => all = false,
                }
            }
            claims.indexed_identifiers += confirmed;
            match &u.moving {
                // Indexed here (a move before its switch, a copy that
                // arrived): as any user.
                _ if all => {}
                Some(m) if claims.iat - m.started_at > STALE_MOVE_SECONDS => {
                    claims.stale_moves += 1;
                }
                // The other side of a move in flight holds the index.
                Some(_) => claims.moving += 1,
                None => {
                    claims.unindexed_count += 1;
                    if claims.unindexed_users.len() < MAX_LISTED {
                        claims.unindexed_users.push(u.user_id.clone());
                    }
                }
            }
        }
        let jws = self.keys.load().sign_residency(&claims, claims.iat)?;
        tracing::info!(region = %self.region, findings = claims.findings().len(), "residency proof signed");
        Ok(Proof { jws, claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_do_not_print_identifiers() {
        let r = RegionReport {
            region: RegionCode::parse("eu").unwrap(),
            residency: "EU".into(),
            users: 1,
            foreign_user_ids: vec![],
            identifiers: vec!["ada@example.net".into()],
            sessions: 0,
            placement: "a local file".into(),
            placement_violations: vec![],
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("ada@"), "{shown}");
        assert!(shown.contains("identifiers: 1"), "{shown}");
    }
}
