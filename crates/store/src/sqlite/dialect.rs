//! SQLite spellings of what the two dialects write differently.

use sqlx::{QueryBuilder, Sqlite};

/// `column` contains `value` (case-sensitive, unlike SQLite's LIKE).
pub(crate) fn push_contains(qb: &mut QueryBuilder<'static, Sqlite>, column: &str, value: String) {
    qb.push("instr(")
        .push(column)
        .push(", ")
        .push_bind(value)
        .push(") > 0");
}

/// The JSON label map in `column` has `key` = `value`.
pub(crate) fn push_label_eq(
    qb: &mut QueryBuilder<'static, Sqlite>,
    column: &str,
    key: String,
    value: String,
) {
    qb.push("EXISTS (SELECT 1 FROM json_each(")
        .push(column)
        .push(") WHERE json_each.key = ")
        .push_bind(key)
        .push(" AND json_each.value = ")
        .push_bind(value)
        .push(")");
}

/// Write transactions take the write lock up front: a deferred transaction that reads and then
/// writes fails with SQLITE_BUSY (no busy wait) when another connection wrote in between.
pub(crate) const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Row locks: SQLite's write transactions (BEGIN IMMEDIATE) are already serialised.
pub(crate) const LOCK_SHARE: &str = "";
/// See [`LOCK_SHARE`].
pub(crate) const LOCK_UPDATE: &str = "";
