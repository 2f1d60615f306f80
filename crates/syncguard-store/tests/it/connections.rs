use crate::T0;
use serde_json::json;
use syncguard_store::connections::{NewConnection, SealedSecrets};
use syncguard_store::page::PageRequest;
use syncguard_store::testkit::TestDb;
use syncguard_store::{Scope, StoreError};

crate::on_both_stores!(
    connections_are_scoped_and_secrets_kept_apart,
    status_changes_are_recorded
);

async fn setup(db: &TestDb) -> (String, String) {
    let a = db.store.create_tenant("a", T0).await.unwrap().id;
    let b = db.store.create_tenant("b", T0).await.unwrap().id;
    (a, b)
}

fn new_conn(tenant: &str, id: &str, name: &str) -> NewConnection {
    NewConnection {
        id: id.into(),
        tenant_id: tenant.into(),
        provider: "trackstar".into(),
        name: name.into(),
        status: "active".into(),
        config: json!({"resources": ["orders"]}),
        credentials: Some(b"sealed-creds".to_vec()),
        webhook_secrets: None,
    }
}

async fn connections_are_scoped_and_secrets_kept_apart(db: TestDb) {
    let (a, b) = setup(&db).await;
    let c = db
        .store
        .create_connection(new_conn(&a, "con_1", "brand_1"), T0)
        .await
        .unwrap();
    assert!(c.has_credentials);
    assert_eq!(c.config["resources"][0], "orders");
    let dup = db
        .store
        .create_connection(new_conn(&a, "con_2", "brand_1"), T0)
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)));
    db.store
        .create_connection(new_conn(&a, "con_3", "brand_3"), T0)
        .await
        .unwrap();
    let page = PageRequest {
        after: None,
        limit: 50,
    };
    assert!(db
        .store
        .get_connection(&Scope::Tenant(b.clone()), None, "con_1")
        .await
        .unwrap()
        .is_none());
    assert!(db
        .store
        .list_connections(&Scope::Tenant(b), None, &page)
        .await
        .unwrap()
        .items
        .is_empty());
    let only = db
        .store
        .list_connections(
            &Scope::Tenant(a.clone()),
            Some(&["con_3".to_string()]),
            &page,
        )
        .await
        .unwrap();
    assert_eq!(
        only.items.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec!["con_3"]
    );
    let secrets = db.store.connection_secrets("con_1").await.unwrap().unwrap();
    assert_eq!(secrets.credentials.as_deref(), Some(&b"sealed-creds"[..]));
    db.store
        .set_connection_secrets(
            "con_1",
            &SealedSecrets {
                credentials: None,
                webhook_secrets: None,
            },
            T0 + 1,
        )
        .await
        .unwrap();
    assert!(
        !db.store
            .get_connection(&Scope::All, None, "con_1")
            .await
            .unwrap()
            .unwrap()
            .has_credentials
    );
    assert_eq!(
        db.store.connections_with_secrets().await.unwrap(),
        vec!["con_3".to_string()]
    );
}

async fn status_changes_are_recorded(db: TestDb) {
    let (a, _) = setup(&db).await;
    db.store
        .create_connection(new_conn(&a, "con_1", "brand_1"), T0)
        .await
        .unwrap();
    assert_eq!(
        db.store
            .set_connection_status("con_1", "paused", "operator", T0 + 1)
            .await
            .unwrap(),
        "active"
    );
    assert_eq!(
        db.store
            .get_connection(&Scope::All, None, "con_1")
            .await
            .unwrap()
            .unwrap()
            .status,
        "paused"
    );
    db.store
        .touch_connection_webhook("con_1", T0 + 5)
        .await
        .unwrap();
    db.store
        .touch_connection_webhook("con_1", T0 + 2)
        .await
        .unwrap();
    assert_eq!(
        db.store
            .get_connection(&Scope::All, None, "con_1")
            .await
            .unwrap()
            .unwrap()
            .last_webhook_at,
        Some(T0 + 5)
    );
    assert!(matches!(
        db.store
            .set_connection_status("con_x", "paused", "x", T0)
            .await,
        Err(StoreError::NotFound)
    ));
}
