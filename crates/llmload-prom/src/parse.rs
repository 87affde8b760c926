//! Parser for the Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text.
//!
//! The parser borrows from the input: names, label names and label values without escapes are
//! slices of the text; labels of all samples live in one flat vector, so a sample costs no
//! allocation of its own. Errors name the 1-based line number and what is wrong.
//!
//! What is accepted (both formats unless noted):
//! - `# HELP name text` (escapes `\\` and `\n`), `# TYPE name type`, `# UNIT name unit`;
//!   other `#` comment lines are ignored;
//! - types `counter gauge histogram gaugehistogram summary info stateset untyped unknown`;
//! - metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`, label values
//!   with escapes `\\`, `\"`, `\n`; a trailing comma in a label set; blanks around tokens;
//! - values: decimal floats, `NaN`, `+Inf`, `-Inf` (and the other spellings Rust accepts: `Inf`,
//!   `inf`, `nan`);
//! - timestamps: integer milliseconds (0.0.4) or float seconds (OpenMetrics); both are stored
//!   in seconds;
//! - exemplars `# {labels} value [timestamp]` after a sample (OpenMetrics only);
//! - `# EOF` ends an OpenMetrics exposition; nothing may follow it.
//!
//! Samples are attributed to the family of the latest `# TYPE`/`# HELP` whose name they match
//! (with the type's suffixes: `_total _created _bucket _count _sum _gcount _gsum _info`);
//! any other sample starts an untyped family of its own. Some encoders write the metadata name
//! with colons and the sample names with underscores (`# TYPE vllm:x counter` then
//! `vllm_x_total`): such samples are attributed to the family, and
//! [`Exposition::canonical_name`] gives the name spelled as the family is.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::ops::Range;

use serde::Serialize;

/// Which text format an exposition is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `text/plain; version=0.0.4` (and vLLM's `version=1.0.0` plain text, the same grammar).
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`, ends with `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header announces, if it names one.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let ct = content_type.trim().to_ascii_lowercase();
        if ct.starts_with("application/openmetrics-text") {
            Some(Format::OpenMetrics)
        } else if ct.starts_with("text/plain") {
            Some(Format::Prometheus)
        } else {
            None
        }
    }

    /// Guesses the format from the text: OpenMetrics when the last line is `# EOF`.
    pub fn detect(text: &str) -> Format {
        let t = text.trim_end_matches(['\n', '\r', ' ', '\t']);
        if t.ends_with("# EOF") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// `untyped` (0.0.4), `unknown` (OpenMetrics), or no `# TYPE` line.
    Untyped,
}

impl MetricType {
    fn parse(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Untyped,
            _ => return None,
        })
    }

    /// The lowercase name as written in `# TYPE`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Untyped => "untyped",
        }
    }

    /// Suffixes a sample of this family may carry after the family name.
    fn suffixes(self) -> &'static [Suffix] {
        match self {
            MetricType::Counter => &[Suffix::Total, Suffix::Created],
            MetricType::Histogram => &[Suffix::Bucket, Suffix::Count, Suffix::Sum, Suffix::Created],
            MetricType::GaugeHistogram => &[Suffix::Bucket, Suffix::Gcount, Suffix::Gsum],
            MetricType::Summary => &[Suffix::Count, Suffix::Sum, Suffix::Created],
            MetricType::Info => &[Suffix::Info],
            MetricType::Gauge | MetricType::StateSet | MetricType::Untyped => &[],
        }
    }
}

/// The part of a sample name after its family's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Suffix {
    None,
    Total,
    Created,
    Bucket,
    Count,
    Sum,
    Gcount,
    Gsum,
    Info,
}

impl Suffix {
    pub fn as_str(self) -> &'static str {
        match self {
            Suffix::None => "",
            Suffix::Total => "_total",
            Suffix::Created => "_created",
            Suffix::Bucket => "_bucket",
            Suffix::Count => "_count",
            Suffix::Sum => "_sum",
            Suffix::Gcount => "_gcount",
            Suffix::Gsum => "_gsum",
            Suffix::Info => "_info",
        }
    }
}

