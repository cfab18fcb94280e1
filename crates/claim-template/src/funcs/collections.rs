//! Lists and dicts: `list`/`tuple`, `dict`, `get`, `set`, `unset`,
//! `hasKey`, `pluck`, `keys`, `values`, `pick`, `omit`, `merge`,
//! `mergeOverwrite`, `dig`, `append`/`push`, `prepend`, `first`, `rest`,
//! `last`, `initial`, `reverse`, `uniq`, `without`, `has`, `slice`,
//! `concat`, `chunk`, and their `must…` variants.
//!
//! Values are immutable: `set` and `unset` return the modified dict (with no
//! variables in the supported subset the in-place mutation sprig performs
//! is not observable anyway). Where sprig panics on a wrong type (which Go
//! templates report as an error) both the plain and the `must` variant
//! return a render error. `keys` and `values` come out in sorted key order
//! (Go's map order is random).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use super::{FuncDef, VAR, arg, count, def, list_arg, map_arg, rerr, s, to_i64};
use crate::RenderError;
use crate::eval::{Env, MAX_ITEMS};
use crate::value::Value;

pub(super) const FUNCS: &[FuncDef] = &[
    def("list", 0, VAR, list),
    def("tuple", 0, VAR, list),
    def("dict", 0, VAR, dict),
    def("get", 2, 2, get),
    def("set", 3, 3, set),
    def("unset", 2, 2, unset),
    def("hasKey", 2, 2, has_key),
    def("pluck", 1, VAR, pluck),
    def("keys", 0, VAR, keys),
    def("values", 1, 1, values),
    def("pick", 1, VAR, pick),
    def("omit", 1, VAR, omit),
    def("merge", 1, VAR, merge),
    def("mustMerge", 1, VAR, merge),
    def("mergeOverwrite", 1, VAR, merge_overwrite),
    def("mustMergeOverwrite", 1, VAR, merge_overwrite),
    def("dig", 3, VAR, dig),
    def("append", 2, 2, append),
    def("push", 2, 2, append),
    def("mustAppend", 2, 2, append),
    def("mustPush", 2, 2, append),
    def("prepend", 2, 2, prepend),
    def("mustPrepend", 2, 2, prepend),
    def("first", 1, 1, first),
    def("mustFirst", 1, 1, first),
    def("rest", 1, 1, rest),
    def("mustRest", 1, 1, rest),
    def("last", 1, 1, last),
    def("mustLast", 1, 1, last),
    def("initial", 1, 1, initial),
    def("mustInitial", 1, 1, initial),
    def("reverse", 1, 1, reverse),
    def("mustReverse", 1, 1, reverse),
    def("uniq", 1, 1, uniq),
    def("mustUniq", 1, 1, uniq),
    def("without", 1, VAR, without),
    def("mustWithout", 1, VAR, without),
    def("has", 2, 2, has),
    def("mustHas", 2, 2, has),
    def("slice", 1, VAR, slice),
    def("mustSlice", 1, VAR, slice),
    def("concat", 0, VAR, concat),
    def("chunk", 2, 2, chunk),
    def("mustChunk", 2, 2, chunk),
];

type Res = Result<Value, RenderError>;

fn list(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(Value::List(a))
}

fn dict(_: &mut Env, a: Vec<Value>) -> Res {
    let mut m = BTreeMap::new();
    let mut it = a.into_iter();
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| Value::String(String::new()));
        m.insert(s(&k), v);
    }
    Ok(Value::Map(m))
}

fn get(_: &mut Env, a: Vec<Value>) -> Res {
    let m = map_arg(arg(&a, 0), "get")?;
    Ok(m.get(&s(arg(&a, 1)))
        .cloned()
        .unwrap_or_else(|| Value::String(String::new())))
}

fn set(_: &mut Env, mut a: Vec<Value>) -> Res {
    let v = a.pop().unwrap_or_default();
    let k = s(arg(&a, 1));
    let mut m = map_arg(arg(&a, 0), "set")?.clone();
    m.insert(k, v);
    Ok(Value::Map(m))
}

fn unset(_: &mut Env, a: Vec<Value>) -> Res {
    let mut m = map_arg(arg(&a, 0), "unset")?.clone();
    m.remove(&s(arg(&a, 1)));
    Ok(Value::Map(m))
}

fn has_key(_: &mut Env, a: Vec<Value>) -> Res {
    let m = map_arg(arg(&a, 0), "hasKey")?;
    Ok(Value::Bool(m.contains_key(&s(arg(&a, 1)))))
}

