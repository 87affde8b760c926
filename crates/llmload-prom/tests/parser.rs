//! Parser edge cases from the Prometheus 0.0.4 and OpenMetrics 1.0 specifications, error
//! messages on broken input, and a property test that writes random expositions and parses
//! them back.

use llmload_prom::parse::{Format, MetricType, ParseError, Suffix, decode_body, parse, parse_as};
use proptest::prelude::*;

fn data(path: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR")))
        .expect("fixture present")
}

#[test]
fn prometheus_spec_example() {
    // The example of the exposition format documentation, with escapes, NaN, ±Inf, timestamps.
    let text = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
nan_gauge NaN
neg -Inf
"#;
    let e = parse(text).expect("valid");
    assert_eq!(e.format, Format::Prometheus);
    let s0 = &e.samples[0];
    assert_eq!(s0.name, "http_requests_total");
    assert_eq!(s0.value, 1027.0);
    assert_eq!(s0.timestamp, Some(1395066363.0));
    assert_eq!(e.label(s0, "code"), Some("200"));
    assert_eq!(e.family_of(s0).kind, MetricType::Counter);
    assert_eq!(
        e.family_of(s0).help.as_deref(),
        Some("The total number of HTTP requests.")
    );
    let ms = &e.samples[2];
    assert_eq!(e.label(ms, "path"), Some(r"C:\DIR\FILE.TXT"));
    assert_eq!(
        e.label(ms, "error"),
        Some("Cannot find file:\n\"FILE.TXT\"")
    );
    let weird = e
        .samples
        .iter()
        .find(|s| s.name == "something_weird")
        .expect("present");
    assert_eq!(weird.value, f64::INFINITY);
    assert_eq!(weird.timestamp, Some(-3982045.0 / 1000.0));
    let b = e
        .samples
        .iter()
        .find(|s| s.name == "http_request_duration_seconds_bucket")
        .expect("bucket");
    assert_eq!(b.suffix, Suffix::Bucket);
    assert_eq!(e.family_of(b).kind, MetricType::Histogram);
    let q = e
        .samples
        .iter()
        .find(|s| s.name == "rpc_duration_seconds")
        .expect("summary quantile");
    assert_eq!(e.family_of(q).kind, MetricType::Summary);
    assert_eq!(e.label(q, "quantile"), Some("0.01"));
    assert!(
        e.samples
            .iter()
            .find(|s| s.name == "nan_gauge")
            .expect("nan")
            .value
            .is_nan()
    );
    assert_eq!(
        e.samples
            .iter()
            .find(|s| s.name == "neg")
            .expect("neg")
            .value,
        f64::NEG_INFINITY
    );
    let untyped = e
        .samples
        .iter()
        .find(|s| s.name == "metric_without_timestamp_and_labels")
        .expect("untyped");
    assert_eq!(e.family_of(untyped).kind, MetricType::Untyped);
}

