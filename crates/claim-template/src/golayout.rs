//! Go reference-time layouts (`"2006-01-02T15:04:05Z07:00"`) for chrono:
//! formatting and parsing of times, plus Go `time.Duration` printing and
//! `time.ParseDuration`.
//!
//! Recognised layout elements follow Go's `time` package: `2006 06 01 1 Jan
//! January 02 2 _2 __2 002 15 03 3 04 4 05 5 PM pm Mon Monday MST -0700
//! -07:00 -07 -070000 -07:00:00 Z0700 Z07:00 Z07 Z070000 Z07:00:00` and
//! fractional seconds `.0…` / `.9…` (or with a comma). Everything else is
//! literal text.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeDelta, Timelike};

/// Go's `time.RFC3339Nano`.
pub const RFC3339_NANO: &str = "2006-01-02T15:04:05.999999999Z07:00";
/// The layout of Go's `time.Time.String()`.
pub const GO_TIME_STRING: &str = "2006-01-02 15:04:05.999999999 -0700 MST";

const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    TZ,
    /// Numeric zone; `z` = prints `Z` for UTC; `colon`; parts = 1 (hh), 2 (hhmm), 3 (hhmmss).
    Zone {
        z: bool,
        colon: bool,
        parts: u8,
    },
    /// Fractional seconds: digits, trim trailing zeros (`9`), separator.
    Frac {
        n: usize,
        trim: bool,
        sep: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    Lit(String),
    Std(Std),
}

fn starts_lower(s: &[u8]) -> bool {
    s.first().is_some_and(u8::is_ascii_lowercase)
}

/// Find the next layout element: returns (literal prefix length, element, element length).
fn next_std(l: &[u8]) -> Option<(usize, Std, usize)> {
    let at = |i: usize, p: &str| l.len() >= i + p.len() && &l[i..i + p.len()] == p.as_bytes();
    for i in 0..l.len() {
        let found: Option<(Std, usize)> = match l[i] {
            b'J' if at(i, "Jan") => {
                if at(i, "January") {
                    Some((Std::LongMonth, 7))
                } else if !starts_lower(&l[i + 3..]) {
                    Some((Std::Month, 3))
                } else {
                    None
                }
            }
            b'M' if at(i, "Mon") => {
                if at(i, "Monday") {
                    Some((Std::LongWeekDay, 6))
                } else if !starts_lower(&l[i + 3..]) {
                    Some((Std::WeekDay, 3))
                } else {
                    None
                }
            }
            b'M' if at(i, "MST") => Some((Std::TZ, 3)),
            b'0' if i + 1 < l.len() && (b'1'..=b'6').contains(&l[i + 1]) => Some((
                match l[i + 1] {
                    b'1' => Std::ZeroMonth,
                    b'2' => Std::ZeroDay,
                    b'3' => Std::ZeroHour12,
                    b'4' => Std::ZeroMinute,
                    b'5' => Std::ZeroSecond,
                    _ => Std::Year,
                },
                2,
            )),
            b'0' if at(i, "002") => Some((Std::ZeroYearDay, 3)),
            b'1' => {
                if at(i, "15") {
                    Some((Std::Hour, 2))
                } else {
                    Some((Std::NumMonth, 1))
                }
            }
            b'2' => {
                if at(i, "2006") {
                    Some((Std::LongYear, 4))
                } else {
                    Some((Std::Day, 1))
                }
            }
            b'_' if at(i, "_2") => {
                if at(i, "_2006") {
                    // "_" is literal, the year follows.
                    Some((Std::LongYear, 5))
                } else {
                    Some((Std::UnderDay, 2))
                }
            }
            b'_' if at(i, "__2") => Some((Std::UnderYearDay, 3)),
            b'3' => Some((Std::Hour12, 1)),
            b'4' => Some((Std::Minute, 1)),
            b'5' => Some((Std::Second, 1)),
            b'P' if at(i, "PM") => Some((Std::PM, 2)),
            b'p' if at(i, "pm") => Some((Std::Pm, 2)),
            b'-' | b'Z' => {
                let z = l[i] == b'Z';
                let rest = &l[i + 1..];
                let forms: [(&str, bool, u8); 5] = [
                    ("070000", false, 3),
                    ("07:00:00", true, 3),
                    ("0700", false, 2),
                    ("07:00", true, 2),
                    ("07", false, 1),
                ];
                forms.iter().find_map(|(p, colon, parts)| {
                    (rest.len() >= p.len() && &rest[..p.len()] == p.as_bytes()).then_some((
                        Std::Zone {
                            z,
                            colon: *colon,
                            parts: *parts,
                        },
                        p.len() + 1,
                    ))
                })
            }
            b'.' | b',' if i + 1 < l.len() && (l[i + 1] == b'0' || l[i + 1] == b'9') => {
                let ch = l[i + 1];
                let mut j = i + 1;
                while j < l.len() && l[j] == ch {
                    j += 1;
                }
                if j < l.len() && l[j].is_ascii_digit() {
                    None
                } else {
                    Some((
                        Std::Frac {
                            n: j - i - 1,
                            trim: ch == b'9',
                            sep: l[i],
                        },
                        j - i,
                    ))
                }
            }
            _ => None,
        };
        if let Some((std, len)) = found {
            if std == Std::LongYear && len == 5 {
                return Some((i + 1, Std::LongYear, 4));
            }
            return Some((i, std, len));
        }
    }
    None
}

