//! The workload flags of `llmload run` ([`WorkloadArgs`]) and [`build`], which turns them into
//! a [`Workload`] and the run's [`TokenCounter`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use llmload_core::{ChatMessage, ContentPart, Prompt, RequestSpec, TokenCounter, Workload};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Deserializer, Serialize};

use crate::dataset::{self, Dataset, DatasetFormat, DatasetOptions, OutputLen};
use crate::dist::LengthDist;
use crate::error::{Result, WorkloadError};
use crate::images::{self, ImageFeed, ImageFormat, ImageSource, SyntheticImages};
use crate::scenario::{self, Scenario};
use crate::session::SessionWorkload;
use crate::synth::{PrefixPool, TokenVocab};
use crate::tokenizer::Tokenizer;
use crate::trace::TraceWorkload;

/// Default prompt length of synthetic text.
pub const DEFAULT_PROMPT_TOKENS: u32 = 256;
/// Default requested output length.
pub const DEFAULT_OUTPUT_TOKENS: u32 = 128;

/// How a dataset is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// Seeded shuffle, each record once; the workload ends when all were sent.
    WithoutReplacement,
    /// Seeded random draws, records may repeat; never ends.
    WithReplacement,
    /// File order, each record once.
    Sequential,
}

fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        Int(u64),
        Float(f64),
        Str(String),
    }
    Ok(Option::<S>::deserialize(d)?.map(|s| match s {
        S::Int(i) => i.to_string(),
        S::Float(f) => f.to_string(),
        S::Str(s) => s,
    }))
}

/// Workload flags of `llmload run` (flatten into its clap `Args`). In a scenario file they live
/// under `[workload]` with the same names in snake_case.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Workload")]
pub struct WorkloadArgs {
    /// Scenario preset (chat, summarization, codegen, stress, rag, rag-shared, vision) or a
    /// scenario file (.toml/.yaml/.json); flags override it. `llmload scenarios` lists presets.
    #[arg(long, value_name = "NAME|FILE")]
    #[serde(skip)]
    pub scenario: Option<String>,

    /// Prompt length in tokens: N, uniform:MIN,MAX or normal:MEAN,STDDEV[,MIN,MAX]
    /// [default: 256]. Synthetic prompts hit it exactly under --tokenizer.
    #[arg(long, value_name = "DIST")]
    #[serde(deserialize_with = "de_opt_string")]
    pub prompt_tokens: Option<String>,

    /// Output length (sent as max_tokens): N, uniform:MIN,MAX, normal:MEAN,STDDEV[,MIN,MAX], or
    /// `dataset` (from --output-field / the ShareGPT answer) [default: 128, or the dataset's].
    #[arg(long, value_name = "DIST")]
    #[serde(deserialize_with = "de_opt_string")]
    pub output_tokens: Option<String>,

    /// Tokenizer: a bundled tiktoken encoding (cl100k_base, o200k_base, p50k_base, r50k_base)
    /// or a model's tokenizer.json (file or directory; read locally, never downloaded)
    /// [default: cl100k_base].
    #[arg(long, value_name = "NAME|PATH")]
    pub tokenizer: Option<String>,

    /// Prompts from a file: JSONL, JSON, ShareGPT, CSV or text (one prompt per line).
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,

    /// Dataset format [default: auto, from the extension and content].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub dataset_format: Option<DatasetFormat>,

    /// Dataset field (or CSV column) holding the prompt; dotted paths reach nested fields
    /// [default: the first of prompt, text, question, input, instruction].
    #[arg(long, value_name = "FIELD")]
    pub prompt_field: Option<String>,

    /// Dataset field holding the output length (a token count, or an answer text whose token
    /// count is used).
    #[arg(long, value_name = "FIELD")]
    pub output_field: Option<String>,

    /// Dataset sampling [default: without-replacement: seeded shuffle, each record once].
    #[arg(long, value_enum, value_name = "MODE")]
    pub dataset_sampling: Option<Sampling>,

    /// Skip malformed dataset records (counted in the results) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,

    /// Images per request (OpenAI image_url content parts). Synthetic unless --image-urls,
    /// --image-dir or --image-file is given.
    #[arg(long, value_name = "N")]
    pub images: Option<u32>,

