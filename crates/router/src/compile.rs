//! Turning [`RouteSpec`]s into a [`Router`]: validation of what matching
//! relies on, the `traditional_compatible` split and 64-bit priority (spec
//! C.3), the global evaluation order, and the lookup indexes.
//!
//! # Order
//! Kong's `traditional_compatible` flavor turns every route into ATC
//! matchers, one per group of paths (all regex paths together, and one per
//! distinct prefix-path length), each with its own priority, and evaluates
//! them by descending priority; the first one that matches wins. We sort the
//! same entries once at build time by
//! `(priority desc, created_at asc, id asc, split index asc)` and call an
//! entry's position its *rank*; `find` returns the matching entry of lowest
//! rank. Kong leaves equal priorities to the order of generated UUIDs; the
//! `created_at`/`id` tie-break makes ours deterministic and favours older
//! routes, like the `traditional` flavor.
//!
//! # Indexes
//! Entries are filed by host first: entries whose hosts are all plain go to
//! one bucket per host name (hash map), entries with a wildcard host to one
//! wildcard group, entries without hosts to another group. Inside each
//! bucket/group, prefix-path entries sit in a radix tree keyed by the
//! canonical path and the rest (regex paths, no paths) in a short list in
//! rank order. A request visits one host bucket, the wildcard group and the
//! host-less group; in each it walks the tree once along its path and scans
//! the candidates in rank order, stopping as soon as no better rank can be
//! found.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use http::{HeaderName, Method};

use crate::host::HostPattern;
use crate::path::normalize_path;
use crate::spec::{RouteField, RouteSpec, RouterError};
use crate::trie::PrefixTrie;
use crate::validate::{
    compile_header_regex, compile_path_regex, validate_header_name, validate_route_method,
};

/// Bits of the priority (OSS `kong/router/transform.lua` `get_priority`).
const FIELDS_SHIFT: u32 = 61;
const PLAIN_HOSTS_ONLY_BIT: u64 = 1 << 60;
const HEADER_COUNT_SHIFT: u32 = 52;
const MAX_HEADER_COUNT: usize = 255;
const REGEX_BIT: u64 = 1 << 51;
const REGEX_PRIORITY_SHIFT: u32 = 19;
const MAX_PREFIX_LEN: usize = 0x7FFFF;

/// Inputs of the `traditional_compatible` priority of one (split) entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PriorityInputs {
    /// Number of non-empty fields among methods, hosts, headers, snis, paths.
    pub(crate) fields: u32,
    /// The route has hosts and none of them is a wildcard.
    pub(crate) plain_hosts_only: bool,
    /// Number of distinct header names.
    pub(crate) header_count: usize,
    /// The entry's paths are regexes.
    pub(crate) regex: bool,
    /// The route's `regex_priority` (only used when `regex`).
    pub(crate) regex_priority: i64,
    /// Length in bytes of the entry's (configured) prefix paths, 0 for
    /// regex or no paths.
    pub(crate) prefix_len: usize,
}

/// Kong's 64-bit priority:
/// `fields << 61 | plain_hosts_only << 60 | min(headers, 255) << 52 |
/// regex << 51 | regex_priority << 19 | min(prefix_len, 2^19 - 1)`.
///
/// Kong shifts `regex_priority` unchecked, so a negative or huge value
/// spills into the higher bits. Here it is clamped to `i32` and offset by
/// 2^31 so that it fills exactly its 32 bits (19..=50) and negative values
/// sort below positive ones; relative order among regex entries is the same
/// as Kong's for every value Kong handles sensibly (0..2^31).
pub(crate) fn priority(p: PriorityInputs) -> u64 {
    let mut v = u64::from(p.fields.min(7)) << FIELDS_SHIFT;
    if p.plain_hosts_only {
        v |= PLAIN_HOSTS_ONLY_BIT;
    }
    // `as` cannot truncate: the value is at most 255.
    v |= (p.header_count.min(MAX_HEADER_COUNT) as u64) << HEADER_COUNT_SHIFT;
    if p.regex {
        v |= REGEX_BIT;
        let clamped = p
            .regex_priority
            .clamp(i64::from(i32::MIN), i64::from(i32::MAX));
        // In 0..=u32::MAX after the offset, so the conversion is lossless.
        let biased = u64::try_from(clamped + (1i64 << 31)).unwrap_or(0);
        v |= biased << REGEX_PRIORITY_SHIFT;
    }
    v | p.prefix_len.min(MAX_PREFIX_LEN) as u64
}