fn chunks(layout: &str) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut rest = layout.as_bytes();
    while !rest.is_empty() {
        match next_std(rest) {
            Some((pre, std, len)) => {
                if pre > 0 {
                    out.push(Chunk::Lit(
                        String::from_utf8_lossy(&rest[..pre]).into_owned(),
                    ));
                }
                out.push(Chunk::Std(std));
                rest = &rest[pre + len..];
            }
            None => {
                out.push(Chunk::Lit(String::from_utf8_lossy(rest).into_owned()));
                break;
            }
        }
    }
    out
}

fn push_zone(out: &mut String, offset_secs: i32, colon: bool, parts: u8) {
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let abs = offset_secs.unsigned_abs();
    out.push(sign);
    out.push_str(&format!("{:02}", abs / 3600));
    if parts >= 2 {
        if colon {
            out.push(':');
        }
        out.push_str(&format!("{:02}", (abs / 60) % 60));
    }
    if parts >= 3 {
        if colon {
            out.push(':');
        }
        out.push_str(&format!("{:02}", abs % 60));
    }
}

/// Format `t` using a Go layout string.
pub fn format(t: &DateTime<FixedOffset>, layout: &str) -> String {
    let mut out = String::with_capacity(layout.len() + 10);
    let offset = t.offset().local_minus_utc();
    for chunk in chunks(layout) {
        let std = match chunk {
            Chunk::Lit(s) => {
                out.push_str(&s);
                continue;
            }
            Chunk::Std(std) => std,
        };
        let month0 = t.month0() as usize;
        let wd = t.weekday().num_days_from_sunday() as usize;
        match std {
            Std::LongMonth => out.push_str(LONG_MONTHS[month0]),
            Std::Month => out.push_str(&LONG_MONTHS[month0][..3]),
            Std::NumMonth => out.push_str(&t.month().to_string()),
            Std::ZeroMonth => out.push_str(&format!("{:02}", t.month())),
            Std::LongWeekDay => out.push_str(LONG_DAYS[wd]),
            Std::WeekDay => out.push_str(&LONG_DAYS[wd][..3]),
            Std::Day => out.push_str(&t.day().to_string()),
            Std::UnderDay => out.push_str(&format!("{:>2}", t.day())),
            Std::ZeroDay => out.push_str(&format!("{:02}", t.day())),
            Std::UnderYearDay => out.push_str(&format!("{:>3}", t.ordinal())),
            Std::ZeroYearDay => out.push_str(&format!("{:03}", t.ordinal())),
            Std::Hour => out.push_str(&format!("{:02}", t.hour())),
            Std::Hour12 | Std::ZeroHour12 => {
                let h = match t.hour() % 12 {
                    0 => 12,
                    h => h,
                };
                if std == Std::Hour12 {
                    out.push_str(&h.to_string());
                } else {
                    out.push_str(&format!("{h:02}"));
                }
            }
            Std::Minute => out.push_str(&t.minute().to_string()),
            Std::ZeroMinute => out.push_str(&format!("{:02}", t.minute())),
            Std::Second => out.push_str(&t.second().to_string()),
            Std::ZeroSecond => out.push_str(&format!("{:02}", t.second())),
            Std::LongYear => {
                let y = t.year();
                if y < 0 {
                    out.push_str(&format!("-{:04}", -y));
                } else {
                    out.push_str(&format!("{y:04}"));
                }
            }
            Std::Year => out.push_str(&format!("{:02}", t.year().rem_euclid(100))),
            Std::PM => out.push_str(if t.hour() >= 12 { "PM" } else { "AM" }),
            Std::Pm => out.push_str(if t.hour() >= 12 { "pm" } else { "am" }),
            Std::TZ => {
                if offset == 0 {
                    out.push_str("UTC");
                } else {
                    push_zone(&mut out, offset, false, 2);
                }
            }
            Std::Zone { z, colon, parts } => {
                if z && offset == 0 {
                    out.push('Z');
                } else {
                    push_zone(&mut out, offset, colon, parts);
                }
            }
            Std::Frac { n, trim, sep } => {
                let nanos = t.nanosecond() % 1_000_000_000;
                let digits = format!("{nanos:09}");
                let mut d = &digits[..n.min(9)];
                if trim {
                    d = d.trim_end_matches('0');
                    if d.is_empty() {
                        continue;
                    }
                }
                out.push(char::from(sep));
                out.push_str(d);
                for _ in 9..n {
                    out.push('0');
                }
            }
        }
    }
    out
}

