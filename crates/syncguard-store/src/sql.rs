//! A tiny builder for the few queries whose WHERE clause depends on optional filters, with the
//! one dialect difference those filters meet (membership in a list).

use crate::Backend;

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
        format!("${}", self.binds.len())
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
