//! The two dialects of each migration must build the same schema: the same tables and columns
//! (types mapped to portable names), keys, unique constraints and indexes.

use syncguard_store::testkit::{self, Schema};
use syncguard_store::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_schemas_match() {
    let sqlite = testkit::fresh(Backend::Sqlite).await;
    let postgres = testkit::fresh(Backend::Postgres).await;
    let a = testkit::schema(&sqlite.store).await;
    let b = testkit::schema(&postgres.store).await;
    assert!(
        a.tables.len() > 20,
        "the schema was read: {:?}",
        a.tables.keys()
    );
    assert!(
        a.indexes.len() > 10,
        "indexes were read: {:?}",
        a.indexes.keys()
    );
    assert_same(&a, &b);
}

/// Compares table by table and index by index, so that a failure names the difference.
fn assert_same(sqlite: &Schema, postgres: &Schema) {
    let names = |s: &Schema| s.tables.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(sqlite), names(postgres), "tables");
    for (name, table) in &sqlite.tables {
        assert_eq!(table, &postgres.tables[name], "table {name}");
    }
    let names = |s: &Schema| s.indexes.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(sqlite), names(postgres), "indexes");
    for (name, index) in &sqlite.indexes {
        assert_eq!(index, &postgres.indexes[name], "index {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_difference_is_seen() {
    let sqlite = testkit::fresh(Backend::Sqlite).await;
    let a = testkit::schema(&sqlite.store).await;
    let mut b = a.clone();
    let table = b.tables.values_mut().next().expect("a table");
    let col = table.columns.values_mut().next().expect("a column");
    col.1 = !col.1;
    assert!(std::panic::catch_unwind(|| assert_same(&a, &b)).is_err());
    let mut c = a.clone();
    let index = c.indexes.values_mut().next().expect("an index");
    index.unique = !index.unique;
    assert!(std::panic::catch_unwind(|| assert_same(&a, &c)).is_err());
}