/// One accepted value of a header condition.
#[derive(Debug, Clone)]
pub(crate) enum HeaderValueMatcher {
    /// Case-insensitive equality (Kong lower-cases both sides).
    Exact(Box<[u8]>),
    /// `~*re`: case-insensitive, unanchored search.
    Regex(regex::bytes::Regex),
}

/// One header condition: some value of header `name` must match one of
/// `values`.
#[derive(Debug, Clone)]
pub(crate) struct HeaderMatcher {
    pub(crate) name: HeaderName,
    pub(crate) values: Vec<HeaderValueMatcher>,
}

/// A prefix path of an entry.
#[derive(Debug, Clone)]
pub(crate) struct PrefixPath {
    /// As configured (returned in `Match::matched_path`).
    pub(crate) configured: Box<str>,
    /// Canonical form (`normalize_path`), compared with request paths.
    pub(crate) canonical: Box<str>,
}

/// A regex path of an entry.
#[derive(Debug, Clone)]
pub(crate) struct RegexPath {
    /// As configured, with its `~`.
    pub(crate) configured: Box<str>,
    /// `^(?:…)` compiled.
    pub(crate) regex: regex::Regex,
}

/// The path condition of an entry.
#[derive(Debug, Clone)]
pub(crate) enum EntryPaths {
    /// The route has no paths.
    Any,
    /// Prefix paths, all of the same configured length.
    Prefix(Arc<[PrefixPath]>),
    /// Regex paths, tried in configuration order.
    Regex(Arc<[RegexPath]>),
}

/// One ATC-style matcher: a route, or one path group of a split route. Its conditions are
/// shared slices: cloning an entry into a new router (see [`Router::assemble`]) allocates
/// nothing, and reading them costs the same one indirection a `Vec` does.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) route_id: u64,
    pub(crate) created_at: i64,
    pub(crate) split_index: usize,
    pub(crate) priority: u64,
    pub(crate) methods: Arc<[Method]>,
    pub(crate) hosts: Arc<[HostPattern]>,
    pub(crate) headers: Arc<[HeaderMatcher]>,
    pub(crate) snis: Arc<[Box<str>]>,
    pub(crate) websocket_only: bool,
    pub(crate) paths: EntryPaths,
}

/// Candidates of one host bucket/group, by path.
#[derive(Debug, Clone)]
pub(crate) struct PathIndex {
    /// Canonical prefix path → `(rank, index into the entry's prefix paths)`
    /// in ascending rank order.
    pub(crate) prefixes: PrefixTrie<Vec<(usize, usize)>>,
    /// Ranks of entries with regex paths or without paths, ascending.
    pub(crate) others: Vec<usize>,
    /// Lowest rank filed here (`usize::MAX` when empty): once a better
    /// match is known the whole group is skipped. Since entries with more
    /// fields rank first, a host bucket's match usually makes the host-less
    /// group irrelevant.
    pub(crate) min_rank: usize,
}

impl PathIndex {
    fn new() -> Self {
        PathIndex {
            prefixes: PrefixTrie::new(),
            others: Vec::new(),
            min_rank: usize::MAX,
        }
    }

    /// Files entry `rank`; callers insert in ascending rank order, so every
    /// list stays sorted. Re-inserting the same entry is a no-op.
    fn insert(&mut self, rank: usize, entry: &Entry) {
        self.min_rank = self.min_rank.min(rank);
        match &entry.paths {
            EntryPaths::Prefix(paths) => {
                for (i, p) in paths.iter().enumerate() {
                    let list = self
                        .prefixes
                        .slot(p.canonical.as_bytes())
                        .get_or_insert_with(Vec::new);
                    if list.last().is_none_or(|&(r, _)| r != rank) {
                        list.push((rank, i));
                    }
                }
            }
            EntryPaths::Any | EntryPaths::Regex(_) => {
                if self.others.last() != Some(&rank) {
                    self.others.push(rank);
                }
            }
        }
    }
}

/// Hasher for the host-bucket map: a multiply-rotate hash over 8-byte
/// words with a final avalanche, several times cheaper than SipHash on
/// short host names. Hash flooding is not a concern here: the table's keys
/// come from the configuration, a client only chooses which bucket to probe.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct HostHasher(u64);

