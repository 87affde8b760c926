//! Quantities with units (`2s`, `80ms`, `5%`, `30tok/s`) and the dimension checks that keep a
//! unit on the right kind of metric ("ms on a rate" is an error).

use serde::Serialize;

/// What a metric measures; decides which units fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Seconds. Units `s`, `ms`, `us` (`µs`). A bare number is refused: it is ambiguous
    /// (k6 and vLLM read bare times as milliseconds, llmload's results are in seconds).
    Time,
    /// Tokens per second. Unit `tok/s` (`tokens/s`) or a bare number.
    TokenRate,
    /// Requests per second. Unit `req/s` or a bare number.
    RequestRate,
    /// A fraction 0..1. Unit `%` (5% = 0.05) or a bare fraction (at most 1).
    Ratio,
    /// A plain count (tokens, requests in flight). Bare numbers only.
    Count,
    /// A figure of unknown dimension (server or GPU sections): every unit is converted to its
    /// base (ms to s, % to a fraction) and bare numbers are taken as they are.
    Any,
}

impl Dimension {
    /// The base unit a value of this dimension is stored in, for display.
    pub fn base_unit(self) -> &'static str {
        match self {
            Dimension::Time => "s",
            Dimension::TokenRate => "tok/s",
            Dimension::RequestRate => "req/s",
            Dimension::Ratio => "",
            Dimension::Count | Dimension::Any => "",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Dimension::Time => "a time (use s, ms or us)",
            Dimension::TokenRate => "a token rate (use tok/s or a bare number)",
            Dimension::RequestRate => "a request rate (use req/s or a bare number)",
            Dimension::Ratio => "a ratio (use % or a bare fraction such as 0.05)",
            Dimension::Count => "a count (use a bare number)",
            Dimension::Any => "a number",
        }
    }
}

/// A unit as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    None,
    Seconds,
    Millis,
    Micros,
    Percent,
    TokensPerSecond,
    RequestsPerSecond,
}

impl Unit {
    fn parse(s: &str) -> Option<Unit> {
        Some(match s {
            "" => Unit::None,
            "s" => Unit::Seconds,
            "ms" => Unit::Millis,
            "us" | "µs" | "μs" => Unit::Micros,
            "%" => Unit::Percent,
            "tok/s" | "tokens/s" | "token/s" => Unit::TokensPerSecond,
            "req/s" | "requests/s" | "request/s" => Unit::RequestsPerSecond,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Unit::None => "a bare number",
            Unit::Seconds => "s",
            Unit::Millis => "ms",
            Unit::Micros => "us",
            Unit::Percent => "%",
            Unit::TokensPerSecond => "tok/s",
            Unit::RequestsPerSecond => "req/s",
        }
    }
}

/// A quantity parsed from text, before the dimension check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawQuantity {
    pub number: f64,
    pub unit: Unit,
    /// Byte range of the number in the parsed text.
    pub number_span: (usize, usize),
    /// Byte range of the unit (empty when none).
    pub unit_span: (usize, usize),
}

/// A problem at a byte span of the parsed text.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanError {
    pub at: usize,
    pub len: usize,
    pub message: String,
}

fn span_err(at: usize, len: usize, message: impl Into<String>) -> SpanError {
    SpanError {
        at,
        len,
        message: message.into(),
    }
}

/// Parses `<number><spaces?><unit?>` that must fill `text[start..]` except trailing spaces.
/// Offsets in the result and the error are relative to `text`.
pub fn parse_raw(text: &str, start: usize) -> Result<RawQuantity, SpanError> {
    let bytes = text.as_bytes();
    let mut i = start;
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    let n0 = i;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    // Exponent: e or E followed by an optional sign and digits.
    if i > n0 && i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    let n1 = i;
    if n0 == n1 {
        let rest = text[n0..].trim_end();
        let msg = if rest.is_empty() {
            "expected a number here".to_string()
        } else if rest.starts_with('-') {
            "negative values are not allowed".to_string()
        } else {
            format!("expected a number, found `{rest}`")
        };
        return Err(span_err(n0, rest.len().max(1), msg));
    }
    let number: f64 = text[n0..n1]
        .parse()
        .map_err(|_| span_err(n0, n1 - n0, format!("`{}` is not a number", &text[n0..n1])))?;
    if !number.is_finite() {
        return Err(span_err(n0, n1 - n0, "the number is not finite"));
    }
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    let u0 = i;
    let unit_text = text[u0..].trim_end();
    let u1 = u0 + unit_text.len();
    let unit = Unit::parse(unit_text).ok_or_else(|| {
        span_err(
            u0,
            unit_text.len(),
            format!("unknown unit `{unit_text}` (known: s, ms, us, %, tok/s, req/s)"),
        )
    })?;
    Ok(RawQuantity {
        number,
        unit,
        number_span: (n0, n1),
        unit_span: (u0, u1),
    })
}

