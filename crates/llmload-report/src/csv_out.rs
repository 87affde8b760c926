//! CSV: one row per benchmark step with every statistic flattened (`benchmarks.csv`), and
//! optionally one row per request (`requests.csv`, streamed from `requests.jsonl`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use llmload_core::{RequestRecord, Results};

use crate::{ReportError, flat};

fn csv_err(path: &Path, e: impl std::fmt::Display) -> ReportError {
    ReportError::Csv {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// The benchmarks table as CSV text.
pub fn benchmarks_csv(results: &Results) -> Result<String, ReportError> {
    let (header, rows) = flat::table(results);
    let mut w = csv::Writer::from_writer(Vec::new());
    let p = Path::new("benchmarks.csv");
    w.write_record(&header).map_err(|e| csv_err(p, e))?;
    for r in rows {
        w.write_record(&r).map_err(|e| csv_err(p, e))?;
    }
    let bytes = w.into_inner().map_err(|e| csv_err(p, e))?;
    String::from_utf8(bytes).map_err(|e| csv_err(p, e))
}

pub fn write_benchmarks_csv(results: &Results, path: &Path) -> Result<(), ReportError> {
    let text = benchmarks_csv(results)?;
    crate::write_file(path, text.as_bytes())
}

/// Columns of `requests.csv`.
pub const REQUEST_COLUMNS: [&str; 27] = [
    "id",
    "benchmark",
    "in_window",
    "t_sched",
    "t_dispatch",
    "t_first_token",
    "t_first_output",
    "t_last_token",
    "t_end",
    "ttft_s",
    "e2e_latency_s",
    "request_latency_s",
    "tpot_s",
    "tpot_incl_ttft_s",
    "prompt_tokens",
    "output_tokens",
    "token_source",
    "max_tokens",
    "output_events",
    "multi_token_events",
    "status",
    "finish_reason",
    "error",
    "error_message",
    "retries",
    "in_flight_at_dispatch",
    "tag",
];

fn o<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn request_row(r: &RequestRecord) -> [String; 27] {
    [
        r.id.to_string(),
        r.benchmark.to_string(),
        r.in_window.to_string(),
        r.t_sched.to_string(),
        r.t_dispatch.to_string(),
        o(r.t_first_token),
        o(r.t_first_output),
        o(r.t_last_token),
        r.t_end.to_string(),
        o(r.ttft()),
        o(r.e2e_latency()),
        r.request_latency().to_string(),
        o(r.tpot()),
        o(r.tpot_incl_ttft()),
        o(r.prompt_tokens),
        o(r.output_tokens),
        r.token_source.as_str().to_string(),
        o(r.max_tokens),
        r.output_events.to_string(),
        r.multi_token_events.to_string(),
        o(r.status),
        r.finish_reason.clone().unwrap_or_default(),
        o(r.error.map(|e| e.as_str())),
        r.error_message.clone().unwrap_or_default(),
        r.retries.to_string(),
        r.in_flight_at_dispatch.to_string(),
        r.tag.clone().unwrap_or_default(),
    ]
}

/// Streams `requests.jsonl` into `requests.csv`, one row per request.
pub fn write_requests_csv(src: &Path, dst: &Path) -> Result<(), ReportError> {
    let file = std::fs::File::open(src).map_err(|source| ReportError::Read {
        path: src.to_path_buf(),
        source,
    })?;
    let out = std::fs::File::create(dst).map_err(|source| ReportError::Write {
        path: dst.to_path_buf(),
        source,
    })?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(out));
    w.write_record(REQUEST_COLUMNS)
        .map_err(|e| csv_err(dst, e))?;
    let reader = BufReader::new(file);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| ReportError::Read {
            path: src.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let r: RequestRecord = serde_json::from_str(&line).map_err(|e| ReportError::Record {
            path: src.to_path_buf(),
            line: i + 1,
            detail: e.to_string(),
        })?;
        w.write_record(request_row(&r))
            .map_err(|e| csv_err(dst, e))?;
    }
    let mut inner = w.into_inner().map_err(|e| csv_err(dst, e))?;
    inner.flush().map_err(|source| ReportError::Write {
        path: dst.to_path_buf(),
        source,
    })
}
