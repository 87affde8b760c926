//! Service-level objectives for goodput: `--slo ttft=1s --slo tpot=50ms --slo e2e=10s
//! --slo decode_rate=20tok/s`, or a TOML/JSON file holding a table `metric = value`.
//!
//! Time objectives need a unit (`s`, `ms`, `us`); in files a number is accepted under a key
//! that names its unit (`ttft_s = 1.0`). `decode_rate` takes `tok/s` or a bare number.

use llmload_core::aggregate::Slo;
use serde_json::Value;

use crate::error::{ExprError, SlaError};
use crate::units::{self, Dimension};

/// The canonical SLO metric for a name as users write it (`e2e` is `e2e_latency`).
fn canonical(name: &str) -> Option<&'static str> {
    let n = match name {
        "e2e" | "e2el" | "e2e_latency_s" => "e2e_latency",
        "decode_rate_tokens_per_s" => "decode_rate",
        other => other.strip_suffix("_s").unwrap_or(other),
    };
    Slo::METRICS.iter().copied().find(|m| *m == n)
}

fn dimension(metric: &str) -> Dimension {
    if metric == "decode_rate" {
        Dimension::TokenRate
    } else {
        Dimension::Time
    }
}

fn known() -> String {
    let mut v: Vec<&str> = Slo::METRICS.to_vec();
    v.push("e2e");
    v.join(", ")
}

fn err(expr: &str, at: usize, len: usize, msg: impl Into<String>) -> ExprError {
    ExprError::new("SLO", expr, at, len, msg)
}

/// Parses one `--slo` value: `METRIC=VALUE` (or `METRIC:VALUE`).
pub fn parse_slo(expr: &str) -> Result<Slo, ExprError> {
    let Some(sep) = expr.find(['=', ':']) else {
        return Err(err(
            expr,
            expr.len(),
            1,
            "expected METRIC=VALUE, e.g. ttft=1s, tpot=50ms, e2e=10s, decode_rate=20tok/s",
        ));
    };
    let name_raw = &expr[..sep];
    let name = name_raw.trim();
    let lead = name_raw.len() - name_raw.trim_start().len();
    let metric = canonical(name).ok_or_else(|| {
        err(
            expr,
            lead,
            name.len().max(1),
            format!("unknown SLO metric `{name}` (one of {})", known()),
        )
    })?;
    let raw = units::parse_raw(expr, sep + 1).map_err(|e| err(expr, e.at, e.len, e.message))?;
    let threshold = units::to_base(&raw, dimension(metric), metric)
        .map_err(|e| err(expr, e.at, e.len, e.message))?;
    if threshold <= 0.0 {
        return Err(err(
            expr,
            raw.number_span.0,
            raw.number_span.1 - raw.number_span.0,
            "an objective must be positive",
        ));
    }
    Ok(Slo {
        metric: metric.to_string(),
        threshold,
    })
}

/// Parses several `--slo` values; a metric given twice is an error.
pub fn parse_slos<I, S>(exprs: I) -> Result<Vec<Slo>, SlaError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<Slo> = Vec::new();
    for e in exprs {
        let slo = parse_slo(e.as_ref())?;
        push_unique(&mut out, slo, "--slo")?;
    }
    Ok(out)
}

fn push_unique(out: &mut Vec<Slo>, slo: Slo, origin: &str) -> Result<(), SlaError> {
    if out.iter().any(|s| s.metric == slo.metric) {
        return Err(SlaError::Invalid(format!(
            "{origin}: the objective on {} is given twice; keep one",
            slo.metric
        )));
    }
    out.push(slo);
    Ok(())
}

/// File formats for configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Toml,
    Json,
}

impl FileFormat {
    /// By file extension: `.json` is JSON, anything else TOML.
    pub fn from_path(path: &str) -> FileFormat {
        if path.to_ascii_lowercase().ends_with(".json") {
            FileFormat::Json
        } else {
            FileFormat::Toml
        }
    }
}

/// Parses a configuration text into JSON values (TOML is converted).
pub(crate) fn parse_config_text(
    text: &str,
    format: FileFormat,
    file: &str,
) -> Result<Value, SlaError> {
    match format {
        FileFormat::Json => serde_json::from_str(text)
            .map_err(|e| SlaError::config(file, format!("not valid JSON: {e}"))),
        FileFormat::Toml => {
            let v: toml::Value = toml::from_str(text)
                .map_err(|e| SlaError::config(file, format!("not valid TOML: {e}")))?;
            serde_json::to_value(v)
                .map_err(|e| SlaError::config(file, format!("cannot convert TOML: {e}")))
        }
    }
}

