//! The conformance suite: the semantics every backend must honour, run
//! against each backend by this crate's tests (embedded always; Scylla when a
//! cluster is configured). Test support: it asserts, so it panics on failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::*;
use async_trait::async_trait;
use domicile_core::{
    RegionCode, UnixSeconds,
    ids::UserId,
    index::{IdentifierKey, IndexEntry, IndexState},
    risk::{Location, Seen},
};
use std::sync::{Arc, Mutex};

const NOW: UnixSeconds = 1_800_000_000;

/// A user id of region eu (every conformance run opens region eu).
fn uid(n: u32) -> String {
    format!("usr_eu_01JD{n:022}")
}

/// A session id of region eu.
fn sid(n: u32) -> String {
    format!("ses_eu_01JD{n:022}")
}

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
        pending_email: None,
        phone: None,
        pending_phone: None,
        pin: None,
        moving: None,
        created_at: NOW,
        updated_at: NOW,
        version,
    }
}

fn session(id: &str, expires_at: UnixSeconds) -> SessionRecord {
    SessionRecord {
        session_id: id.into(),
        user_id: uid(1),
        created_at: NOW,
        expires_at,
        revoked_at: None,
        revoked_reason: None,
        client: None,
        browser_hash: None,
        browser_session: None,
        amr: Vec::new(),
    }
}

fn refresh(n: u8, expires_at: UnixSeconds) -> RefreshRecord {
    RefreshRecord {
        token_hash: [n; 32],
        session_id: sid(1),
        user_id: uid(1),
        issued_at: NOW,
        expires_at,
        used_at: None,
    }
}

/// Runs every region-store check against a fresh, empty store of region eu.
pub async fn region_store(store: &RegionStore) {
    identifiers(store).await;
    users(store).await;
    sessions(store).await;
    browser_sessions(store).await;
    refresh_tokens(store).await;
    signing_keys(store).await;
    audit(store).await;
    codes(store).await;
    one_time(store).await;
    factors(store).await;
    pending_sign_ins(store).await;
    history(store).await;
    passkeys(store).await;
    purge(store).await;
    foreign_records(store).await;
    export_and_erase(store).await;
    operations(store).await;
    keys_are_one_partition(store).await;
}

