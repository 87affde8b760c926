//! Prompts from files: JSONL, JSON (an array of records), ShareGPT conversations, CSV and plain
//! text (one prompt per line).
//!
//! A malformed record is an error naming the file and line, unless `skip_invalid` is set: then it
//! is skipped and counted ([`Dataset::skipped`]). An empty file, or one without a usable prompt,
//! is always an error.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Result, WorkloadError};

/// File format of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// From the extension: .jsonl, .json, .csv, anything else = text; JSON records holding
    /// `conversations` are read as ShareGPT.
    Auto,
    /// One JSON object per line.
    Jsonl,
    /// A JSON array of objects (or an object with a `data` array).
    Json,
    /// ShareGPT conversations (JSON array or JSONL): the first human turn is the prompt.
    Sharegpt,
    /// CSV with a header row.
    Csv,
    /// Plain text, one prompt per line (empty lines skipped).
    Text,
}

/// How to read a dataset.
#[derive(Debug, Clone)]
pub struct DatasetOptions {
    pub format: DatasetFormat,
    /// Field holding the prompt (dotted path for nested objects). Default: the first of
    /// `prompt`, `text`, `question`, `input`, `instruction` present in the first record.
    pub prompt_field: Option<String>,
    /// Field holding the output length (a number of tokens) or an answer text (its token count
    /// is used). For ShareGPT, the answer following the prompt is used when this is unset.
    pub output_field: Option<String>,
    /// Skip malformed records (counted) instead of failing.
    pub skip_invalid: bool,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        Self {
            format: DatasetFormat::Auto,
            prompt_field: None,
            output_field: None,
            skip_invalid: false,
        }
    }
}

/// The output length a record asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputLen {
    Tokens(u32),
    /// An answer text; its token count under the run's tokenizer is the length.
    Text(String),
}

/// One usable record.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRow {
    pub prompt: String,
    pub output: Option<OutputLen>,
    /// 1-based line (text, JSONL, CSV) or record index (JSON array) in the file.
    pub line: usize,
}

/// A loaded dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub path: PathBuf,
    pub format: DatasetFormat,
    pub rows: Vec<DatasetRow>,
    /// Malformed records skipped with `skip_invalid`.
    pub skipped: usize,
    /// Field names used, for the results description.
    pub prompt_field: Option<String>,
    pub output_field: Option<String>,
}

const PROMPT_FIELDS: [&str; 5] = ["prompt", "text", "question", "input", "instruction"];

