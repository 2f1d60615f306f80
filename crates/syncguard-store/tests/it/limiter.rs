//! The rate limiter behind the store seam (SPEC §3.3): the same calls behave the same on both
//! backends, wherever the state lives (a shared row on PostgreSQL, this process on SQLite).

use syncguard_core::limiter::{Hints, LimitConfig, WaitReason};
use syncguard_store::testkit::TestDb;
use syncguard_store::Backend;

crate::on_both_stores!(
    acquires_admit_the_burst_then_say_how_long_to_wait,
    concurrent_acquires_from_clones_share_one_limit,
    a_stopping_hint_applies_at_once,
    an_informative_hint_is_seen_by_the_next_acquire,
    empty_hints_change_nothing,
    limiters_are_per_key,
);

/// One call per 1000 s after a burst of 10: within a test exactly 10 acquires can win.
fn slow() -> LimitConfig {
    LimitConfig::new(0.001, 10)
}

/// The wall clock: on PostgreSQL the store evaluates against the database's, which is the
/// same clock, so the two backends see comparable times.
fn wall() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn acquires_admit_the_burst_then_say_how_long_to_wait(db: TestDb) {
    let s = &db.store;
    for i in 0..10 {
        let (ok, _) = s
            .acquire_limiter("p:cred", "p", &slow(), wall())
            .await
            .unwrap();
        assert!(ok.is_ok(), "acquire {i} is within the burst");
    }
    let (refused, reading) = s
        .acquire_limiter("p:cred", "p", &slow(), wall())
        .await
        .unwrap();
    let wait = refused.expect_err("the burst is spent");
    assert_eq!(wait.reason, WaitReason::Rate);
    assert!(wait.retry_in_ms > 900_000, "{wait:?}");
    assert!(reading.state.near_depletion(&slow(), reading.now));
    assert!(
        (reading.now - wall()).abs() < 5_000,
        "read against the wall clock"
    );
}

async fn concurrent_acquires_from_clones_share_one_limit(db: TestDb) {
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move {
                let (ok, _) = store
                    .acquire_limiter("p:cred", "p", &slow(), wall())
                    .await
                    .unwrap();
                ok.is_ok()
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    assert_eq!(admitted, 10);
}

async fn a_stopping_hint_applies_at_once(db: TestDb) {
    let s = &db.store;
    let cfg = LimitConfig::new(100.0, 100);
    let hints = Hints {
        retry_after_ms: Some(60_000),
        ..Hints::default()
    };
    let reading = s
        .observe_limiter("p:cred", "p", hints, wall())
        .await
        .unwrap()
        .expect("a retry-after is applied now");
    assert!(reading.state.near_depletion(&cfg, reading.now));
    let (refused, _) = s
        .acquire_limiter("p:cred", "p", &cfg, wall())
        .await
        .unwrap();
    let wait = refused.expect_err("the provider said wait");
    assert_eq!(wait.reason, WaitReason::Provider);
    assert!(wait.retry_in_ms > 50_000, "{wait:?}");
    if db.backend() == Backend::Postgres {
        let shared = s
            .shared_limiter("p:cred")
            .await
            .unwrap()
            .expect("a shared row");
        assert!(shared.state.near_depletion(&cfg, shared.now));
    }
}

async fn an_informative_hint_is_seen_by_the_next_acquire(db: TestDb) {
    let s = &db.store;
    let cfg = LimitConfig::new(100.0, 100);
    let hints = Hints {
        remaining: Some(5),
        limit: Some(100),
        ..Hints::default()
    };
    let applied = s
        .observe_limiter("p:cred", "p", hints, wall())
        .await
        .unwrap();
    match db.backend() {
        // One node: applied in this process at once.
        Backend::Sqlite => assert!(applied.is_some()),
        // Rides along with the next acquire instead of a transaction of its own.
        Backend::Postgres => {
            assert!(applied.is_none());
            assert!(s.shared_limiter("p:cred").await.unwrap().is_none());
        }
    }
    let (ok, reading) = s
        .acquire_limiter("p:cred", "p", &cfg, wall())
        .await
        .unwrap();
    assert!(ok.is_ok(), "5 calls remaining do not stop calls");
    assert_eq!(reading.state.provider_limit(), Some(100));
    assert!(
        reading.state.near_depletion(&cfg, reading.now),
        "5 of 100 left"
    );
    // The pending hint was used once, not again.
    let (_, again) = s
        .acquire_limiter("p:cred", "p", &cfg, wall())
        .await
        .unwrap();
    assert_eq!(again.state.provider_limit(), Some(100));
}

async fn empty_hints_change_nothing(db: TestDb) {
    let s = &db.store;
    let applied = s
        .observe_limiter("p:cred", "p", Hints::default(), wall())
        .await
        .unwrap();
    assert!(applied.is_none());
    assert!(s.shared_limiter("p:cred").await.unwrap().is_none());
    let (ok, reading) = s
        .acquire_limiter("p:cred", "p", &slow(), wall())
        .await
        .unwrap();
    assert!(ok.is_ok());
    assert!(!reading.state.near_depletion(&slow(), reading.now));
}

async fn limiters_are_per_key(db: TestDb) {
    let s = &db.store;
    for _ in 0..10 {
        s.acquire_limiter("p:a", "p", &slow(), wall())
            .await
            .unwrap()
            .0
            .unwrap();
    }
    assert!(s
        .acquire_limiter("p:a", "p", &slow(), wall())
        .await
        .unwrap()
        .0
        .is_err());
    assert!(s
        .acquire_limiter("p:b", "p", &slow(), wall())
        .await
        .unwrap()
        .0
        .is_ok());
    match db.backend() {
        Backend::Postgres => assert!(s.shared_limiter("p:b").await.unwrap().is_some()),
        Backend::Sqlite => assert!(s.shared_limiter("p:b").await.unwrap().is_none()),
    }
}
