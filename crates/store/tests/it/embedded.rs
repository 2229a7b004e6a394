use domicile_core::{RegionCode, index::IdentifierKey};
use domicile_store::{
    Applied, EmbeddedIndex, EmbeddedRegion, IndexStore, RegionStore, StoreError, UserRecord,
    conformance,
};

fn eu() -> RegionCode {
    RegionCode::parse("eu").unwrap()
}

#[tokio::test]
async fn embedded_region_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedRegion::open(dir.path(), &eu()).unwrap();
    conformance::region_store(&store).await;
}

#[tokio::test]
async fn embedded_index_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let index = EmbeddedIndex::open(dir.path()).unwrap();
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
        created_at: 1,
        updated_at: 1,
        version: 1,
    };
    {
        let store = EmbeddedRegion::open(dir.path(), &eu()).unwrap();
        assert_eq!(store.insert_user(&user).await.unwrap(), Applied::Yes);
        assert_eq!(
            store
                .insert_identifier(&IdentifierKey([4; 32]), "usr_eu_x")
                .await
                .unwrap(),
            Applied::Yes
        );
    }
    let store = EmbeddedRegion::open(dir.path(), &eu()).unwrap();
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
    let store = std::sync::Arc::new(EmbeddedRegion::open(dir.path(), &eu()).unwrap());
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.insert_identifier(&IdentifierKey([7; 32]), &format!("u{i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap().is_applied() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = redb_handle(dir.path());
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("layout_version", 99).unwrap();
        }
        tx.commit().unwrap();
    }
    match EmbeddedIndex::open(dir.path()) {
        Err(StoreError::FutureFormat { found: 99, .. }) => {}
        other => panic!(
            "expected FutureFormat, got {:?}",
            other.map(|i| i.describe())
        ),
    }
}

fn redb_handle(dir: &std::path::Path) -> redb::Database {
    redb::Database::create(dir.join("index.redb")).unwrap()
}

#[tokio::test]
async fn two_handles_in_one_process_share_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let a = EmbeddedRegion::open(dir.path(), &eu()).unwrap();
    // A second node of the region in this process (a canary) opens the same file.
    let b = EmbeddedRegion::open(dir.path(), &eu()).unwrap();
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
    let c = EmbeddedRegion::open(dir.path(), &eu()).unwrap();
    assert!(c.get_identifier(&key).await.unwrap().is_some());
}