/// `BuildHasher` for [`HostHasher`].
pub(crate) type HostHashBuilder = BuildHasherDefault<HostHasher>;

const HOST_HASH_K: u64 = 0x9E37_79B9_7F4A_7C15;

impl HostHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(HOST_HASH_K);
    }
}

impl Hasher for HostHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // murmur3's fmix64, so that both the low bits (bucket index) and the
        // high bits (control byte) depend on every input bit.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }
}

/// A compiled, immutable route table. Cheap to share between threads
/// (`Send + Sync`); rebuild it when the configuration changes.
#[derive(Debug, Clone)]
pub struct Router {
    /// Sorted by evaluation order; the index is the rank.
    pub(crate) entries: Vec<Entry>,
    /// Lower-cased plain host name (IPv6 without brackets) → candidates.
    pub(crate) exact_hosts: HashMap<Box<[u8]>, PathIndex, HostHashBuilder>,
    /// Entries with at least one wildcard host.
    pub(crate) wildcard_hosts: PathIndex,
    /// Entries without hosts.
    pub(crate) any_host: PathIndex,
    pub(crate) route_count: usize,
}

fn err(
    route: &RouteSpec,
    field: RouteField,
    value: &str,
    reason: impl Into<String>,
) -> RouterError {
    RouterError {
        route_id: route.id,
        field,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Route fields shared by all entries of one route.
struct Common {
    methods: Arc<[Method]>,
    hosts: Arc<[HostPattern]>,
    headers: Arc<[HeaderMatcher]>,
    snis: Arc<[Box<str>]>,
}

fn compile_common(route: &RouteSpec) -> Result<Common, RouterError> {
    let mut methods = Vec::with_capacity(route.methods.len());
    for m in &route.methods {
        validate_route_method(m).map_err(|r| err(route, RouteField::Methods, m, r))?;
        let method = Method::from_bytes(m.as_bytes())
            .map_err(|e| err(route, RouteField::Methods, m, e.to_string()))?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }

    let mut hosts = Vec::with_capacity(route.hosts.len());
    for h in &route.hosts {
        hosts.push(HostPattern::parse(h).map_err(|r| err(route, RouteField::Hosts, h, r))?);
    }

    let mut headers: Vec<HeaderMatcher> = Vec::with_capacity(route.headers.len());
    for (name, values) in &route.headers {
        validate_header_name(name).map_err(|r| err(route, RouteField::Headers, name, r))?;
        if values.is_empty() {
            return Err(err(
                route,
                RouteField::Headers,
                name,
                "at least one header value is required",
            ));
        }
        // Kong looks headers up through OpenResty, which treats `_` and `-`
        // alike; header names are case-insensitive.
        let normalized = name.to_ascii_lowercase().replace('_', "-");
        let header_name = HeaderName::from_bytes(normalized.as_bytes())
            .map_err(|e| err(route, RouteField::Headers, name, e.to_string()))?;
        let mut matchers = Vec::with_capacity(values.len());
        for v in values {
            let m = match v.strip_prefix("~*") {
                Some(re) => compile_header_regex(re)
                    .map(HeaderValueMatcher::Regex)
                    .map_err(|r| err(route, RouteField::Headers, v, r))?,
                None => HeaderValueMatcher::Exact(v.as_bytes().into()),
            };
            matchers.push(m);
        }
        // Duplicate names (possible in a list, not in Kong's map) are one
        // condition whose values are the union.
        match headers.iter_mut().find(|h| h.name == header_name) {
            Some(existing) => existing.values.extend(matchers),
            None => headers.push(HeaderMatcher {
                name: header_name,
                values: matchers,
            }),
        }
    }

    let mut snis = Vec::with_capacity(route.snis.len());
    for s in &route.snis {
        // Kong: "last dot in FQDNs must not be used for routing".
        let trimmed = if s.len() > 1 {
            s.strip_suffix('.').unwrap_or(s)
        } else {
            s.as_str()
        };
        if trimmed.is_empty() {
            return Err(err(route, RouteField::Snis, s, "must not be empty"));
        }
        snis.push(trimmed.into());
    }

    Ok(Common {
        methods: methods.into(),
        hosts: hosts.into(),
        headers: headers.into(),
        snis: snis.into(),
    })
}

/// Compiles one route into its entries (Kong's `split_route_by_path_into`:
/// one entry for all regex paths, one per distinct prefix length).
fn compile_route(route: &RouteSpec, out: &mut Vec<Entry>) -> Result<(), RouterError> {
    let common = compile_common(route)?;

    let mut regexes = Vec::new();
    let mut by_len: BTreeMap<usize, Vec<PrefixPath>> = BTreeMap::new();
    for p in &route.paths {
        if let Some(re) = p.strip_prefix('~') {
            let regex = compile_path_regex(re).map_err(|r| err(route, RouteField::Paths, p, r))?;
            regexes.push(RegexPath {
                configured: p.as_str().into(),
                regex,
            });
        } else if p.starts_with('/') {
            let canonical =
                normalize_path(p).map_err(|e| err(route, RouteField::Paths, p, e.to_string()))?;
            by_len.entry(p.len()).or_default().push(PrefixPath {
                configured: p.as_str().into(),
                canonical: canonical.as_ref().into(),
            });
        } else {
            return Err(err(
                route,
                RouteField::Paths,
                p,
                "should start with: / (fixed path) or ~/ (regex path)",
            ));
        }
    }

    let has_paths = !route.paths.is_empty();
    let fields = [
        !common.methods.is_empty(),
        !common.hosts.is_empty(),
        !common.headers.is_empty(),
        !common.snis.is_empty(),
        has_paths,
    ]
    .into_iter()
    .map(u32::from)
    .sum();
    let base = PriorityInputs {
        fields,
        plain_hosts_only: !common.hosts.is_empty() && common.hosts.iter().all(|h| !h.is_wildcard()),
        header_count: common.headers.len(),
        ..PriorityInputs::default()
    };

    let mut groups: Vec<(PriorityInputs, EntryPaths)> = Vec::new();
    if !regexes.is_empty() {
        let inputs = PriorityInputs {
            regex: true,
            regex_priority: route.regex_priority,
            ..base
        };
        groups.push((inputs, EntryPaths::Regex(regexes.into())));
    }
    for (len, paths) in by_len.into_iter().rev() {
        groups.push((
            PriorityInputs {
                prefix_len: len,
                ..base
            },
            EntryPaths::Prefix(paths.into()),
        ));
    }
    if groups.is_empty() {
        groups.push((base, EntryPaths::Any));
    }

    for (split_index, (inputs, paths)) in groups.into_iter().enumerate() {
        out.push(Entry {
            route_id: route.id,
            created_at: route.created_at,
            split_index,
            priority: priority(inputs),
            methods: common.methods.clone(),
            hosts: common.hosts.clone(),
            headers: common.headers.clone(),
            snis: common.snis.clone(),
            websocket_only: route.websocket_only,
            paths,
        });
    }
    Ok(())
}

/// One route compiled on its own: its matchers, ready to be assembled with others into a
/// [`Router`]. A caller that rebuilds its router often keeps these by route, so that a change
/// compiles only the routes it touched ([`Router::assemble`]).
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    entries: Vec<Entry>,
}

impl CompiledRoute {
    /// Compiles `route` (its [`RouteSpec::id`] only names it in errors; [`Router::assemble`]
    /// gives it the id it matches with).
    ///
    /// # Errors
    /// As [`Router::build`].
    pub fn compile(route: &RouteSpec) -> Result<Self, RouterError> {
        let mut entries = Vec::with_capacity(1);
        compile_route(route, &mut entries)?;
        Ok(Self { entries })
    }
}

impl Router {
    /// Compiles `routes` into a router.
    ///
    /// # Errors
    /// [`RouterError`] naming the first route and value that cannot be
    /// compiled: a regex path or `~*` header regex that does not compile, an
    /// invalid host, header name or method, an empty header value list or
    /// SNI, a path starting with neither `/` nor `~`, or a prefix path with a
    /// malformed `%` escape.
    pub fn build(routes: &[RouteSpec]) -> Result<Router, RouterError> {
        let compiled = routes
            .iter()
            .map(CompiledRoute::compile)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::assemble(
            routes.iter().map(|r| r.id).zip(compiled.iter()),
        ))
    }

    /// Assembles compiled routes, each under the id [`Router::find`] returns for it, into a
    /// router: the evaluation order and the lookup indexes. Cheaper than [`Router::build`]
    /// when most routes were compiled before (no regex or path is compiled again).
    pub fn assemble<'a>(routes: impl IntoIterator<Item = (u64, &'a CompiledRoute)>) -> Router {
        let mut entries = Vec::new();
        let mut route_count = 0;
        for (id, route) in routes {
            route_count += 1;
            entries.extend(route.entries.iter().map(|e| Entry {
                route_id: id,
                ..e.clone()
            }));
        }
        entries.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.created_at.cmp(&b.created_at))
                .then(a.route_id.cmp(&b.route_id))
                .then(a.split_index.cmp(&b.split_index))
        });

        let mut exact_hosts: HashMap<Box<[u8]>, PathIndex, HostHashBuilder> = HashMap::default();
        let mut wildcard_hosts = PathIndex::new();
        let mut any_host = PathIndex::new();
        for (rank, entry) in entries.iter().enumerate() {
            if entry.hosts.is_empty() {
                any_host.insert(rank, entry);
            } else if entry.hosts.iter().any(HostPattern::is_wildcard) {
                wildcard_hosts.insert(rank, entry);
            } else {
                for h in entry.hosts.iter() {
                    if let crate::host::HostKind::Exact(name) = &h.kind {
                        exact_hosts
                            .entry(name.as_bytes().into())
                            .or_insert_with(PathIndex::new)
                            .insert(rank, entry);
                    }
                }
            }
        }

        Router {
            entries,
            exact_hosts,
            wildcard_hosts,
            any_host,
            route_count,
        }
    }

    /// Number of routes the router was built from.
    pub fn len(&self) -> usize {
        self.route_count
    }

    /// True when the router was built from no routes (it matches nothing).
    pub fn is_empty(&self) -> bool {
        self.route_count == 0
    }

    /// Number of internal matchers after splitting routes by path kind and
    /// length (at least [`len`](Self::len) unless routes were empty).
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// The priorities of route `route_id`'s internal matchers, highest first
    /// (diagnostics and tests).
    pub fn priorities_of(&self, route_id: u64) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|e| e.route_id == route_id)
            .map(|e| e.priority)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn route(id: u64) -> RouteSpec {
        RouteSpec {
            id,
            ..RouteSpec::default()
        }
    }

    #[test]
    fn priority_layout() {
        let p = priority(PriorityInputs {
            fields: 3,
            plain_hosts_only: true,
            header_count: 2,
            regex: false,
            regex_priority: 99,
            prefix_len: 5,
        });
        assert_eq!(p, (3 << 61) | (1 << 60) | (2 << 52) | 5);
        let r = priority(PriorityInputs {
            fields: 1,
            regex: true,
            regex_priority: 0,
            ..Default::default()
        });
        assert_eq!(r, (1 << 61) | (1 << 51) | ((1u64 << 31) << 19));
        // Header count and prefix length saturate in their bits.
        let s = priority(PriorityInputs {
            header_count: 1000,
            prefix_len: 1 << 30,
            ..Default::default()
        });
        assert_eq!(s, (255 << 52) | 0x7FFFF);
    }

    #[test]
    fn regex_priority_orders_within_its_bits() {
        let at = |rp: i64| {
            priority(PriorityInputs {
                fields: 1,
                regex: true,
                regex_priority: rp,
                ..Default::default()
            })
        };
        assert!(at(-5) < at(0));
        assert!(at(0) < at(1));
        assert!(at(i64::MAX) > at(i64::from(i32::MAX) - 1));
        assert_eq!(at(i64::MIN), at(i64::from(i32::MIN)));
        // Never reaches the regex bit's neighbours: a regex entry with the
        // highest regex priority still ranks below one more header.
        let more_headers = priority(PriorityInputs {
            fields: 1,
            header_count: 1,
            ..Default::default()
        });
        assert!(at(i64::MAX) < more_headers);
        // regex_priority is ignored for prefix entries.
        let plain = |rp: i64| {
            priority(PriorityInputs {
                fields: 1,
                regex_priority: rp,
                prefix_len: 4,
                ..Default::default()
            })
        };
        assert_eq!(plain(7), plain(0));
    }

    #[test]
    fn splits_mixed_paths() {
        let r = RouteSpec {
            paths: vec![
                "/ab".into(),
                "~/x".into(),
                "/abcd".into(),
                "/cd".into(),
                "~/y".into(),
            ],
            hosts: vec!["example.com".into()],
            regex_priority: 3,
            ..route(7)
        };
        let router = Router::build(&[r]).unwrap();
        assert_eq!(router.len(), 1);
        assert_eq!(router.entry_count(), 3);
        let prios = router.priorities_of(7);
        let base = (2u64 << 61) | (1 << 60);
        assert_eq!(
            prios,
            vec![
                base | (1 << 51) | (((1u64 << 31) + 3) << 19),
                base | 5,
                base | 3
            ]
        );
        let kinds: Vec<usize> = router
            .entries
            .iter()
            .map(|e| match &e.paths {
                EntryPaths::Regex(r) => r.len(),
                EntryPaths::Prefix(p) => p.len(),
                EntryPaths::Any => 0,
            })
            .collect();
        assert_eq!(kinds, vec![2, 1, 2]);
    }

    #[test]
    fn fields_and_bits() {
        let r = RouteSpec {
            methods: vec!["GET".into()],
            hosts: vec!["*.example.com".into(), "a.com".into()],
            headers: vec![
                ("x-a".into(), vec!["1".into()]),
                ("X_A".into(), vec!["2".into()]),
                ("x-b".into(), vec!["3".into()]),
            ],
            snis: vec!["a.com.".into()],
            ..route(1)
        };
        let router = Router::build(&[r]).unwrap();
        // 4 fields, wildcard host → no plain-host bit, 2 distinct header names.
        assert_eq!(router.priorities_of(1), vec![(4u64 << 61) | (2 << 52)]);
        assert_eq!(*router.entries[0].snis, [Box::<str>::from("a.com")]);
        assert_eq!(router.entries[0].headers[0].values.len(), 2);
    }

    #[test]
    fn build_refuses_bad_values() {
        let cases: Vec<(RouteSpec, RouteField, &str)> = vec![
            (
                RouteSpec {
                    paths: vec!["~/a(".into()],
                    ..route(1)
                },
                RouteField::Paths,
                "~/a(",
            ),
            (
                RouteSpec {
                    paths: vec!["/a%zz".into()],
                    ..route(2)
                },
                RouteField::Paths,
                "/a%zz",
            ),
            (
                RouteSpec {
                    paths: vec!["a".into()],
                    ..route(3)
                },
                RouteField::Paths,
                "a",
            ),
            (
                RouteSpec {
                    hosts: vec!["a.*.com".into()],
                    ..route(4)
                },
                RouteField::Hosts,
                "a.*.com",
            ),
            (
                RouteSpec {
                    hosts: vec!["bad host".into()],
                    ..route(5)
                },
                RouteField::Hosts,
                "bad host",
            ),
            (
                RouteSpec {
                    headers: vec![("host".into(), vec!["x".into()])],
                    ..route(6)
                },
                RouteField::Headers,
                "host",
            ),
            (
                RouteSpec {
                    headers: vec![("x".into(), vec![])],
                    ..route(7)
                },
                RouteField::Headers,
                "x",
            ),
            (
                RouteSpec {
                    headers: vec![("x".into(), vec!["~*(".into()])],
                    ..route(8)
                },
                RouteField::Headers,
                "~*(",
            ),
            (
                RouteSpec {
                    methods: vec!["get".into()],
                    ..route(9)
                },
                RouteField::Methods,
                "get",
            ),
            (
                RouteSpec {
                    snis: vec![String::new()],
                    ..route(10)
                },
                RouteField::Snis,
                "",
            ),
        ];
        for (spec, field, value) in cases {
            let id = spec.id;
            let e = Router::build(&[route(100), spec]).unwrap_err();
            assert_eq!(
                (e.route_id, e.field, e.value.as_str()),
                (id, field, value),
                "{e}"
            );
            assert!(e.to_string().contains(&format!("route {id}")));
        }
    }

    #[test]
    fn index_placement() {
        let routes = vec![
            RouteSpec {
                hosts: vec!["A.com".into(), "b.com:8080".into()],
                paths: vec!["/x".into()],
                ..route(1)
            },
            RouteSpec {
                hosts: vec!["*.c.com".into()],
                ..route(2)
            },
            RouteSpec {
                paths: vec!["~/r".into(), "/p".into()],
                ..route(3)
            },
        ];
        let router = Router::build(&routes).unwrap();
        let mut keys: Vec<_> = router
            .exact_hosts
            .keys()
            .map(|k| String::from_utf8(k.to_vec()).unwrap())
            .collect();
        keys.sort();
        assert_eq!(keys, vec!["a.com", "b.com"]);
        assert_eq!(router.wildcard_hosts.others.len(), 1);
        assert_eq!(router.any_host.others.len(), 1);
    }
}
