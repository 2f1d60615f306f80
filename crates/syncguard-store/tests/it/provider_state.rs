//! Shared provider state: circuit rows and rate-limiter rows change atomically, list by tenant,
//! and key rotation never overwrites secrets changed under it.

use crate::T0;
use serde_json::json;
use std::sync::Arc;
use syncguard_core::breaker::{BreakerConfig, ForceMode, Outcome};
use syncguard_core::limiter::LimitConfig;
use syncguard_store::connections::{NewConnection, SealedSecrets};
use syncguard_store::page::PageRequest;
use syncguard_store::provider_state::{CircuitFilter, CircuitOwner};
use syncguard_store::testkit::TestDb;
use syncguard_store::Scope;

crate::on_both_stores!(
    circuits_list_by_tenant_with_a_fresh_breaker_for_every_connection,
    circuit_updates_lose_nothing_under_concurrency,
    limiter_acquires_are_atomic_against_the_database_clock,
    secrets_are_replaced_only_if_unchanged
);

async fn connection(db: &TestDb, tenant: &str, id: &str, provider: &str) {
    let c = NewConnection {
        id: id.into(),
        tenant_id: tenant.into(),
        provider: provider.into(),
        name: id.into(),
        status: "active".into(),
        config: json!({"circuit": {"window_s": 60}}),
        credentials: Some(b"sealed-a".to_vec()),
        webhook_secrets: None,
    };
    db.store.create_connection(c, T0).await.unwrap();
}

fn page(limit: i64, after: Option<String>) -> PageRequest {
    PageRequest { after, limit }
}

async fn circuits_list_by_tenant_with_a_fresh_breaker_for_every_connection(db: TestDb) {
    let a = db.store.create_tenant("a", T0).await.unwrap().id;
    let b = db.store.create_tenant("b", T0).await.unwrap().id;
    connection(&db, &a, "con_a1", "trackstar").await;
    connection(&db, &a, "con_a2", "ebay").await;
    connection(&db, &b, "con_b1", "trackstar").await;
    let scope_a = Scope::Tenant(a.clone());
    let listed = db
        .store
        .list_circuits(&scope_a, None, &CircuitFilter::default(), &page(50, None))
        .await
        .unwrap();
    let keys: Vec<_> = listed.items.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["con_a1:trackstar", "con_a2:ebay"]);
    assert!(listed
        .items
        .iter()
        .all(|r| r.updated_at.is_none() && r.machine == Default::default()));
    assert_eq!(listed.items[0].connection_config["circuit"]["window_s"], 60);

    let owner = CircuitOwner {
        tenant_id: &a,
        connection_id: "con_a1",
        provider: "trackstar",
    };
    let (t, machine) = db
        .store
        .update_circuit(owner, T0, |m| m.force(ForceMode::Open, T0))
        .await
        .unwrap();
    assert!(t.is_some());
    assert_eq!(
        db.store.circuit("con_a1:trackstar").await.unwrap(),
        Some(machine)
    );
    let open = CircuitFilter {
        state: Some("open".into()),
        ..Default::default()
    };
    let only = db
        .store
        .list_circuits(&scope_a, None, &open, &page(50, None))
        .await
        .unwrap()
        .items;
    assert_eq!(
        (only.len(), only[0].key.as_str(), only[0].updated_at),
        (1, "con_a1:trackstar", Some(T0))
    );
    // Another tenant sees neither the row nor its connection.
    let of_b = db
        .store
        .list_circuits(
            &Scope::Tenant(b),
            None,
            &CircuitFilter::default(),
            &page(50, None),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(
        of_b.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["con_b1:trackstar"]
    );
    // Key-limited callers and paging.
    let visible = vec!["con_a2".to_string()];
    let limited = db
        .store
        .list_circuits(
            &scope_a,
            Some(&visible),
            &CircuitFilter::default(),
            &page(50, None),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(limited.len(), 1);
    let first = db
        .store
        .list_circuits(&Scope::All, None, &CircuitFilter::default(), &page(2, None))
        .await
        .unwrap();
    let rest = db
        .store
        .list_circuits(
            &Scope::All,
            None,
            &CircuitFilter::default(),
            &page(2, first.next_cursor.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        (first.items.len(), rest.items.len(), rest.next_cursor),
        (2, 1, None)
    );
    let mut counts = db.store.circuit_counts().await.unwrap();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("ebay".into(), "closed".into(), 1),
            ("trackstar".into(), "closed".into(), 1),
            ("trackstar".into(), "open".into(), 1)
        ]
    );
}

async fn circuit_updates_lose_nothing_under_concurrency(db: TestDb) {
    let a = db.store.create_tenant("a", T0).await.unwrap().id;
    connection(&db, &a, "con_1", "trackstar").await;
    // Never trips, so every failure stays counted.
    let cfg = BreakerConfig {
        min_calls: 1_000,
        ..Default::default()
    };
    let tenant = Arc::new(a);
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (store, tenant) = (db.store.clone(), tenant.clone());
            tokio::spawn(async move {
                let owner = CircuitOwner {
                    tenant_id: &tenant,
                    connection_id: "con_1",
                    provider: "trackstar",
                };
                store
                    .update_circuit(owner, T0, |m| m.record(&cfg, Outcome::Failure, T0))
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let machine = db.store.circuit("con_1:trackstar").await.unwrap().unwrap();
    assert_eq!(
        (machine.failures(&cfg, T0), machine.calls(&cfg, T0)),
        (24, 24)
    );
}

async fn limiter_acquires_are_atomic_against_the_database_clock(db: TestDb) {
    // One call per 1000 s after a burst of 10: within the test exactly 10 acquires can win.
    let cfg = LimitConfig::new(0.001, 10);
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move {
                store
                    .update_limiter("p:cred", "p", |s, now| s.acquire(&cfg, now).is_ok())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    assert_eq!(admitted, 10);
    let (state, db_now) = db.store.limiter_state("p:cred").await.unwrap().unwrap();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (db_now - wall).abs() < 5_000,
        "the database clock is the wall clock ({db_now} vs {wall})"
    );
    assert!(state.near_depletion(&cfg, db_now));
    assert!(db.store.limiter_state("p:other").await.unwrap().is_none());
}

async fn secrets_are_replaced_only_if_unchanged(db: TestDb) {
    let a = db.store.create_tenant("a", T0).await.unwrap().id;
    connection(&db, &a, "con_1", "trackstar").await;
    let old = SealedSecrets {
        credentials: Some(b"sealed-a".to_vec()),
        webhook_secrets: None,
    };
    let new = SealedSecrets {
        credentials: Some(b"sealed-b".to_vec()),
        webhook_secrets: None,
    };
    assert!(db
        .store
        .replace_connection_secrets_if_unchanged("con_1", &old, &new, T0 + 1)
        .await
        .unwrap());
    assert_eq!(
        db.store.connection_secrets("con_1").await.unwrap(),
        Some(new.clone())
    );
    // What was read is no longer there: nothing is overwritten.
    let other = SealedSecrets {
        credentials: Some(b"sealed-c".to_vec()),
        webhook_secrets: Some(b"w".to_vec()),
    };
    assert!(!db
        .store
        .replace_connection_secrets_if_unchanged("con_1", &old, &other, T0 + 2)
        .await
        .unwrap());
    assert_eq!(
        db.store.connection_secrets("con_1").await.unwrap(),
        Some(new)
    );
}
