//! Fuzzes the exposition parser and everything downstream of it: any bytes are decoded
//! (gzip detected by magic bytes), parsed as Prometheus 0.0.4 and as OpenMetrics, turned into a
//! snapshot, analysed (histogram quantiles included), diffed against itself and written back.
//! Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmload_prom::analyze::{Analysis, AnalyzeOptions, OutputFormat, render};
use llmload_prom::{Format, Snapshot, decode_body, parse_as};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = decode_body(data) else {
        return;
    };
    for format in [Format::Prometheus, Format::OpenMetrics] {
        if let Ok(expo) = parse_as(&text, format) {
            let written = expo.to_string();
            let _ = parse_as(&written, format);
            let snap = Snapshot::from_exposition(&expo);
            let a = Analysis::of_snapshot("fuzz", &snap, &AnalyzeOptions::default());
            let _ = render(&a, OutputFormat::Text);
            let d = Analysis::of_diff(["a", "b"], &snap, &snap, Some(1.0), &AnalyzeOptions::default());
            let _ = render(&d, OutputFormat::Json);
        }
    }
});
