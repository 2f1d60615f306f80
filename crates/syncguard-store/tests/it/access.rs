use crate::T0;
use syncguard_core::role::Role;
use syncguard_store::audit::NewAudit;
use syncguard_store::idempotency::{Claim, StoredResponse};
use syncguard_store::page::PageRequest;
use syncguard_store::tenancy::{KeyBounds, NewApiKey};
use syncguard_store::testkit::TestDb;
use syncguard_store::{Scope, StoreError};

crate::on_both_stores!(
    migrations_are_idempotent,
    tenants_are_unique_by_name,
    keys_authenticate_until_revoked,
    keys_do_not_cross_tenants,
    idempotency_claims_replay_mismatch_and_in_flight,
    audit_is_scoped,
    keys_see_and_revoke_only_keys_no_broader,
    an_audited_change_rolls_back_with_its_entry,
);

fn page(limit: i64) -> PageRequest {
    PageRequest { after: None, limit }
}

async fn migrations_are_idempotent(db: TestDb) {
    assert!(db.store.migrate().await.unwrap().is_empty());
    assert_eq!(
        db.store.schema_version().await.unwrap(),
        syncguard_store::migrate::latest_version()
    );
}

async fn tenants_are_unique_by_name(db: TestDb) {
    db.store.create_tenant("acme", T0).await.unwrap();
    let err = db.store.create_tenant("acme", T0).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    db.store.create_tenant("globex", T0).await.unwrap();
    let all = db.store.list_tenants(&Scope::All, &page(1)).await.unwrap();
    assert_eq!(all.items.len(), 1);
    let next = PageRequest {
        after: all.next_cursor.clone(),
        limit: 1,
    };
    let rest = db.store.list_tenants(&Scope::All, &next).await.unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_ne!(rest.items[0].id, all.items[0].id);
    assert!(rest.next_cursor.is_none());
}

async fn keys_authenticate_until_revoked(db: TestDb) {
    let t = db.store.create_tenant("acme", T0).await.unwrap();
    let clear = "sg_live_0000000000000000000000000000000000000000000000000000000000001234";
    let key = db
        .store
        .create_api_key(
            NewApiKey {
                id: None,
                tenant_id: Some(t.id.clone()),
                role: Role::Operator,
                name: "ops".into(),
                connections: Some(vec!["con_a".into()]),
            },
            clear,
            T0,
        )
        .await
        .unwrap();
    assert_eq!(key.last4, "1234");
    let found = db
        .store
        .authenticate(clear)
        .await
        .unwrap()
        .expect("key authenticates");
    assert_eq!(found.role, Role::Operator);
    assert_eq!(found.connections, Some(vec!["con_a".to_string()]));
    assert_eq!(found.scope(), Scope::Tenant(t.id.clone()));
    assert!(db
        .store
        .authenticate("sg_live_wrong")
        .await
        .unwrap()
        .is_none());
    db.store
        .revoke_api_key(&Scope::Tenant(t.id.clone()), &key.id, T0 + 1)
        .await
        .unwrap();
    assert!(db.store.authenticate(clear).await.unwrap().is_none());
}