fn skip_lit<'a>(mut value: &'a str, mut prefix: &str) -> Option<&'a str> {
    while let Some(p) = prefix.chars().next() {
        if p == ' ' {
            if !value.is_empty() && !value.starts_with(' ') {
                return None;
            }
            prefix = prefix.trim_start_matches(' ');
            value = value.trim_start_matches(' ');
            continue;
        }
        value = value.strip_prefix(p)?;
        prefix = &prefix[p.len_utf8()..];
    }
    Some(value)
}

/// Read 1–`max` digits (exactly `max` when `fixed`).
fn getnum(value: &str, max: usize, fixed: bool) -> Option<(u32, &str)> {
    let n = value
        .bytes()
        .take(max)
        .take_while(u8::is_ascii_digit)
        .count();
    if n == 0 || (fixed && n != max) {
        return None;
    }
    Some((value[..n].parse().ok()?, &value[n..]))
}

fn lookup_name<'a>(value: &'a str, names: &[&str], short: bool) -> Option<(usize, &'a str)> {
    for (i, name) in names.iter().enumerate() {
        let name = if short { &name[..3] } else { name };
        if value.len() >= name.len()
            && value.is_char_boundary(name.len())
            && value[..name.len()].eq_ignore_ascii_case(name)
        {
            return Some((i, &value[name.len()..]));
        }
    }
    None
}

fn parse_err(layout: &str, value: &str, what: &str) -> String {
    format!("parsing time {value:?} as {layout:?}: cannot parse {what}")
}