/// One label pair. The value is borrowed unless it contained escapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Label<'a> {
    pub name: &'a str,
    pub value: Cow<'a, str>,
}

/// An OpenMetrics exemplar attached to a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// Range into [`Exposition::labels`]; read with [`Exposition::exemplar_labels`].
    pub labels: Range<u32>,
    pub value: f64,
    pub timestamp: Option<f64>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The name as written on the line.
    pub name: &'a str,
    /// Index into [`Exposition::families`].
    pub family: u32,
    pub suffix: Suffix,
    /// Range into [`Exposition::labels`]; read with [`Exposition::labels_of`].
    pub labels: Range<u32>,
    pub value: f64,
    /// Seconds since the Unix epoch (0.0.4 milliseconds are converted).
    pub timestamp: Option<f64>,
    pub exemplar: Option<Exemplar>,
    /// 1-based line number.
    pub line: u32,
}

/// A metric family: metadata and a contiguous run of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family<'a> {
    pub name: &'a str,
    pub kind: MetricType,
    /// Whether the type came from a `# TYPE` line.
    pub typed: bool,
    pub help: Option<Cow<'a, str>>,
    pub unit: Option<&'a str>,
    /// Range into [`Exposition::samples`].
    pub samples: Range<usize>,
}

/// A parsed exposition, borrowing from its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposition<'a> {
    pub format: Format,
    pub families: Vec<Family<'a>>,
    pub samples: Vec<Sample<'a>>,
    pub labels: Vec<Label<'a>>,
}

impl<'a> Exposition<'a> {
    pub fn labels_of(&self, s: &Sample<'a>) -> &[Label<'a>] {
        &self.labels[s.labels.start as usize..s.labels.end as usize]
    }

    pub fn exemplar_labels(&self, e: &Exemplar) -> &[Label<'a>] {
        &self.labels[e.labels.start as usize..e.labels.end as usize]
    }

    pub fn family_of(&self, s: &Sample<'a>) -> &Family<'a> {
        &self.families[s.family as usize]
    }

    /// The sample's name spelled as its family is (`family name + suffix`). Equals
    /// `sample.name` except for encoders that write `:` in metadata and `_` in samples.
    pub fn canonical_name(&self, s: &Sample<'a>) -> Cow<'a, str> {
        let fam = &self.families[s.family as usize];
        if s.name.len() == fam.name.len() + s.suffix.as_str().len() && s.name.starts_with(fam.name)
        {
            Cow::Borrowed(s.name)
        } else {
            Cow::Owned(format!("{}{}", fam.name, s.suffix.as_str()))
        }
    }

    /// The value of the label `name` on sample `s`.
    pub fn label(&self, s: &Sample<'a>, name: &str) -> Option<&str> {
        self.labels_of(s)
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_ref())
    }
}

/// What is wrong with an exposition, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: {message} (in: {snippet:?})")]
    Syntax {
        line: usize,
        message: String,
        snippet: String,
    },
    #[error(
        "OpenMetrics exposition does not end with `# EOF` (line {line}): the body was cut short or is not OpenMetrics"
    )]
    MissingEof { line: usize },
    #[error("line {line}: content after `# EOF`; OpenMetrics allows nothing after it")]
    AfterEof { line: usize },
    #[error("body is not UTF-8 text (byte {offset}): not a Prometheus exposition")]
    NotUtf8 { offset: usize },
    #[error("gzip body could not be decompressed: {0}")]
    Gzip(String),
    #[error("body larger than {limit} bytes after decompression; refusing to parse it")]
    TooLarge { limit: usize },
}

impl ParseError {
    /// The 1-based line the error is on, where it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::Syntax { line, .. }
            | ParseError::MissingEof { line }
            | ParseError::AfterEof { line } => Some(*line),
            _ => None,
        }
    }
}