async fn keys_do_not_cross_tenants(db: TestDb) {
    let a = db.store.create_tenant("a", T0).await.unwrap();
    let b = db.store.create_tenant("b", T0).await.unwrap();
    let key = db
        .store
        .create_api_key(
            NewApiKey {
                id: None,
                tenant_id: Some(a.id.clone()),
                role: Role::Admin,
                name: "a".into(),
                connections: None,
            },
            "sg_live_a",
            T0,
        )
        .await
        .unwrap();
    let as_b = Scope::Tenant(b.id.clone());
    assert!(db
        .store
        .list_api_keys(&as_b, &page(50))
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(matches!(
        db.store.revoke_api_key(&as_b, &key.id, T0).await,
        Err(StoreError::NotFound)
    ));
    assert!(db.store.get_tenant(&as_b, &a.id).await.unwrap().is_none());
    assert!(
        db.store.authenticate("sg_live_a").await.unwrap().is_some(),
        "a foreign revoke changed nothing"
    );
}

async fn idempotency_claims_replay_mismatch_and_in_flight(db: TestDb) {
    let s = &db.store;
    assert_eq!(
        s.claim_idempotency_key("key_1", "k", "h1", T0)
            .await
            .unwrap(),
        Claim::New
    );
    assert_eq!(
        s.claim_idempotency_key("key_1", "k", "h1", T0 + 1)
            .await
            .unwrap(),
        Claim::InFlight
    );
    assert_eq!(
        s.claim_idempotency_key("key_1", "k", "h2", T0 + 1)
            .await
            .unwrap(),
        Claim::Mismatch
    );
    let resp = StoredResponse {
        status: 201,
        content_type: Some("application/json".into()),
        body: b"{\"id\":1}".to_vec(),
    };
    s.finish_idempotent("key_1", "k", &resp).await.unwrap();
    assert_eq!(
        s.claim_idempotency_key("key_1", "k", "h1", T0 + 2)
            .await
            .unwrap(),
        Claim::Replay(resp)
    );
    // Another caller's key of the same name is its own.
    assert_eq!(
        s.claim_idempotency_key("key_2", "k", "h9", T0 + 2)
            .await
            .unwrap(),
        Claim::New
    );
    // After 24 h the key is free again.
    let later = T0 + syncguard_store::idempotency::RETENTION_MS + 1;
    assert_eq!(
        s.claim_idempotency_key("key_1", "k", "h2", later)
            .await
            .unwrap(),
        Claim::New
    );
    // A claim released after a server-side failure can be retried at once.
    s.release_idempotency_key("key_1", "k").await.unwrap();
    assert_eq!(
        s.claim_idempotency_key("key_1", "k", "h2", later)
            .await
            .unwrap(),
        Claim::New
    );
}

async fn audit_is_scoped(db: TestDb) {
    use syncguard_store::audit::NewAudit;
    for (tenant, action) in [
        (Some("ten_a"), "key.create"),
        (Some("ten_b"), "key.create"),
        (None, "tenant.create"),
    ] {
        db.store
            .append_audit(
                NewAudit {
                    tenant_id: tenant,
                    actor: "key_x",
                    action,
                    target: None,
                    params: serde_json::json!({"n": 1}),
                    request_id: Some("req"),
                    ..Default::default()
                },
                T0,
            )
            .await
            .unwrap();
    }
    let a = db
        .store
        .list_audit(&Scope::Tenant("ten_a".into()), None, None, &page(50))
        .await
        .unwrap();
    assert_eq!(a.items.len(), 1);
    assert_eq!(a.items[0].params["n"], 1);
    let all = db
        .store
        .list_audit(&Scope::All, None, Some("key.create"), &page(50))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
}

async fn keys_see_and_revoke_only_keys_no_broader(db: TestDb) {
    let s = &db.store;
    let t = s.create_tenant("acme", T0).await.unwrap();
    let scope = Scope::Tenant(t.id.clone());
    let make = |id: &str, role: Role, connections: Option<Vec<&str>>| NewApiKey {
        id: Some(id.to_string()),
        tenant_id: Some(t.id.clone()),
        role,
        name: id.to_string(),
        connections: connections.map(|c| c.into_iter().map(String::from).collect()),
    };
    let keys = [
        make("key_all_admin", Role::Admin, None),
        make("key_a_admin", Role::Admin, Some(vec!["con_a"])),
        make("key_a_viewer", Role::Viewer, Some(vec!["con_a"])),
        make("key_none_viewer", Role::Viewer, Some(vec![])),
        make("key_ab_viewer", Role::Viewer, Some(vec!["con_a", "con_b"])),
        make("key_b_viewer", Role::Viewer, Some(vec!["con_b"])),
        make("key_a_operator", Role::Operator, Some(vec!["con_a"])),
    ];
    for (i, k) in keys.into_iter().enumerate() {
        s.create_api_key(k, &format!("sg_live_bounds_{i}"), T0)
            .await
            .unwrap();
    }
    let mine = vec!["con_a".to_string()];
    let viewer_a = KeyBounds {
        role: Role::Viewer,
        connections: Some(&mine),
    };
    let admin_a = KeyBounds {
        role: Role::Admin,
        connections: Some(&mine),
    };
    let ids = |p: syncguard_store::page::Page<syncguard_store::tenancy::ApiKey>| {
        p.items.into_iter().map(|k| k.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(s
            .list_api_keys_within(&scope, Some(viewer_a), &page(50))
            .await
            .unwrap()),
        vec!["key_a_viewer", "key_none_viewer"]
    );
    assert_eq!(
        ids(s
            .list_api_keys_within(&scope, Some(admin_a), &page(50))
            .await
            .unwrap()),
        vec![
            "key_a_admin",
            "key_a_operator",
            "key_a_viewer",
            "key_none_viewer"
        ]
    );
    assert_eq!(
        s.list_api_keys_within(&scope, None, &page(50))
            .await
            .unwrap()
            .items
            .len(),
        7
    );
    for outside in ["key_all_admin", "key_ab_viewer", "key_b_viewer"] {
        let err = s
            .revoke_api_key_audited(&scope, Some(admin_a), outside, None, T0)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{outside}: {err:?}");
    }
    let err = s
        .revoke_api_key_audited(&scope, Some(viewer_a), "key_a_operator", None, T0)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound),
        "a role above the bound"
    );
    let entry = NewAudit {
        actor: "key_a_admin",
        action: "key.revoke",
        target: Some("key_a_operator"),
        ..Default::default()
    };
    let k = s
        .revoke_api_key_audited(&scope, Some(admin_a), "key_a_operator", Some(entry), T0)
        .await
        .unwrap();
    assert!(k.revoked_at.is_some());
    let audit = s.list_audit(&scope, None, None, &page(50)).await.unwrap();
    assert_eq!(
        audit
            .items
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        vec!["key.revoke"],
        "the entry names the key's tenant"
    );
}

async fn an_audited_change_rolls_back_with_its_entry(db: TestDb) {
    let s = &db.store;
    let entry = NewAudit {
        actor: "key_x",
        action: "tenant.create",
        ..Default::default()
    };
    let t = s
        .create_tenant_audited("acme", Some(entry.clone()), T0)
        .await
        .unwrap();
    // A taken name: neither a tenant nor an entry.
    let err = s
        .create_tenant_audited("acme", Some(entry), T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let audit = s
        .list_audit(&Scope::All, None, None, &page(50))
        .await
        .unwrap();
    assert_eq!(audit.items.len(), 1);
    assert_eq!(
        (
            audit.items[0].tenant_id.as_deref(),
            audit.items[0].target.as_deref()
        ),
        (Some(t.id.as_str()), Some(t.id.as_str()))
    );
    // A scoped read sees only entries about its connections.
    s.append_audit(
        NewAudit {
            tenant_id: Some(&t.id),
            connection_id: Some("con_a"),
            actor: "key_x",
            action: "connection.update",
            ..Default::default()
        },
        T0,
    )
    .await
    .unwrap();
    let scoped = s
        .list_audit(&Scope::All, Some(&["con_a".to_string()]), None, &page(50))
        .await
        .unwrap();
    assert_eq!(
        scoped
            .items
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        vec!["connection.update"]
    );
}
