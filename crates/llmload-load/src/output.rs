//! The run directory: `results.json` (rewritten atomically after every benchmark and on
//! interruption) and `requests.jsonl` (appended as requests finish, flushed every 200 ms).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use llmload_core::{RequestRecord, Results};

use crate::engine::RecordSink;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot create the results directory {path}: {source} (choose another with --out DIR)")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode results: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Creates `dir` (and parents).
pub fn create_dir(dir: &Path) -> Result<(), OutputError> {
    fs::create_dir_all(dir).map_err(|source| OutputError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes `results.json` in `dir` atomically (temp file, then rename).
pub fn write_results(dir: &Path, results: &Results) -> Result<PathBuf, OutputError> {
    let path = dir.join("results.json");
    let tmp = dir.join(".results.json.tmp");
    let body = serde_json::to_vec_pretty(results)?;
    let werr = |source| OutputError::Write {
        path: path.clone(),
        source,
    };
    {
        let mut f = File::create(&tmp).map_err(werr)?;
        f.write_all(&body).map_err(werr)?;
        f.write_all(b"\n").map_err(werr)?;
        f.sync_data().map_err(werr)?;
    }
    fs::rename(&tmp, &path).map_err(werr)?;
    Ok(path)
}

/// Bytes of `requests.jsonl` lines held before they are written.
const JSONL_BUFFER: usize = 256 * 1024;

/// Appends request records to `requests.jsonl`, one JSON object a line.
pub struct JsonlSink {
    path: PathBuf,
    file: File,
    /// Lines not yet written: records are formatted straight into it (no copy through a
    /// line buffer), and it goes to the file when it holds [`JSONL_BUFFER`] bytes or on
    /// [`RecordSink::flush`].
    buf: Vec<u8>,
    /// First write error; writing stops after it and the run reports it.
    pub error: Option<String>,
    pub written: u64,
}

impl JsonlSink {
    pub fn create(dir: &Path) -> Result<JsonlSink, OutputError> {
        let path = dir.join("requests.jsonl");
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| OutputError::Write {
                path: path.clone(),
                source,
            })?;
        Ok(JsonlSink {
            path,
            file: f,
            buf: Vec::with_capacity(JSONL_BUFFER + 4096),
            error: None,
            written: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl RecordSink for JsonlSink {
    fn write(&mut self, rec: &RequestRecord) {
        if self.error.is_some() {
            return;
        }
        rec.write_json(&mut self.buf);
        self.buf.push(b'\n');
        self.written += 1;
        if self.buf.len() >= JSONL_BUFFER {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.error.is_none()
            && !self.buf.is_empty()
            && let Err(e) = self.file.write_all(&self.buf)
        {
            self.error = Some(format!("cannot write {}: {e}", self.path.display()));
        }
        self.buf.clear();
    }
}

impl Drop for JsonlSink {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Reads `requests.jsonl` back (for reports and tests). Lines that do not parse are errors
/// naming the line.
pub fn read_requests(path: &Path) -> Result<Vec<RequestRecord>, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}