/// Largest body [`decode_body`] accepts after decompression (guards against gzip bombs).
pub const MAX_BODY_BYTES: usize = 256 << 20;

/// Turns a response body into text: gunzips it when it starts with the gzip magic bytes
/// (`1f 8b`), whatever the headers said, then checks it is UTF-8.
pub fn decode_body(body: &[u8]) -> Result<Cow<'_, str>, ParseError> {
    if body.len() >= 2 && body[0] == 0x1f && body[1] == 0x8b {
        let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_BODY_BYTES));
        let decoder = flate2::read::MultiGzDecoder::new(body);
        let read = decoder
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| ParseError::Gzip(e.to_string()))?;
        if read > MAX_BODY_BYTES {
            return Err(ParseError::TooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        match String::from_utf8(out) {
            Ok(s) => Ok(Cow::Owned(s)),
            Err(e) => Err(ParseError::NotUtf8 {
                offset: e.utf8_error().valid_up_to(),
            }),
        }
    } else {
        if body.len() > MAX_BODY_BYTES {
            return Err(ParseError::TooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        std::str::from_utf8(body)
            .map(Cow::Borrowed)
            .map_err(|e| ParseError::NotUtf8 {
                offset: e.valid_up_to(),
            })
    }
}

/// Parses an exposition, detecting its format with [`Format::detect`].
pub fn parse(text: &str) -> Result<Exposition<'_>, ParseError> {
    parse_as(text, Format::detect(text))
}

/// Parses an exposition in the given format.
pub fn parse_as(text: &str, format: Format) -> Result<Exposition<'_>, ParseError> {
    Parser::new(text, format).run()
}

struct Parser<'a> {
    text: &'a str,
    format: Format,
    out: Exposition<'a>,
    line_no: usize,
    line: &'a str,
}

type PResult<T> = Result<T, String>;

const C_NAME_START: u8 = 1;
const C_NAME: u8 = 2;
const C_LABEL_START: u8 = 4;
const C_LABEL: u8 = 8;

/// Character classes of every byte (one table lookup per byte in the hot loops).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alpha = b.is_ascii_alphabetic();
        let digit = b.is_ascii_digit();
        let mut c = 0;
        if alpha || b == b'_' || b == b':' {
            c |= C_NAME_START;
        }
        if alpha || digit || b == b'_' || b == b':' {
            c |= C_NAME;
        }
        if alpha || b == b'_' {
            c |= C_LABEL_START;
        }
        if alpha || digit || b == b'_' {
            c |= C_LABEL;
        }
        t[i] = c;
        i += 1;
    }
    t
};

#[inline]
fn is_name_start(b: u8) -> bool {
    CLASS[b as usize] & C_NAME_START != 0
}
#[inline]
fn is_name_char(b: u8) -> bool {
    CLASS[b as usize] & C_NAME != 0
}
#[inline]
fn is_label_start(b: u8) -> bool {
    CLASS[b as usize] & C_LABEL_START != 0
}
#[inline]
fn is_label_char(b: u8) -> bool {
    CLASS[b as usize] & C_LABEL != 0
}
#[inline]
fn skip_blank(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// Exact powers of ten up to 1e22 (all representable in an f64).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Fast path for plain decimals (`123`, `-4.25`, `0.0`) with at most 15 significant digits:
/// the mantissa and the power of ten are exact in an f64, so one division is correctly
/// rounded (Clinger's fast path) and the result equals `str::parse`'s.
#[inline]
fn parse_simple_decimal(s: &[u8]) -> Option<f64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut mantissa: u64 = 0;
    let mut frac = 0usize;
    let mut seen_dot = false;
    let mut n_digits = 0usize;
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                n_digits += 1;
                if seen_dot {
                    frac += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => return None,
        }
    }
    if n_digits == 0 || n_digits > 15 {
        return None;
    }
    let v = mantissa as f64 / POW10[frac];
    Some(if neg { -v } else { v })
}