    /// Size of synthetic images [default: 448x448].
    #[arg(long, value_name = "WxH")]
    pub image_size: Option<String>,

    /// Format of synthetic images [default: jpeg].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub image_format: Option<ImageFormat>,

    /// JPEG quality of synthetic images, 1-100 [default: 85].
    #[arg(long, value_name = "Q")]
    pub image_quality: Option<u8>,

    /// A file of image URLs, one per line, sent as they are (`#` comments allowed).
    #[arg(long, value_name = "FILE")]
    pub image_urls: Option<PathBuf>,

    /// A directory of images (png, jpg, gif, webp, bmp), sent as base64 data URLs.
    #[arg(long, value_name = "DIR")]
    pub image_dir: Option<PathBuf>,

    /// An image file sent as a base64 data URL (repeatable).
    #[arg(long, value_name = "FILE")]
    #[serde(default)]
    pub image_file: Vec<PathBuf>,

    /// Fixed text sent with the images, e.g. "Descreva a imagem em português." [default: a
    /// synthetic prompt of --prompt-tokens].
    #[arg(long, value_name = "TEXT")]
    pub image_prompt: Option<String>,

    /// Send the same synthetic image every time (a server's multimodal cache may then hit);
    /// by default each synthetic image is unique.
    #[arg(long)]
    pub same_images: bool,

    /// Threads generating synthetic images ahead of dispatch [default: half the CPUs, 1-4].
    #[arg(long, value_name = "N")]
    pub image_threads: Option<usize>,

    /// Replay a Mooncake-format trace (JSONL: timestamp ms, input_length, output_length,
    /// hash_ids): requests are sent at the trace's times.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,

    /// Multiply trace times by F (0.5 replays twice as fast) [default: 1].
    #[arg(long, value_name = "F")]
    pub trace_time_scale: Option<f64>,

    /// Tokens per trace hash block [default: 512, as in Mooncake's traces].
    #[arg(long, value_name = "N")]
    pub trace_block_size: Option<usize>,

    /// Shared prefix length in tokens: every prompt starts with one of --num-prefixes shared
    /// texts, to exercise prefix caching on purpose (default: none; prompts are unique).
    #[arg(long, value_name = "N")]
    pub prefix_tokens: Option<u32>,

    /// Number of distinct shared prefixes [default: 1 when --prefix-tokens is set].
    #[arg(long, value_name = "N")]
    pub num_prefixes: Option<u32>,

    /// Multi-turn sessions of N turns: each turn sends the history including the answers.
    #[arg(long, value_name = "N")]
    pub turns: Option<u32>,

    /// Think time between a session's turns, in seconds [default: 0].
    #[arg(long, value_name = "SECS")]
    pub think_time: Option<f64>,
}

impl WorkloadArgs {
    /// Fill every unset field from `base` (flags override the scenario).
    pub fn merge_under(&mut self, base: &WorkloadArgs) {
        macro_rules! take {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = base.$f.clone(); } )* };
        }
        take!(
            scenario,
            prompt_tokens,
            output_tokens,
            tokenizer,
            dataset,
            dataset_format,
            prompt_field,
            output_field,
            dataset_sampling,
            images,
            image_size,
            image_format,
            image_quality,
            image_urls,
            image_dir,
            image_prompt,
            image_threads,
            trace,
            trace_time_scale,
            trace_block_size,
            prefix_tokens,
            num_prefixes,
            turns,
            think_time
        );
        if self.image_file.is_empty() {
            self.image_file = base.image_file.clone();
        }
        self.skip_invalid |= base.skip_invalid;
        self.same_images |= base.same_images;
    }

    /// Resolve relative paths against `dir` (for scenario files).
    pub fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(x) = p {
                if x.is_relative() {
                    *x = dir.join(&*x);
                }
            }
        };
        fix(&mut self.dataset);
        fix(&mut self.image_urls);
        fix(&mut self.image_dir);
        fix(&mut self.trace);
        for f in &mut self.image_file {
            if f.is_relative() {
                *f = dir.join(&*f);
            }
        }
        if let Some(t) = &self.tokenizer {
            let p = Path::new(t);
            if Tokenizer::tiktoken(t.strip_prefix("tiktoken:").unwrap_or(t)).is_none()
                && p.is_relative()
                && dir.join(p).exists()
            {
                self.tokenizer = Some(dir.join(p).display().to_string());
            }
        }
    }

    /// These flags with their `--scenario` (preset or file) merged under them.
    pub fn resolved(&self) -> Result<WorkloadArgs> {
        let mut a = self.clone();
        if let Some(s) = &self.scenario {
            match scenario::resolve(s)? {
                Scenario::Preset(p) => a.merge_under(&p.args()),
                Scenario::File(_, f) => a.merge_under(&f.workload_args()),
            }
        }
        Ok(a)
    }
}

