//! Math functions. Integer functions (`add`, `sub`, `mul`, `div`, `mod`,
//! `add1`, `max`, `min`, `biggest`, `randInt`) convert their arguments with
//! sprig's `toInt64` and wrap on overflow like Go; division or modulo by
//! zero is a render error (Go panics). Float functions (`addf`, `subf`,
//! `mulf`, `divf`, `add1f`) follow sprig's use of exact decimals: `addf 0.1
//! 0.2` is `0.3`, and `divf` rounds to 16 decimal places; `maxf`, `minf`,
//! `ceil`, `floor`, `round` work on `float64`.

use rand::Rng;

use super::{FuncDef, VAR, arg, def, rerr, to_f64, to_i64};
use crate::RenderError;
use crate::eval::Env;
use crate::value::Value;

pub(super) const FUNCS: &[FuncDef] = &[
    def("add1", 1, 1, add1),
    def("add", 0, VAR, add),
    def("sub", 2, 2, sub),
    def("div", 2, 2, div),
    def("mod", 2, 2, modulo),
    def("mul", 1, VAR, mul),
    def("randInt", 2, 2, rand_int),
    def("add1f", 1, 1, add1f),
    def("addf", 0, VAR, addf),
    def("subf", 1, VAR, subf),
    def("divf", 1, VAR, divf),
    def("mulf", 1, VAR, mulf),
    def("biggest", 1, VAR, max),
    def("max", 1, VAR, max),
    def("min", 1, VAR, min),
    def("maxf", 1, VAR, maxf),
    def("minf", 1, VAR, minf),
    def("ceil", 1, 1, ceil),
    def("floor", 1, 1, floor),
    def("round", 2, 3, round),
];

fn int(v: i64) -> Result<Value, RenderError> {
    Ok(Value::Int(v))
}

fn float(v: f64) -> Result<Value, RenderError> {
    Ok(Value::Float(v))
}

fn add1(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    int(to_i64(arg(&a, 0)).wrapping_add(1))
}

fn add(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    int(a.iter().map(to_i64).fold(0i64, i64::wrapping_add))
}

fn sub(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    int(to_i64(arg(&a, 0)).wrapping_sub(to_i64(arg(&a, 1))))
}

fn div(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let d = to_i64(arg(&a, 1));
    if d == 0 {
        return Err(rerr("integer divide by zero"));
    }
    int(to_i64(arg(&a, 0)).wrapping_div(d))
}

fn modulo(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let d = to_i64(arg(&a, 1));
    if d == 0 {
        return Err(rerr("integer divide by zero"));
    }
    int(to_i64(arg(&a, 0)).wrapping_rem(d))
}

fn mul(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    int(a.iter().map(to_i64).fold(1i64, i64::wrapping_mul))
}

fn rand_int(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let lo = to_i64(arg(&a, 0));
    let hi = to_i64(arg(&a, 1));
    if hi <= lo {
        return Err(rerr(format!("invalid range: randInt {lo} {hi}")));
    }
    int(rand::rng().random_range(lo..hi))
}

/// An exact decimal `m × 10^e`, used to mimic sprig's shopspring/decimal.
#[derive(Clone, Copy)]
struct Dec {
    m: i128,
    e: i32,
}

impl Dec {
    fn from_f64(f: f64) -> Option<Dec> {
        if !f.is_finite() {
            return None;
        }
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e')?;
        let neg = mant.starts_with('-');
        let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
        let m: i128 = digits.parse().ok()?;
        let e: i32 = exp.parse().ok()?;
        Some(Dec {
            m: if neg { -m } else { m },
            e: e - (digits.len() as i32 - 1),
        })
    }

    fn scale_to(self, e: i32) -> Option<i128> {
        let diff = u32::try_from(self.e - e).ok()?;
        self.m.checked_mul(10i128.checked_pow(diff)?)
    }

    fn add(self, o: Dec) -> Option<Dec> {
        let e = self.e.min(o.e);
        Some(Dec {
            m: self.scale_to(e)?.checked_add(o.scale_to(e)?)?,
            e,
        })
    }

    fn neg(self) -> Dec {
        Dec {
            m: -self.m,
            e: self.e,
        }
    }

    fn mul(self, o: Dec) -> Option<Dec> {
        Some(Dec {
            m: self.m.checked_mul(o.m)?,
            e: self.e.checked_add(o.e)?,
        })
    }

    fn to_f64(self) -> f64 {
        format!("{}e{}", self.m, self.e).parse().unwrap_or(f64::NAN)
    }
}

/// Apply a decimal operation, falling back to plain `f64` arithmetic when
/// the exact form would not fit.
fn dec_fold(
    a: &[Value],
    init: Option<f64>,
    op: fn(Dec, Dec) -> Option<Dec>,
    fop: fn(f64, f64) -> f64,
) -> f64 {
    let mut vals = a.iter().map(to_f64);
    let first = match init {
        Some(i) => i,
        None => vals.next().unwrap_or(0.0),
    };
    let mut acc_f = first;
    let mut acc_d = Dec::from_f64(first);
    for v in vals {
        acc_f = fop(acc_f, v);
        acc_d = match (acc_d, Dec::from_f64(v)) {
            (Some(x), Some(y)) => op(x, y),
            _ => None,
        };
    }
    acc_d.map_or(acc_f, Dec::to_f64)
}

fn add1f(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    float(dec_fold(
        &[arg(&a, 0).clone(), Value::Float(1.0)],
        None,
        Dec::add,
        |x, y| x + y,
    ))
}

fn addf(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    float(dec_fold(&a, Some(0.0), Dec::add, |x, y| x + y))
}

fn subf(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    float(dec_fold(&a, None, |x, y| x.add(y.neg()), |x, y| x - y))
}

fn mulf(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    float(dec_fold(&a, None, Dec::mul, |x, y| x * y))
}

fn divf(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let mut vals = a.iter().map(to_f64);
    let mut acc = vals.next().unwrap_or(0.0);
    for v in vals {
        if v == 0.0 {
            return Err(rerr("decimal division by 0"));
        }
        acc /= v;
    }
    // shopspring/decimal divides with 16 decimal places.
    if acc.is_finite() && acc.abs() < 1e20 {
        acc = format!("{acc:.16}").parse().unwrap_or(acc);
    }
    float(acc)
}

fn max(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    int(a.iter().map(to_i64).max().unwrap_or(0))
}

fn min(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    int(a.iter().map(to_i64).min().unwrap_or(0))
}

fn maxf(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let mut it = a.iter().map(to_f64);
    let first = it.next().unwrap_or(0.0);
    float(it.fold(first, f64::max))
}

fn minf(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let mut it = a.iter().map(to_f64);
    let first = it.next().unwrap_or(0.0);
    float(it.fold(first, f64::min))
}

fn ceil(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    float(to_f64(arg(&a, 0)).ceil())
}

fn floor(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    float(to_f64(arg(&a, 0)).floor())
}

/// sprig `round value places [roundOn=.5]`.
fn round(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let val = to_f64(arg(&a, 0));
    let places = to_f64(arg(&a, 1));
    let round_on = if a.len() > 2 { to_f64(arg(&a, 2)) } else { 0.5 };
    let pow = 10f64.powf(places);
    let digit = pow * val;
    let frac = digit.fract();
    let r = if frac >= round_on {
        digit.ceil()
    } else {
        digit.floor()
    };
    float(r / pow)
}