/// Reads SLOs from a file's text: a table `metric = value`, at the top level or under `[slo]`.
/// Values are strings with units (`"1s"`, `"20tok/s"`) or numbers under a key naming the unit
/// (`ttft_s = 1.0`; `decode_rate = 20`). `file` names the file in errors.
pub fn parse_slo_file(text: &str, format: FileFormat, file: &str) -> Result<Vec<Slo>, SlaError> {
    let v = parse_config_text(text, format, file)?;
    let table = match v.get("slo").or_else(|| v.get("slos")) {
        Some(t) => t,
        None => &v,
    };
    let Value::Object(map) = table else {
        return Err(SlaError::config(
            file,
            "expected a table of objectives, e.g. ttft = \"1s\"",
        ));
    };
    let mut out = Vec::new();
    for (key, val) in map {
        let metric = canonical(key).ok_or_else(|| {
            SlaError::config(
                file,
                format!("unknown SLO metric `{key}` (one of {})", known()),
            )
        })?;
        let threshold = match val {
            Value::String(s) => {
                parse_slo(&format!("{metric}={s}"))
                    .map_err(|e| SlaError::config(file, format!("{key}: {}", e.message)))?
                    .threshold
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                let unit_in_key = key.ends_with("_s") || metric == "decode_rate";
                if !unit_in_key {
                    return Err(SlaError::config(
                        file,
                        format!(
                            "{key} = {x}: a time needs a unit; write {key} = \"{x}s\" or \"{x}ms\", or name the unit in the key ({metric}_s = {x})"
                        ),
                    ));
                }
                if !(x.is_finite() && x > 0.0) {
                    return Err(SlaError::config(
                        file,
                        format!("{key} must be a positive number, got {x}"),
                    ));
                }
                x
            }
            other => {
                return Err(SlaError::config(
                    file,
                    format!("{key}: expected a value such as \"1s\", got {other}"),
                ));
            }
        };
        push_unique(
            &mut out,
            Slo {
                metric: metric.to_string(),
                threshold,
            },
            file,
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slo(m: &str, t: f64) -> Slo {
        Slo {
            metric: m.into(),
            threshold: t,
        }
    }

    #[test]
    fn flags() {
        assert_eq!(parse_slo("ttft=1s").unwrap(), slo("ttft", 1.0));
        assert_eq!(parse_slo("tpot=50ms").unwrap(), slo("tpot", 0.05));
        assert_eq!(parse_slo("e2e=10s").unwrap(), slo("e2e_latency", 10.0));
        assert_eq!(
            parse_slo("decode_rate=20tok/s").unwrap(),
            slo("decode_rate", 20.0)
        );
        assert_eq!(
            parse_slo("decode_rate=20").unwrap(),
            slo("decode_rate", 20.0)
        );
        assert_eq!(parse_slo("itl_max:500us").unwrap(), slo("itl_max", 0.0005));
        assert_eq!(parse_slo(" ttft = 0.5 s").unwrap(), slo("ttft", 0.5));
        let all = parse_slos(["ttft=1s", "tpot=50ms"]).unwrap();
        assert_eq!(all.len(), 2);
        assert!(parse_slos(["ttft=1s", "ttft=2s"]).is_err());
    }

    #[test]
    fn flag_errors_point_at_the_problem() {
        let e = parse_slo("ttft=500").unwrap_err();
        assert_eq!(e.caret_line(), "     ^^^");
        assert!(e.message.contains("500ms"));
        let e = parse_slo("tfft=1s").unwrap_err();
        assert_eq!(e.caret_line(), "^^^^");
        let e = parse_slo("decode_rate=20ms").unwrap_err();
        assert_eq!(e.caret_line(), "              ^^");
        let e = parse_slo("ttft").unwrap_err();
        assert!(e.message.contains("METRIC=VALUE"));
        let e = parse_slo("ttft=0s").unwrap_err();
        assert!(e.message.contains("positive"));
    }

    #[test]
    fn files() {
        let t = "[slo]\nttft = \"1s\"\ntpot_s = 0.05\ndecode_rate = 20\ne2e = \"10s\"\n";
        let mut v = parse_slo_file(t, FileFormat::Toml, "slo.toml").unwrap();
        v.sort_by(|a, b| a.metric.cmp(&b.metric));
        assert_eq!(
            v,
            vec![
                slo("decode_rate", 20.0),
                slo("e2e_latency", 10.0),
                slo("tpot", 0.05),
                slo("ttft", 1.0)
            ]
        );
        let j = r#"{"ttft": "500ms", "itl_max_s": 0.2}"#;
        let v = parse_slo_file(j, FileFormat::Json, "slo.json").unwrap();
        assert_eq!(v.len(), 2);
        let e = parse_slo_file("ttft = 1", FileFormat::Toml, "s.toml").unwrap_err();
        assert!(e.to_string().contains("s.toml") && e.to_string().contains("unit"));
        let e = parse_slo_file("foo = \"1s\"", FileFormat::Toml, "s.toml").unwrap_err();
        assert!(e.to_string().contains("unknown SLO metric `foo`"));
        let e = parse_slo_file("ttft = [1]", FileFormat::Toml, "s.toml").unwrap_err();
        assert!(e.to_string().contains("expected a value"));
        let e = parse_slo_file("ttft = ", FileFormat::Toml, "s.toml").unwrap_err();
        assert!(e.to_string().contains("not valid TOML"));
        assert_eq!(FileFormat::from_path("a/B.JSON"), FileFormat::Json);
        assert_eq!(FileFormat::from_path("a/b.toml"), FileFormat::Toml);
    }
}
