//! `llmload scenarios`: list the presets with their parameters, or print an example scenario
//! file.

use std::io::Write;

use crate::error::{Result, WorkloadError};
use crate::scenario::{EXAMPLE_TOML, PRESETS};

pub use crate::builder::WorkloadArgs;

/// Output format of `llmload scenarios`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenariosFormat {
    Table,
    Json,
}

/// List the workload presets (`--scenario NAME`) or print an example scenario file.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  llmload scenarios
  llmload scenarios --format json
  llmload scenarios --example > my-scenario.toml
  llmload run --scenario summarization --target http://127.0.0.1:8000 --rate 4
  llmload run --scenario my-scenario.toml --rate 8      # flags override the file")]
pub struct ScenariosArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ScenariosFormat,

    /// Print an example scenario file (TOML) holding run, workload and threshold settings.
    #[arg(long)]
    pub example: bool,
}

/// Run `llmload scenarios`, writing to stdout; returns the exit code.
pub fn run_scenarios(args: &ScenariosArgs) -> Result<i32> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_scenarios(args, &mut out).map_err(|e| WorkloadError::io("<stdout>", e))?;
    Ok(0)
}

/// Write the listing to `out`.
pub fn write_scenarios(args: &ScenariosArgs, out: &mut dyn Write) -> std::io::Result<()> {
    if args.example {
        return out.write_all(EXAMPLE_TOML.as_bytes());
    }
    match args.format {
        ScenariosFormat::Json => {
            let list: Vec<serde_json::Value> = PRESETS
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "name": p.name,
                        "description": p.description,
                        "prompt_tokens": p.prompt_tokens,
                        "output_tokens": p.output_tokens,
                        "prefix_tokens": p.prefix_tokens,
                        "num_prefixes": p.num_prefixes,
                        "images": p.images,
                        "image_size": p.image_size,
                        "image_prompt": p.image_prompt,
                    })
                })
                .collect();
            let s = serde_json::to_string_pretty(&list).map_err(std::io::Error::other)?;
            writeln!(out, "{s}")
        }
        ScenariosFormat::Table => {
            writeln!(
                out,
                "{:<14} {:>7} {:>7}  {:<22} description",
                "name", "prompt", "output", "extras"
            )?;
            for p in PRESETS {
                let mut extras = Vec::new();
                if let (Some(t), Some(n)) = (p.prefix_tokens, p.num_prefixes) {
                    extras.push(format!("prefix {t} x{n}"));
                }
                if let Some(i) = p.images {
                    extras.push(format!("{i} img {}", p.image_size.unwrap_or("")));
                }
                writeln!(
                    out,
                    "{:<14} {:>7} {:>7}  {:<22} {}",
                    p.name,
                    p.prompt_tokens,
                    p.output_tokens,
                    extras.join(", "),
                    p.description
                )?;
            }
            writeln!(
                out,
                "\nprompt/output are tokens (prompt exact under --tokenizer; output sent as max_tokens).\nUse: llmload run --scenario NAME ... ; flags override a preset. `--example` prints a scenario file."
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_preset_in_both_formats() {
        let mut buf = Vec::new();
        write_scenarios(
            &ScenariosArgs {
                format: ScenariosFormat::Table,
                example: false,
            },
            &mut buf,
        )
        .expect("write");
        let table = String::from_utf8(buf).expect("utf8");
        for p in PRESETS {
            assert!(table.contains(p.name), "{table}");
        }
        let mut buf = Vec::new();
        write_scenarios(
            &ScenariosArgs {
                format: ScenariosFormat::Json,
                example: false,
            },
            &mut buf,
        )
        .expect("write");
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("json");
        assert_eq!(v.as_array().map(Vec::len), Some(PRESETS.len()));
        assert_eq!(v[0]["name"], "chat");
    }
}