/// Parse `value` with a Go layout. Times without zone information are
/// placed at `default_offset`.
pub fn parse(
    layout: &str,
    value: &str,
    default_offset: FixedOffset,
) -> Result<DateTime<FixedOffset>, String> {
    let original = value;
    let chunks = chunks(layout);
    let mut v = value;
    let (mut year, mut month, mut day, mut yday) = (0i32, -1i32, -1i32, -1i32);
    let (mut hour, mut min, mut sec, mut nsec) = (0u32, 0u32, 0u32, 0u32);
    let (mut pm, mut am) = (false, false);
    let mut zone: Option<i32> = None;
    let bad = |what: &str| parse_err(layout, original, what);
    for (idx, chunk) in chunks.iter().enumerate() {
        let std = match chunk {
            Chunk::Lit(s) => {
                v = skip_lit(v, s).ok_or_else(|| bad(&format!("{v:?} as {s:?}")))?;
                continue;
            }
            Chunk::Std(std) => *std,
        };
        let rest_before = v;
        let elem_err = || parse_err(layout, original, &format!("{rest_before:?}"));
        match std {
            Std::Year => {
                let (y, r) = getnum(v, 2, true).ok_or_else(elem_err)?;
                year = if y >= 69 {
                    1900 + y as i32
                } else {
                    2000 + y as i32
                };
                v = r;
            }
            Std::LongYear => {
                let (y, r) = getnum(v, 4, true).ok_or_else(elem_err)?;
                year = y as i32;
                v = r;
            }
            Std::Month | Std::LongMonth => {
                let (m, r) =
                    lookup_name(v, &LONG_MONTHS, std == Std::Month).ok_or_else(elem_err)?;
                month = m as i32 + 1;
                v = r;
            }
            Std::NumMonth | Std::ZeroMonth => {
                let (m, r) = getnum(v, 2, std == Std::ZeroMonth).ok_or_else(elem_err)?;
                if !(1..=12).contains(&m) {
                    return Err(format!("parsing time {original:?}: month out of range"));
                }
                month = m as i32;
                v = r;
            }
            Std::WeekDay | Std::LongWeekDay => {
                let (_, r) =
                    lookup_name(v, &LONG_DAYS, std == Std::WeekDay).ok_or_else(elem_err)?;
                v = r;
            }
            Std::Day | Std::UnderDay | Std::ZeroDay => {
                if std == Std::UnderDay {
                    v = v.strip_prefix(' ').unwrap_or(v);
                }
                let (d, r) = getnum(v, 2, std == Std::ZeroDay).ok_or_else(elem_err)?;
                day = d as i32;
                v = r;
            }
            Std::UnderYearDay | Std::ZeroYearDay => {
                if std == Std::UnderYearDay {
                    v = v.trim_start_matches(' ');
                }
                let (d, r) = getnum(v, 3, std == Std::ZeroYearDay).ok_or_else(elem_err)?;
                yday = d as i32;
                v = r;
            }
            Std::Hour => {
                let (h, r) = getnum(v, 2, false).ok_or_else(elem_err)?;
                if h > 23 {
                    return Err(format!("parsing time {original:?}: hour out of range"));
                }
                hour = h;
                v = r;
            }
            Std::Hour12 | Std::ZeroHour12 => {
                let (h, r) = getnum(v, 2, std == Std::ZeroHour12).ok_or_else(elem_err)?;
                if h > 12 {
                    return Err(format!("parsing time {original:?}: hour out of range"));
                }
                hour = h;
                v = r;
            }
            Std::Minute | Std::ZeroMinute => {
                let (m, r) = getnum(v, 2, std == Std::ZeroMinute).ok_or_else(elem_err)?;
                if m > 59 {
                    return Err(format!("parsing time {original:?}: minute out of range"));
                }
                min = m;
                v = r;
            }
            Std::Second | Std::ZeroSecond => {
                let (s, r) = getnum(v, 2, std == Std::ZeroSecond).ok_or_else(elem_err)?;
                if s > 59 {
                    return Err(format!("parsing time {original:?}: second out of range"));
                }
                sec = s;
                v = r;
                // A fractional second in the value is accepted even when the
                // layout does not spell it out (unless it does next).
                let next_is_frac =
                    matches!(chunks.get(idx + 1), Some(Chunk::Std(Std::Frac { .. })));
                let b = v.as_bytes();
                if !next_is_frac
                    && b.len() >= 2
                    && (b[0] == b'.' || b[0] == b',')
                    && b[1].is_ascii_digit()
                {
                    let n = 1 + v[1..].bytes().take_while(u8::is_ascii_digit).count();
                    nsec = frac_nanos(&v[1..n]);
                    v = &v[n..];
                }
            }
            Std::Frac { n, trim, .. } => {
                let b = v.as_bytes();
                let present =
                    b.len() >= 2 && (b[0] == b'.' || b[0] == b',') && b[1].is_ascii_digit();
                if trim {
                    if present {
                        let k = 1 + v[1..].bytes().take_while(u8::is_ascii_digit).count();
                        nsec = frac_nanos(&v[1..k]);
                        v = &v[k..];
                    }
                } else {
                    let digits = v
                        .get(1..=n)
                        .filter(|d| present && d.bytes().all(|c| c.is_ascii_digit()))
                        .ok_or_else(elem_err)?;
                    nsec = frac_nanos(digits);
                    v = &v[n + 1..];
                }
            }
            Std::PM | Std::Pm => {
                let p = v.get(..2).ok_or_else(elem_err)?;
                match p {
                    "PM" | "pm" if (p == "PM") == (std == Std::PM) => pm = true,
                    "AM" | "am" if (p == "AM") == (std == Std::PM) => am = true,
                    _ => return Err(elem_err()),
                }
                v = &v[2..];
            }
            Std::Zone { z, colon, parts } => {
                if z && v.starts_with('Z') {
                    v = &v[1..];
                    zone = Some(0);
                    continue;
                }
                let sign = match v.as_bytes().first() {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    _ => return Err(elem_err()),
                };
                let mut r = &v[1..];
                let (hh, rr) = getnum(r, 2, true).ok_or_else(elem_err)?;
                r = rr;
                let mut total = hh as i32 * 3600;
                for part in 1..parts {
                    if colon {
                        r = r.strip_prefix(':').ok_or_else(elem_err)?;
                    }
                    let (x, rr) = getnum(r, 2, true).ok_or_else(elem_err)?;
                    r = rr;
                    total += x as i32 * if part == 1 { 60 } else { 1 };
                }
                zone = Some(sign * total);
                v = r;
            }
            Std::TZ => {
                if let Some(r) = v.strip_prefix("UTC") {
                    zone = Some(0);
                    v = r;
                    continue;
                }
                let n = v.bytes().take_while(u8::is_ascii_uppercase).count();
                if !(3..=5).contains(&n) {
                    return Err(elem_err());
                }
                // Unknown abbreviations get a zero offset, as in Go.
                zone.get_or_insert(0);
                v = &v[n..];
            }
        }
    }
    if !v.is_empty() {
        return Err(format!("parsing time {original:?}: extra text: {v:?}"));
    }
    if pm && hour < 12 {
        hour += 12;
    } else if am && hour == 12 {
        hour = 0;
    }
    let date = if yday >= 0 && month < 0 && day < 0 {
        NaiveDate::from_yo_opt(year, yday as u32)
    } else {
        NaiveDate::from_ymd_opt(year, month.max(1) as u32, day.max(1) as u32)
    }
    .ok_or_else(|| format!("parsing time {original:?}: day out of range"))?;
    let naive = date
        .and_hms_nano_opt(hour, min, sec, nsec)
        .ok_or_else(|| format!("parsing time {original:?}: time out of range"))?;
    let offset = match zone {
        Some(secs) => FixedOffset::east_opt(secs)
            .ok_or_else(|| format!("parsing time {original:?}: zone offset out of range"))?,
        None => default_offset,
    };
    naive
        .and_local_timezone(offset)
        .single()
        .ok_or_else(|| format!("parsing time {original:?}: invalid local time"))
}

