//! A small, self-contained reader of the Prometheus text exposition format, just enough for GPU
//! exporters (DCGM exporter, nvidia_gpu_exporter, our own `gpu-exporter`).
//!
//! It is deliberately kept behind this one module so that it can be swapped for the full parser
//! of `llmload-prom` later without touching the format readers.
//!
//! Leniency, on purpose (these are telemetry readers, not validators):
//! - `# HELP` / `# TYPE` / other comments and blank lines are skipped;
//! - lines that are exactly `...` (elisions in documentation samples) are skipped and counted;
//! - labels may be separated by `,` or `, ` (DCGM exporter writes `", "`), a trailing comma is
//!   accepted;
//! - a line that cannot be read is recorded in [`Exposition::skipped`] with its line number and
//!   the reason, and reading goes on.

/// One sample line: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// The samples of one exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Number of `...` elision lines.
    pub elided: usize,
    pub skipped: Vec<Skipped>,
}

/// Reads an exposition. Never fails: unreadable lines go to [`Exposition::skipped`].
pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "..." || line == "…" {
            out.elided += 1;
            continue;
        }
        match parse_line(line) {
            Ok(s) => out.samples.push(s),
            Err(reason) => out.skipped.push(Skipped {
                line: i + 1,
                reason,
            }),
        }
    }
    out
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let mut chars = line.char_indices().peekable();
    match chars.peek() {
        Some(&(_, c)) if is_name_start(c) => {}
        _ => return Err("line does not start with a metric name".into()),
    }
    let mut name_end = line.len();
    for (i, c) in line.char_indices() {
        if !is_name_char(c) {
            name_end = i;
            break;
        }
    }
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Err(format!("metric `{name}` has no value"));
    }
    let mut fields = rest.split_ascii_whitespace();
    let value_text = fields.next().unwrap_or_default();
    let value = parse_value(value_text)
        .ok_or_else(|| format!("metric `{name}`: value `{value_text}` is not a number"))?;
    if let Some(ts) = fields.next()
        && ts.parse::<f64>().is_err()
    {
        return Err(format!("metric `{name}`: timestamp `{ts}` is not a number"));
    }
    if let Some(extra) = fields.next() {
        return Err(format!(
            "metric `{name}`: unexpected `{extra}` after the timestamp"
        ));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `k="v", k2="v2"}` (the opening brace already consumed); returns the labels and the
/// text after the closing brace.
type Labels = Vec<(String, String)>;

fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let key_end = s
            .char_indices()
            .find(|&(_, c)| !is_name_char(c))
            .map(|(i, _)| i)
            .ok_or("label set is not closed with `}`")?;
        if key_end == 0 {
            return Err(format!(
                "expected a label name, found `{}`",
                s.chars().next().unwrap_or(' ')
            ));
        }
        let key = &s[..key_end];
        s = s[key_end..].trim_start();
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("label `{key}` is not followed by `=`"))?
            .trim_start();
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("label `{key}`: value is not quoted"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let mut closed_at = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => break,
                },
                '"' => {
                    closed_at = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = closed_at.ok_or_else(|| format!("label `{key}`: value is not closed"))?;
        labels.push((key.to_string(), value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!(
                "label `{key}`: expected `,` or `}}` after its value"
            ));
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dcgm_comma_space_labels_and_elisions() {
        let text =
            "# HELP x y\n...\nDCGM_FI_DEV_SM_CLOCK{gpu=\"0\", UUID=\"GPU-1\",container=\"\"} 139\n";
        let e = parse(text);
        assert_eq!(e.elided, 1);
        assert!(e.skipped.is_empty());
        assert_eq!(e.samples.len(), 1);
        let s = &e.samples[0];
        assert_eq!(s.name, "DCGM_FI_DEV_SM_CLOCK");
        assert_eq!(s.label("gpu"), Some("0"));
        assert_eq!(s.label("UUID"), Some("GPU-1"));
        assert_eq!(s.label("container"), Some(""));
        assert_eq!(s.value, 139.0);
    }

    #[test]
    fn reads_exponents_timestamps_escapes_and_specials() {
        let text = "a{l=\"q\\\"x\\\\y\\nz\",} 2.619e+09 1700000000000\nb NaN\nc +Inf\nd -Inf\n";
        let e = parse(text);
        assert!(e.skipped.is_empty(), "{:?}", e.skipped);
        assert_eq!(e.samples[0].value, 2.619e9);
        assert_eq!(e.samples[0].label("l"), Some("q\"x\\y\nz"));
        assert!(e.samples[1].value.is_nan());
        assert_eq!(e.samples[2].value, f64::INFINITY);
        assert_eq!(e.samples[3].value, f64::NEG_INFINITY);
    }

    #[test]
    fn records_bad_lines_with_their_number() {
        let text = "ok 1\nbad{l=\"x\" 2\n{x=\"1\"} 3\nnovalue\nv abc\nw{l=x} 1\n";
        let e = parse(text);
        assert_eq!(e.samples.len(), 1);
        let lines: Vec<usize> = e.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6]);
        assert!(e.skipped[3].reason.contains("not a number"));
    }
}