/// Converts a raw quantity into the base unit of `dim`, refusing units that do not fit.
pub fn to_base(q: &RawQuantity, dim: Dimension, metric: &str) -> Result<f64, SpanError> {
    let (u0, u1) = q.unit_span;
    let wrong = || {
        span_err(
            u0,
            (u1 - u0).max(1),
            format!("{} on {metric}, which is {}", q.unit.name(), dim.describe()),
        )
    };
    let v = q.number;
    match dim {
        Dimension::Time => match q.unit {
            Unit::Seconds => Ok(v),
            Unit::Millis => Ok(v / 1e3),
            Unit::Micros => Ok(v / 1e6),
            Unit::None => Err(span_err(
                q.number_span.0,
                q.number_span.1 - q.number_span.0,
                format!(
                    "a time needs a unit: write {0}ms or {0}s (a bare number is ambiguous: k6 and vLLM read it as ms, llmload's results are in seconds)",
                    &number_text(v)
                ),
            )),
            _ => Err(wrong()),
        },
        Dimension::TokenRate => match q.unit {
            Unit::None | Unit::TokensPerSecond => Ok(v),
            _ => Err(wrong()),
        },
        Dimension::RequestRate => match q.unit {
            Unit::None | Unit::RequestsPerSecond => Ok(v),
            _ => Err(wrong()),
        },
        Dimension::Ratio => match q.unit {
            Unit::Percent => Ok(v / 100.0),
            Unit::None if v <= 1.0 => Ok(v),
            Unit::None => Err(span_err(
                q.number_span.0,
                q.number_span.1 - q.number_span.0,
                format!(
                    "{metric} is a fraction between 0 and 1: did you mean {}%?",
                    number_text(v)
                ),
            )),
            _ => Err(wrong()),
        },
        Dimension::Count => match q.unit {
            Unit::None => Ok(v),
            _ => Err(wrong()),
        },
        Dimension::Any => Ok(match q.unit {
            Unit::Millis => v / 1e3,
            Unit::Micros => v / 1e6,
            Unit::Percent => v / 100.0,
            _ => v,
        }),
    }
}

fn number_text(v: f64) -> String {
    format!("{v}")
}

/// Parses a standalone quantity of dimension `dim` (a whole string such as `"1s"`).
pub fn parse_quantity(text: &str, dim: Dimension, metric: &str) -> Result<f64, SpanError> {
    let q = parse_raw(text, 0)?;
    to_base(&q, dim, metric)
}

/// Formats a base-unit value for people: times in ms below 1 s, ratios in %.
pub fn human(v: f64, dim: Dimension) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    match dim {
        Dimension::Time if v.abs() < 1.0 => format!("{} ms", trim(v * 1e3)),
        Dimension::Time => format!("{} s", trim(v)),
        Dimension::TokenRate => format!("{} tok/s", trim(v)),
        Dimension::RequestRate => format!("{} req/s", trim(v)),
        Dimension::Ratio => format!("{}%", trim(v * 100.0)),
        Dimension::Count | Dimension::Any => trim(v),
    }
}

/// Up to 4 significant digits, without trailing zeros.
fn trim(v: f64) -> String {
    let a = v.abs();
    let decimals = if a == 0.0 || a >= 1000.0 {
        0
    } else if a >= 100.0 {
        1
    } else if a >= 10.0 {
        2
    } else if a >= 1.0 {
        3
    } else {
        // Keep 4 significant digits for small values.
        (4 - a.log10().floor() as i32 - 1).clamp(0, 9) as usize
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_converts() {
        let t = |s| parse_quantity(s, Dimension::Time, "ttft");
        assert_eq!(t("2s"), Ok(2.0));
        assert_eq!(t("80ms"), Ok(0.08));
        assert_eq!(t("250us"), Ok(0.00025));
        assert_eq!(t("250µs"), Ok(0.00025));
        assert_eq!(t("1.5 s"), Ok(1.5));
        assert_eq!(t("1e3ms"), Ok(1.0));
        let r = |s| parse_quantity(s, Dimension::Ratio, "error_rate");
        assert_eq!(r("5%"), Ok(0.05));
        assert_eq!(r("0.05"), Ok(0.05));
        assert!(r("5").unwrap_err().message.contains("did you mean 5%"));
        let k = |s| parse_quantity(s, Dimension::TokenRate, "decode_rate");
        assert_eq!(k("30tok/s"), Ok(30.0));
        assert_eq!(k("30"), Ok(30.0));
        assert_eq!(k("30 tokens/s"), Ok(30.0));
        let q = |s| parse_quantity(s, Dimension::RequestRate, "requests_per_s");
        assert_eq!(q("10req/s"), Ok(10.0));
        assert_eq!(q("10"), Ok(10.0));
        assert_eq!(parse_quantity("3", Dimension::Count, "c"), Ok(3.0));
        assert_eq!(parse_quantity("95%", Dimension::Any, "x"), Ok(0.95));
    }

    #[test]
    fn wrong_units_point_at_the_unit() {
        let e = parse_quantity("10ms", Dimension::TokenRate, "decode_rate").unwrap_err();
        assert_eq!((e.at, e.len), (2, 2));
        assert!(e.message.contains("ms on decode_rate"), "{}", e.message);
        let e = parse_quantity("2", Dimension::Time, "ttft").unwrap_err();
        assert!(e.message.contains("needs a unit"));
        let e = parse_quantity("2xs", Dimension::Time, "ttft").unwrap_err();
        assert_eq!((e.at, e.len), (1, 2));
        assert!(e.message.contains("unknown unit `xs`"));
        let e = parse_quantity("5%", Dimension::Time, "ttft").unwrap_err();
        assert!(e.message.contains("% on ttft"));
        let e = parse_quantity("5%", Dimension::Count, "concurrency.max").unwrap_err();
        assert!(e.message.contains("a count"));
        assert!(parse_quantity("", Dimension::Time, "ttft").is_err());
        assert!(parse_quantity("-1s", Dimension::Time, "ttft").is_err());
        assert!(parse_quantity("1..2s", Dimension::Time, "ttft").is_err());
    }

    #[test]
    fn human_formatting() {
        assert_eq!(human(0.0123, Dimension::Time), "12.3 ms");
        assert_eq!(human(1.5, Dimension::Time), "1.5 s");
        assert_eq!(human(0.05, Dimension::Ratio), "5%");
        assert_eq!(human(37.25, Dimension::RequestRate), "37.25 req/s");
    }
}