fn dist(flag: &str, v: Option<&str>, default: u32) -> Result<LengthDist> {
    match v {
        Some(s) => LengthDist::parse(flag, s),
        None => Ok(LengthDist::Fixed { value: default }),
    }
}

/// Build the workload and the run's token counter from the flags. `seed` is the run's
/// `--seed`: the same seed gives the same prompts. All files (datasets, images, traces,
/// tokenizers) are read here, so every input error surfaces before any load starts.
pub fn build(args: &WorkloadArgs, seed: u64) -> Result<(Box<dyn Workload>, Arc<dyn TokenCounter>)> {
    let a = args.resolved()?;
    let tok = Arc::new(Tokenizer::resolve(a.tokenizer.as_deref())?);
    let counter: Arc<dyn TokenCounter> = tok.clone();
    let scenario = a.scenario.clone();
    check_conflicts(&a)?;

    if let Some(path) = &a.trace {
        let vocab = Arc::new(TokenVocab::build(&tok)?);
        let out = match a.output_tokens.as_deref() {
            Some(s) => LengthDist::parse("--output-tokens", s)?.min(),
            None => None,
        };
        let w = TraceWorkload::new(
            path,
            vocab,
            a.trace_time_scale.unwrap_or(1.0),
            a.trace_block_size.unwrap_or(512),
            out.or(Some(DEFAULT_OUTPUT_TOKENS)),
            seed,
        )?;
        return Ok((Box::new(w), counter));
    }

    if let Some(turns) = a.turns.filter(|&t| t > 1) {
        let vocab = Arc::new(TokenVocab::build(&tok)?);
        let think = a.think_time.unwrap_or(0.0);
        if !(think.is_finite() && think >= 0.0) {
            return Err(WorkloadError::flag(
                "--think-time",
                think,
                "must be seconds >= 0",
            ));
        }
        let w = SessionWorkload::new(
            vocab,
            Arc::clone(&tok),
            dist(
                "--prompt-tokens",
                a.prompt_tokens.as_deref(),
                DEFAULT_PROMPT_TOKENS,
            )?,
            dist(
                "--output-tokens",
                a.output_tokens.as_deref(),
                DEFAULT_OUTPUT_TOKENS,
            )?,
            turns,
            Duration::from_secs_f64(think),
            seed,
        );
        return Ok((Box::new(w), counter));
    }

    let images = build_images(&a, seed)?;

    if let Some(path) = &a.dataset {
        let ds = dataset::load(
            path,
            &DatasetOptions {
                format: a.dataset_format.unwrap_or(DatasetFormat::Auto),
                prompt_field: a.prompt_field.clone(),
                output_field: a.output_field.clone(),
                skip_invalid: a.skip_invalid,
            },
        )?;
        let output = match a.output_tokens.as_deref() {
            Some(s) => LengthDist::parse("--output-tokens", s)?,
            None => LengthDist::Dataset,
        };
        if output == LengthDist::Dataset && ds.output_field.is_none() && a.output_tokens.is_some() {
            return Err(WorkloadError::Conflict(format!(
                "--output-tokens dataset needs output lengths in {}: set --output-field (or use a ShareGPT file)",
                path.display()
            )));
        }
        let w = DatasetWorkload::new(
            ds,
            a.dataset_sampling.unwrap_or(Sampling::WithoutReplacement),
            output,
            tok,
            images,
            a.images.unwrap_or(0) as usize,
            scenario,
            seed,
        );
        return Ok((Box::new(w), counter));
    }

    let vocab = Arc::new(TokenVocab::build(&tok)?);
    let prompt = dist(
        "--prompt-tokens",
        a.prompt_tokens.as_deref(),
        DEFAULT_PROMPT_TOKENS,
    )?;
    let output = dist(
        "--output-tokens",
        a.output_tokens.as_deref(),
        DEFAULT_OUTPUT_TOKENS,
    )?;
    if output == LengthDist::Dataset || prompt == LengthDist::Dataset {
        return Err(WorkloadError::Conflict(
            "`dataset` lengths need --dataset FILE".into(),
        ));
    }
    let prefix = match a.prefix_tokens {
        None | Some(0) => None,
        Some(p) => {
            let count = a.num_prefixes.unwrap_or(1);
            if count == 0 {
                return Err(WorkloadError::flag("--num-prefixes", 0, "must be >= 1"));
            }
            let min = prompt.min().unwrap_or(0);
            if a.image_prompt.is_none() && min <= p {
                return Err(WorkloadError::Conflict(format!(
                    "--prefix-tokens {p} must be smaller than the shortest prompt (--prompt-tokens {prompt}, shortest {min}): the prompt is the shared prefix plus a unique part"
                )));
            }
            Some(PrefixPool::new(&vocab, p as usize, count as usize, seed))
        }
    };
    if a.num_prefixes.is_some() && prefix.is_none() {
        return Err(WorkloadError::Conflict(
            "--num-prefixes needs --prefix-tokens N".into(),
        ));
    }
    let fixed_text = a.image_prompt.as_ref().map(|t| {
        let n = tok.count_tokens(t) as u64;
        (t.clone(), n)
    });
    let w = SyntheticWorkload {
        vocab,
        prompt,
        output,
        prefix,
        images,
        images_per_request: a.images.unwrap_or(0) as usize,
        fixed_text,
        rng: ChaCha8Rng::seed_from_u64(seed),
        seq: 0,
        seed,
        scenario,
    };
    Ok((Box::new(w), counter))
}

