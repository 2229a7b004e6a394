//! The conformance suite: the semantics every backend must honour, run
//! against each backend by this crate's tests (embedded always; Scylla when a
//! cluster is configured). Test support: it asserts, so it panics on failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::*;
use domicile_core::{RegionCode, ids::UserId, index::IndexState};

const NOW: UnixSeconds = 1_800_000_000;

fn key(n: u8) -> IdentifierKey {
    IdentifierKey([n; 32])
}

fn user(id: &str, version: u64) -> UserRecord {
    UserRecord {
        user_id: id.into(),
        email: format!("{id}@example.com"),
        email_verified: false,
        password_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA".into(),
        given_name: "Ada".into(),
        family_name: String::new(),
        display_name: String::new(),
        locale: "en".into(),
        created_at: NOW,
        updated_at: NOW,
        version,
    }
}

fn session(id: &str, expires_at: UnixSeconds) -> SessionRecord {
    SessionRecord {
        session_id: id.into(),
        user_id: "u1".into(),
        created_at: NOW,
        expires_at,
        revoked_at: None,
        revoked_reason: None,
    }
}

fn refresh(n: u8, expires_at: UnixSeconds) -> RefreshRecord {
    RefreshRecord {
        token_hash: [n; 32],
        session_id: "s1".into(),
        user_id: "u1".into(),
        issued_at: NOW,
        expires_at,
        used_at: None,
    }
}

/// Runs every region-store check against a fresh, empty store.
pub async fn region_store(store: &dyn RegionStore) {
    identifiers(store).await;
    users(store).await;
    sessions(store).await;
    refresh_tokens(store).await;
    signing_keys(store).await;
    audit(store).await;
    purge(store).await;
}

async fn identifiers(s: &dyn RegionStore) {
    assert_eq!(s.get_identifier(&key(1)).await.unwrap(), None);
    assert_eq!(
        s.insert_identifier(&key(1), "u1").await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.insert_identifier(&key(1), "u2").await.unwrap(),
        Applied::No("u1".into()),
        "IF NOT EXISTS keeps the first"
    );
    assert_eq!(
        s.get_identifier(&key(1)).await.unwrap().as_deref(),
        Some("u1")
    );
    assert_eq!(
        s.replace_identifier(&key(1), "u9", "u2").await.unwrap(),
        Applied::No(()),
        "IF user_id = wrong"
    );
    assert_eq!(
        s.replace_identifier(&key(1), "u1", "u2").await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.get_identifier(&key(1)).await.unwrap().as_deref(),
        Some("u2")
    );
    assert_eq!(
        s.delete_identifier(&key(1), "u1").await.unwrap(),
        Applied::No(())
    );
    assert_eq!(
        s.delete_identifier(&key(1), "u2").await.unwrap(),
        Applied::Yes
    );
    assert_eq!(s.get_identifier(&key(1)).await.unwrap(), None);
    assert_eq!(
        s.replace_identifier(&key(2), "u1", "u2").await.unwrap(),
        Applied::No(()),
        "absent rows are not created"
    );
}