#[test]
fn openmetrics_features() {
    let text = "# TYPE foo counter\n# UNIT foo seconds\n# HELP foo A counter.\n\
foo_total{a=\"1\"} 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67 1520879602.1\n\
foo_created{a=\"1\"} 1520430000.123\n\
# TYPE build info\nbuild_info{version=\"1.2\"} 1\n\
# TYPE door stateset\ndoor{door=\"open\"} 1\ndoor{door=\"closed\"} 0\n\
# TYPE q gaugehistogram\nq_bucket{le=\"1\"} 2\nq_bucket{le=\"+Inf\"} 3\nq_gcount 3\nq_gsum 2.5\n\
# TYPE colon:name:x gauge\ncolon:name:x 4\n\
# TYPE u unknown\nu 1\n# EOF\n";
    let e = parse(text).expect("valid");
    assert_eq!(e.format, Format::OpenMetrics);
    let foo = &e.samples[0];
    assert_eq!(foo.suffix, Suffix::Total);
    assert_eq!(foo.timestamp, Some(1520879607.789));
    let ex = foo.exemplar.as_ref().expect("exemplar");
    assert_eq!(ex.value, 0.67);
    assert_eq!(ex.timestamp, Some(1520879602.1));
    assert_eq!(e.exemplar_labels(ex)[0].name, "trace_id");
    let fam = e.family_of(foo);
    assert_eq!(
        (fam.kind, fam.unit, fam.samples.len()),
        (MetricType::Counter, Some("seconds"), 2)
    );
    assert_eq!(e.samples[1].suffix, Suffix::Created);
    let info = e
        .samples
        .iter()
        .find(|s| s.name == "build_info")
        .expect("info");
    assert_eq!(
        (e.family_of(info).kind, info.suffix),
        (MetricType::Info, Suffix::Info)
    );
    let door: Vec<_> = e.samples.iter().filter(|s| s.name == "door").collect();
    assert_eq!(door.len(), 2);
    assert_eq!(e.family_of(door[0]).kind, MetricType::StateSet);
    let gc = e
        .samples
        .iter()
        .find(|s| s.name == "q_gcount")
        .expect("gcount");
    assert_eq!(
        (e.family_of(gc).kind, gc.suffix),
        (MetricType::GaugeHistogram, Suffix::Gcount)
    );
    let c = e
        .samples
        .iter()
        .find(|s| s.name == "colon:name:x")
        .expect("colon");
    assert_eq!(e.family_of(c).kind, MetricType::Gauge);
    let u = e.samples.iter().find(|s| s.name == "u").expect("u");
    assert_eq!(e.family_of(u).kind, MetricType::Untyped);
}

#[test]
fn openmetrics_errors() {
    // Missing # EOF when declared OpenMetrics.
    let err = parse_as("# TYPE a gauge\na 1\n", Format::OpenMetrics).expect_err("no EOF");
    assert!(matches!(err, ParseError::MissingEof { .. }), "{err}");
    // Content after # EOF.
    let err = parse("a 1\n# EOF\nb 2\n# EOF\n").expect_err("after EOF");
    assert!(matches!(err, ParseError::AfterEof { line: 3 }), "{err}");
    // Exemplars are OpenMetrics-only.
    let err = parse("a_total 1 # {x=\"y\"} 1\n").expect_err("exemplar in 0.0.4");
    assert_eq!(err.line(), Some(1));
    assert!(err.to_string().contains("exemplar"), "{err}");
    // Blank lines are not allowed in OpenMetrics.
    let err = parse("a 1\n\nb 2\n# EOF\n").expect_err("blank line");
    assert_eq!(err.line(), Some(2));
}

#[test]
fn errors_name_the_line_and_the_problem() {
    let cases: &[(&str, usize, &str)] = &[
        ("ok 1\nbad{a=\"1\" 2\n", 2, "expected `,` or `}`"),
        ("ok 1\nbad{a=1} 2\n", 2, "expected `\"`"),
        ("x{a=\"\\q\"} 1\n", 1, "invalid escape"),
        ("x{a=\"open} 1\n", 1, "missing closing"),
        ("x 1.2.3\n", 1, "invalid value"),
        ("x\n", 1, "has no value"),
        ("x 1 notatime\n", 1, "invalid timestamp"),
        ("x 1 1000 extra\n", 1, "unexpected text"),
        ("# TYPE x flavour\n", 1, "unknown metric type"),
        ("# TYPE x gauge\n# TYPE x gauge\n", 2, "second `# TYPE`"),
        ("x{a=\"1\",a=\"2\"} 1\n", 1, "appears twice"),
        ("x{1a=\"1\"} 1\n", 1, "expected a label name"),
        ("9x 1\n", 1, "expected a metric name"),
        ("x-y 1\n", 1, "invalid character"),
        ("x{a=\"1\"\n", 1, "not closed"),
    ];
    for (text, line, what) in cases {
        let err = parse(text).expect_err(text);
        assert_eq!(err.line(), Some(*line), "{text:?}: {err}");
        assert!(err.to_string().contains(what), "{text:?}: {err}");
    }
}