async fn identifiers(s: &RegionStore) {
    assert_eq!(s.get_identifier(&key(1)).await.unwrap(), None);
    assert_eq!(
        s.insert_identifier(&key(1), &uid(1)).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.insert_identifier(&key(1), &uid(2)).await.unwrap(),
        Applied::No(uid(1)),
        "IF NOT EXISTS keeps the first"
    );
    assert_eq!(
        s.get_identifier(&key(1)).await.unwrap().as_deref(),
        Some(uid(1).as_str())
    );
    assert_eq!(
        s.replace_identifier(&key(1), &uid(9), &uid(2))
            .await
            .unwrap(),
        Applied::No(()),
        "IF user_id = wrong"
    );
    assert_eq!(
        s.replace_identifier(&key(1), &uid(1), &uid(2))
            .await
            .unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.get_identifier(&key(1)).await.unwrap().as_deref(),
        Some(uid(2).as_str())
    );
    assert_eq!(
        s.delete_identifier(&key(1), &uid(1)).await.unwrap(),
        Applied::No(())
    );
    assert_eq!(
        s.delete_identifier(&key(1), &uid(2)).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(s.get_identifier(&key(1)).await.unwrap(), None);
    assert_eq!(
        s.replace_identifier(&key(2), &uid(1), &uid(2))
            .await
            .unwrap(),
        Applied::No(()),
        "absent rows are not created"
    );
}

async fn users(s: &RegionStore) {
    let base = s.count_users().await.unwrap();
    assert_eq!(s.get_user(&uid(1)).await.unwrap(), None);
    assert_eq!(
        s.insert_user(&user(&uid(1), 1)).await.unwrap(),
        Applied::Yes
    );
    let mut other = user(&uid(1), 1);
    other.email = "intruder@example.com".into();
    assert_eq!(
        s.insert_user(&other).await.unwrap(),
        Applied::No(()),
        "IF NOT EXISTS"
    );
    assert_eq!(s.get_user(&uid(1)).await.unwrap(), Some(user(&uid(1), 1)));
    let mut v2 = user(&uid(1), 2);
    v2.given_name = "Grace".into();
    assert_eq!(
        s.update_user(&v2, 5).await.unwrap(),
        Applied::No(()),
        "stale version"
    );
    assert_eq!(s.update_user(&v2, 1).await.unwrap(), Applied::Yes);
    assert_eq!(
        s.update_user(&user(&uid(1), 3), 1).await.unwrap(),
        Applied::No(()),
        "lost update prevented"
    );
    assert_eq!(s.get_user(&uid(1)).await.unwrap(), Some(v2));
    assert_eq!(
        s.update_user(&user(&uid(99), 2), 1).await.unwrap(),
        Applied::No(())
    );
    assert_eq!(s.count_users().await.unwrap(), base + 1);
    assert_eq!(
        s.insert_user(&user(&uid(3), 1)).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(s.delete_user(&uid(3)).await.unwrap(), Applied::Yes);
    assert_eq!(s.delete_user(&uid(3)).await.unwrap(), Applied::No(()));
    assert_eq!(s.get_user(&uid(3)).await.unwrap(), None);
    assert_eq!(s.count_users().await.unwrap(), base + 1);
    let all = s.scan_users().await.unwrap();
    assert_eq!(all.len() as u64, base + 1);
    assert!(
        all.iter()
            .any(|u| u.user_id == uid(1) && u.given_name == "Grace")
    );
}

async fn sessions(s: &RegionStore) {
    assert_eq!(
        s.insert_session(&session(&sid(1), NOW + 100), NOW)
            .await
            .unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.insert_session(&session(&sid(1), NOW + 500), NOW)
            .await
            .unwrap(),
        Applied::No(())
    );
    assert_eq!(
        s.get_session(&sid(1), NOW + 99)
            .await
            .unwrap()
            .map(|x| x.expires_at),
        Some(NOW + 100)
    );
    assert_eq!(
        s.get_session(&sid(1), NOW + 100).await.unwrap(),
        None,
        "expired at its TTL"
    );
    assert_eq!(
        s.revoke_session(&sid(1), NOW + 1, RevokeReason::RefreshReuse)
            .await
            .unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.revoke_session(&sid(1), NOW + 2, RevokeReason::Logout)
            .await
            .unwrap(),
        Applied::Yes,
        "idempotent"
    );
    let got = s.get_session(&sid(1), NOW + 3).await.unwrap().unwrap();
    assert_eq!(
        (got.revoked_at, got.revoked_reason),
        (Some(NOW + 1), Some(RevokeReason::RefreshReuse)),
        "first revocation stays"
    );
    assert_eq!(
        s.revoke_session(&sid(99), NOW, RevokeReason::Logout)
            .await
            .unwrap(),
        Applied::No(())
    );
}

/// A browser session and the client sessions started from it keep their
/// links; `live_sessions` lists a user's live sessions only.
async fn browser_sessions(s: &RegionStore) {
    let user = uid(90);
    let browser = SessionRecord {
        user_id: user.clone(),
        browser_hash: Some([4; 32]),
        ..session(&sid(90), NOW + 100)
    };
    let child = SessionRecord {
        user_id: user.clone(),
        browser_session: Some(sid(90)),
        ..session(&sid(91), NOW + 100)
    };
    let ended = SessionRecord {
        user_id: user.clone(),
        ..session(&sid(92), NOW + 100)
    };
    let short = SessionRecord {
        user_id: user.clone(),
        ..session(&sid(93), NOW + 10)
    };
    for r in [&browser, &child, &ended, &short] {
        assert_eq!(s.insert_session(r, NOW).await.unwrap(), Applied::Yes);
    }
    s.revoke_session(&sid(92), NOW, RevokeReason::Logout)
        .await
        .unwrap();
    assert_eq!(
        s.get_session(&sid(90), NOW).await.unwrap().as_ref(),
        Some(&browser)
    );
    let mut live: Vec<SessionRecord> = s.live_sessions(&user, NOW + 20).await.unwrap();
    live.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    assert_eq!(live, vec![browser, child], "neither revoked nor expired");
    assert!(s.live_sessions(&uid(91), NOW).await.unwrap().is_empty());
}

async fn refresh_tokens(s: &RegionStore) {
    assert_eq!(
        s.insert_refresh(&refresh(1, NOW + 100), NOW).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.insert_refresh(&refresh(1, NOW + 100), NOW).await.unwrap(),
        Applied::No(())
    );
    assert_eq!(
        s.get_refresh(&sid(1), &[1; 32], NOW).await.unwrap(),
        Some(refresh(1, NOW + 100))
    );
    assert_eq!(s.get_refresh(&sid(1), &[2; 32], NOW).await.unwrap(), None);
    assert_eq!(
        s.get_refresh(&sid(2), &[1; 32], NOW).await.unwrap(),
        None,
        "a token is found only in its own session"
    );
    let read = refresh(1, NOW + 100);
    assert_eq!(
        s.mark_refresh_used(&read, NOW + 5).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.mark_refresh_used(&read, NOW + 6).await.unwrap(),
        Applied::No(()),
        "only one exchange wins (the second caller read the token before the first spent it)"
    );
    assert_eq!(
        s.get_refresh(&sid(1), &[1; 32], NOW + 7)
            .await
            .unwrap()
            .unwrap()
            .used_at,
        Some(NOW + 5)
    );
    assert_eq!(
        s.get_refresh(&sid(1), &[1; 32], NOW + 100).await.unwrap(),
        None,
        "expired at its TTL"
    );
    assert_eq!(
        s.insert_refresh(&refresh(3, NOW + 10), NOW).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.mark_refresh_used(&refresh(3, NOW + 10), NOW + 10)
            .await
            .unwrap(),
        Applied::No(()),
        "expired tokens cannot be used"
    );
    // A caller's copy that differs from what is stored (another field, an
    // older format) is not trusted: the decision is made on the stored row.
    assert_eq!(
        s.insert_refresh(&refresh(4, NOW + 100), NOW).await.unwrap(),
        Applied::Yes
    );
    let stale = RefreshRecord {
        issued_at: NOW - 1,
        ..refresh(4, NOW + 100)
    };
    assert_eq!(
        s.mark_refresh_used(&stale, NOW + 1).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.get_refresh(&sid(1), &[4; 32], NOW + 2)
            .await
            .unwrap()
            .unwrap(),
        RefreshRecord {
            used_at: Some(NOW + 1),
            ..refresh(4, NOW + 100)
        },
        "the stored token is marked, not the caller's copy"
    );
}

async fn signing_keys(s: &RegionStore) {
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
async fn audit(s: &RegionStore) {
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

fn code(n: u8) -> CodeRecord {
    CodeRecord {
        code_hash: [n; 32],
        user_id: uid(70),
        session_id: sid(70),
        client_id: "app".into(),
        redirect_uri: "https://app.example.com/cb".into(),
        scope: "openid email".into(),
        nonce: Some("n-0S6".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        auth_time: NOW,
        issued_at: NOW,
        expires_at: NOW + 60,
        kept_until: NOW + 600,
        redeemed_at: None,
    }
}

/// A code is redeemed once; a replay or a late redemption is refused with
/// what the code was issued for; a dropped code is unknown.
async fn codes(s: &RegionStore) {
    let c = code(1);
    assert_eq!(
        s.redeem_code(&c.code_hash, NOW).await.unwrap(),
        Redemption::Unknown
    );
    assert_eq!(s.insert_code(&c, NOW).await.unwrap(), Applied::Yes);
    assert_eq!(
        s.insert_code(&c, NOW).await.unwrap(),
        Applied::No(()),
        "a kept code is never overwritten"
    );
    let redeemed = CodeRecord {
        redeemed_at: Some(NOW + 1),
        ..c.clone()
    };
    assert_eq!(
        s.redeem_code(&c.code_hash, NOW + 1).await.unwrap(),
        Redemption::First(redeemed.clone())
    );
    assert_eq!(
        s.redeem_code(&c.code_hash, NOW + 2).await.unwrap(),
        Redemption::Refused(redeemed),
        "a replay is refused, naming what the first redemption issued"
    );
    let late = code(2);
    s.insert_code(&late, NOW).await.unwrap();
    assert_eq!(
        s.redeem_code(&late.code_hash, NOW + 60).await.unwrap(),
        Redemption::Refused(late.clone()),
        "an expired code is refused"
    );
    assert_eq!(
        s.redeem_code(&late.code_hash, NOW + 600).await.unwrap(),
        Redemption::Unknown,
        "a code past kept_until is gone"
    );
}

/// One-time codes: one live code per user and purpose, accepted once,
/// wrong codes counted until the code is dead, expired ones refused, a new
/// one replacing the last, purposes kept apart, erased with the user.
async fn one_time(s: &RegionStore) {
    use crate::{OneTimeRecord, Presented, Purpose, Spend};
    let user = uid(95);
    let record = |n: u8, attempts: u32| OneTimeRecord {
        user_id: user.clone(),
        purpose: Purpose::VerifyEmail,
        code_hash: [n; 32],
        link_hash: [n + 100; 32],
        issued_at: NOW,
        expires_at: NOW + 600,
        attempts_left: attempts,
        used_at: None,
        subject: None,
    };
    let spend = |p: Purpose, presented: [u8; 32], link: bool, at: UnixSeconds| {
        let user = user.clone();
        async move {
            let h = presented;
            let presented = if link {
                Presented::Link(&h)
            } else {
                Presented::Code(&h)
            };
            s.spend_one_time(&user, p, presented, at).await.unwrap()
        }
    };
    let verify = Purpose::VerifyEmail;
    assert_eq!(
        spend(verify, [1; 32], false, NOW).await,
        Spend::Dead,
        "none issued"
    );
    s.put_one_time(&record(1, 3), NOW).await.unwrap();
    assert_eq!(
        spend(Purpose::SignIn, [1; 32], false, NOW).await,
        Spend::Dead,
        "another purpose's code"
    );
    assert_eq!(
        spend(verify, [9; 32], false, NOW).await,
        Spend::Wrong { attempts_left: 2 }
    );
    assert_eq!(
        spend(verify, [101; 32], false, NOW).await,
        Spend::Wrong { attempts_left: 1 },
        "the link's hash is not the code's"
    );
    match spend(verify, [1; 32], false, NOW + 1).await {
        Spend::Accepted(r) => assert_eq!(r.used_at, Some(NOW + 1)),
        other => panic!("the right code: {other:?}"),
    }
    assert_eq!(
        spend(verify, [1; 32], false, NOW + 2).await,
        Spend::Dead,
        "single use"
    );
    // Out of attempts: dead even for the right code.
    s.put_one_time(&record(2, 2), NOW).await.unwrap();
    assert_eq!(
        spend(verify, [9; 32], false, NOW).await,
        Spend::Wrong { attempts_left: 1 }
    );
    assert_eq!(
        spend(verify, [9; 32], false, NOW).await,
        Spend::Wrong { attempts_left: 0 }
    );
    assert_eq!(spend(verify, [2; 32], false, NOW).await, Spend::Dead);
    // A new code replaces the last; the link works once; expiry.
    s.put_one_time(&record(3, 5), NOW).await.unwrap();
    s.put_one_time(&record(4, 5), NOW).await.unwrap();
    assert_eq!(
        spend(verify, [3; 32], false, NOW).await,
        Spend::Wrong { attempts_left: 4 }
    );
    assert_eq!(
        spend(verify, [103; 32], true, NOW).await,
        Spend::Dead,
        "the replaced link, without costing an attempt"
    );
    assert_eq!(
        spend(verify, [9; 32], false, NOW).await,
        Spend::Wrong { attempts_left: 3 }
    );
    assert!(matches!(
        spend(verify, [104; 32], true, NOW).await,
        Spend::Accepted(_)
    ));
    s.put_one_time(&record(5, 5), NOW).await.unwrap();
    assert_eq!(
        spend(verify, [5; 32], false, NOW + 600).await,
        Spend::Dead,
        "expired"
    );
    // Erased with the user.
    s.put_one_time(&record(6, 5), NOW).await.unwrap();
    s.erase_one_time(&user).await.unwrap();
    assert_eq!(spend(verify, [6; 32], false, NOW).await, Spend::Dead);
    // Another region's user is refused.
    assert!(
        s.put_one_time(
            &OneTimeRecord {
                user_id: "usr_us_01JD00000000000000000000F1".into(),
                ..record(7, 5)
            },
            NOW
        )
        .await
        .is_err()
    );
}

async fn purge(s: &RegionStore) {
    s.insert_session(&session(&sid(11), NOW + 10), NOW)
        .await
        .unwrap();
    s.insert_session(&session(&sid(12), NOW + 1000), NOW)
        .await
        .unwrap();
    s.insert_refresh(&refresh(9, NOW + 10), NOW).await.unwrap();
    s.purge_expired(NOW + 50).await.unwrap();
    // At NOW + 50 expired rows are gone (embedded: swept) or invisible
    // (Scylla: filtered until the TTL removes them); live ones stay.
    assert_eq!(s.get_session(&sid(11), NOW + 50).await.unwrap(), None);
    assert!(s.get_session(&sid(12), NOW + 50).await.unwrap().is_some());
    assert_eq!(
        s.get_refresh(&sid(1), &[9; 32], NOW + 50).await.unwrap(),
        None
    );
    assert!(
        s.get_user(&uid(1)).await.unwrap().is_some(),
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
pub async fn index_store(ix: &IndexStore) {
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

    // The holder reported is the stored entry, never the claimant's own.
    let held = ix.claim(&key(2), &pending_eu, NOW + 63).await.unwrap();
    match &held {
        Claim::Held(h) => assert_eq!(
            (h.user_id.as_str(), h.region.as_str()),
            (U_US, "us"),
            "{held:?}"
        ),
        Claim::Applied => panic!("a live claim of another user was taken"),
    }
    // An entry whose user id names another region than its own is refused.
    let mismatched = entry("eu", U_US, IndexState::Pending, Some(NOW + 60));
    refused(ix.claim(&key(3), &mismatched, NOW).await, "home_index");
    assert_eq!(ix.lookup(&key(3), NOW).await.unwrap(), None);

    take_over(ix).await;
    switch(ix).await;
}

/// A compliance move re-homes an entry from its holder only, and a re-run
/// finds it done.
async fn switch(ix: &IndexStore) {
    let moved_to = entry("us", U_US, IndexState::Active, None);
    let eu = entry("eu", U_EU, IndexState::Pending, Some(NOW + 60));
    assert_eq!(ix.claim(&key(40), &eu, NOW).await.unwrap(), Claim::Applied);
    assert_eq!(ix.confirm(&key(40), U_EU, NOW).await.unwrap(), Applied::Yes);
    let other = "usr_eu_01JD0000000000000000000077";
    // Each case: from whom, and whether it applies.
    for (from, applies, why) in [
        (other, false, "not from another user"),
        (U_EU, true, "from the holder"),
        (U_EU, true, "a re-run: the target holds it already"),
        (other, true, "…whoever the re-run names as the old holder"),
    ] {
        assert_eq!(
            ix.switch(&key(40), from, &moved_to)
                .await
                .unwrap()
                .is_applied(),
            applies,
            "{why}"
        );
    }
    assert_eq!(
        ix.lookup(&key(40), NOW + 10_000).await.unwrap(),
        Some(moved_to.clone()),
        "active, in the target, for good"
    );
    assert_eq!(
        ix.switch(&key(41), U_EU, &moved_to).await.unwrap(),
        Applied::No(()),
        "nothing to switch where nobody holds the key"
    );
    assert_eq!(ix.lookup(&key(41), NOW).await.unwrap(), None);
    let mismatched = entry("eu", U_US, IndexState::Active, None);
    refused(ix.switch(&key(40), U_US, &mismatched).await, "home_index");
    let pending = entry("us", U_US, IndexState::Pending, Some(NOW + 60));
    refused(ix.switch(&key(40), U_US, &pending).await, "home_index");
}

/// A region takes over a pending claim it saw abandoned, and nothing else.
async fn take_over(ix: &IndexStore) {
    const CUT_OFF: &str = "usr_eu_01JD0000000000000000000003";
    const RETRY: &str = "usr_eu_01JD0000000000000000000004";
    const LATE: &str = "usr_eu_01JD0000000000000000000005";
    let cut_off = UserId::parse(CUT_OFF).unwrap();
    let retry = entry("eu", RETRY, IndexState::Pending, Some(NOW + 60));
    let late = entry("eu", LATE, IndexState::Pending, Some(NOW + 60));
    let k = key(5);
    ix.claim(
        &k,
        &entry("eu", CUT_OFF, IndexState::Pending, Some(NOW + 60)),
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(
        ix.take_over(&k, &retry, &cut_off, NOW + 1).await.unwrap(),
        Claim::Applied,
        "a live pending claim of the abandoned user is taken over"
    );
    assert_eq!(ix.lookup(&k, NOW + 1).await.unwrap(), Some(retry.clone()));
    assert_eq!(
        ix.confirm(&k, CUT_OFF, NOW + 2).await.unwrap(),
        Applied::No(()),
        "the cut-off registration has lost its claim"
    );
    assert_eq!(
        ix.take_over(&k, &late, &cut_off, NOW + 2).await.unwrap(),
        Claim::Held(retry.clone()),
        "only the named claim is treated as free"
    );
    assert_eq!(ix.confirm(&k, RETRY, NOW + 3).await.unwrap(), Applied::Yes);
    let active = entry("eu", RETRY, IndexState::Active, None);
    assert_eq!(
        ix.take_over(&k, &late, &UserId::parse(RETRY).unwrap(), NOW + 4)
            .await
            .unwrap(),
        Claim::Held(active.clone()),
        "an active entry is never taken over"
    );
    // A region takes over only its own region's claims.
    let us = entry("us", U_US, IndexState::Pending, Some(NOW + 60));
    refused(
        ix.take_over(&key(6), &us, &cut_off, NOW).await,
        "home_index",
    );
    assert_eq!(ix.lookup(&key(6), NOW).await.unwrap(), None);
    assert_eq!(ix.lookup(&k, NOW + 5).await.unwrap(), Some(active));
}

/// Asserts `r` is the store's refusal of a foreign record in `table`.
fn refused<T: std::fmt::Debug>(r: Result<T>, table: &str) {
    match r {
        Err(StoreError::ForeignRecord { table: t, .. }) if t == table => {}
        other => panic!("expected ForeignRecord in {table}, got {other:?}"),
    }
}

/// Every table refuses a record whose id names another region (or none),
/// and nothing is written.
async fn foreign_records(s: &RegionStore) {
    const US_USER: &str = "usr_us_01JD00000000000000000000F1";
    const US_SESSION: &str = "ses_us_01JD00000000000000000000F2";
    let users_before = s.count_users().await.unwrap();
    let sessions_before = s.count_sessions().await.unwrap();

    // users
    refused(s.insert_user(&user(US_USER, 1)).await, "users");
    refused(s.insert_user(&user("u1", 1)).await, "users");
    refused(s.update_user(&user(US_USER, 2), 1).await, "users");
    assert_eq!(s.get_user(US_USER).await.unwrap(), None);
    assert_eq!(s.count_users().await.unwrap(), users_before);

    // authorization codes
    refused(
        s.insert_code(
            &CodeRecord {
                user_id: US_USER.into(),
                ..code(40)
            },
            NOW,
        )
        .await,
        "authorization_codes",
    );
    refused(
        s.insert_code(
            &CodeRecord {
                session_id: US_SESSION.into(),
                ..code(41)
            },
            NOW,
        )
        .await,
        "authorization_codes",
    );
    assert_eq!(
        s.redeem_code(&[40; 32], NOW).await.unwrap(),
        Redemption::Unknown
    );

    // identifiers
    refused(
        s.insert_identifier(&key(40), US_USER).await,
        "users_by_identifier",
    );
    assert_eq!(s.get_identifier(&key(40)).await.unwrap(), None);
    s.insert_identifier(&key(41), &uid(41)).await.unwrap();
    refused(
        s.replace_identifier(&key(41), &uid(41), US_USER).await,
        "users_by_identifier",
    );
    assert_eq!(
        s.get_identifier(&key(41)).await.unwrap(),
        Some(uid(41)),
        "a refused replace changes nothing"
    );
    assert!(s.export_identifiers(US_USER).await.unwrap().is_empty());

    // sessions: a foreign session id, or a local session of a foreign user
    let mut foreign_session = session(US_SESSION, NOW + 100);
    refused(s.insert_session(&foreign_session, NOW).await, "sessions");
    foreign_session.session_id = sid(40);
    foreign_session.user_id = US_USER.into();
    refused(s.insert_session(&foreign_session, NOW).await, "sessions");
    assert_eq!(s.get_session(US_SESSION, NOW).await.unwrap(), None);
    assert_eq!(s.get_session(&sid(40), NOW).await.unwrap(), None);
    assert_eq!(s.count_sessions().await.unwrap(), sessions_before);

    // refresh tokens
    let mut foreign_token = refresh(40, NOW + 100);
    foreign_token.session_id = US_SESSION.into();
    refused(
        s.insert_refresh(&foreign_token, NOW).await,
        "refresh_tokens_by_session",
    );
    let mut foreign_token = refresh(41, NOW + 100);
    foreign_token.user_id = US_USER.into();
    refused(
        s.insert_refresh(&foreign_token, NOW).await,
        "refresh_tokens_by_session",
    );
    assert_eq!(
        s.get_refresh(US_SESSION, &[40; 32], NOW).await.unwrap(),
        None
    );
    assert_eq!(s.get_refresh(&sid(1), &[41; 32], NOW).await.unwrap(), None);

    // signing keys
    let keys_before = s.signing_keys().await.unwrap();
    for kid in ["us-1", "eu", "eu-", "euro-1"] {
        let k = SigningKeyRecord {
            kid: kid.into(),
            seed: [9; 32],
            created_at: NOW,
            retire_at: None,
            not_before: None,
        };
        refused(s.insert_signing_key(&k).await, "signing_keys");
    }
    assert_eq!(s.signing_keys().await.unwrap(), keys_before);

    // audit: one foreign event refuses the whole append
    let mut mixed = vec![
        event(&uid(42), 1, AuditKind::Registered, NOW + 1000),
        event(US_USER, 2, AuditKind::Registered, NOW + 1000),
    ];
    refused(s.append_audit(&mixed).await, "audit_log");
    mixed[1] = event(&uid(42), 3, AuditKind::Logout, NOW + 1000);
    mixed[1].session_id = Some(US_SESSION.into());
    refused(s.append_audit(&mixed).await, "audit_log");
    assert!(s.audit_for_user(&uid(42), 10).await.unwrap().is_empty());
    assert!(s.audit_for_user(US_USER, 10).await.unwrap().is_empty());
}

/// A user with something in every aggregate, written through the store.
async fn populate(s: &RegionStore, n: u32) -> UserExport {
    let id = uid(n);
    let mut u = user(&id, 1);
    u.email = format!("person{n}@example.com");
    assert_eq!(s.insert_user(&u).await.unwrap(), Applied::Yes);
    let keys = [key(n as u8), key(n as u8 + 1)];
    for k in &keys {
        assert_eq!(s.insert_identifier(k, &id).await.unwrap(), Applied::Yes);
    }
    let mut sessions = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..2u8 {
        let mut ses = session(&sid(n * 10 + u32::from(i)), NOW + 1000);
        ses.user_id = id.clone();
        assert_eq!(s.insert_session(&ses, NOW).await.unwrap(), Applied::Yes);
        let mut token = refresh(n as u8 + 100 + i, NOW + 500);
        token.session_id = ses.session_id.clone();
        token.user_id = id.clone();
        assert_eq!(s.insert_refresh(&token, NOW).await.unwrap(), Applied::Yes);
        sessions.push(ses);
        tokens.push(token);
    }
    let events = vec![
        event(&id, 1, AuditKind::Registered, NOW + 1000),
        event(&id, 2, AuditKind::LoginSucceeded, NOW + 1000),
        event(&id, 3, AuditKind::Logout, NOW + 1000),
    ];
    s.append_audit(&events).await.unwrap();
    let sealed = domicile_core::mfa::Sealed {
        nonce: [n as u8; 12],
        ciphertext: vec![n as u8; 36],
    };
    s.put_pending_totp(&id, &pending_totp(&sealed), NOW)
        .await
        .unwrap();
    s.activate_totp(&id, &sealed, 7, &[[n as u8; 32]], NOW)
        .await
        .unwrap();
    let pending = pending_sign_in(&id, n as u8);
    s.insert_pending_sign_in(&pending, NOW).await.unwrap();
    s.record_sign_in(&id, &seen(Some("DE"), None, Some(n as u8)), NOW)
        .await
        .unwrap();
    UserExport {
        user: Some(u),
        identifiers: keys.to_vec(),
        sessions,
        refresh_tokens: tokens,
        audit: events.into_iter().rev().collect(),
        factors: s.get_factors(&id).await.unwrap(),
        pending_sign_ins: vec![pending],
        history: s.get_history(&id).await.unwrap(),
    }
}

fn pending_totp(sealed: &domicile_core::mfa::Sealed) -> crate::PendingTotp {
    crate::PendingTotp {
        sealed: sealed.clone(),
        created_at: NOW,
        expires_at: NOW + 600,
    }
}

fn pending_sign_in(user: &str, n: u8) -> crate::PendingSignInRecord {
    crate::PendingSignInRecord {
        user_id: user.into(),
        token_hash: [n; 32],
        amr: vec!["pwd".into()],
        auth_time: NOW,
        created_at: NOW,
        expires_at: NOW + 300,
        attempts_left: 2,
        target: "{}".into(),
        reasons: vec!["factor_enrolled".into()],
        finished_at: None,
    }
}

/// Second factors: an enrolment is confirmed only as the secret it was
/// shown with and before it expires; a TOTP step is accepted once, never
/// an older one; recovery codes are spent once, replaced as a set, and go
/// with the last factor.
async fn factors(s: &RegionStore) {
    use crate::{Activation, RecoveryUse, StepUse};
    use domicile_core::mfa::Sealed;
    let user = uid(96);
    let sealed = |n: u8| Sealed {
        nonce: [n; 12],
        ciphertext: vec![n; 36],
    };
    assert_eq!(s.get_factors(&user).await.unwrap(), None);
    assert_eq!(
        s.use_totp_step(&user, 5, NOW).await.unwrap(),
        StepUse::NoFactor
    );
    assert_eq!(
        s.activate_totp(&user, &sealed(1), 5, &[], NOW)
            .await
            .unwrap(),
        Activation::NoEnrolment,
        "nothing enrolled"
    );
    s.put_pending_totp(&user, &pending_totp(&sealed(1)), NOW)
        .await
        .unwrap();
    s.put_pending_totp(&user, &pending_totp(&sealed(2)), NOW)
        .await
        .unwrap();
    assert_eq!(
        s.activate_totp(&user, &sealed(1), 5, &[], NOW)
            .await
            .unwrap(),
        Activation::NoEnrolment,
        "a replaced enrolment"
    );
    assert_eq!(
        s.activate_totp(&user, &sealed(2), 5, &[], NOW + 600)
            .await
            .unwrap(),
        Activation::NoEnrolment,
        "an expired enrolment"
    );
    let codes = [[1u8; 32], [2u8; 32]];
    assert_eq!(
        s.activate_totp(&user, &sealed(2), 5, &codes, NOW)
            .await
            .unwrap(),
        Activation::Activated {
            recovery_installed: true
        }
    );
    let f = s.get_factors(&user).await.unwrap().unwrap();
    assert!(f.has_second_factor() && f.pending_totp.is_none());
    assert_eq!((f.recovery_left(), f.totp.unwrap().last_step), (2, 5));
    for (step, want) in [
        (5, StepUse::Replayed),
        (4, StepUse::Replayed),
        (6, StepUse::Accepted),
        (6, StepUse::Replayed),
        (8, StepUse::Accepted),
        (7, StepUse::Replayed),
    ] {
        assert_eq!(
            s.use_totp_step(&user, step, NOW).await.unwrap(),
            want,
            "step {step}"
        );
    }
    assert_eq!(
        s.use_recovery_code(&user, &[1; 32], NOW).await.unwrap(),
        RecoveryUse::Accepted { left: 1 }
    );
    assert_eq!(
        s.use_recovery_code(&user, &[1; 32], NOW).await.unwrap(),
        RecoveryUse::Refused,
        "single use"
    );
    assert_eq!(
        s.use_recovery_code(&user, &[9; 32], NOW).await.unwrap(),
        RecoveryUse::Refused
    );
    assert!(s.replace_recovery(&user, &[[3; 32]], NOW).await.unwrap());
    assert_eq!(
        s.use_recovery_code(&user, &[2; 32], NOW).await.unwrap(),
        RecoveryUse::Refused,
        "the old set died"
    );
    // A second enrolment (a new phone) keeps the live recovery set.
    s.put_pending_totp(&user, &pending_totp(&sealed(3)), NOW)
        .await
        .unwrap();
    assert_eq!(
        s.activate_totp(&user, &sealed(3), 9, &[[4; 32]], NOW)
            .await
            .unwrap(),
        Activation::Activated {
            recovery_installed: false
        }
    );
    // Attempts count in a window across sign-ins, up to the limit; a right
    // factor, or a new window, starts again.
    use crate::FactorAttempt::{Refused, Taken};
    let take = |at: UnixSeconds| s.take_factor_attempt(&user, 3, 900, at);
    for n in 1..=3 {
        assert_eq!(take(NOW).await.unwrap(), Taken { taken: n });
    }
    assert_eq!(
        take(NOW + 100).await.unwrap(),
        Refused { retry_after: 800 },
        "the window is full"
    );
    s.clear_factor_failures(&user, NOW).await.unwrap();
    assert_eq!(take(NOW + 1).await.unwrap(), Taken { taken: 1 });
    assert_eq!(take(NOW + 500).await.unwrap(), Taken { taken: 2 });
    assert_eq!(
        take(NOW + 901).await.unwrap(),
        Taken { taken: 1 },
        "a new window"
    );
    let f = s.get_factors(&user).await.unwrap().unwrap();
    assert_eq!((f.failures, f.failures_since), (1, NOW + 901));
    assert!(s.remove_totp(&user, NOW).await.unwrap());
    assert!(!s.remove_totp(&user, NOW).await.unwrap());
    let f = s.get_factors(&user).await.unwrap().unwrap();
    assert_eq!((f.has_second_factor(), f.recovery_left()), (false, 0));
    assert_eq!(
        s.use_recovery_code(&user, &[3; 32], NOW).await.unwrap(),
        RecoveryUse::Refused,
        "recovery codes go with the last factor"
    );
    assert!(
        !s.replace_recovery(&user, &[[5; 32]], NOW).await.unwrap(),
        "no codes without a factor"
    );
    assert!(
        s.put_pending_totp(
            "usr_us_01JD00000000000000000000F1",
            &pending_totp(&sealed(1)),
            NOW
        )
        .await
        .is_err(),
        "another region's user"
    );
}

/// Passkeys: a registration answers its own waiting state once; names,
/// uses and removal; recovery codes go with the last factor.
async fn passkeys(s: &RegionStore) {
    use crate::{Activation, PasskeyFactor, PendingPasskey};
    let user = uid(93);
    let pending = |state: &str, expires_at| PendingPasskey {
        name: "Laptop".into(),
        state: state.into(),
        created_at: NOW,
        expires_at,
    };
    let key = |id: &str| PasskeyFactor {
        id: id.into(),
        name: "Laptop".into(),
        credential: format!("{{\"cred\":\"{id}\"}}"),
        created_at: NOW,
        last_used_at: None,
    };
    let add = |state: &'static str, id: &'static str, at| async move {
        s.add_passkey(&uid(93), state, &key(id), &[[8; 32]], 2, at)
            .await
            .unwrap()
    };
    assert_eq!(
        add("s1", "k1", NOW).await,
        Activation::NoEnrolment,
        "none waiting"
    );
    s.put_pending_passkey(&user, &pending("s1", NOW + 300), NOW)
        .await
        .unwrap();
    assert_eq!(
        add("other", "k1", NOW).await,
        Activation::NoEnrolment,
        "another state"
    );
    assert_eq!(
        add("s1", "k1", NOW).await,
        Activation::Activated {
            recovery_installed: true
        }
    );
    assert_eq!(
        add("s1", "k1", NOW).await,
        Activation::NoEnrolment,
        "answered once"
    );
    s.put_pending_passkey(&user, &pending("s2", NOW + 300), NOW)
        .await
        .unwrap();
    assert_eq!(
        add("s2", "k1", NOW).await,
        Activation::NoEnrolment,
        "registered already"
    );
    assert_eq!(
        add("s2", "k2", NOW + 300).await,
        Activation::NoEnrolment,
        "expired"
    );
    assert_eq!(
        add("s2", "k2", NOW).await,
        Activation::Activated {
            recovery_installed: false
        }
    );
    s.put_pending_passkey(&user, &pending("s3", NOW + 300), NOW)
        .await
        .unwrap();
    assert_eq!(
        add("s3", "k3", NOW).await,
        Activation::NoEnrolment,
        "at most two"
    );
    assert!(s.rename_passkey(&user, "k1", "Phone", NOW).await.unwrap());
    assert!(!s.rename_passkey(&user, "nope", "Phone", NOW).await.unwrap());
    let u = user.as_str();
    let touch = |id: &'static str, read: u32, to: u32, spend, at| async move {
        let c = |n: u32| match n {
            0 => format!("{{\"cred\":\"{id}\"}}"),
            n => format!("{{\"counter\":{n}}}"),
        };
        s.touch_passkey(u, id, &c(read), &c(to), spend, at)
            .await
            .unwrap()
    };
    assert_eq!(touch("k1", 0, 2, None, NOW + 5).await, PasskeyUse::Used);
    // A use checked against the credential before that one: its counter
    // must not overwrite the newer one.
    assert_eq!(touch("k1", 0, 1, None, NOW + 5).await, PasskeyUse::Changed);
    // A passwordless sign-in spends its challenge once, until it expires.
    let spend = Some(([7u8; 32], NOW + 300));
    assert_eq!(touch("k1", 2, 3, spend, NOW + 5).await, PasskeyUse::Used);
    assert_eq!(
        touch("k1", 3, 4, spend, NOW + 6).await,
        PasskeyUse::Replayed
    );
    assert_eq!(
        touch("k2", 0, 1, spend, NOW + 6).await,
        PasskeyUse::Replayed,
        "any passkey"
    );
    assert_eq!(
        touch("k1", 3, 4, spend, NOW + 300).await,
        PasskeyUse::Used,
        "expired"
    );
    let other = Some(([8u8; 32], NOW + 400));
    assert_eq!(
        touch("nope", 0, 1, other, NOW + 301).await,
        PasskeyUse::Gone
    );
    assert_eq!(
        touch("k1", 4, 5, other, NOW + 301).await,
        PasskeyUse::Used,
        "an answer for a gone passkey spends nothing"
    );
    let f = s.get_factors(&user).await.unwrap().unwrap();
    assert!(f.has_second_factor());
    assert_eq!(
        (
            f.passkeys[0].name.as_str(),
            f.passkeys[0].credential.as_str()
        ),
        ("Phone", "{\"counter\":5}")
    );
    assert_eq!(f.passkeys[0].last_used_at, Some(NOW + 301));
    assert_eq!(f.spent_challenges.len(), 1, "expired ones are dropped");
    assert!(s.remove_passkey(&user, "k1", NOW).await.unwrap());
    assert_eq!(
        s.get_factors(&user).await.unwrap().unwrap().recovery_left(),
        1
    );
    assert!(s.remove_passkey(&user, "k2", NOW).await.unwrap());
    assert!(!s.remove_passkey(&user, "k2", NOW).await.unwrap());
    let f = s.get_factors(&user).await.unwrap().unwrap();
    assert_eq!((f.has_second_factor(), f.recovery_left()), (false, 0));
}

fn seen(country: Option<&str>, place: Option<(f64, f64)>, device: Option<u8>) -> Seen {
    Seen {
        country: country.map(str::to_owned),
        location: place.map(|(lat, lon)| Location::new(lat, lon).unwrap()),
        device: device.map(|d| [d; 32]),
    }
}

/// The sign-in history remembers countries and devices once each, newest
/// last, the coarse place of the last located sign-in, and counts
/// sign-ins.
async fn history(s: &RegionStore) {
    let user = uid(99);
    assert_eq!(s.get_history(&user).await.unwrap(), None);
    for (i, seen) in [
        seen(Some("DE"), Some((52.5219, 13.4132)), None),
        seen(Some("JP"), None, Some(1)),
        seen(Some("DE"), None, Some(1)),
        seen(None, None, None),
    ]
    .iter()
    .enumerate()
    {
        s.record_sign_in(&user, seen, NOW + i as i64).await.unwrap();
    }
    let h = s.get_history(&user).await.unwrap().unwrap();
    assert_eq!(h.countries, ["JP", "DE"]);
    assert_eq!((h.devices.len(), h.sign_ins, h.updated_at), (1, 4, NOW + 3));
    let (place, at) = h.past().last.unwrap();
    assert_eq!(at, NOW, "the last sign-in whose place was known");
    assert!((place.latitude - 52.5).abs() < 1e-9 && (place.longitude - 13.4).abs() < 1e-9);
    assert!(
        s.record_sign_in(
            "usr_us_01JD00000000000000000000F1",
            &seen(Some("US"), None, None),
            NOW
        )
        .await
        .is_err(),
        "another region's user"
    );
}

/// A pending sign-in finishes once, dies after its wrong attempts and at
/// its expiry.
async fn pending_sign_ins(s: &RegionStore) {
    use crate::PendingOutcome;
    let user = uid(97);
    let p = pending_sign_in(&user, 1);
    assert_eq!(
        s.insert_pending_sign_in(&p, NOW).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.insert_pending_sign_in(&p, NOW).await.unwrap(),
        Applied::No(())
    );
    assert_eq!(
        s.get_pending_sign_in(&user, &[1; 32], NOW).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(
        s.get_pending_sign_in(&user, &[1; 32], NOW + 300)
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        s.get_pending_sign_in(&uid(98), &[1; 32], NOW)
            .await
            .unwrap(),
        None,
        "another user's partition"
    );
    assert_eq!(
        s.settle_pending_sign_in(&user, &[1; 32], false, NOW)
            .await
            .unwrap(),
        PendingOutcome::Counted { attempts_left: 1 }
    );
    match s
        .settle_pending_sign_in(&user, &[1; 32], true, NOW + 1)
        .await
        .unwrap()
    {
        PendingOutcome::Finished(r) => assert_eq!(r.finished_at, Some(NOW + 1)),
        other => panic!("finishes: {other:?}"),
    }
    assert_eq!(
        s.settle_pending_sign_in(&user, &[1; 32], true, NOW + 2)
            .await
            .unwrap(),
        PendingOutcome::Dead,
        "single use"
    );
    assert_eq!(
        s.get_pending_sign_in(&user, &[1; 32], NOW).await.unwrap(),
        None
    );
    let q = pending_sign_in(&user, 2);
    s.insert_pending_sign_in(&q, NOW).await.unwrap();
    for left in [1, 0] {
        assert_eq!(
            s.settle_pending_sign_in(&user, &[2; 32], false, NOW)
                .await
                .unwrap(),
            PendingOutcome::Counted {
                attempts_left: left
            }
        );
    }
    assert_eq!(
        s.settle_pending_sign_in(&user, &[2; 32], true, NOW)
            .await
            .unwrap(),
        PendingOutcome::Dead,
        "out of attempts, even when right"
    );
    assert_eq!(
        s.settle_pending_sign_in(&user, &[3; 32], true, NOW)
            .await
            .unwrap(),
        PendingOutcome::Dead,
        "unknown"
    );
    // A reset ends every pending sign-in of the user, and no other's.
    let (r, other) = (pending_sign_in(&user, 4), pending_sign_in(&uid(94), 5));
    s.insert_pending_sign_in(&r, NOW).await.unwrap();
    s.insert_pending_sign_in(&other, NOW).await.unwrap();
    s.end_pending_sign_ins(&user).await.unwrap();
    assert_eq!(
        s.get_pending_sign_in(&user, &[4; 32], NOW).await.unwrap(),
        None
    );
    assert!(
        s.get_pending_sign_in(&uid(94), &[5; 32], NOW)
            .await
            .unwrap()
            .is_some()
    );
}

fn sorted(mut e: UserExport) -> UserExport {
    e.identifiers.sort();
    e.sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    e.refresh_tokens.sort_by_key(|t| t.token_hash);
    e
}

/// Export returns what was written; erase leaves nothing of the user
/// readable and other users untouched.
async fn export_and_erase(s: &RegionStore) {
    let a = populate(s, 60).await;
    let b = populate(s, 70).await;
    let (a_id, b_id) = (uid(60), uid(70));
    assert_eq!(
        sorted(s.export_user(&a_id).await.unwrap()),
        sorted(a.clone()),
        "export round-trips what was written"
    );
    // A revoked session is exported as it is stored now.
    assert_eq!(
        s.revoke_session(&a.sessions[0].session_id, NOW + 1, RevokeReason::Logout)
            .await
            .unwrap(),
        Applied::Yes
    );
    let exported = s.export_user(&a_id).await.unwrap();
    assert!(
        exported
            .sessions
            .iter()
            .any(|x| x.revoked_reason == Some(RevokeReason::Logout))
    );

    s.erase_user(&a_id).await.unwrap();
    assert_eq!(s.get_user(&a_id).await.unwrap(), None);
    for k in &a.identifiers {
        assert_eq!(s.get_identifier(k).await.unwrap(), None);
    }
    for x in &a.sessions {
        assert_eq!(s.get_session(&x.session_id, NOW).await.unwrap(), None);
        assert_eq!(
            s.revoke_session(&x.session_id, NOW, RevokeReason::Logout)
                .await
                .unwrap(),
            Applied::No(()),
            "an erased session is not there to revoke"
        );
    }
    for t in &a.refresh_tokens {
        assert_eq!(
            s.get_refresh(&t.session_id, &t.token_hash, NOW)
                .await
                .unwrap(),
            None
        );
    }
    assert!(s.audit_for_user(&a_id, 10).await.unwrap().is_empty());
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
    assert_eq!(s.export_user(&a_id).await.unwrap(), empty);
    assert!(
        !s.scan_users()
            .await
            .unwrap()
            .iter()
            .any(|u| u.user_id == a_id),
        "gone from scans too"
    );
    // Erasing again finds nothing and fails nothing.
    s.erase_user(&a_id).await.unwrap();

    assert_eq!(
        sorted(s.export_user(&b_id).await.unwrap()),
        sorted(b),
        "other users untouched"
    );
    // An identifier released by its user is no longer exported.
    let released = key(70);
    assert_eq!(
        s.delete_identifier(&released, &b_id).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.export_identifiers(&b_id).await.unwrap(),
        vec![key(71)],
        "only what the user holds"
    );
    // …and a key taken over by another user belongs to that user's export.
    assert_eq!(
        s.insert_identifier(&key(71), &uid(80)).await.unwrap(),
        Applied::No(b_id.clone()),
        "the holder as stored"
    );
    assert!(s.export_identifiers(&uid(80)).await.unwrap().is_empty());
    assert_eq!(
        s.replace_identifier(&key(71), &b_id, &uid(80))
            .await
            .unwrap(),
        Applied::Yes
    );
    assert!(s.export_identifiers(&b_id).await.unwrap().is_empty());
    assert_eq!(s.export_identifiers(&uid(80)).await.unwrap(), vec![key(71)]);
    assert_eq!(
        s.replace_identifier(&key(71), &b_id, &uid(80))
            .await
            .unwrap(),
        Applied::No(()),
        "a stale replace does not apply…"
    );
    assert_eq!(
        s.export_identifiers(&uid(80)).await.unwrap(),
        vec![key(71)],
        "…and the holder keeps its key"
    );
    s.erase_user(&b_id).await.unwrap();
    assert_eq!(
        s.get_identifier(&key(71)).await.unwrap(),
        Some(uid(80)),
        "erasing a user never takes another user's identifier"
    );
}

/// The journal of a compliance operation: one per user, never going back
/// a step, never taken over by another operation; and the imports a move
/// writes with, idempotent.
async fn operations(s: &RegionStore) {
    let op = |id: &str, step: OperationStep| OperationRecord {
        operation_id: id.into(),
        operation: domicile_core::receipt::Operation::Move,
        user_id: uid(90),
        new_user_id: Some("usr_us_01JD0000000000000000000090".into()),
        to_region: Some("us".into()),
        operator: "ada".into(),
        started_at: NOW,
        step,
        counts: [("users".to_owned(), 1)].into(),
        target_receipt: None,
        receipt: None,
        finished_at: None,
        aborting: false,
    };
    let first = op("op_eu_1", OperationStep::Started);
    assert_eq!(s.get_operation(&uid(90)).await.unwrap(), None);
    assert_eq!(s.start_operation(&first).await.unwrap(), Applied::Yes);
    assert_eq!(
        s.start_operation(&op("op_eu_2", OperationStep::Started))
            .await
            .unwrap(),
        Applied::No(first.clone()),
        "a second start reads the first's journal"
    );
    for (next, applies, why) in [
        (op("op_eu_1", OperationStep::Copied), true, "forward"),
        (
            op("op_eu_1", OperationStep::Copied),
            true,
            "the same step again",
        ),
        (op("op_eu_1", OperationStep::Started), false, "never back"),
        (
            op("op_eu_2", OperationStep::Done),
            false,
            "not another operation",
        ),
        (op("op_eu_1", OperationStep::Done), true, "to the end"),
    ] {
        assert_eq!(
            s.advance_operation(&next).await.unwrap().is_applied(),
            applies,
            "{why}"
        );
    }
    assert_eq!(
        s.get_operation(&uid(90)).await.unwrap().map(|o| o.step),
        Some(OperationStep::Done)
    );
    let mut foreign = op("op_eu_3", OperationStep::Started);
    foreign.user_id = "usr_us_01JD0000000000000000000091".into();
    refused(s.start_operation(&foreign).await, "compliance_operations");

    // An arriving copy is written again by its own move only; a settled
    // user or another move's copy is kept.
    let arriving = |id: &str, op: &str| MovingMark {
        operation_id: op.into(),
        to_region: "eu".into(),
        new_user_id: id.into(),
        started_at: NOW,
    };
    let mut u = user(&uid(91), 7);
    u.moving = Some(arriving(&uid(91), "op_us_1"));
    assert_eq!(
        s.import_user_record(&u, "op_us_1").await.unwrap(),
        Applied::Yes
    );
    u.given_name = "Grace".into();
    assert_eq!(
        s.import_user_record(&u, "op_us_1").await.unwrap(),
        Applied::Yes
    );
    assert_eq!(s.get_user(&uid(91)).await.unwrap(), Some(u.clone()));
    let mut other = u.clone();
    other.given_name = "Mallory".into();
    assert_eq!(
        s.import_user_record(&other, "op_us_2").await.unwrap(),
        Applied::No(()),
        "another move's copy is kept"
    );
    let mut settled = u.clone();
    settled.moving = None;
    settled.version += 1;
    assert_eq!(
        s.update_user(&settled, u.version).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        s.import_user_record(&other, "op_us_1").await.unwrap(),
        Applied::No(()),
        "a settled user is never overwritten, even by its own move"
    );
    assert_eq!(s.get_user(&uid(91)).await.unwrap(), Some(settled));
    assert_eq!(
        s.insert_user(&user(&uid(94), 1)).await.unwrap(),
        Applied::Yes
    );
    let mut over = user(&uid(94), 5);
    over.moving = Some(arriving(&uid(94), "op_us_1"));
    assert_eq!(
        s.import_user_record(&over, "op_us_1").await.unwrap(),
        Applied::No(()),
        "an existing user is never overwritten"
    );
    assert_eq!(s.get_user(&uid(94)).await.unwrap(), Some(user(&uid(94), 1)));
    let h = SignInHistory {
        user_id: uid(91),
        countries: vec!["DE".into()],
        devices: vec![],
        last_location: None,
        last_located_at: None,
        sign_ins: 3,
        updated_at: NOW,
    };
    s.import_history(&h).await.unwrap();
    s.import_history(&h).await.unwrap();
    assert_eq!(s.get_history(&uid(91)).await.unwrap(), Some(h));
    let f = FactorsRecord {
        user_id: uid(91),
        totp: None,
        pending_totp: None,
        recovery: vec![RecoverySlot {
            hash: [3; 32],
            used_at: None,
        }],
        recovery_generated_at: Some(NOW),
        failures: 0,
        failures_since: 0,
        updated_at: NOW,
        passkeys: vec![],
        pending_passkey: None,
        spent_challenges: vec![],
        recovery_user_id: Some(uid(92)),
    };
    s.import_factors(&f).await.unwrap();
    assert_eq!(s.get_factors(&uid(91)).await.unwrap(), Some(f));
    let stray = user("usr_us_01JD0000000000000000000093", 1);
    refused(s.import_user_record(&stray, "op_us_1").await, "users");

    // The region's admin log: one partition, newest first, idempotent.
    let event = |n: u32| AdminEvent {
        event_id: format!("01JD{n:022}"),
        at: NOW,
        operator: "ada".into(),
        call: format!("call{n}"),
        detail: String::new(),
        expires_at: NOW + 3600,
    };
    for n in [1, 2, 2, 3] {
        s.append_admin_event(&event(n)).await.unwrap();
    }
    assert_eq!(
        s.admin_events(10).await.unwrap(),
        vec![event(3), event(2), event(1)]
    );
    assert_eq!(s.admin_events(1).await.unwrap(), vec![event(3)]);
}

/// Records which primitive each store call reaches.
struct Recording {
    inner: Arc<dyn Backend>,
    calls: Mutex<Vec<(&'static str, &'static str)>>,
}

impl Recording {
    fn note(&self, primitive: &'static str, table: &Table) {
        self.calls.lock().unwrap().push((primitive, table.name));
    }
}

#[async_trait]
impl Backend for Recording {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn get(&self, table: &Table, key: &Key, read: Read) -> Result<Option<Vec<u8>>> {
        self.note("get", table);
        self.inner.get(table, key, read).await
    }
    async fn put_if(
        &self,
        table: &Table,
        key: &Key,
        condition: Condition,
        value: Vec<u8>,
        expiry: Expiry,
    ) -> Result<Applied<Option<Vec<u8>>>> {
        self.note("put_if", table);
        self.inner
            .put_if(table, key, condition, value, expiry)
            .await
    }
    async fn delete_if(
        &self,
        table: &Table,
        key: &Key,
        condition: Condition,
    ) -> Result<Applied<Option<Vec<u8>>>> {
        self.note("delete_if", table);
        self.inner.delete_if(table, key, condition).await
    }
    async fn append(&self, table: &Table, rows: Vec<Row>) -> Result<()> {
        self.note("append", table);
        self.inner.append(table, rows).await
    }
    async fn rows(
        &self,
        table: &Table,
        partition: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.note("rows", table);
        self.inner.rows(table, partition, limit).await
    }
    async fn delete_partition(&self, table: &Table, partition: &[u8]) -> Result<()> {
        self.note("delete_partition", table);
        self.inner.delete_partition(table, partition).await
    }
    async fn scan(&self, table: &Table) -> Result<Vec<(Key, Vec<u8>)>> {
        self.note("scan", table);
        self.inner.scan(table).await
    }
    async fn count(&self, table: &Table) -> Result<u64> {
        self.note("count", table);
        self.inner.count(table).await
    }
    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64> {
        self.inner.purge_expired(now).await
    }
    async fn placement(&self) -> Result<crate::Placement> {
        self.inner.placement().await
    }
}

/// Loading a region's signing keys is one single-partition read.
async fn keys_are_one_partition(s: &RegionStore) {
    let rec = Arc::new(Recording {
        inner: s.backend.clone(),
        calls: Mutex::new(Vec::new()),
    });
    let seen = RegionStore::new(rec.clone(), s.region().clone());
    let keys = seen.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2, "the keys written earlier");
    assert_eq!(
        *rec.calls.lock().unwrap(),
        vec![("rows", "signing_keys")],
        "one partition, no scan"
    );
}
