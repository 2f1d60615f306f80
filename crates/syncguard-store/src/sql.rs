//! Building SQL text at run time: the one way to write a numbered placeholder, a tiny builder
//! for the few queries whose WHERE clause depends on optional filters (with the one dialect
//! difference those filters meet: membership in a list), and keyset-paged lists.

use crate::page::{decode_cursor, Page, PageRequest};
use crate::row::{FromDbRow, RowResult};
use crate::{on_reader, Backend, Result, Store};

/// The numbered placeholder `$n` (both backends accept this form).
pub(crate) fn placeholder(n: usize) -> String {
    format!("${n}")
}

/// `($first, $first+1, …), (…)`: `rows` groups of `cols` numbered placeholders.
pub(crate) fn placeholders(first: usize, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (0..cols)
                .map(|c| placeholder(first + r * cols + c))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone)]
pub(crate) enum Bind {
    I64(i64),
    Str(String),
}

/// WHERE conditions joined by AND, with positional `$n` binds.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    parts: Vec<String>,
    pub(crate) binds: Vec<Bind>,
}

impl Conditions {
    /// The placeholder for the next bind.
    pub(crate) fn push_bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        placeholder(self.binds.len())
    }

    /// Adds `cond`, where each `?` in it is replaced by the placeholder of the next bind.
    pub(crate) fn and(&mut self, cond: &str, binds: Vec<Bind>) -> &mut Self {
        let mut out = String::new();
        let mut binds = binds.into_iter();
        for ch in cond.chars() {
            if ch == '?' {
                let b = binds.next().expect("one bind per placeholder");
                out.push_str(&self.push_bind(b));
            } else {
                out.push(ch);
            }
        }
        self.parts.push(out);
        self
    }

    /// `col` is one of `values` (a JSON array of strings bound as one text parameter).
    pub(crate) fn and_in_list(
        &mut self,
        backend: Backend,
        col: &str,
        values: &[String],
    ) -> &mut Self {
        let json = serde_json::to_string(values).expect("strings serialize");
        let ph = self.push_bind(Bind::Str(json));
        let cond = match backend {
            Backend::Sqlite => format!("{col} IN (SELECT value FROM json_each({ph}))"),
            Backend::Postgres => {
                format!("{col} IN (SELECT json_array_elements_text(CAST({ph} AS json)))")
            }
        };
        self.parts.push(cond);
        self
    }

    pub(crate) fn where_clause(&self) -> String {
        if self.parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.parts.join(" AND "))
        }
    }
}

/// Binds every value of `binds` onto `q`, in order.
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                $crate::sql::Bind::I64(v) => q.bind(*v),
                $crate::sql::Bind::Str(v) => q.bind(v.clone()),
            };
        }
        q
    }};
}
pub(crate) use bind_all;

impl Store {
    /// One page of rows matching `c`, newest first, continued by keyset on the integer column
    /// `id_col`: `SELECT {columns} FROM {from}` with `id_col < cursor`, `page.limit + 1` fetched
    /// so that the extra row only says whether another page exists (SPEC §3.8).
    pub(crate) async fn list_newest_first<T>(
        &self,
        columns: &str,
        from: &str,
        id_col: &str,
        mut c: Conditions,
        page: &PageRequest,
        id: fn(&T) -> i64,
    ) -> Result<Page<T>>
    where
        T: FromDbRow,
    {
        if let Some(before) = page
            .after
            .as_deref()
            .and_then(decode_cursor)
            .and_then(|s| s.parse::<i64>().ok())
        {
            c.and(&format!("{id_col} < ?"), vec![Bind::I64(before)]);
        }
        let limit = c.push_bind(Bind::I64(page.limit + 1));
        let sql = format!(
            "SELECT {columns} FROM {from}{} ORDER BY {id_col} DESC LIMIT {limit}",
            c.where_clause()
        );
        on_reader!(self, p => {
            let rows = bind_all!(sqlx::query(&sql), &c.binds).fetch_all(p).await?;
            let items = rows.iter().map(T::from_row).collect::<RowResult<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, page.limit, |t| id(t).to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_row_groups() {
        assert_eq!(placeholder(7), "$7");
        assert_eq!(placeholders(3, 2, 2), "($3, $4), ($5, $6)");
        let mut c = Conditions::default();
        c.and("a = ? AND b = ?", vec![Bind::I64(1), Bind::Str("x".into())]);
        assert_eq!(c.push_bind(Bind::I64(2)), "$3");
        assert_eq!(c.where_clause(), " WHERE a = $1 AND b = $2");
    }
}