fn check_conflicts(a: &WorkloadArgs) -> Result<()> {
    let has_images = a.images.unwrap_or(0) > 0;
    let multi = a.turns.unwrap_or(1) > 1;
    let clash = |x: bool, y: bool, msg: &str| {
        if x && y {
            Err(WorkloadError::Conflict(msg.to_string()))
        } else {
            Ok(())
        }
    };
    clash(
        a.trace.is_some(),
        a.dataset.is_some(),
        "--trace and --dataset cannot be combined: a trace defines its own prompts",
    )?;
    clash(
        a.trace.is_some(),
        multi,
        "--trace and --turns cannot be combined",
    )?;
    clash(
        a.trace.is_some(),
        has_images,
        "--trace and --images cannot be combined",
    )?;
    clash(
        a.trace.is_some(),
        a.prompt_tokens.is_some() && a.scenario.is_none(),
        "--trace sets prompt lengths itself (input_length); drop --prompt-tokens",
    )?;
    clash(
        a.dataset.is_some(),
        multi,
        "--dataset and --turns cannot be combined (multi-turn sessions use synthetic text)",
    )?;
    clash(multi, has_images, "--turns and --images cannot be combined")?;
    clash(
        a.dataset.is_some(),
        a.prefix_tokens.is_some(),
        "--prefix-tokens works with synthetic prompts, not with --dataset",
    )?;
    clash(
        a.dataset.is_some(),
        a.prompt_tokens.is_some() && a.scenario.is_none(),
        "--dataset gives the prompts; drop --prompt-tokens (use --output-tokens for output lengths)",
    )?;
    let sources = [
        a.image_urls.is_some(),
        a.image_dir.is_some(),
        !a.image_file.is_empty(),
    ];
    if sources.iter().filter(|&&x| x).count() > 1 {
        return Err(WorkloadError::Conflict(
            "use one image source: --image-urls, --image-dir or --image-file".into(),
        ));
    }
    if sources.iter().any(|&x| x) && !has_images {
        return Err(WorkloadError::Conflict(
            "an image source was given without --images N (images per request)".into(),
        ));
    }
    Ok(())
}