fn pluck(_: &mut Env, a: Vec<Value>) -> Res {
    let key = s(arg(&a, 0));
    let mut out = Vec::new();
    for d in &a[1.min(a.len())..] {
        if let Some(v) = map_arg(d, "pluck")?.get(&key) {
            out.push(v.clone());
        }
    }
    Ok(Value::List(out))
}

fn keys(_: &mut Env, a: Vec<Value>) -> Res {
    let mut out = Vec::new();
    for d in &a {
        out.extend(map_arg(d, "keys")?.keys().cloned().map(Value::String));
    }
    Ok(Value::List(out))
}

fn values(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(Value::List(
        map_arg(arg(&a, 0), "values")?.values().cloned().collect(),
    ))
}

fn key_args(a: &[Value]) -> Vec<String> {
    a.iter().skip(1).map(s).collect()
}

fn pick(_: &mut Env, a: Vec<Value>) -> Res {
    let m = map_arg(arg(&a, 0), "pick")?;
    let ks = key_args(&a);
    Ok(Value::Map(
        m.iter()
            .filter(|(k, _)| ks.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))
}

fn omit(_: &mut Env, a: Vec<Value>) -> Res {
    let m = map_arg(arg(&a, 0), "omit")?;
    let ks = key_args(&a);
    Ok(Value::Map(
        m.iter()
            .filter(|(k, _)| !ks.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))
}

/// mergo-style deep merge of `src` into `dst`.
fn merge_into(dst: &mut BTreeMap<String, Value>, src: &BTreeMap<String, Value>, overwrite: bool) {
    for (k, sv) in src {
        match dst.get_mut(k) {
            None => {
                dst.insert(k.clone(), sv.clone());
            }
            Some(Value::Map(dm)) if matches!(sv, Value::Map(_)) => {
                if let Value::Map(sm) = sv {
                    merge_into(dm, sm, overwrite);
                }
            }
            Some(dv) => {
                let replace = if overwrite {
                    !sv.is_empty()
                } else {
                    dv.is_empty()
                };
                if replace {
                    *dv = sv.clone();
                }
            }
        }
    }
}

fn do_merge(a: &[Value], overwrite: bool, name: &str) -> Res {
    let mut dst = map_arg(arg(a, 0), name)?.clone();
    for src in &a[1.min(a.len())..] {
        merge_into(&mut dst, map_arg(src, name)?, overwrite);
    }
    Ok(Value::Map(dst))
}

fn merge(_: &mut Env, a: Vec<Value>) -> Res {
    do_merge(&a, false, "merge")
}

fn merge_overwrite(_: &mut Env, a: Vec<Value>) -> Res {
    do_merge(&a, true, "mergeOverwrite")
}

/// `dig "a" "b" DEFAULT DICT`.
fn dig(_: &mut Env, mut a: Vec<Value>) -> Res {
    let d = a.pop().unwrap_or_default();
    let dflt = a.pop().unwrap_or_default();
    let mut cur = map_arg(&d, "dig")?;
    let n = a.len();
    for (i, k) in a.iter().enumerate() {
        let Some(step) = cur.get(&s(k)) else {
            return Ok(dflt);
        };
        if i + 1 == n {
            return Ok(step.clone());
        }
        cur = map_arg(step, "dig")?;
    }
    Ok(dflt)
}

fn append(_: &mut Env, mut a: Vec<Value>) -> Res {
    let v = a.pop().unwrap_or_default();
    let mut l = list_arg(arg(&a, 0), "push")?.to_vec();
    l.push(v);
    Ok(Value::List(l))
}

fn prepend(_: &mut Env, mut a: Vec<Value>) -> Res {
    let v = a.pop().unwrap_or_default();
    let l = list_arg(arg(&a, 0), "prepend")?;
    let mut out = Vec::with_capacity(l.len() + 1);
    out.push(v);
    out.extend_from_slice(l);
    Ok(Value::List(out))
}

fn first(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(list_arg(arg(&a, 0), "find first")?
        .first()
        .cloned()
        .unwrap_or_default())
}

fn last(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(list_arg(arg(&a, 0), "find last")?
        .last()
        .cloned()
        .unwrap_or_default())
}

fn rest(_: &mut Env, a: Vec<Value>) -> Res {
    let l = list_arg(arg(&a, 0), "find rest")?;
    Ok(if l.is_empty() {
        Value::Nil
    } else {
        Value::List(l[1..].to_vec())
    })
}

fn initial(_: &mut Env, a: Vec<Value>) -> Res {
    let l = list_arg(arg(&a, 0), "find initial")?;
    Ok(if l.is_empty() {
        Value::Nil
    } else {
        Value::List(l[..l.len() - 1].to_vec())
    })
}

fn reverse(_: &mut Env, a: Vec<Value>) -> Res {
    let mut l = list_arg(arg(&a, 0), "find reverse")?.to_vec();
    l.reverse();
    Ok(Value::List(l))
}

/// `uniq LIST`: the items in order, each kept at its first occurrence (sprig compares with
/// `reflect.DeepEqual`, which `Value`'s equality follows). Items are bucketed by a hash that
/// equal values share, so a list of n items costs O(n) comparisons, not O(n²): the fuzzer
/// found a claim chaining `uniq` over 10,000-item lists that took seconds of CPU.
fn uniq(_: &mut Env, a: Vec<Value>) -> Res {
    let l = list_arg(arg(&a, 0), "find uniq")?;
    let mut out: Vec<Value> = Vec::new();
    // Hash of an item kept → indices in `out` of the items kept with that hash.
    let mut seen: HashMap<u64, Vec<usize>> = HashMap::with_capacity(l.len());
    // Randomly keyed, so that a template cannot be written to make every item collide.
    let keys = RandomState::new();
    for v in l {
        let kept = seen.entry(equality_hash(&keys, v)).or_default();
        if !kept.iter().any(|&i| out[i] == *v) {
            kept.push(out.len());
            out.push(v.clone());
        }
    }
    Ok(Value::List(out))
}

/// A hash that values equal under `Value`'s `PartialEq` share: `0.0` and `-0.0` hash alike,
/// times hash their instant (not their offset), maps their sorted entries.
fn equality_hash(keys: &RandomState, v: &Value) -> u64 {
    fn feed(v: &Value, h: &mut impl Hasher) {
        std::mem::discriminant(v).hash(h);
        match v {
            Value::Nil => {}
            Value::Bool(b) => b.hash(h),
            Value::Int(i) => i.hash(h),
            Value::Float(f) => (if *f == 0.0 { 0.0f64 } else { *f }).to_bits().hash(h),
            Value::String(s) => s.hash(h),
            Value::Time(t) => t.to_utc().hash(h),
            Value::Duration(d) => d.hash(h),
            Value::List(items) => {
                items.len().hash(h);
                items.iter().for_each(|item| feed(item, h));
            }
            Value::Map(entries) => {
                entries.len().hash(h);
                for (key, item) in entries {
                    key.hash(h);
                    feed(item, h);
                }
            }
        }
    }
    let mut h = keys.build_hasher();
    feed(v, &mut h);
    h.finish()
}

fn without(_: &mut Env, a: Vec<Value>) -> Res {
    let l = list_arg(arg(&a, 0), "find without")?;
    let omit = &a[1.min(a.len())..];
    Ok(Value::List(
        l.iter().filter(|v| !omit.contains(v)).cloned().collect(),
    ))
}

/// `has NEEDLE HAYSTACK`.
fn has(_: &mut Env, a: Vec<Value>) -> Res {
    match arg(&a, 1) {
        Value::Nil => Ok(Value::Bool(false)),
        hay => Ok(Value::Bool(list_arg(hay, "find has")?.contains(arg(&a, 0)))),
    }
}

/// `slice LIST [START [END]]`.
fn slice(_: &mut Env, a: Vec<Value>) -> Res {
    let l = list_arg(arg(&a, 0), "slice")?;
    let len = l.len() as i64;
    let start = if a.len() > 1 { to_i64(arg(&a, 1)) } else { 0 };
    let end = if a.len() > 2 { to_i64(arg(&a, 2)) } else { len };
    if start < 0 || end < start || end > len {
        return Err(rerr(format!(
            "slice bounds out of range [{start}:{end}] with capacity {len}"
        )));
    }
    Ok(Value::List(l[start as usize..end as usize].to_vec()))
}

fn concat(_: &mut Env, a: Vec<Value>) -> Res {
    let mut out = Vec::new();
    for l in &a {
        let l = list_arg(l, "concat")?;
        if out.len() + l.len() > MAX_ITEMS {
            return Err(rerr(format!(
                "list would exceed the {MAX_ITEMS}-item limit"
            )));
        }
        out.extend_from_slice(l);
    }
    Ok(Value::List(out))
}

fn chunk(_: &mut Env, a: Vec<Value>) -> Res {
    let size = count(arg(&a, 0), "chunk size")?;
    let l = list_arg(arg(&a, 1), "chunk")?;
    if size == 0 {
        return Err(rerr("chunk size must be positive"));
    }
    Ok(Value::List(
        l.chunks(size).map(|c| Value::List(c.to_vec())).collect(),
    ))
}
