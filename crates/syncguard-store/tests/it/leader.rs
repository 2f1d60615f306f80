//! Leadership of once-per-cluster work (the periodic scheduler).

use std::time::{Duration, Instant};
use syncguard_store::testkit::TestDb;
use syncguard_store::Backend;

crate::on_both_stores!(closing_the_store_ends_leadership_and_does_not_wait_on_it);

const LOCK: i64 = 42;

/// A node that closes its store while leading (an outage drill, a shutdown out of order) gives
/// leadership up at the next check instead of keeping `close` waiting on the held connection.
async fn closing_the_store_ends_leadership_and_does_not_wait_on_it(db: TestDb) {
    let store = db.store.clone();
    let mut held = store
        .try_lead(LOCK)
        .await
        .unwrap()
        .expect("the only node leads");
    assert!(held.still_held().await);
    let closing = tokio::spawn({
        let store = store.clone();
        async move { store.close().await }
    });
    if store.backend() == Backend::Postgres {
        // `close` marks the pool closed at once, then waits for the held connection.
        let deadline = Instant::now() + Duration::from_secs(10);
        while held.still_held().await {
            assert!(
                Instant::now() < deadline,
                "leadership over a closed pool is given up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), closing)
        .await
        .expect("close finishes once leadership is given up")
        .unwrap();
}