fn build_images(a: &WorkloadArgs, seed: u64) -> Result<Option<ImageSource>> {
    let n = a.images.unwrap_or(0);
    if n == 0 {
        return Ok(None);
    }
    if let Some(p) = &a.image_urls {
        return Ok(Some(ImageSource::Pool {
            images: images::read_url_list(p)?,
            next: 0,
            kind: "url_list",
        }));
    }
    if let Some(d) = &a.image_dir {
        let files = images::list_dir(d)?;
        return Ok(Some(ImageSource::Pool {
            images: images::load_files(&files)?,
            next: 0,
            kind: "files",
        }));
    }
    if !a.image_file.is_empty() {
        return Ok(Some(ImageSource::Pool {
            images: images::load_files(&a.image_file)?,
            next: 0,
            kind: "files",
        }));
    }
    let (w, h) = images::parse_size(a.image_size.as_deref().unwrap_or("448x448"))?;
    let quality = a.image_quality.unwrap_or(85);
    if !(1..=100).contains(&quality) {
        return Err(WorkloadError::flag(
            "--image-quality",
            quality,
            "must be 1-100",
        ));
    }
    let generator = SyntheticImages::new(
        w,
        h,
        a.image_format.unwrap_or(ImageFormat::Jpeg),
        quality,
        seed,
    )?;
    if a.same_images {
        let img = generator.generate(0)?;
        return Ok(Some(ImageSource::Same(img, generator)));
    }
    let threads = a.image_threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|p| (p.get() / 2).clamp(1, 4))
            .unwrap_or(1)
    });
    // Keep about two seconds' worth at 100 images/s ready, bounded to ~64 MiB of data.
    let per_image = (w as usize * h as usize / 4).max(1);
    let ahead = (64 << 20) / per_image;
    let ahead = ahead.clamp(4, 200);
    let feed = ImageFeed::start(generator.clone(), threads, ahead)?;
    Ok(Some(ImageSource::Unique(feed, generator)))
}

/// A user message with `n` images then the text (the order vision-language chat templates
/// expect).
fn image_prompt(text: String, imgs: &[images::EncodedImage]) -> Prompt {
    let mut content: Vec<ContentPart> = imgs
        .iter()
        .map(|i| ContentPart::ImageUrl {
            url: i.url.to_string(),
        })
        .collect();
    content.push(ContentPart::Text { text });
    Prompt::Messages(vec![ChatMessage {
        role: "user".into(),
        content,
    }])
}

/// Synthetic text prompts (optionally with images and shared prefixes).
pub struct SyntheticWorkload {
    vocab: Arc<TokenVocab>,
    prompt: LengthDist,
    output: LengthDist,
    prefix: Option<PrefixPool>,
    images: Option<ImageSource>,
    images_per_request: usize,
    fixed_text: Option<(String, u64)>,
    rng: ChaCha8Rng,
    seq: u64,
    seed: u64,
    scenario: Option<String>,
}

impl SyntheticWorkload {
    /// The prompt text and its token count.
    fn text(&mut self) -> (String, u64) {
        if let Some((t, n)) = &self.fixed_text {
            return (t.clone(), *n);
        }
        let n = self
            .prompt
            .sample(&mut self.rng)
            .unwrap_or(DEFAULT_PROMPT_TOKENS) as usize;
        let seq = self.seq;
        match &self.prefix {
            None => (self.vocab.prompt(n, seq, &mut self.rng), n as u64),
            Some(pool) => {
                let i = self.rng.random_range(0..pool.texts.len());
                let p = &pool.texts[i];
                let mut out = String::with_capacity(p.len() + (n - pool.tokens) * 8);
                out.push_str(p);
                let rest = n - pool.tokens;
                let m = self.vocab.push_marker(&mut out, seq, rest, false);
                self.vocab
                    .push_random(&mut out, rest - m, false, &mut self.rng);
                (out, n as u64)
            }
        }
    }
}

