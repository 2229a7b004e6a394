use domicile_core::{RegionCode, index::IdentifierKey};
use domicile_store::{
    Applied, IndexStore, RegionStore, StoreError, StoreObserver, UserRecord, conformance,
};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

fn eu() -> RegionCode {
    RegionCode::parse("eu").unwrap()
}

#[tokio::test]
async fn embedded_region_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = RegionStore::open_embedded(dir.path(), &eu()).unwrap();
    conformance::region_store(&store).await;
}

#[tokio::test]
async fn embedded_index_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let index = IndexStore::open_embedded(dir.path()).unwrap();
    conformance::index_store(&index).await;
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let user = UserRecord {
        user_id: "usr_eu_x".into(),
        email: "a@example.com".into(),
        email_verified: false,
        password_hash: "h".into(),
        given_name: String::new(),
        family_name: String::new(),
        display_name: String::new(),
        locale: String::new(),
        pending_email: None,
        phone: None,
        pending_phone: None,
        pin: None,
        moving: None,
        created_at: 1,
        updated_at: 1,
        version: 1,
    };
    {
        let store = RegionStore::open_embedded(dir.path(), &eu()).unwrap();
        assert_eq!(store.insert_user(&user).await.unwrap(), Applied::Yes);
        assert_eq!(
            store
                .insert_identifier(&IdentifierKey([4; 32]), "usr_eu_x")
                .await
                .unwrap(),
            Applied::Yes
        );
    }
    let store = RegionStore::open_embedded(dir.path(), &eu()).unwrap();
    assert_eq!(store.get_user("usr_eu_x").await.unwrap(), Some(user));
    assert_eq!(
        store
            .get_identifier(&IdentifierKey([4; 32]))
            .await
            .unwrap()
            .as_deref(),
        Some("usr_eu_x")
    );
}

#[tokio::test]
async fn concurrent_conditional_inserts_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = RegionStore::open_embedded(dir.path(), &eu()).unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.insert_identifier(&IdentifierKey([7; 32]), &format!("usr_eu_{i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    let mut holders = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Applied::Yes => winners += 1,
            Applied::No(holder) => holders.push(holder),
        }
    }
    assert_eq!(winners, 1);
    let winner = store
        .get_identifier(&IdentifierKey([7; 32]))
        .await
        .unwrap()
        .unwrap();
    assert!(
        holders.iter().all(|h| *h == winner),
        "every loser is told the real holder"
    );
}

#[tokio::test]
async fn concurrent_updates_never_lose_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = RegionStore::open_embedded(dir.path(), &eu()).unwrap();
    let id = "usr_eu_01JD0000000000000000000001";
    let base = UserRecord {
        user_id: id.into(),
        email: "a@example.com".into(),
        email_verified: false,
        password_hash: "h".into(),
        given_name: String::new(),
        family_name: String::new(),
        display_name: String::new(),
        locale: String::new(),
        pending_email: None,
        phone: None,
        pending_phone: None,
        pin: None,
        moving: None,
        created_at: 1,
        updated_at: 1,
        version: 1,
    };
    store.insert_user(&base).await.unwrap();
    // Eight writers all read version 1; exactly one may move it to 2.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (s, mut u) = (store.clone(), base.clone());
            tokio::spawn(async move {
                u.version = 2;
                u.given_name = format!("writer {i}");
                s.update_user(&u, 1).await.unwrap().is_applied()
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
    assert_eq!(store.get_user(id).await.unwrap().unwrap().version, 2);
}

fn redb_handle(dir: &std::path::Path) -> redb::Database {
    redb::Database::create(dir.join("index.redb")).unwrap()
}

fn write_layout(dir: &std::path::Path, version: u64) {
    let db = redb_handle(dir);
    let tx = db.begin_write().unwrap();
    {
        let mut meta = tx
            .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap();
        meta.insert("layout_version", version).unwrap();
    }
    tx.commit().unwrap();
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), 99);
    match IndexStore::open_embedded(dir.path()) {
        Err(StoreError::FutureFormat { found: 99, .. }) => {}
        other => panic!(
            "expected FutureFormat, got {:?}",
            other.map(|i| i.describe())
        ),
    }
}

