//! PostgreSQL spellings of what the two dialects write differently.

use sqlx::{Postgres, QueryBuilder};

/// `column` contains `value` (case-sensitive).
pub(crate) fn push_contains(qb: &mut QueryBuilder<'static, Postgres>, column: &str, value: String) {
    qb.push("strpos(")
        .push(column)
        .push(", ")
        .push_bind(value)
        .push(") > 0");
}

/// The JSON label map in `column` has `key` = `value`.
pub(crate) fn push_label_eq(
    qb: &mut QueryBuilder<'static, Postgres>,
    column: &str,
    key: String,
    value: String,
) {
    qb.push("(")
        .push(column)
        .push("::jsonb ->> ")
        .push_bind(key)
        .push(") = ")
        .push_bind(value);
}

/// Write transactions: PostgreSQL's row locks make a plain BEGIN right.
pub(crate) const BEGIN_WRITE: &str = "BEGIN";

/// A referenced row is locked while a write that references it commits, so a concurrent delete
/// of that row waits and then sees the new reference (READ COMMITTED alone would miss it).
pub(crate) const LOCK_SHARE: &str = " FOR SHARE";
/// The row being deleted is locked first, so concurrent writes referencing it wait for the
/// delete and then find it gone.
pub(crate) const LOCK_UPDATE: &str = " FOR UPDATE";