/// Parses a sample value: a decimal float or NaN / ±Inf in their usual spellings.
fn parse_value(s: &str) -> PResult<f64> {
    if let Some(v) = parse_simple_decimal(s.as_bytes()) {
        return Ok(v);
    }
    match s {
        "+Inf" | "Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        "NaN" => return Ok(f64::NAN),
        _ => {}
    }
    s.parse::<f64>()
        .map_err(|_| format!("invalid value {s:?}: expected a number, NaN, +Inf or -Inf"))
}

/// `a` equals `b` when `:` and `_` are taken as the same character.
fn eq_colon_underscore(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || ((x == b':' || x == b'_') && (y == b':' || y == b'_')))
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, format: Format) -> Self {
        // Typical vLLM expositions: ~90 bytes a sample, ~3 labels a sample.
        let est = text.len() / 90 + 1;
        Parser {
            text,
            format,
            out: Exposition {
                format,
                families: Vec::with_capacity(est / 8 + 1),
                samples: Vec::with_capacity(est),
                labels: Vec::with_capacity(est * 3),
            },
            line_no: 0,
            line: "",
        }
    }

    fn err(&self, message: impl Into<String>) -> ParseError {
        let mut snippet: String = self.line.chars().take(120).collect();
        if snippet.len() < self.line.len() {
            snippet.push('…');
        }
        ParseError::Syntax {
            line: self.line_no,
            message: message.into(),
            snippet,
        }
    }

    fn run(mut self) -> Result<Exposition<'a>, ParseError> {
        let text = self.text;
        let bytes = text.as_bytes();
        let mut pos = 0usize;
        let mut seen_eof = false;
        while pos < bytes.len() {
            let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
            let mut line = &text[pos..end];
            pos = end + 1;
            self.line_no += 1;
            if let Some(l) = line.strip_suffix('\r') {
                line = l;
            }
            self.line = line;
            if seen_eof {
                if line.trim().is_empty() && pos >= bytes.len() {
                    continue;
                }
                return Err(ParseError::AfterEof { line: self.line_no });
            }
            let lb = line.as_bytes();
            let first = skip_blank(lb, 0);
            if first == lb.len() {
                if self.format == Format::OpenMetrics {
                    return Err(self.err("empty line; OpenMetrics allows no blank lines"));
                }
                continue;
            }
            if lb[first] == b'#' {
                if self.format == Format::OpenMetrics && line == "# EOF" {
                    seen_eof = true;
                    continue;
                }
                self.comment(&line[first + 1..])?;
                continue;
            }
            self.sample(line, first)?;
        }
        if self.format == Format::OpenMetrics && !seen_eof {
            return Err(ParseError::MissingEof { line: self.line_no });
        }
        let n = self.out.samples.len();
        if let Some(last) = self.out.families.last_mut() {
            last.samples.end = n;
        }
        Ok(self.out)
    }

    /// `rest` is the line after `#`.
    fn comment(&mut self, rest: &'a str) -> Result<(), ParseError> {
        let rb = rest.as_bytes();
        let i = skip_blank(rb, 0);
        let kw_end = rb[i..]
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .map_or(rb.len(), |p| i + p);
        let keyword = &rest[i..kw_end];
        let which = match keyword {
            "HELP" => 0,
            "TYPE" => 1,
            "UNIT" => 2,
            // Any other comment is ignored.
            _ => return Ok(()),
        };
        let j = skip_blank(rb, kw_end);
        let name_end = rb[j..]
            .iter()
            .position(|&b| !is_name_char(b))
            .map_or(rb.len(), |p| j + p);
        if name_end == j || !is_name_start(rb[j]) {
            return Err(self.err(format!("`# {keyword}` must be followed by a metric name")));
        }
        if name_end < rb.len() && rb[name_end] != b' ' && rb[name_end] != b'\t' {
            return Err(self.err(format!(
                "invalid character {:?} in metric name after `# {keyword}`",
                rest[name_end..].chars().next().unwrap_or(' ')
            )));
        }
        let name = &rest[j..name_end];
        let arg_start = (name_end + 1).min(rb.len());
        let arg = &rest[arg_start..];
        let fam = self.family_for_metadata(name, which)?;
        match which {
            0 => {
                let help = unescape_help(arg);
                self.out.families[fam].help = Some(help);
            }
            1 => {
                let t = arg.trim();
                let kind = MetricType::parse(t).ok_or_else(|| {
                    self.err(format!(
                        "unknown metric type {t:?} for {name}; expected counter, gauge, histogram, \
                         gaugehistogram, summary, info, stateset, untyped or unknown"
                    ))
                })?;
                let f = &mut self.out.families[fam];
                f.kind = kind;
                f.typed = true;
            }
            _ => {
                let u = arg.trim();
                self.out.families[fam].unit = Some(u);
            }
        }
        Ok(())
    }

    /// The family a metadata line applies to: the current one when it has this name, no samples
    /// yet and this field unset; else a new family.
    fn family_for_metadata(&mut self, name: &'a str, which: u8) -> Result<usize, ParseError> {
        let n_samples = self.out.samples.len();
        if let Some(last) = self.out.families.last() {
            let empty = last.samples.start == n_samples;
            if last.name == name {
                let already = match which {
                    0 => last.help.is_some(),
                    1 => last.typed,
                    _ => last.unit.is_some(),
                };
                if empty && !already {
                    return Ok(self.out.families.len() - 1);
                }
                if already {
                    let what = ["HELP", "TYPE", "UNIT"][which as usize];
                    return Err(self.err(format!("second `# {what}` line for {name}")));
                }
                if which == 1 {
                    return Err(self.err(format!(
                        "`# TYPE` for {name} comes after its samples; it must come before them"
                    )));
                }
            }
        }
        if which == 1 {
            // A TYPE for a name already typed earlier in the exposition.
            if self.out.families.iter().any(|f| f.typed && f.name == name) {
                return Err(self.err(format!(
                    "second `# TYPE` line for {name}: a family must not appear twice"
                )));
            }
        }
        Ok(self.new_family(name, MetricType::Untyped, false))
    }

    fn new_family(&mut self, name: &'a str, kind: MetricType, typed: bool) -> usize {
        let n = self.out.samples.len();
        if let Some(last) = self.out.families.last_mut() {
            last.samples.end = n;
        }
        self.out.families.push(Family {
            name,
            kind,
            typed,
            help: None,
            unit: None,
            samples: n..n,
        });
        self.out.families.len() - 1
    }

    /// Which family and suffix a sample name belongs to, creating an untyped family if needed.
    fn attribute(&mut self, name: &'a str) -> (u32, Suffix) {
        if let Some(last) = self.out.families.last() {
            let fname = last.name.as_bytes();
            let nb = name.as_bytes();
            let exact = nb.len() >= fname.len() && &nb[..fname.len()] == fname;
            let loose =
                !exact && nb.len() >= fname.len() && eq_colon_underscore(&nb[..fname.len()], fname);
            if exact || loose {
                let rest = &name[fname.len()..];
                let idx = (self.out.families.len() - 1) as u32;
                if rest.is_empty() {
                    return (idx, Suffix::None);
                }
                for &suf in last.kind.suffixes() {
                    if rest == suf.as_str() {
                        return (idx, suf);
                    }
                }
            }
        }
        let idx = self.new_family(name, MetricType::Untyped, false);
        (idx as u32, Suffix::None)
    }

    fn sample(&mut self, line: &'a str, start: usize) -> Result<(), ParseError> {
        let lb = line.as_bytes();
        let mut i = start;
        if !is_name_start(lb[i]) {
            return Err(self.err(format!(
                "expected a metric name, found {:?}",
                line[i..].chars().next().unwrap_or(' ')
            )));
        }
        i += 1;
        while i < lb.len() && is_name_char(lb[i]) {
            i += 1;
        }
        let name = &line[start..i];
        let label_start = self.out.labels.len() as u32;
        let name_end = i;
        i = skip_blank(lb, i);
        let had_labels = i < lb.len() && lb[i] == b'{';
        if had_labels {
            i = self.label_set(line, i + 1).map_err(|m| self.err(m))?;
        }
        let label_end = self.out.labels.len() as u32;
        // Value.
        let vstart = skip_blank(lb, i);
        if !had_labels && vstart == name_end && vstart < lb.len() {
            return Err(self.err(format!(
                "invalid character {:?} in metric name {name:?}",
                line[i..].chars().next().unwrap_or(' ')
            )));
        }
        if vstart >= lb.len() {
            return Err(self.err(format!("sample {name} has no value")));
        }
        let vend = lb[vstart..]
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .map_or(lb.len(), |p| vstart + p);
        let value = parse_value(&line[vstart..vend]).map_err(|m| self.err(m))?;
        let mut j = skip_blank(lb, vend);
        let mut timestamp = None;
        if j < lb.len() && lb[j] != b'#' {
            let tend = lb[j..]
                .iter()
                .position(|&b| b == b' ' || b == b'\t')
                .map_or(lb.len(), |p| j + p);
            timestamp = Some(self.timestamp(&line[j..tend]).map_err(|m| self.err(m))?);
            j = skip_blank(lb, tend);
        }
        let mut exemplar = None;
        if j < lb.len() {
            if lb[j] != b'#' {
                return Err(self.err(format!(
                    "unexpected text {:?} after the value of {name}",
                    &line[j..]
                )));
            }
            if self.format != Format::OpenMetrics {
                return Err(self.err(
                    "exemplar (`# {...}`) in a Prometheus 0.0.4 exposition; exemplars exist only in OpenMetrics",
                ));
            }
            exemplar = Some(self.exemplar(line, j + 1).map_err(|m| self.err(m))?);
        }
        let (family, suffix) = self.attribute(name);
        self.out.samples.push(Sample {
            name,
            family,
            suffix,
            labels: label_start..label_end,
            value,
            timestamp,
            exemplar,
            line: self.line_no.min(u32::MAX as usize) as u32,
        });
        Ok(())
    }

    fn timestamp(&self, s: &str) -> PResult<f64> {
        match self.format {
            Format::Prometheus => s.parse::<i64>().map(|ms| ms as f64 / 1000.0).map_err(|_| {
                format!("invalid timestamp {s:?}: expected integer milliseconds since the epoch")
            }),
            Format::OpenMetrics => match s.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(format!(
                    "invalid timestamp {s:?}: expected seconds since the epoch"
                )),
            },
        }
    }

    /// Parses `{...}` starting after `{`; returns the index after `}`.
    fn label_set(&mut self, line: &'a str, mut i: usize) -> PResult<usize> {
        let lb = line.as_bytes();
        let first = self.out.labels.len();
        loop {
            i = skip_blank(lb, i);
            if i >= lb.len() {
                return Err("label set not closed: missing `}`".into());
            }
            if lb[i] == b'}' {
                return Ok(i + 1);
            }
            if !is_label_start(lb[i]) {
                return Err(format!(
                    "expected a label name, found {:?}",
                    line[i..].chars().next().unwrap_or(' ')
                ));
            }
            let ns = i;
            while i < lb.len() && is_label_char(lb[i]) {
                i += 1;
            }
            let lname = &line[ns..i];
            i = skip_blank(lb, i);
            if i >= lb.len() || lb[i] != b'=' {
                return Err(format!("expected `=` after label name {lname:?}"));
            }
            i = skip_blank(lb, i + 1);
            if i >= lb.len() || lb[i] != b'"' {
                return Err(format!(
                    "expected `\"` to open the value of label {lname:?}"
                ));
            }
            i += 1;
            let (value, next) = read_quoted(line, i)
                .map_err(|m| format!("in the value of label {lname:?}: {m}"))?;
            i = next;
            if self.out.labels[first..].iter().any(|l| l.name == lname) {
                return Err(format!("label {lname:?} appears twice in one label set"));
            }
            self.out.labels.push(Label { name: lname, value });
            i = skip_blank(lb, i);
            if i >= lb.len() {
                return Err("label set not closed: missing `}`".into());
            }
            match lb[i] {
                b',' => i += 1,
                b'}' => return Ok(i + 1),
                c => {
                    return Err(format!(
                        "expected `,` or `}}` after the value of label {lname:?}, found {:?}",
                        c as char
                    ));
                }
            }
        }
    }

    /// Parses ` {labels} value [timestamp]` after the `#` of an exemplar.
    fn exemplar(&mut self, line: &'a str, i: usize) -> PResult<Exemplar> {
        let lb = line.as_bytes();
        let mut i = skip_blank(lb, i);
        if i >= lb.len() || lb[i] != b'{' {
            return Err("exemplar must start with `# {`".into());
        }
        let start = self.out.labels.len() as u32;
        i = self.label_set(line, i + 1)?;
        let end = self.out.labels.len() as u32;
        let vs = skip_blank(lb, i);
        if vs >= lb.len() {
            return Err("exemplar has no value".into());
        }
        let ve = lb[vs..]
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .map_or(lb.len(), |p| vs + p);
        let value = parse_value(&line[vs..ve]).map_err(|m| format!("exemplar: {m}"))?;
        let ts = skip_blank(lb, ve);
        let mut timestamp = None;
        if ts < lb.len() {
            let te = lb[ts..]
                .iter()
                .position(|&b| b == b' ' || b == b'\t')
                .map_or(lb.len(), |p| ts + p);
            let t = line[ts..te]
                .parse::<f64>()
                .map_err(|_| format!("exemplar: invalid timestamp {:?}", &line[ts..te]))?;
            timestamp = Some(t);
            if skip_blank(lb, te) < lb.len() {
                return Err("unexpected text after the exemplar".into());
            }
        }
        Ok(Exemplar {
            labels: start..end,
            value,
            timestamp,
        })
    }
}

