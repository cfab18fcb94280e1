//! The list query of the Konnect-style APIs: `filter[field][op]=value`, `sort`, `page[size]`,
//! `page[number]`. The admin API parses and checks it against each collection's allowed fields;
//! the store executes it.

/// How a filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// Equal.
    Eq,
    /// Not equal.
    Neq,
    /// Substring (case-sensitive).
    Contains,
}

/// One `filter[field][op]=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The field (already checked against the collection's allowed fields).
    pub field: String,
    /// The comparison.
    pub op: FilterOp,
    /// The value as given; booleans arrive as `"true"`/`"false"`.
    pub value: String,
}

/// One sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// The field (already checked).
    pub field: String,
    /// Descending when true.
    pub desc: bool,
}

/// A checked list query.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// All filters must match.
    pub filters: Vec<Filter>,
    /// Sort keys in order; the store appends `id` as the final tie-breaker.
    pub sort: Vec<SortKey>,
    /// Page size, 1..=1000.
    pub page_size: u32,
    /// Page number, 1-based.
    pub page_number: u32,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            filters: Vec::new(),
            sort: Vec::new(),
            page_size: DEFAULT_PAGE_SIZE,
            page_number: 1,
        }
    }
}

/// Default `page[size]`.
pub const DEFAULT_PAGE_SIZE: u32 = 10;
/// Largest `page[size]`.
pub const MAX_PAGE_SIZE: u32 = 1000;

impl ListQuery {
    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        u64::from(self.page_number.saturating_sub(1)) * u64::from(self.page_size)
    }
}

/// One page of results with the total count.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Rows matching the filters, over all pages.
    pub total: u64,
}