fn frac_nanos(digits: &str) -> u32 {
    let mut s: String = digits.chars().take(9).collect();
    while s.len() < 9 {
        s.push('0');
    }
    s.parse().unwrap_or(0)
}

/// Go `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`, …
pub fn format_duration(d: TimeDelta) -> String {
    let ns = i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos());
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if u == 0 {
        return "0s".into();
    }
    let frac = |v: u128, prec: u32| -> String {
        let p = 10u128.pow(prec);
        let int = v / p;
        let f = v % p;
        if f == 0 {
            int.to_string()
        } else {
            let fs = format!("{f:0width$}", width = prec as usize);
            format!("{int}.{}", fs.trim_end_matches('0'))
        }
    };
    if u < 1_000_000_000 {
        return if u < 1_000 {
            format!("{sign}{u}ns")
        } else if u < 1_000_000 {
            format!("{sign}{}µs", frac(u, 3))
        } else {
            format!("{sign}{}ms", frac(u, 6))
        };
    }
    let secs_total = u / 1_000_000_000;
    let sub = u % 1_000_000_000;
    let s = secs_total % 60;
    let m = (secs_total / 60) % 60;
    let h = secs_total / 3600;
    let sec_part = frac(s * 1_000_000_000 + sub, 9);
    if h > 0 {
        format!("{sign}{h}h{m}m{sec_part}s")
    } else if m > 0 {
        format!("{sign}{m}m{sec_part}s")
    } else {
        format!("{sign}{sec_part}s")
    }
}

/// Go `time.ParseDuration`: `"1h30m"`, `"-1.5h"`, `"300ms"`, `"2h45m10.5s"`.
pub fn parse_duration(s: &str) -> Result<TimeDelta, String> {
    let err = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(TimeDelta::zero());
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..n];
            rest = &r[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit: i128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        let int: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err())?
        };
        let mut v = int.checked_mul(unit).ok_or_else(err)?;
        if !frac_part.is_empty() {
            let digits: String = frac_part.chars().take(18).collect();
            let scale = 10i128.pow(digits.len() as u32);
            let f: i128 = digits.parse().map_err(|_| err())?;
            v += f * unit / scale;
        }
        total = total.checked_add(v).ok_or_else(err)?;
        if total > i128::from(i64::MAX) {
            return Err(err());
        }
    }
    let total = if neg { -total } else { total };
    let secs = total.div_euclid(1_000_000_000) as i64;
    let nanos = total.rem_euclid(1_000_000_000) as u32;
    TimeDelta::new(secs, nanos).ok_or_else(err)
}