/// Reads a quoted label value starting after the opening quote; returns the value and the index
/// after the closing quote.
fn read_quoted(line: &str, start: usize) -> PResult<(Cow<'_, str>, usize)> {
    let lb = line.as_bytes();
    let Some(p) = memchr::memchr2(b'"', b'\\', &lb[start..]) else {
        return Err("missing closing `\"`".into());
    };
    let p = start + p;
    if lb[p] == b'"' {
        return Ok((Cow::Borrowed(&line[start..p]), p + 1));
    }
    // Escapes present: build an owned value.
    let mut s = String::with_capacity(p - start + 16);
    s.push_str(&line[start..p]);
    let mut i = p;
    loop {
        let Some(q) = memchr::memchr2(b'"', b'\\', &lb[i..]) else {
            return Err("missing closing `\"`".into());
        };
        let q = i + q;
        s.push_str(&line[i..q]);
        if lb[q] == b'"' {
            return Ok((Cow::Owned(s), q + 1));
        }
        match lb.get(q + 1) {
            Some(b'\\') => s.push('\\'),
            Some(b'"') => s.push('"'),
            Some(b'n') => s.push('\n'),
            Some(_) => {
                let c = line[q + 1..].chars().next().unwrap_or(' ');
                return Err(format!(
                    "invalid escape `\\{c}`; only \\\\, \\\" and \\n are allowed"
                ));
            }
            None => return Err("missing closing `\"`".into()),
        }
        i = q + 2;
    }
}

