//! Parsing Konnect list parameters (`page[size]`, `page[number]`, `sort`, `filter[f][op]`)
//! against what a collection allows.

use crate::problem::ApiError;
use gatehouse_core::list::{
    DEFAULT_PAGE_SIZE, Filter, FilterOp, ListQuery, MAX_PAGE_SIZE, Page, SortKey,
};
use gatehouse_core::validation::InvalidParameter;

/// What one collection allows.
pub struct Allowed {
    /// Filterable fields with their operators.
    pub filters: &'static [(&'static str, &'static [FilterOp])],
    /// Sortable fields.
    pub sorts: &'static [&'static str],
}

/// Text fields: eq and contains.
pub const TEXT: &[FilterOp] = &[FilterOp::Eq, FilterOp::Contains];
/// Fields matched exactly.
pub const EQ: &[FilterOp] = &[FilterOp::Eq];

/// Parses a raw query string.
pub fn parse(raw: Option<&str>, allowed: &Allowed) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery::default();
    let mut problems = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let (key, value) = (key.as_ref(), value.into_owned());
        match key {
            "page[size]" => match value.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => q.page_size = n,
                _ => problems.push(
                    InvalidParameter::new(
                        key,
                        "is_integer",
                        format!("must be an integer from 1 to {MAX_PAGE_SIZE}"),
                    )
                    .in_query(),
                ),
            },
            "page[number]" => match value.parse::<u32>() {
                Ok(n) if n >= 1 => q.page_number = n,
                _ => problems.push(
                    InvalidParameter::new(key, "is_integer", "must be an integer of at least 1")
                        .in_query(),
                ),
            },
            "sort" => {
                for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let mut words = part.split_whitespace();
                    let field = words.next().unwrap_or("");
                    let desc = match words.next() {
                        None | Some("asc") => false,
                        Some("desc") => true,
                        Some(_) => {
                            problems.push(
                                InvalidParameter::new(
                                    "sort",
                                    "invalid",
                                    format!("'{part}': the direction must be asc or desc"),
                                )
                                .in_query(),
                            );
                            continue;
                        }
                    };
                    if allowed.sorts.contains(&field) {
                        q.sort.push(SortKey {
                            field: field.to_owned(),
                            desc,
                        });
                    } else {
                        problems.push(
                            InvalidParameter::new(
                                "sort",
                                "invalid",
                                format!(
                                    "cannot sort by '{field}'; allowed: {}",
                                    allowed.sorts.join(", ")
                                ),
                            )
                            .in_query(),
                        );
                    }
                }
            }
            k if k.starts_with("filter[") => match parse_filter_key(k) {
                Some((field, op)) => {
                    let op = match op {
                        None | Some("eq") => Some(FilterOp::Eq),
                        Some("neq") => Some(FilterOp::Neq),
                        Some("contains") => Some(FilterOp::Contains),
                        Some(_) => None,
                    };
                    match (allowed.filters.iter().find(|(f, _)| *f == field), op) {
                        (Some((_, ops)), Some(op)) if ops.contains(&op) => q.filters.push(Filter {
                            field: field.to_owned(),
                            op,
                            value,
                        }),
                        (Some(_), _) => problems.push(
                            InvalidParameter::new(
                                k,
                                "invalid",
                                "this operator is not supported for the field",
                            )
                            .in_query(),
                        ),
                        (None, _) => problems.push(
                            InvalidParameter::new(
                                k,
                                "invalid",
                                format!(
                                    "cannot filter by '{field}'; allowed: {}",
                                    allowed
                                        .filters
                                        .iter()
                                        .map(|(f, _)| *f)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            )
                            .in_query(),
                        ),
                    }
                }
                None => problems.push(
                    InvalidParameter::new(
                        k,
                        "invalid",
                        "expected filter[field] or filter[field][op]",
                    )
                    .in_query(),
                ),
            },
            _ => {} // Other parameters (e.g. force on DELETE) belong to the handler.
        }
    }
    if problems.is_empty() {
        Ok(q)
    } else {
        Err(ApiError::Invalid(problems))
    }
}

fn parse_filter_key(k: &str) -> Option<(&str, Option<&str>)> {
    let rest = k.strip_prefix("filter[")?;
    let (field, rest) = rest.split_once(']')?;
    if rest.is_empty() {
        return Some((field, None));
    }
    let op = rest.strip_prefix('[')?.strip_suffix(']')?;
    Some((field, Some(op)))
}

/// The Konnect list envelope.
pub fn envelope<T>(
    page: Page<T>,
    q: &ListQuery,
    render: impl Fn(&T) -> serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "data": page.items.iter().map(render).collect::<Vec<_>>(),
        "meta": {"page": {"number": q.page_number, "size": q.page_size, "total": page.total}},
    })
}

/// Default page size, re-exported for docs.
pub const DEFAULT_SIZE: u32 = DEFAULT_PAGE_SIZE;

#[cfg(test)]
mod tests {
    use super::*;

    const A: Allowed = Allowed {
        filters: &[("name", TEXT), ("id", EQ)],
        sorts: &["name", "created_at"],
    };

    #[test]
    fn parses_konnect_parameters() {
        let q = parse(Some("page%5Bsize%5D=5&page[number]=2&sort=name desc,created_at&filter%5Bname%5D%5Bcontains%5D=quick&filter[id]=x"), &A).unwrap();
        assert_eq!((q.page_size, q.page_number), (5, 2));
        assert_eq!(q.sort.len(), 2);
        assert!(q.sort[0].desc);
        assert_eq!(q.filters[0].op, FilterOp::Contains);
        assert_eq!(q.filters[1].op, FilterOp::Eq);
    }

    #[test]
    fn rejects_what_the_collection_does_not_allow() {
        for bad in [
            "page[size]=0",
            "page[size]=abc",
            "page[number]=0",
            "sort=secret",
            "sort=name sideways",
            "filter[secret]=x",
            "filter[id][contains]=x",
            "filter[name][like]=x",
            "filter[name",
        ] {
            assert!(
                matches!(parse(Some(bad), &A), Err(ApiError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