#[test]
fn vllm_docs_excerpts_with_elisions_are_rejected_with_the_line() {
    // The documentation excerpts contain literal `...` lines (one inside a label set).
    let t = data("vllm-docs-design-metrics-cache_config_info.prom");
    let err = parse(&t).expect_err("elided label set");
    assert_eq!(err.line(), Some(2), "{err}");
    let t = data("vllm-docs-design-metrics-example.prom");
    let err = parse(&t).expect_err("elision line");
    let first_dots = t.lines().position(|l| l.trim() == "...").expect("has ...") + 1;
    assert_eq!(err.line(), Some(first_dots), "{err}");
    assert!(err.to_string().contains("expected a metric name"), "{err}");
}

#[test]
fn accepts_the_lenient_spellings() {
    // Trailing comma, blanks around tokens, CRLF, comments, empty label set, Inf spellings.
    let text =
        "# a free comment\r\nx{a=\"1\",} 1\r\ny { a = \"2\" , b=\"3\" } 2\r\nz{} Inf\r\nw -inf\r\n";
    let e = parse(text).expect("valid");
    assert_eq!(e.samples.len(), 4);
    assert_eq!(e.labels_of(&e.samples[1]).len(), 2);
    assert_eq!(e.samples[2].value, f64::INFINITY);
    assert_eq!(e.samples[3].value, f64::NEG_INFINITY);
}

#[test]
fn gzip_bodies_are_detected_by_magic_bytes() {
    use std::io::Write;
    let text = data("vllm-0.33.0-single-engine.prom");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).expect("in memory");
    let gz = enc.finish().expect("in memory");
    let decoded = decode_body(&gz).expect("gunzip");
    assert_eq!(decoded, text);
    let plain = decode_body(text.as_bytes()).expect("plain");
    assert!(matches!(plain, std::borrow::Cow::Borrowed(_)));
    // Truncated gzip and non-UTF-8 bodies are errors, not panics.
    assert!(matches!(
        decode_body(&gz[..gz.len() / 2]),
        Err(ParseError::Gzip(_))
    ));
    assert!(matches!(
        decode_body(&[0xff, 0xfe, 0x00]),
        Err(ParseError::NotUtf8 { .. })
    ));
}

#[test]
fn content_type_and_detection() {
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Some(Format::OpenMetrics)
    );
    assert_eq!(
        Format::from_content_type("text/plain; version=0.0.4"),
        Some(Format::Prometheus)
    );
    assert_eq!(Format::from_content_type("application/json"), None);
    assert_eq!(Format::detect("a 1\n# EOF\n"), Format::OpenMetrics);
    assert_eq!(Format::detect("a 1\n"), Format::Prometheus);
}

#[test]
fn labels_without_escapes_are_borrowed() {
    let e = parse("x{a=\"plain\",b=\"esc\\\"aped\"} 1\n").expect("valid");
    let l = e.labels_of(&e.samples[0]);
    assert!(matches!(l[0].value, std::borrow::Cow::Borrowed("plain")));
    assert_eq!(l[1].value, "esc\"aped");
}

// ---- property tests -------------------------------------------------------------------------

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}"
}
fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,8}"
}
fn label_value() -> impl Strategy<Value = String> {
    // Any text, including quotes, backslashes, newlines and non-ASCII.
    proptest::string::string_regex("(\\PC|[\"\\\\\n]){0,12}").expect("regex")
}
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        (-1e6f64..1e6f64),
        (0u32..100000).prop_map(f64::from),
    ]
}

#[derive(Debug, Clone)]
struct GenSample {
    labels: Vec<(String, String)>,
    value: f64,
    ts: Option<i64>,
}

#[derive(Debug, Clone)]
struct GenFamily {
    name: String,
    kind: &'static str,
    help: Option<String>,
    samples: Vec<GenSample>,
}

