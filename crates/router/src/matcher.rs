//! Request matching ([`Router::find`]) (spec C.2).
//!
//! The hot path for prefix routes does not allocate: the host is lowercased
//! into a stack buffer for the bucket lookup, the radix tree walk and the
//! field checks borrow everything. Regex captures are only extracted (and
//! allocated) once, for the winning entry.

use crate::compile::{Entry, EntryPaths, HeaderMatcher, HeaderValueMatcher, PathIndex, Router};
use crate::host::split_request_host;
use crate::spec::{Captures, Match, RequestView};

/// Host names longer than this are lowercased on the heap; DNS names are at
/// most 253 bytes, so this only happens for nonsense `Host` headers.
const HOST_BUF: usize = 256;

/// How the best entry so far matched its path.
#[derive(Debug, Clone, Copy)]
enum Hit {
    /// No path condition.
    NoPath,
    /// Prefix path `index` of the entry, `len` bytes.
    Prefix { index: usize, len: usize },
    /// Regex path `index` of the entry, match ending at `end`.
    Regex { index: usize, end: usize },
}

/// The lowest-ranked matching entry found so far.
#[derive(Debug, Clone, Copy)]
struct Best {
    rank: usize,
    hit: Hit,
}

impl Best {
    const NONE: Best = Best {
        rank: usize::MAX,
        hit: Hit::NoPath,
    };
}

/// The request host split once per request.
#[derive(Debug, Clone, Copy)]
struct ReqHost<'q> {
    name: &'q str,
    port: Option<u16>,
}

fn header_value_matches(m: &HeaderValueMatcher, value: &[u8]) -> bool {
    match m {
        HeaderValueMatcher::Exact(e) => value.eq_ignore_ascii_case(e),
        HeaderValueMatcher::Regex(re) => re.is_match(value),
    }
}

fn header_matches(h: &HeaderMatcher, headers: &http::HeaderMap) -> bool {
    headers.get_all(&h.name).iter().any(|v| {
        h.values
            .iter()
            .any(|m| header_value_matches(m, v.as_bytes()))
    })
}

impl Entry {
    /// Every field but paths; cheapest checks first.
    fn matches_non_path(&self, req: &RequestView<'_>, host: Option<ReqHost<'_>>) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method) {
            return false;
        }
        if self.websocket_only && !req.websocket {
            return false;
        }
        if !self.snis.is_empty() {
            // Kong only considers SNIs for TLS requests.
            if let Some(sni) = req.sni {
                let sni = if sni.len() > 1 {
                    sni.strip_suffix('.').unwrap_or(sni)
                } else {
                    sni
                };
                if !self.snis.iter().any(|s| s.as_ref() == sni) {
                    return false;
                }
            }
        }
        if !self.hosts.is_empty() {
            let Some(h) = host else {
                return false;
            };
            if !self.hosts.iter().any(|p| p.matches(h.name, h.port)) {
                return false;
            }
        }
        self.headers.iter().all(|h| header_matches(h, req.headers))
    }
}

impl Router {
    /// Finds the route for a request: among the routes whose every
    /// configured field matches, the one ranked first by the
    /// `traditional_compatible` priority (ties: older `created_at`, then
    /// lower id). Returns `None` when no route matches (Kong answers 404
    /// "no Route matched with those values").
    pub fn find<'r>(&'r self, req: &RequestView<'_>) -> Option<Match<'r>> {
        let host = req.host.map(|h| {
            let (name, port) = split_request_host(h);
            ReqHost { name, port }
        });
        let mut best = Best::NONE;

        if let Some(h) = host
            && !self.exact_hosts.is_empty()
            && let Some(index) = self.exact_bucket(h.name)
        {
            self.search(index, req, host, &mut best);
        }
        self.search(&self.wildcard_hosts, req, host, &mut best);
        self.search(&self.any_host, req, host, &mut best);

        self.to_match(best, req.path)
    }

    /// The bucket for a host name, compared case-insensitively by
    /// lowercasing into a stack buffer.
    fn exact_bucket(&self, name: &str) -> Option<&PathIndex> {
        let mut buf = [0u8; HOST_BUF];
        match buf.get_mut(..name.len()) {
            Some(key) => {
                key.copy_from_slice(name.as_bytes());
                key.make_ascii_lowercase();
                self.exact_hosts.get(&*key)
            }
            None => self.exact_hosts.get(name.to_ascii_lowercase().as_bytes()),
        }
    }

    /// Looks for an entry ranked better than `best` in one bucket/group.
    fn search(
        &self,
        index: &PathIndex,
        req: &RequestView<'_>,
        host: Option<ReqHost<'_>>,
        best: &mut Best,
    ) {
        if index.min_rank >= best.rank {
            return;
        }
        index
            .prefixes
            .for_each_prefix(req.path.as_bytes(), |len, candidates| {
                // Sorted by rank: the first full match is this list's best, and
                // nothing after a rank >= best can win.
                for &(rank, path_index) in candidates {
                    if rank >= best.rank {
                        break;
                    }
                    if self
                        .entries
                        .get(rank)
                        .is_some_and(|e| e.matches_non_path(req, host))
                    {
                        *best = Best {
                            rank,
                            hit: Hit::Prefix {
                                index: path_index,
                                len,
                            },
                        };
                        break;
                    }
                }
            });

        for &rank in &index.others {
            if rank >= best.rank {
                break;
            }
            let Some(entry) = self.entries.get(rank) else {
                continue;
            };
            if !entry.matches_non_path(req, host) {
                continue;
            }
            let hit = match &entry.paths {
                EntryPaths::Any => Some(Hit::NoPath),
                EntryPaths::Regex(regexes) => regexes.iter().enumerate().find_map(|(index, r)| {
                    r.regex.find(req.path).map(|m| Hit::Regex {
                        index,
                        end: m.end(),
                    })
                }),
                // Prefix entries live in the tree, never here.
                EntryPaths::Prefix(_) => None,
            };
            if let Some(hit) = hit {
                *best = Best { rank, hit };
                break;
            }
        }
    }

    fn to_match<'r>(&'r self, best: Best, path: &str) -> Option<Match<'r>> {
        let entry = self.entries.get(best.rank)?;
        let (matched_path, prefix_len, captures) = match (best.hit, &entry.paths) {
            (Hit::Prefix { index, len }, EntryPaths::Prefix(paths)) => (
                paths.get(index).map(|p| &*p.configured),
                len,
                Captures::default(),
            ),
            (Hit::Regex { index, end }, EntryPaths::Regex(regexes)) => {
                let r = regexes.get(index)?;
                (Some(&*r.configured), end, captures_of(&r.regex, path))
            }
            _ => (None, 0, Captures::default()),
        };
        Some(Match {
            route_id: entry.route_id,
            matched_path,
            prefix_len,
            captures,
        })
    }
}

/// Kong's `uri_captures`: positional (0 = whole match) and named groups.
fn captures_of(re: &regex::Regex, path: &str) -> Captures {
    let Some(caps) = re.captures(path) else {
        return Captures::default();
    };
    let positional = caps
        .iter()
        .map(|m| m.map(|m| m.as_str().to_owned()))
        .collect();
    let named = re
        .capture_names()
        .enumerate()
        .filter_map(|(i, name)| Some((name?.to_owned(), caps.get(i)?.as_str().to_owned())))
        .collect();
    Captures { positional, named }
}

#[cfg(test)]
#[path = "matcher_tests.rs"]
mod tests;