async fn users(s: &dyn RegionStore) {
    let base = s.count_users().await.unwrap();
    assert_eq!(s.get_user("u1").await.unwrap(), None);
    assert_eq!(s.insert_user(&user("u1", 1)).await.unwrap(), Applied::Yes);
    let mut other = user("u1", 1);
    other.email = "intruder@example.com".into();
    assert_eq!(
        s.insert_user(&other).await.unwrap(),
        Applied::No(()),
        "IF NOT EXISTS"
    );
    assert_eq!(s.get_user("u1").await.unwrap(), Some(user("u1", 1)));
    let mut v2 = user("u1", 2);
    v2.given_name = "Grace".into();
    assert_eq!(
        s.update_user(&v2, 5).await.unwrap(),
        Applied::No(()),
        "stale version"
    );
    assert_eq!(s.update_user(&v2, 1).await.unwrap(), Applied::Yes);
    assert_eq!(
        s.update_user(&user("u1", 3), 1).await.unwrap(),
        Applied::No(()),
        "lost update prevented"
    );
    assert_eq!(s.get_user("u1").await.unwrap(), Some(v2));
    assert_eq!(
        s.update_user(&user("nobody", 2), 1).await.unwrap(),
        Applied::No(())
    );
    assert_eq!(s.count_users().await.unwrap(), base + 1);
    assert_eq!(
        s.insert_user(&user("u-gone", 1)).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(s.delete_user("u-gone").await.unwrap(), Applied::Yes);
    assert_eq!(s.delete_user("u-gone").await.unwrap(), Applied::No(()));
    assert_eq!(s.get_user("u-gone").await.unwrap(), None);
    assert_eq!(s.count_users().await.unwrap(), base + 1);
    let all = s.scan_users().await.unwrap();
    assert_eq!(all.len() as u64, base + 1);
    assert!(
        all.iter()
            .any(|u| u.user_id == "u1" && u.given_name == "Grace")
    );
}

async fn sessions(s: &dyn RegionStore) {
    assert_eq!(
        s.insert_session(&session("s1", NOW + 100), NOW)
            .await
            .unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.insert_session(&session("s1", NOW + 500), NOW)
            .await
            .unwrap(),
        Applied::No(())
    );
    assert_eq!(
        s.get_session("s1", NOW + 99)
            .await
            .unwrap()
            .map(|x| x.expires_at),
        Some(NOW + 100)
    );
    assert_eq!(
        s.get_session("s1", NOW + 100).await.unwrap(),
        None,
        "expired at its TTL"
    );
    assert_eq!(
        s.revoke_session("s1", NOW + 1, RevokeReason::RefreshReuse)
            .await
            .unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.revoke_session("s1", NOW + 2, RevokeReason::Logout)
            .await
            .unwrap(),
        Applied::Yes,
        "idempotent"
    );
    let got = s.get_session("s1", NOW + 3).await.unwrap().unwrap();
    assert_eq!(
        (got.revoked_at, got.revoked_reason),
        (Some(NOW + 1), Some(RevokeReason::RefreshReuse)),
        "first revocation stays"
    );
    assert_eq!(
        s.revoke_session("nope", NOW, RevokeReason::Logout)
            .await
            .unwrap(),
        Applied::No(())
    );
}

async fn refresh_tokens(s: &dyn RegionStore) {
    assert_eq!(
        s.insert_refresh(&refresh(1, NOW + 100), NOW).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.insert_refresh(&refresh(1, NOW + 100), NOW).await.unwrap(),
        Applied::No(())
    );
    assert_eq!(
        s.get_refresh(&[1; 32], NOW).await.unwrap(),
        Some(refresh(1, NOW + 100))
    );
    assert_eq!(s.get_refresh(&[2; 32], NOW).await.unwrap(), None);
    assert_eq!(
        s.mark_refresh_used(&[1; 32], NOW + 5).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.mark_refresh_used(&[1; 32], NOW + 6).await.unwrap(),
        Applied::No(()),
        "only one exchange wins"
    );
    assert_eq!(
        s.get_refresh(&[1; 32], NOW + 7)
            .await
            .unwrap()
            .unwrap()
            .used_at,
        Some(NOW + 5)
    );
    assert_eq!(
        s.get_refresh(&[1; 32], NOW + 100).await.unwrap(),
        None,
        "expired at its TTL"
    );
    assert_eq!(
        s.insert_refresh(&refresh(3, NOW + 10), NOW).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.mark_refresh_used(&[3; 32], NOW + 10).await.unwrap(),
        Applied::No(()),
        "expired tokens cannot be used"
    );
}

async fn signing_keys(s: &dyn RegionStore) {
    assert!(s.signing_keys().await.unwrap().is_empty());
    let k1 = SigningKeyRecord {
        kid: "eu-1".into(),
        seed: [1; 32],
        created_at: NOW,
        retire_at: None,
        not_before: None,
    };
    let k1b = SigningKeyRecord {
        seed: [2; 32],
        ..k1.clone()
    };
    assert_eq!(s.insert_signing_key(&k1).await.unwrap(), Applied::Yes);
    assert_eq!(
        s.insert_signing_key(&k1b).await.unwrap(),
        Applied::No(()),
        "a kid is never overwritten"
    );
    let k2 = SigningKeyRecord {
        kid: "eu-2".into(),
        seed: [3; 32],
        created_at: NOW + 1,
        retire_at: None,
        not_before: None,
    };
    assert_eq!(s.insert_signing_key(&k2).await.unwrap(), Applied::Yes);
    let mut keys = s.signing_keys().await.unwrap();
    keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    assert_eq!(keys, vec![k1, k2]);
}

fn event(user: &str, n: u8, kind: AuditKind, expires_at: UnixSeconds) -> AuditRecord {
    AuditRecord {
        // ULIDs of one millisecond sort by their random part: n orders them.
        event_id: format!("01JD00000000000000000000{n:02}"),
        user_id: user.into(),
        at: NOW,
        kind,
        session_id: Some("ses_eu_1".into()),
        detail: String::new(),
        expires_at,
    }
}

/// The store is region eu's (as every conformance run opens it).
async fn audit(s: &dyn RegionStore) {
    const A: &str = "usr_eu_01JD00000000000000000000AA";
    const B: &str = "usr_eu_01JD00000000000000000000BB";
    let first = vec![
        event(A, 1, AuditKind::Registered, NOW + 1000),
        event(B, 2, AuditKind::Registered, NOW + 1000),
        event(A, 3, AuditKind::LoginFailed, NOW + 1000),
    ];
    s.append_audit(&first).await.unwrap();
    s.append_audit(&[event(A, 4, AuditKind::Logout, NOW + 10)])
        .await
        .unwrap();
    // Appending the same event again changes nothing.
    s.append_audit(&first[..1]).await.unwrap();
    let kinds = |v: Vec<AuditRecord>| v.into_iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(
        kinds(s.audit_for_user(A, 10).await.unwrap()),
        [
            AuditKind::Logout,
            AuditKind::LoginFailed,
            AuditKind::Registered
        ],
        "newest first, only this user's"
    );
    assert_eq!(s.audit_for_user(A, 2).await.unwrap().len(), 2, "limit");
    assert_eq!(
        kinds(s.audit_for_user(B, 10).await.unwrap()),
        [AuditKind::Registered]
    );
    assert!(
        s.audit_for_user("usr_eu_nobody", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Another region's user is never written here.
    let foreign = event(
        "usr_us_01JD00000000000000000000CC",
        5,
        AuditKind::Registered,
        NOW + 1000,
    );
    assert!(s.append_audit(&[foreign]).await.is_err());
    assert!(
        s.audit_for_user("usr_us_01JD00000000000000000000CC", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.audit_for_user(A, 10).await.unwrap()[0],
        event(A, 4, AuditKind::Logout, NOW + 10)
    );
}

async fn purge(s: &dyn RegionStore) {
    s.insert_session(&session("p1", NOW + 10), NOW)
        .await
        .unwrap();
    s.insert_session(&session("p2", NOW + 1000), NOW)
        .await
        .unwrap();
    s.insert_refresh(&refresh(9, NOW + 10), NOW).await.unwrap();
    s.purge_expired(NOW + 50).await.unwrap();
    // At NOW + 50 expired rows are gone (embedded: swept) or invisible
    // (Scylla: filtered until the TTL removes them); live ones stay.
    assert_eq!(s.get_session("p1", NOW + 50).await.unwrap(), None);
    assert!(s.get_session("p2", NOW + 50).await.unwrap().is_some());
    assert_eq!(s.get_refresh(&[9; 32], NOW + 50).await.unwrap(), None);
    assert!(
        s.get_user("u1").await.unwrap().is_some(),
        "purge never touches users"
    );
}

fn entry(
    region: &str,
    user: &str,
    state: IndexState,
    expires_at: Option<UnixSeconds>,
) -> IndexEntry {
    IndexEntry {
        region: RegionCode::parse(region).unwrap(),
        user_id: UserId::parse(user).unwrap(),
        state,
        created_at: NOW,
        expires_at,
    }
}

const U_EU: &str = "usr_eu_01JD0000000000000000000001";
const U_US: &str = "usr_us_01JD0000000000000000000002";

/// Runs every index check against a fresh, empty index.
pub async fn index_store(ix: &dyn IndexStore) {
    let pending_eu = entry("eu", U_EU, IndexState::Pending, Some(NOW + 60));
    let pending_us = entry("us", U_US, IndexState::Pending, Some(NOW + 60));
    assert_eq!(ix.lookup(&key(1), NOW).await.unwrap(), None);
    assert_eq!(
        ix.claim(&key(1), &pending_eu, NOW).await.unwrap(),
        Claim::Applied
    );
    assert_eq!(
        ix.claim(&key(1), &pending_us, NOW + 1).await.unwrap(),
        Claim::Held(pending_eu.clone()),
        "a live claim holds"
    );
    assert_eq!(
        ix.claim(&key(1), &pending_eu, NOW + 1).await.unwrap(),
        Claim::Applied,
        "the same user may claim again"
    );
    assert_eq!(
        ix.confirm(&key(1), U_US, NOW + 2).await.unwrap(),
        Applied::No(()),
        "only the holder confirms"
    );
    assert_eq!(
        ix.confirm(&key(1), U_EU, NOW + 2).await.unwrap(),
        Applied::Yes
    );
    let active = entry("eu", U_EU, IndexState::Active, None);
    assert_eq!(
        ix.lookup(&key(1), NOW + 10_000).await.unwrap(),
        Some(active.clone()),
        "active entries do not expire"
    );
    assert_eq!(
        ix.claim(&key(1), &pending_us, NOW + 10_000).await.unwrap(),
        Claim::Held(active.clone())
    );
    assert_eq!(
        ix.claim(&key(1), &pending_eu, NOW + 10_000).await.unwrap(),
        Claim::Applied,
        "re-claiming your own active entry is a no-op"
    );
    assert_eq!(
        ix.lookup(&key(1), NOW).await.unwrap(),
        Some(active.clone()),
        "…and does not demote it"
    );

    // A claim orphaned by a crashed registration expires and can be taken.
    assert_eq!(
        ix.claim(&key(2), &pending_eu, NOW).await.unwrap(),
        Claim::Applied
    );
    assert_eq!(
        ix.lookup(&key(2), NOW + 60).await.unwrap(),
        None,
        "expired claims are invisible"
    );
    assert_eq!(
        ix.confirm(&key(2), U_EU, NOW + 60).await.unwrap(),
        Applied::No(()),
        "an expired claim cannot be confirmed"
    );
    let later_us = entry("us", U_US, IndexState::Pending, Some(NOW + 200));
    assert_eq!(
        ix.claim(&key(2), &later_us, NOW + 61).await.unwrap(),
        Claim::Applied
    );
    assert_eq!(ix.lookup(&key(2), NOW + 62).await.unwrap(), Some(later_us));

    assert_eq!(
        ix.release(&key(1), U_US).await.unwrap(),
        Applied::No(()),
        "only the holder releases"
    );
    assert_eq!(ix.release(&key(1), U_EU).await.unwrap(), Applied::Yes);
    assert_eq!(ix.lookup(&key(1), NOW).await.unwrap(), None);
    let scanned = ix.scan(NOW + 62).await.unwrap();
    assert_eq!(scanned.len(), 1);
    assert_eq!(scanned[0].0, key(2));
}