#[tokio::test]
async fn a_database_of_an_unknown_layout_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), 0);
    match IndexStore::open_embedded(dir.path()) {
        Err(StoreError::Open { reason, .. }) => assert!(reason.contains("layout 0"), "{reason}"),
        other => panic!("expected Open, got {:?}", other.map(|i| i.describe())),
    }
    // Refused again: the file was not stamped with the current layout.
    assert!(IndexStore::open_embedded(dir.path()).is_err());
}

/// A record as layout 1 stored it: format byte 1, then JSON.
fn v1<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![1];
    serde_json::to_writer(&mut out, value).unwrap();
    out
}

/// A layout-1 table: its name and (key, value) rows.
type V1Table<'a> = (&'a str, Vec<(Vec<u8>, Vec<u8>)>);

/// Writes `rows` into layout-1 tables of `<dir>/<file>`, stamped layout 1.
fn write_v1(dir: &std::path::Path, file: &str, tables: &[V1Table<'_>]) {
    let db = redb::Database::create(dir.join(file)).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut meta = tx
            .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap();
        meta.insert("layout_version", 1).unwrap();
        for (name, rows) in tables {
            let mut t = tx
                .open_table(redb::TableDefinition::<&[u8], &[u8]>::new(name))
                .unwrap();
            for (k, v) in rows {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

#[tokio::test]
async fn a_layout_1_database_is_migrated_on_open() {
    use domicile_store::{AuditKind, AuditRecord, RefreshRecord, SessionRecord, SigningKeyRecord};
    let dir = tempfile::tempdir().unwrap();
    let id = "usr_eu_01JD0000000000000000000001";
    let user = UserRecord {
        user_id: id.into(),
        email: "a@example.com".into(),
        email_verified: true,
        password_hash: "h".into(),
        given_name: "Ada".into(),
        family_name: String::new(),
        display_name: String::new(),
        locale: String::new(),
        pending_email: None,
        phone: None,
        pending_phone: None,
        pin: None,
        moving: None,
        created_at: 1,
        updated_at: 1,
        version: 4,
    };
    let session = SessionRecord {
        session_id: "ses_eu_01JD0000000000000000000001".into(),
        user_id: id.into(),
        created_at: 1,
        expires_at: 100,
        revoked_at: None,
        revoked_reason: None,
        client: None,
        browser_hash: None,
        browser_session: None,
        amr: Vec::new(),
    };
    let token = RefreshRecord {
        token_hash: [5; 32],
        session_id: session.session_id.clone(),
        user_id: id.into(),
        issued_at: 1,
        expires_at: 50,
        used_at: None,
    };
    let key = SigningKeyRecord {
        kid: "eu-1".into(),
        seed: [3; 32],
        created_at: 1,
        retire_at: None,
        not_before: None,
    };
    let event = AuditRecord {
        event_id: "01JD0000000000000000000001".into(),
        user_id: id.into(),
        at: 1,
        kind: AuditKind::Registered,
        session_id: None,
        detail: String::new(),
        expires_at: 1000,
    };
    let mut audit_key = id.as_bytes().to_vec();
    audit_key.push(0);
    audit_key.extend_from_slice(event.event_id.as_bytes());
    write_v1(
        dir.path(),
        "region.redb",
        &[
            ("users", vec![(id.as_bytes().to_vec(), v1(&user))]),
            ("users_by_identifier", vec![(vec![9; 32], v1(&id))]),
            (
                "sessions",
                vec![(session.session_id.as_bytes().to_vec(), v1(&session))],
            ),
            ("refresh_tokens", vec![(vec![5; 32], v1(&token))]),
            ("signing_keys", vec![(b"eu-1".to_vec(), v1(&key))]),
            ("audit_log", vec![(audit_key, v1(&event))]),
        ],
    );
    {
        let store = RegionStore::open_embedded(dir.path(), &eu()).unwrap();
        assert_eq!(store.get_user(id).await.unwrap(), Some(user.clone()));
        assert_eq!(store.signing_keys().await.unwrap(), vec![key.clone()]);
        let export = store.export_user(id).await.unwrap();
        assert_eq!(
            (
                export.identifiers,
                export.sessions,
                export.refresh_tokens,
                export.audit
            ),
            (
                vec![IdentifierKey([9; 32])],
                vec![session.clone()],
                vec![token.clone()],
                vec![event.clone()]
            ),
            "the per-user lists were built"
        );
        // Expiry came along: the token (50) goes at 60. Layout 2 listed the
        // token under its user; layout 3 finds it through its session, so
        // the migration to 3 removed that entry (else it would be purged
        // here too).
        assert_eq!(store.purge_expired(60).await.unwrap(), 1);
        assert_eq!(
            store
                .get_refresh(&session.session_id, &[5; 32], 10)
                .await
                .unwrap(),
            None
        );
        assert!(
            store
                .get_session(&session.session_id, 10)
                .await
                .unwrap()
                .is_some()
        );
    }
    // Stamped layout 3: it opens again as it is.
    let store = RegionStore::open_embedded(dir.path(), &eu()).unwrap();
    assert_eq!(store.get_user(id).await.unwrap(), Some(user));

    #[derive(serde::Serialize)]
    struct Entry {
        region: &'static str,
        user_id: &'static str,
        state: &'static str,
        created_at: i64,
        expires_at: Option<i64>,
    }
    let entry = Entry {
        region: "eu",
        user_id: id,
        state: "active",
        created_at: 1,
        expires_at: None,
    };
    write_v1(
        dir.path(),
        "index.redb",
        &[("home_index", vec![(vec![9; 32], v1(&entry))])],
    );
    let index = IndexStore::open_embedded(dir.path()).unwrap();
    let found = index
        .lookup(&IdentifierKey([9; 32]), 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user_id.as_str(), id);
}

#[tokio::test]
async fn two_handles_in_one_process_share_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let a = RegionStore::open_embedded(dir.path(), &eu()).unwrap();
    // A second node of the region in this process (a canary) opens the same file.
    let b = RegionStore::open_embedded(dir.path(), &eu()).unwrap();
    let key = IdentifierKey([7; 32]);
    assert_eq!(
        a.insert_identifier(&key, "usr_eu_1").await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        b.insert_identifier(&key, "usr_eu_2").await.unwrap(),
        Applied::No("usr_eu_1".into()),
        "one database: the second writer sees the first's row"
    );
    drop(a);
    assert_eq!(
        b.get_identifier(&key).await.unwrap().as_deref(),
        Some("usr_eu_1"),
        "the other handle keeps working"
    );
    drop(b);
    // With every handle gone the file is closed and opens again.
    let c = RegionStore::open_embedded(dir.path(), &eu()).unwrap();
    assert!(c.get_identifier(&key).await.unwrap().is_some());
}

/// Remembers what it was told.
#[derive(Default)]
struct Seen(Mutex<Vec<(&'static str, bool)>>);

impl StoreObserver for Seen {
    fn observe(&self, op: &'static str, _elapsed: Duration, ok: bool) {
        self.0.lock().unwrap().push((op, ok));
    }
}

#[tokio::test]
async fn every_operation_reaches_the_observer_once_with_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Seen::default());
    let store = RegionStore::open_embedded(dir.path(), &eu())
        .unwrap()
        .with_observer(seen.clone());
    store.get_user("usr_eu_1").await.unwrap();
    let foreign = store
        .insert_identifier(&IdentifierKey([1; 32]), "usr_us_1")
        .await
        .unwrap_err();
    assert!(
        foreign.to_string().contains("insert_identifier"),
        "errors name the operation: {foreign}"
    );
    assert_eq!(
        *seen.0.lock().unwrap(),
        vec![("get_user", true), ("insert_identifier", false)]
    );
    let seen_ix = Arc::new(Seen::default());
    let index = IndexStore::open_embedded(dir.path())
        .unwrap()
        .with_observer(seen_ix.clone());
    index.lookup(&IdentifierKey([1; 32]), 0).await.unwrap();
    assert_eq!(*seen_ix.0.lock().unwrap(), vec![("lookup", true)]);
}

#[tokio::test]
async fn errors_name_store_table_and_operation() {
    let dir = tempfile::tempdir().unwrap();
    let id = "usr_eu_01JD0000000000000000000001";
    drop(RegionStore::open_embedded(dir.path(), &eu()).unwrap());
    {
        // A users row written by a future build: record format 9.
        let db = redb::Database::create(dir.path().join("region.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx
                .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("users"))
                .unwrap();
            let mut value = i64::MAX.to_be_bytes().to_vec();
            value.extend_from_slice(&[9, b'{', b'}']);
            t.insert(id.as_bytes(), value.as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let store = RegionStore::open_embedded(dir.path(), &eu()).unwrap();
    match store.get_user(id).await {
        Err(StoreError::Corrupt {
            store, table, op, ..
        }) => assert_eq!(
            (store.as_str(), table, op),
            ("embedded:eu", "users", "get_user")
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