/// HELP text escapes: `\\` and `\n` (other backslashes are kept as written).
fn unescape_help(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('"') => out.push('"'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes a label value with the exposition escapes.
pub fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes a value the way Prometheus clients do (`NaN`, `+Inf`, `-Inf`, shortest round trip).
pub fn format_value(v: f64, out: &mut String) {
    use std::fmt::Write;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v:?}");
    }
}

impl fmt::Display for Exposition<'_> {
    /// Writes the exposition back as text in its own format (used by the round-trip tests).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for fam in &self.families {
            if let Some(h) = &fam.help {
                out.push_str("# HELP ");
                out.push_str(fam.name);
                out.push(' ');
                out.push_str(&h.replace('\\', "\\\\").replace('\n', "\\n"));
                out.push('\n');
            }
            if fam.typed {
                out.push_str("# TYPE ");
                out.push_str(fam.name);
                out.push(' ');
                out.push_str(fam.kind.as_str());
                out.push('\n');
            }
            if let Some(u) = fam.unit {
                out.push_str("# UNIT ");
                out.push_str(fam.name);
                out.push(' ');
                out.push_str(u);
                out.push('\n');
            }
            for s in &self.samples[fam.samples.clone()] {
                out.push_str(s.name);
                let labels = self.labels_of(s);
                write_labels(labels, &mut out);
                out.push(' ');
                format_value(s.value, &mut out);
                if let Some(t) = s.timestamp {
                    out.push(' ');
                    match self.format {
                        Format::Prometheus => out.push_str(&format!("{}", (t * 1000.0).round())),
                        Format::OpenMetrics => format_value(t, &mut out),
                    }
                }
                if let Some(e) = &s.exemplar {
                    out.push_str(" # ");
                    let el = self.exemplar_labels(e);
                    out.push('{');
                    write_label_pairs(el, &mut out);
                    out.push('}');
                    out.push(' ');
                    format_value(e.value, &mut out);
                    if let Some(t) = e.timestamp {
                        out.push(' ');
                        format_value(t, &mut out);
                    }
                }
                out.push('\n');
            }
        }
        if self.format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        f.write_str(&out)
    }
}

