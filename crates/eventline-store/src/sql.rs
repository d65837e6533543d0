//! A statement's parameters as the PostgreSQL store's SQL is written: each value bound to
//! a placeholder, in order.

use uuid::Uuid;

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
    Id(Uuid),
}

/// A statement's parameters, bound as `$1`, `$2`…
#[derive(Default)]
pub(crate) struct Sql {
    pub(crate) params: Vec<Param>,
}

impl Sql {
    /// Binds `param` and returns its placeholder.
    pub(crate) fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        format!("${}", self.params.len())
    }
}
