use crate::T0;
use serde_json::json;
use syncguard_store::connections::{NewConnection, SealedSecrets};
use syncguard_store::page::PageRequest;
use syncguard_store::queue::{Completion, JobState, NewJob, Outcome};
use syncguard_store::testkit::TestDb;
use syncguard_store::{Scope, StoreError};

crate::on_both_stores!(
    connections_are_scoped_and_secrets_kept_apart,
    status_changes_are_recorded,
    disconnect_cancels_the_connections_work_with_it
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

async fn disconnect_cancels_the_connections_work_with_it(db: TestDb) {
    let (a, _) = setup(&db).await;
    let s = &db.store;
    for (id, name) in [("con_1", "brand_1"), ("con_2", "brand_2")] {
        s.create_connection(new_conn(&a, id, name), T0)
            .await
            .unwrap();
    }
    let job = |conn: &str, n: i64| NewJob {
        connection_id: Some(conn.into()),
        ..NewJob::new("sync.resource", json!({ "n": n }))
    };
    let running = s.enqueue(&job("con_1", 1), T0).await.unwrap().id;
    let claimed = s.claim_jobs("w1", 1, T0, 30_000, None).await.unwrap();
    assert_eq!(claimed[0].id, running);
    let queued = s.enqueue(&job("con_1", 2), T0).await.unwrap().id;
    let other = s.enqueue(&job("con_2", 3), T0).await.unwrap().id;

    let done = s
        .disconnect_connection("con_1", "test", None, T0 + 1)
        .await
        .unwrap();
    assert_eq!((done.from.as_str(), done.cancelled_jobs), ("active", 2));
    let state = |id| async move {
        s.get_job(&Scope::All, None, id)
            .await
            .unwrap()
            .unwrap()
            .state
    };
    assert_eq!(state(running).await, JobState::Cancelled);
    assert_eq!(state(queued).await, JobState::Cancelled);
    assert_eq!(
        state(other).await,
        JobState::Available,
        "another connection's work is kept"
    );
    let secrets = s.connection_secrets("con_1").await.unwrap().unwrap();
    assert_eq!((secrets.credentials, secrets.webhook_secrets), (None, None));

    // The worker that held the running job finishes later: its result is discarded.
    s.complete_jobs(
        "w1",
        &[Completion {
            id: running,
            lease_id: claimed[0].fence().map(|f| f.lease_id),
            outcome: Outcome::Succeeded,
        }],
        T0 + 2,
    )
    .await
    .unwrap();
    assert_eq!(state(running).await, JobState::Cancelled);
    // A repeated disconnect finds nothing left to cancel.
    let again = s
        .disconnect_connection("con_1", "test", None, T0 + 3)
        .await
        .unwrap();
    assert_eq!(
        (again.from.as_str(), again.cancelled_jobs),
        ("disconnected", 0)
    );
}