impl Workload for SyntheticWorkload {
    fn next_request(&mut self) -> Option<RequestSpec> {
        let (text, tokens) = self.text();
        let max_tokens = self.output.sample(&mut self.rng);
        self.seq += 1;
        let mut spec = RequestSpec::text(String::new(), Some(tokens), max_tokens);
        match &mut self.images {
            Some(src) if self.images_per_request > 0 => {
                // A failed image encode (out of memory) ends the workload rather than sending a
                // request without its images.
                let imgs = src.take(self.images_per_request).ok()?;
                spec.images = imgs.iter().map(|i| i.meta.clone()).collect();
                spec.prompt = image_prompt(text, &imgs);
            }
            _ => spec.prompt = Prompt::Text(text),
        }
        spec.tag = self.scenario.as_ref().map(|s| format!("scenario={s}"));
        Some(spec)
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "synthetic",
            "scenario": self.scenario,
            "prompt_tokens": self.prompt,
            "prompt_text": self.fixed_text.as_ref().map(|t| &t.0),
            "output_tokens": self.output,
            "tokenizer": self.vocab.tokenizer(),
            "prefixes": match &self.prefix {
                None => serde_json::json!({"shared": false, "note": "every prompt starts with a unique marker: no accidental prefix-cache hits"}),
                Some(p) => serde_json::json!({"shared": true, "prefix_tokens": p.tokens, "num_prefixes": p.texts.len()}),
            },
            "images": self.images.as_ref().map(|s| {
                let mut d = s.describe();
                d["per_request"] = self.images_per_request.into();
                d
            }),
            "seed": self.seed,
        })
    }
}

/// Prompts from a dataset.
pub struct DatasetWorkload {
    ds: Dataset,
    order: Vec<usize>,
    pos: usize,
    sampling: Sampling,
    output: LengthDist,
    tok: Arc<Tokenizer>,
    images: Option<ImageSource>,
    images_per_request: usize,
    rng: ChaCha8Rng,
    seed: u64,
    scenario: Option<String>,
}

impl DatasetWorkload {
    #[allow(clippy::too_many_arguments)]
    fn new(
        ds: Dataset,
        sampling: Sampling,
        output: LengthDist,
        tok: Arc<Tokenizer>,
        images: Option<ImageSource>,
        images_per_request: usize,
        scenario: Option<String>,
        seed: u64,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..ds.rows.len()).collect();
        if sampling == Sampling::WithoutReplacement {
            order.shuffle(&mut rng);
        }
        Self {
            ds,
            order,
            pos: 0,
            sampling,
            output,
            tok,
            images,
            images_per_request,
            rng,
            seed,
            scenario,
        }
    }
}

impl Workload for DatasetWorkload {
    fn next_request(&mut self) -> Option<RequestSpec> {
        let idx = match self.sampling {
            Sampling::WithReplacement => self.rng.random_range(0..self.ds.rows.len()),
            Sampling::WithoutReplacement | Sampling::Sequential => {
                let i = *self.order.get(self.pos)?;
                self.pos += 1;
                i
            }
        };
        let row = &self.ds.rows[idx];
        let max_tokens = match self.output {
            LengthDist::Dataset => match &row.output {
                Some(OutputLen::Tokens(n)) => Some(*n),
                Some(OutputLen::Text(t)) => Some((self.tok.count_tokens(t) as u32).max(1)),
                None => Some(DEFAULT_OUTPUT_TOKENS),
            },
            d => d.sample(&mut self.rng),
        };
        let tokens = self.tok.count_tokens(&row.prompt) as u64;
        let mut spec = RequestSpec::text(row.prompt.clone(), Some(tokens), max_tokens);
        if let Some(src) = &mut self.images {
            if self.images_per_request > 0 {
                let imgs = src.take(self.images_per_request).ok()?;
                spec.images = imgs.iter().map(|i| i.meta.clone()).collect();
                spec.prompt = image_prompt(row.prompt.clone(), &imgs);
            }
        }
        spec.tag = Some(format!("dataset_line={}", row.line));
        Some(spec)
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "dataset",
            "scenario": self.scenario,
            "path": self.ds.path.display().to_string(),
            "format": self.ds.format,
            "records": self.ds.rows.len(),
            "skipped_invalid": self.ds.skipped,
            "prompt_field": self.ds.prompt_field,
            "output_field": self.ds.output_field,
            "sampling": self.sampling,
            "output_tokens": self.output,
            "tokenizer": TokenCounter::name(&*self.tok),
            "prefixes": {"shared": false, "note": "prompts as in the dataset"},
            "images": self.images.as_ref().map(|s| {
                let mut d = s.describe();
                d["per_request"] = self.images_per_request.into();
                d
            }),
            "seed": self.seed,
        })
    }
}