fn family() -> impl Strategy<Value = GenFamily> {
    (
        name(),
        prop_oneof![Just("counter"), Just("gauge"), Just("untyped")],
        proptest::option::of("[ -~]{0,30}"),
        proptest::collection::vec(
            (
                proptest::collection::btree_map(label_name(), label_value(), 0..4),
                value(),
                proptest::option::of(-10_000_000_000_000i64..10_000_000_000_000i64),
            )
                .prop_map(|(l, value, ts)| GenSample {
                    labels: l.into_iter().collect(),
                    value,
                    ts,
                }),
            1..5,
        ),
    )
        .prop_map(|(name, kind, help, samples)| GenFamily {
            name,
            kind,
            help,
            samples,
        })
}

fn write(fams: &[GenFamily], om: bool) -> String {
    let mut out = String::new();
    for f in fams {
        if let Some(h) = &f.help {
            out.push_str(&format!("# HELP {} {}\n", f.name, h.replace('\\', "\\\\")));
        }
        out.push_str(&format!("# TYPE {} {}\n", f.name, f.kind));
        for s in &f.samples {
            out.push_str(&f.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(k);
                    out.push_str("=\"");
                    llmload_prom::parse::escape_label_value(v, &mut out);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            llmload_prom::parse::format_value(s.value, &mut out);
            if let Some(t) = s.ts {
                out.push(' ');
                if om {
                    out.push_str(&format!("{}", t as f64 / 1000.0));
                } else {
                    out.push_str(&t.to_string());
                }
            }
            out.push('\n');
        }
    }
    if om {
        out.push_str("# EOF\n");
    }
    out
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn random_expositions_parse_back(
        fams in proptest::collection::vec(family(), 1..6)
            .prop_filter("distinct family names", |f| {
                let mut n: Vec<&String> = f.iter().map(|x| &x.name).collect();
                n.sort();
                n.dedup();
                n.len() == f.len()
            }),
        om in any::<bool>(),
    ) {
        let text = write(&fams, om);
        let e = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(e.format, if om { Format::OpenMetrics } else { Format::Prometheus });
        let total: usize = fams.iter().map(|f| f.samples.len()).sum();
        prop_assert_eq!(e.samples.len(), total);
        let mut i = 0;
        for f in &fams {
            for s in &f.samples {
                let p = &e.samples[i];
                i += 1;
                prop_assert_eq!(p.name, f.name.as_str());
                prop_assert!(same(p.value, s.value), "{} vs {}", p.value, s.value);
                let fam = e.family_of(p);
                prop_assert_eq!(fam.name, f.name.as_str());
                prop_assert_eq!(fam.kind.as_str(), f.kind);
                let labels: Vec<(String, String)> = e
                    .labels_of(p)
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                prop_assert_eq!(&labels, &s.labels);
                match s.ts {
                    None => prop_assert_eq!(p.timestamp, None),
                    Some(t) => prop_assert_eq!(p.timestamp, Some(t as f64 / 1000.0)),
                }
            }
        }
        // Writing the parsed exposition back and parsing again gives the same samples.
        let again_text = e.to_string();
        let again = parse(&again_text).map_err(|e| TestCaseError::fail(format!("{e}\n{again_text}")))?;
        prop_assert_eq!(again.samples.len(), e.samples.len());
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        let _ = parse(&s);
        let _ = parse_as(&s, Format::OpenMetrics);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(t) = decode_body(&b) {
            let _ = parse(&t);
        }
    }

    #[test]
    fn mutated_fixture_lines_never_panic(cut in 0usize..4000, insert in "[{}=\",# \\\\\n]{1,3}") {
        let text = data("vllm-0.33.0-single-engine.openmetrics");
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) { at -= 1; }
        let mutated = format!("{}{}{}", &text[..at], insert, &text[at..]);
        let _ = parse(&mutated);
    }
}
