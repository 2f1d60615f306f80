//! Store conformance suite: every test runs once on SQLite and once on PostgreSQL.

mod access;
mod bootstrap;
mod checkpoints;
mod connections;
mod dead_letters;
mod events;
mod fairness;
mod fencing;
mod leader;
mod limiter;
mod modules;
mod provider_state;
mod publish;
mod queue;
mod records;
mod retention;
mod schema;

/// Declares each listed `async fn name(db: TestDb)` as two tests, `sqlite::name` and
/// `postgres::name`, each on a fresh migrated store.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(syncguard_store::testkit::fresh(syncguard_store::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(syncguard_store::testkit::fresh(syncguard_store::Backend::Postgres).await).await
                }
            )*
        }
    };
}

/// A fixed point in time, so that tests never depend on the machine's clock.
pub const T0: i64 = 1_800_000_000_000;