/// Load a dataset file.
pub fn load(path: &Path, opts: &DatasetOptions) -> Result<Dataset> {
    let raw = std::fs::read(path).map_err(|e| WorkloadError::io(path, e))?;
    let text = String::from_utf8(raw).map_err(|e| WorkloadError::Invalid {
        path: path.to_path_buf(),
        msg: format!(
            "not UTF-8 text (invalid byte at offset {}); datasets must be UTF-8",
            e.utf8_error().valid_up_to()
        ),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.trim().is_empty() {
        return Err(WorkloadError::Invalid {
            path: path.to_path_buf(),
            msg: "the file is empty; a dataset needs at least one prompt".into(),
        });
    }
    let format = match opts.format {
        DatasetFormat::Auto => detect(path, text),
        f => f,
    };
    let mut loader = Loader {
        path,
        opts,
        skipped: 0,
        prompt_field: opts.prompt_field.clone(),
        rows: Vec::new(),
    };
    match format {
        DatasetFormat::Text => loader.text(text)?,
        DatasetFormat::Jsonl => loader.jsonl(text, false)?,
        DatasetFormat::Json => loader.json(text, false)?,
        DatasetFormat::Sharegpt => {
            if text.trim_start().starts_with('[') {
                loader.json(text, true)?
            } else {
                loader.jsonl(text, true)?
            }
        }
        DatasetFormat::Csv => loader.csv(text)?,
        DatasetFormat::Auto => unreachable!("detect() never returns Auto"),
    }
    if loader.rows.is_empty() {
        return Err(WorkloadError::Invalid {
            path: path.to_path_buf(),
            msg: format!(
                "no usable prompt in the file ({} records skipped as invalid)",
                loader.skipped
            ),
        });
    }
    let output_field = match (format, &opts.output_field) {
        (_, Some(f)) => Some(f.clone()),
        (DatasetFormat::Sharegpt, None) => Some("conversations[answer]".into()),
        _ => None,
    };
    Ok(Dataset {
        path: path.to_path_buf(),
        format,
        rows: loader.rows,
        skipped: loader.skipped,
        prompt_field: if format == DatasetFormat::Text {
            None
        } else if format == DatasetFormat::Sharegpt {
            Some("conversations[first human turn]".into())
        } else {
            loader.prompt_field
        },
        output_field,
    })
}

fn detect(path: &Path, text: &str) -> DatasetFormat {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let head = &text[..text.len().min(4096)];
    let sharegpt = head.contains("\"conversations\"");
    match ext.as_str() {
        "jsonl" | "ndjson" if sharegpt => DatasetFormat::Sharegpt,
        "jsonl" | "ndjson" => DatasetFormat::Jsonl,
        "json" if sharegpt => DatasetFormat::Sharegpt,
        "json" => {
            // A .json file may still be one object per line.
            if head.trim_start().starts_with('[') || head.trim_start().starts_with("{\"data\"") {
                DatasetFormat::Json
            } else {
                DatasetFormat::Jsonl
            }
        }
        "csv" => DatasetFormat::Csv,
        _ => DatasetFormat::Text,
    }
}

struct Loader<'a> {
    path: &'a Path,
    opts: &'a DatasetOptions,
    skipped: usize,
    prompt_field: Option<String>,
    rows: Vec<DatasetRow>,
}

impl Loader<'_> {
    /// Record a bad record: an error, or a skip with `skip_invalid`.
    fn bad(&mut self, line: usize, msg: String) -> Result<()> {
        if self.opts.skip_invalid {
            self.skipped += 1;
            Ok(())
        } else {
            Err(WorkloadError::Parse {
                path: self.path.to_path_buf(),
                line,
                msg: format!("{msg} (use --skip-invalid to skip such records and count them)"),
            })
        }
    }

    fn text(&mut self, text: &str) -> Result<()> {
        for (i, line) in text.lines().enumerate() {
            let p = line.trim_end_matches('\r');
            if p.trim().is_empty() {
                continue;
            }
            self.rows.push(DatasetRow {
                prompt: p.to_string(),
                output: None,
                line: i + 1,
            });
        }
        Ok(())
    }

    fn jsonl(&mut self, text: &str, sharegpt: bool) -> Result<()> {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(v) => self.record(&v, i + 1, sharegpt)?,
                Err(e) => self.bad(i + 1, format!("not valid JSON: {e}"))?,
            }
        }
        Ok(())
    }

    fn json(&mut self, text: &str, sharegpt: bool) -> Result<()> {
        let v: Value = serde_json::from_str(text).map_err(|e| WorkloadError::Parse {
            path: self.path.to_path_buf(),
            line: e.line(),
            msg: format!("not valid JSON: {e}"),
        })?;
        let items = match &v {
            Value::Array(a) => a,
            Value::Object(o) => match o.get("data") {
                Some(Value::Array(a)) => a,
                _ => {
                    return Err(WorkloadError::Invalid {
                        path: self.path.to_path_buf(),
                        msg: "expected a JSON array of records (or an object with a `data` array); for one object per line use --dataset-format jsonl".into(),
                    });
                }
            },
            _ => {
                return Err(WorkloadError::Invalid {
                    path: self.path.to_path_buf(),
                    msg: "expected a JSON array of records".into(),
                });
            }
        };
        for (i, item) in items.iter().enumerate() {
            self.record(item, i + 1, sharegpt)?;
        }
        Ok(())
    }

    fn csv(&mut self, text: &str) -> Result<()> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(text.as_bytes());
        let headers = rdr
            .headers()
            .map_err(|e| WorkloadError::Parse {
                path: self.path.to_path_buf(),
                line: 1,
                msg: format!("cannot read the CSV header: {e}"),
            })?
            .clone();
        let find = |name: &str| headers.iter().position(|h| h.trim() == name);
        let prompt_col = match &self.opts.prompt_field {
            Some(f) => find(f).ok_or_else(|| WorkloadError::Invalid {
                path: self.path.to_path_buf(),
                msg: format!(
                    "no column `{f}` in the CSV header (columns: {}); set --prompt-field",
                    headers.iter().collect::<Vec<_>>().join(", ")
                ),
            })?,
            None => PROMPT_FIELDS.iter().find_map(|f| find(f)).ok_or_else(|| {
                WorkloadError::Invalid {
                    path: self.path.to_path_buf(),
                    msg: format!(
                        "no prompt column found (looked for {}; columns: {}); set --prompt-field",
                        PROMPT_FIELDS.join(", "),
                        headers.iter().collect::<Vec<_>>().join(", ")
                    ),
                }
            })?,
        };
        self.prompt_field = Some(headers[prompt_col].trim().to_string());
        let output_col = match &self.opts.output_field {
            Some(f) => Some(find(f).ok_or_else(|| WorkloadError::Invalid {
                path: self.path.to_path_buf(),
                msg: format!("no column `{f}` in the CSV header; check --output-field"),
            })?),
            None => None,
        };
        for rec in rdr.records() {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                    self.bad(line, format!("malformed CSV row: {e}"))?;
                    continue;
                }
            };
            let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
            let prompt = rec.get(prompt_col).unwrap_or("").to_string();
            if prompt.trim().is_empty() {
                self.bad(
                    line,
                    format!("empty prompt in column `{}`", headers[prompt_col].trim()),
                )?;
                continue;
            }
            let output = match output_col {
                None => None,
                Some(c) => {
                    let cell = rec.get(c).unwrap_or("").trim();
                    match cell.parse::<u32>() {
                        Ok(n) if n >= 1 => Some(OutputLen::Tokens(n)),
                        _ => {
                            self.bad(
                                line,
                                format!(
                                    "output length `{cell}` in column `{}` is not a whole number >= 1",
                                    headers[c].trim()
                                ),
                            )?;
                            continue;
                        }
                    }
                }
            };
            self.rows.push(DatasetRow {
                prompt,
                output,
                line,
            });
        }
        Ok(())
    }

    fn record(&mut self, v: &Value, line: usize, sharegpt: bool) -> Result<()> {
        if !v.is_object() {
            return self.bad(line, "expected a JSON object".into());
        }
        if sharegpt {
            return self.sharegpt(v, line);
        }
        if self.prompt_field.is_none() {
            self.prompt_field = PROMPT_FIELDS
                .iter()
                .find(|f| v.get(**f).is_some())
                .map(|f| f.to_string());
            if self.prompt_field.is_none() {
                let keys: Vec<&str> = v
                    .as_object()
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                return Err(WorkloadError::Parse {
                    path: self.path.to_path_buf(),
                    line,
                    msg: format!(
                        "no prompt field (looked for {}; the record has {}); set --prompt-field",
                        PROMPT_FIELDS.join(", "),
                        keys.join(", ")
                    ),
                });
            }
        }
        let field = self.prompt_field.clone().unwrap_or_default();
        let prompt = match get_path(v, &field) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) => return self.bad(line, format!("field `{field}` is empty")),
            Some(other) => {
                return self.bad(
                    line,
                    format!("field `{field}` is {}, not a string", kind(other)),
                );
            }
            None => return self.bad(line, format!("missing prompt field `{field}`")),
        };
        let output = match &self.opts.output_field {
            None => None,
            Some(f) => {
                match get_path(v, f) {
                    Some(Value::Number(n)) => {
                        match n.as_u64().filter(|&n| n >= 1 && n <= u32::MAX as u64) {
                            Some(n) => Some(OutputLen::Tokens(n as u32)),
                            None => {
                                return self.bad(
                            line,
                            format!("output length `{n}` in field `{f}` is not a whole number >= 1"),
                        );
                            }
                        }
                    }
                    Some(Value::String(s)) => Some(OutputLen::Text(s.clone())),
                    Some(other) => {
                        return self.bad(
                            line,
                            format!("field `{f}` is {}, not a number or a text", kind(other)),
                        );
                    }
                    None => return self.bad(line, format!("missing output field `{f}`")),
                }
            }
        };
        self.rows.push(DatasetRow {
            prompt,
            output,
            line,
        });
        Ok(())
    }

    fn sharegpt(&mut self, v: &Value, line: usize) -> Result<()> {
        let Some(turns) = v
            .get("conversations")
            .or_else(|| v.get("conversation"))
            .or_else(|| v.get("messages"))
            .and_then(Value::as_array)
        else {
            return self.bad(line, "missing `conversations` array".into());
        };
        let speaker = |t: &Value| {
            t.get("from")
                .or_else(|| t.get("role"))
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        };
        let body = |t: &Value| {
            t.get("value")
                .or_else(|| t.get("content"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let Some(first) = turns
            .iter()
            .position(|t| matches!(speaker(t).as_deref(), Some("human" | "user")))
        else {
            // Conversations without a human turn are common in ShareGPT dumps: always skipped.
            self.skipped += 1;
            return Ok(());
        };
        let Some(prompt) = body(&turns[first]).filter(|s| !s.trim().is_empty()) else {
            self.skipped += 1;
            return Ok(());
        };
        let output = match &self.opts.output_field {
            Some(f) => match get_path(v, f) {
                Some(Value::Number(n)) => n
                    .as_u64()
                    .filter(|&n| n >= 1 && n <= u32::MAX as u64)
                    .map(|n| OutputLen::Tokens(n as u32)),
                _ => return self.bad(line, format!("missing or bad output field `{f}`")),
            },
            None => turns[first + 1..]
                .iter()
                .find(|t| {
                    matches!(
                        speaker(t).as_deref(),
                        Some("gpt" | "assistant" | "chatgpt" | "bard")
                    )
                })
                .and_then(body)
                .filter(|s| !s.trim().is_empty())
                .map(OutputLen::Text),
        };
        self.rows.push(DatasetRow {
            prompt,
            output,
            line,
        });
        Ok(())
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Follow a dotted path (`a.b.c`) through nested objects.
fn get_path<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    if let Some(x) = v.get(path) {
        return Some(x);
    }
    path.split('.').try_fold(v, |cur, key| cur.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(name: &str, content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join(name);
        std::fs::File::create(&p)
            .and_then(|mut f| f.write_all(content.as_bytes()))
            .expect("write");
        (dir, p)
    }

    fn opts() -> DatasetOptions {
        DatasetOptions::default()
    }

    #[test]
    fn jsonl_with_default_and_custom_fields() {
        let (_d, p) = file(
            "a.jsonl",
            "{\"prompt\": \"hi there\", \"n\": 12}\n\n{\"prompt\": \"second\", \"n\": 3}\n",
        );
        let ds = load(&p, &opts()).expect("load");
        assert_eq!(ds.format, DatasetFormat::Jsonl);
        assert_eq!(ds.rows.len(), 2);
        assert_eq!(ds.rows[1].line, 3);
        assert_eq!(ds.rows[0].output, None);
        let o = DatasetOptions {
            output_field: Some("n".into()),
            ..opts()
        };
        let ds = load(&p, &o).expect("load");
        assert_eq!(ds.rows[0].output, Some(OutputLen::Tokens(12)));

        let (_d, p) = file("b.jsonl", "{\"meta\": {\"q\": \"nested\"}}\n");
        let o = DatasetOptions {
            prompt_field: Some("meta.q".into()),
            ..opts()
        };
        assert_eq!(load(&p, &o).expect("nested").rows[0].prompt, "nested");
    }

    #[test]
    fn malformed_lines_name_file_and_line_or_are_skipped() {
        let (_d, p) = file(
            "bad.jsonl",
            "{\"prompt\": \"ok\"}\n{\"prompt\": \"broken\"\n{\"prompt\": 5}\n{\"prompt\": \"ok2\"}\n",
        );
        let err = load(&p, &opts()).expect_err("malformed");
        let msg = err.to_string();
        assert!(msg.contains("bad.jsonl:2:"), "{msg}");
        assert!(msg.contains("--skip-invalid"), "{msg}");
        let o = DatasetOptions {
            skip_invalid: true,
            ..opts()
        };
        let ds = load(&p, &o).expect("skip");
        assert_eq!(ds.rows.len(), 2);
        assert_eq!(ds.skipped, 2);
    }

    #[test]
    fn missing_fields_and_empty_files_are_clear_errors() {
        let (_d, p) = file("e.jsonl", "  \n\n");
        let err = load(&p, &opts()).expect_err("empty").to_string();
        assert!(err.contains("empty"), "{err}");
        let (_d, p) = file("m.jsonl", "{\"body\": \"x\"}\n");
        let err = load(&p, &opts()).expect_err("no field").to_string();
        assert!(
            err.contains("m.jsonl:1") && err.contains("--prompt-field"),
            "{err}"
        );
        let (_d, p) = file("o.jsonl", "{\"prompt\": \"x\"}\n");
        let o = DatasetOptions {
            output_field: Some("len".into()),
            ..opts()
        };
        let err = load(&p, &o).expect_err("no output").to_string();
        assert!(err.contains("missing output field `len`"), "{err}");
        let err = load(Path::new("/nonexistent/d.jsonl"), &opts()).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/d.jsonl"));
    }

    #[test]
    fn json_array_sharegpt_csv_and_text() {
        let (_d, p) = file("a.json", "[{\"text\": \"one\"}, {\"text\": \"two\"}]");
        let ds = load(&p, &opts()).expect("json");
        assert_eq!(ds.format, DatasetFormat::Json);
        assert_eq!(ds.prompt_field.as_deref(), Some("text"));
        assert_eq!(ds.rows.len(), 2);

        let sg = r#"[{"id": "a", "conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A one"}]},
                     {"id": "b", "conversations": [{"from": "gpt", "value": "orphan"}]},
                     {"id": "c", "conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "Q2"}]}]"#;
        let (_d, p) = file("sg.json", sg);
        let ds = load(&p, &opts()).expect("sharegpt");
        assert_eq!(ds.format, DatasetFormat::Sharegpt);
        assert_eq!(ds.rows.len(), 2);
        assert_eq!(ds.skipped, 1);
        assert_eq!(ds.rows[0].prompt, "Q1");
        assert_eq!(ds.rows[0].output, Some(OutputLen::Text("A one".into())));
        assert_eq!(ds.rows[1].output, None);

        let (_d, p) = file("a.csv", "id,question,max\n1,\"hello, world\",7\n2,bye,9\n");
        let o = DatasetOptions {
            output_field: Some("max".into()),
            ..opts()
        };
        let ds = load(&p, &o).expect("csv");
        assert_eq!(ds.rows[0].prompt, "hello, world");
        assert_eq!(ds.rows[1].output, Some(OutputLen::Tokens(9)));
        assert_eq!(ds.rows[1].line, 3);
        let (_d, p) = file("bad.csv", "id,question,max\n1,hi,7\n2,bye\n");
        let err = load(&p, &o).expect_err("ragged").to_string();
        assert!(err.contains("bad.csv:3"), "{err}");
        let (_d, p) = file("nocol.csv", "id,body\n1,x\n");
        let err = load(&p, &opts()).expect_err("no column").to_string();
        assert!(
            err.contains("--prompt-field") && err.contains("id, body"),
            "{err}"
        );

        let (_d, p) = file("p.txt", "first prompt\n\nsecond prompt\r\n");
        let ds = load(&p, &opts()).expect("text");
        assert_eq!(ds.rows.len(), 2);
        assert_eq!(ds.rows[1].prompt, "second prompt");
        assert_eq!(ds.rows[1].line, 3);
    }
}