fn write_labels(labels: &[Label<'_>], out: &mut String) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    write_label_pairs(labels, out);
    out.push('}');
}

fn write_label_pairs(labels: &[Label<'_>], out: &mut String) {
    for (k, l) in labels.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        out.push_str(l.name);
        out.push_str("=\"");
        escape_label_value(&l.value, out);
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_decimal_fast_path_equals_std() {
        for s in [
            "0",
            "0.0",
            "1.0",
            "-4.25",
            "+7",
            "123456789012345",
            "0.000000000000001",
            "9133.0",
            "0.5409",
            "0.07997899238473949",
            "1.",
            ".5",
            "1e3",
            "-0.0",
            "",
            "-",
            ".",
            "1.2.3",
            "12345678901234567",
        ] {
            let fast = parse_simple_decimal(s.as_bytes());
            let std = s.parse::<f64>().ok();
            if let Some(f) = fast {
                let expected = std.expect("std parses what the fast path parses");
                assert_eq!(f.to_bits(), expected.to_bits(), "{s}");
            }
        }
        assert!(parse_simple_decimal(b"0.07997899238473949").is_none());
        assert!(parse_simple_decimal(b"1e3").is_none());
    }

    proptest::proptest! {
        #[test]
        fn fast_path_is_bit_exact(m in 0u64..1_000_000_000_000_000, frac in 0usize..16, neg: bool) {
            let digits = m.to_string();
            let s = if frac > 0 && frac < digits.len() {
                format!("{}{}.{}", if neg { "-" } else { "" }, &digits[..digits.len() - frac], &digits[digits.len() - frac..])
            } else {
                format!("{}{}", if neg { "-" } else { "" }, digits)
            };
            let std = s.parse::<f64>().expect("valid decimal");
            let fast = parse_simple_decimal(s.as_bytes()).expect("fast path applies");
            proptest::prop_assert_eq!(fast.to_bits(), std.to_bits(), "{}", s);
        }
    }
}
