//! Date functions: `now`, `date`, `dateInZone`, `htmlDate`,
//! `htmlDateInZone`, `toDate`, `mustToDate`, `dateModify`,
//! `mustDateModify`, `ago`, `duration`, `durationRound`, `unixEpoch`
//! (plus sprig's snake_case aliases `date_in_zone`, `date_modify`,
//! `must_date_modify`).
//!
//! Layouts are Go reference-time layouts (see `golayout`). Go's `"Local"`
//! zone is UTC here.

use chrono::{DateTime, FixedOffset, Offset as _, TimeDelta, Utc};

use super::{FuncDef, arg, def, rerr, s, to_i64};
use crate::RenderError;
use crate::eval::Env;
use crate::golayout;
use crate::value::Value;

pub(super) const FUNCS: &[FuncDef] = &[
    def("now", 0, 0, now),
    def("date", 2, 2, date),
    def("dateInZone", 3, 3, date_in_zone),
    def("date_in_zone", 3, 3, date_in_zone),
    def("htmlDate", 1, 1, html_date),
    def("htmlDateInZone", 2, 2, html_date_in_zone),
    def("toDate", 2, 2, to_date),
    def("mustToDate", 2, 2, must_to_date),
    def("dateModify", 2, 2, date_modify),
    def("date_modify", 2, 2, date_modify),
    def("mustDateModify", 2, 2, must_date_modify),
    def("must_date_modify", 2, 2, must_date_modify),
    def("ago", 1, 1, ago),
    def("duration", 1, 1, duration),
    def("durationRound", 1, 1, duration_round),
    def("unixEpoch", 1, 1, unix_epoch),
];

fn utc() -> FixedOffset {
    Utc.fix()
}

/// Resolve a zone name to a fixed offset.
pub(crate) fn load_zone(name: &str) -> Result<FixedOffset, RenderError> {
    let unknown = || rerr(format!("unknown time zone {name}"));
    match name {
        "" | "UTC" | "Local" | "GMT" | "Z" | "Etc/UTC" | "Etc/GMT" | "Etc/Zulu" | "Zulu" => {
            return Ok(utc());
        }
        _ => {}
    }
    if let Some(rest) = name.strip_prefix("Etc/GMT") {
        // POSIX style: Etc/GMT+5 is five hours *behind* UTC.
        let h: i32 = rest.parse().map_err(|_| unknown())?;
        if !(-14..=12).contains(&h) {
            return Err(unknown());
        }
        return FixedOffset::west_opt(h * 3600).ok_or_else(unknown);
    }
    let (sign, body) = match name.as_bytes().first() {
        Some(b'+') => (1, &name[1..]),
        Some(b'-') => (-1, &name[1..]),
        _ => return Err(unknown()),
    };
    let digits: String = body.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|c| c.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return Err(unknown());
    }
    let h: i32 = digits[..2].parse().map_err(|_| unknown())?;
    let m: i32 = if digits.len() == 4 {
        digits[2..].parse().map_err(|_| unknown())?
    } else {
        0
    };
    if h > 14 || m > 59 {
        return Err(unknown());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(unknown)
}

/// sprig's date argument: a time, or unix seconds; anything else is now.
fn date_arg(env: &Env, v: &Value) -> DateTime<FixedOffset> {
    match v {
        Value::Time(t) => *t,
        Value::Int(i) => {
            DateTime::from_timestamp(*i, 0).map_or_else(|| env.now(), |t| t.fixed_offset())
        }
        _ => env.now(),
    }
}

fn time_arg(v: &Value) -> Result<DateTime<FixedOffset>, RenderError> {
    match v {
        Value::Time(t) => Ok(*t),
        other => Err(rerr(format!(
            "expected a time.Time, got {}",
            other.type_name()
        ))),
    }
}

/// Go's zero time, `0001-01-01 00:00:00 UTC`.
fn zero_time() -> DateTime<FixedOffset> {
    chrono::NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(DateTime::<Utc>::MIN_UTC, |n| n.and_utc())
        .fixed_offset()
}

fn format_in(t: DateTime<FixedOffset>, layout: &str, zone: &str) -> Result<Value, RenderError> {
    let off = load_zone(zone)?;
    Ok(Value::String(golayout::format(
        &t.with_timezone(&off),
        layout,
    )))
}

