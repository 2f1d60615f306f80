//! One way to read a column, whichever backend the row came from, so each model maps its row
//! once instead of once per backend.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

pub(crate) type RowResult<T> = Result<T, sqlx::Error>;

pub(crate) trait DbRow {
    fn i64(&self, col: &str) -> RowResult<i64>;
    fn opt_i64(&self, col: &str) -> RowResult<Option<i64>>;
    fn string(&self, col: &str) -> RowResult<String>;
    fn opt_string(&self, col: &str) -> RowResult<Option<String>>;
    fn bool(&self, col: &str) -> RowResult<bool>;
    fn opt_bytes(&self, col: &str) -> RowResult<Option<Vec<u8>>>;
}

macro_rules! impl_db_row {
    ($row:ty) => {
        impl DbRow for $row {
            fn i64(&self, col: &str) -> RowResult<i64> {
                self.try_get(col)
            }
            fn opt_i64(&self, col: &str) -> RowResult<Option<i64>> {
                self.try_get(col)
            }
            fn string(&self, col: &str) -> RowResult<String> {
                self.try_get(col)
            }
            fn opt_string(&self, col: &str) -> RowResult<Option<String>> {
                self.try_get(col)
            }
            fn bool(&self, col: &str) -> RowResult<bool> {
                self.try_get(col)
            }
            fn opt_bytes(&self, col: &str) -> RowResult<Option<Vec<u8>>> {
                self.try_get(col)
            }
        }
    };
}
impl_db_row!(SqliteRow);
impl_db_row!(PgRow);

/// A model that can be read from a row of either backend.
pub(crate) trait FromDbRow: Sized {
    fn from_row(row: &impl DbRow) -> RowResult<Self>;
}