fn now(env: &mut Env, _: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::Time(env.now()))
}

fn date(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    format_in(date_arg(env, arg(&a, 1)), &s(arg(&a, 0)), "Local")
}

fn date_in_zone(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    format_in(date_arg(env, arg(&a, 1)), &s(arg(&a, 0)), &s(arg(&a, 2)))
}

fn html_date(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    format_in(date_arg(env, arg(&a, 0)), "2006-01-02", "Local")
}

fn html_date_in_zone(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    format_in(date_arg(env, arg(&a, 0)), "2006-01-02", &s(arg(&a, 1)))
}

fn parse_date(a: &[Value]) -> Result<DateTime<FixedOffset>, RenderError> {
    golayout::parse(&s(arg(a, 0)), &s(arg(a, 1)), utc()).map_err(rerr)
}

fn to_date(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::Time(parse_date(&a).unwrap_or_else(|_| zero_time())))
}

fn must_to_date(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    parse_date(&a).map(Value::Time)
}

fn modify(a: &[Value]) -> Result<Result<Value, RenderError>, RenderError> {
    let t = time_arg(arg(a, 1))?;
    Ok(match golayout::parse_duration(&s(arg(a, 0))) {
        Ok(d) => t
            .checked_add_signed(d)
            .map(Value::Time)
            .ok_or_else(|| rerr("time out of range")),
        Err(e) => Err(rerr(e)),
    })
}

fn date_modify(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    // An unparsable duration returns the date unchanged (sprig).
    Ok(modify(&a)?.unwrap_or_else(|_| arg(&a, 1).clone()))
}

fn must_date_modify(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    modify(&a)?
}

/// Go `Duration.Round(time.Second)`: half away from zero.
fn round_to_second(d: TimeDelta) -> TimeDelta {
    let ns = i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos());
    let secs = if ns >= 0 {
        (ns + 500_000_000) / 1_000_000_000
    } else {
        (ns - 500_000_000) / 1_000_000_000
    };
    TimeDelta::try_seconds(secs as i64).unwrap_or(TimeDelta::MAX)
}

fn ago(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let t = date_arg(env, arg(&a, 0));
    let since = env.now().signed_duration_since(t);
    Ok(Value::String(golayout::format_duration(round_to_second(
        since,
    ))))
}

fn duration(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let secs = to_i64(arg(&a, 0));
    let d = TimeDelta::try_seconds(secs).ok_or_else(|| rerr("duration out of range"))?;
    Ok(Value::String(golayout::format_duration(d)))
}

fn duration_round(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let ns: i128 = match arg(&a, 0) {
        Value::String(s) => golayout::parse_duration(s)
            .ok()
            .and_then(|d| d.num_nanoseconds())
            .map_or(0, i128::from),
        Value::Int(i) => i128::from(*i),
        Value::Duration(d) => d.num_nanoseconds().map_or(0, i128::from),
        Value::Time(t) => env
            .now()
            .signed_duration_since(*t)
            .num_nanoseconds()
            .map_or(0, i128::from),
        _ => 0,
    };
    let u = ns.unsigned_abs();
    const SECOND: u128 = 1_000_000_000;
    const MINUTE: u128 = 60 * SECOND;
    const HOUR: u128 = 60 * MINUTE;
    const DAY: u128 = 24 * HOUR;
    const MONTH: u128 = 30 * DAY;
    const YEAR: u128 = 365 * DAY;
    let out = if u > YEAR {
        format!("{}y", u / YEAR)
    } else if u > MONTH {
        format!("{}mo", u / MONTH)
    } else if u > DAY {
        format!("{}d", u / DAY)
    } else if u > HOUR {
        format!("{}h", u / HOUR)
    } else if u > MINUTE {
        format!("{}m", u / MINUTE)
    } else if u > SECOND {
        format!("{}s", u / SECOND)
    } else {
        "0s".to_owned()
    };
    Ok(Value::String(out))
}

fn unix_epoch(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let t = time_arg(arg(&a, 0))?;
    Ok(Value::String(t.timestamp().to_string()))
}
