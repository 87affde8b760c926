//! End-to-end tests of `build`: flags in, requests out.

use base64::Engine as _;
use clap::Parser;
use llmload_core::{Prompt, RequestSpec};
use llmload_workload::{WorkloadArgs, build, openai};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    w: WorkloadArgs,
}

fn args(flags: &[&str]) -> WorkloadArgs {
    let mut v = vec!["llmload"];
    v.extend_from_slice(flags);
    Cli::try_parse_from(v).expect("flags parse").w
}

fn text(spec: &RequestSpec) -> String {
    spec.prompt.as_completion_text()
}

#[test]
fn default_is_256_exact_unique_tokens_and_128_out() {
    let (mut w, counter) = build(&args(&[]), 1).expect("build");
    assert_eq!(counter.name(), "tiktoken:cl100k_base");
    let tok = llmload_workload::tokenizer::Tokenizer::resolve(None).expect("tok");
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..50 {
        let s = w.next_request().expect("endless");
        assert!(matches!(s.prompt, Prompt::Text(_)));
        assert_eq!(s.prompt_tokens, Some(256));
        assert_eq!(counter.count(&text(&s)), 256);
        assert_eq!(s.max_tokens, Some(128));
        assert!(
            firsts.insert(tok.encode(&text(&s))[..4].to_vec()),
            "first block repeats"
        );
    }
    let d = w.describe();
    assert_eq!(d["kind"], "synthetic");
    assert_eq!(d["prefixes"]["shared"], false);
    assert_eq!(d["tokenizer"], "tiktoken:cl100k_base");
    // Same seed, same prompts.
    let (mut a, _) = build(&args(&[]), 9).expect("a");
    let (mut b, _) = build(&args(&[]), 9).expect("b");
    assert_eq!(a.next_request(), b.next_request());
}

#[test]
fn distributions_prefixes_and_presets() {
    let (mut w, c) = build(
        &args(&[
            "--prompt-tokens",
            "uniform:300,400",
            "--output-tokens",
            "normal:100,20,50,150",
            "--prefix-tokens",
            "200",
            "--num-prefixes",
            "2",
        ]),
        3,
    )
    .expect("build");
    let mut prefixes = std::collections::HashSet::new();
    let tok = llmload_workload::tokenizer::Tokenizer::resolve(None).expect("tok");
    for _ in 0..40 {
        let s = w.next_request().expect("req");
        let n = s.prompt_tokens.expect("count");
        assert!((300..=400).contains(&n));
        assert_eq!(c.count(&text(&s)), n);
        assert!((50..=150).contains(&s.max_tokens.expect("max")));
        prefixes.insert(tok.encode(&text(&s))[..200].to_vec());
    }
    assert_eq!(prefixes.len(), 2);
    assert_eq!(w.describe()["prefixes"]["shared"], true);

    let (mut w, c) = build(&args(&["--scenario", "summarization"]), 1).expect("preset");
    let s = w.next_request().expect("req");
    assert_eq!((s.prompt_tokens, s.max_tokens), (Some(512), Some(128)));
    assert_eq!(c.count(&text(&s)), 512);
    let (mut w, _) =
        build(&args(&["--scenario", "chat", "--output-tokens", "7"]), 1).expect("override");
    let s = w.next_request().expect("req");
    assert_eq!((s.prompt_tokens, s.max_tokens), (Some(64), Some(7)));

    let err = build(
        &args(&[
            "--prefix-tokens",
            "300",
            "--prompt-tokens",
            "uniform:200,400",
        ]),
        1,
    )
    .err()
    .expect("prefix too long")
    .to_string();
    assert!(err.contains("--prefix-tokens 300"), "{err}");
    let err = build(&args(&["--scenario", "nope"]), 1)
        .err()
        .expect("bad")
        .to_string();
    assert!(err.contains("rag-shared"), "{err}");
}

#[test]
fn synthetic_images_have_the_openai_shape_and_decode() {
    let (mut w, c) = build(
        &args(&[
            "--images",
            "2",
            "--image-size",
            "64x48",
            "--image-format",
            "png",
            "--image-prompt",
            "Descreva a imagem em português.",
        ]),
        5,
    )
    .expect("build");
    let a = w.next_request().expect("a");
    let b = w.next_request().expect("b");
    assert_eq!(a.images.len(), 2);
    assert_eq!(a.images[0].width, Some(64));
    assert_eq!(a.images[0].mime.as_deref(), Some("image/png"));
    assert_eq!(
        a.prompt_tokens,
        Some(c.count("Descreva a imagem em português."))
    );
    let m = openai::chat_messages(&a.prompt);
    assert_eq!(m[0]["role"], "user");
    let parts = m[0]["content"].as_array().expect("parts");
    assert_eq!(parts.len(), 3);
    assert_eq!(
        parts[2],
        serde_json::json!({"type": "text", "text": "Descreva a imagem em português."})
    );
    let mut urls = std::collections::HashSet::new();
    for p in parts[..2].iter().chain(
        openai::chat_messages(&b.prompt)[0]["content"]
            .as_array()
            .expect("b")[..2]
            .iter(),
    ) {
        assert_eq!(p["type"], "image_url");
        let url = p["image_url"]["url"].as_str().expect("url");
        let b64 = url
            .strip_prefix("data:image/png;base64,")
            .expect("png data url");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("b64");
        let img = image::load_from_memory(&bytes).expect("decodes").to_rgb8();
        assert_eq!(img.dimensions(), (64, 48));
        urls.insert(url.to_string());
    }
    assert_eq!(urls.len(), 4, "every synthetic image is unique");
    let d = w.describe();
    assert_eq!(d["images"]["per_request"], 2);
    assert_eq!(d["images"]["unique_per_request"], true);

    let (mut w, _) = build(
        &args(&["--images", "1", "--image-size", "32x32", "--same-images"]),
        5,
    )
    .expect("same");
    let first_image = |s: RequestSpec| openai::chat_messages(&s.prompt)[0]["content"][0].clone();
    let a = first_image(w.next_request().expect("a"));
    assert_eq!(a, first_image(w.next_request().expect("b")));
    assert!(
        a["image_url"]["url"]
            .as_str()
            .expect("url")
            .starts_with("data:image/jpeg;base64,")
    );
}

#[test]
fn image_sources_fail_before_the_load_starts() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("nope.jpg");
    let err = build(
        &args(&[
            "--images",
            "1",
            "--image-file",
            missing.to_str().expect("path"),
        ]),
        1,
    )
    .err()
    .expect("missing file")
    .to_string();
    assert!(err.contains("nope.jpg"), "{err}");
    let list = dir.path().join("images.txt");
    std::fs::write(&list, "https://example.com/a.jpg\nftp://x/y.png\n").expect("w");
    let err = build(
        &args(&[
            "--images",
            "1",
            "--image-urls",
            list.to_str().expect("path"),
        ]),
        1,
    )
    .err()
    .expect("bad url")
    .to_string();
    assert!(err.contains("images.txt:2"), "{err}");
    std::fs::write(
        &list,
        "https://example.com/a.jpg\nhttps://example.com/b.jpg\n",
    )
    .expect("w");
    let (mut w, _) = build(
        &args(&[
            "--images",
            "1",
            "--image-urls",
            list.to_str().expect("path"),
            "--image-prompt",
            "Descreva a imagem em português.",
        ]),
        1,
    )
    .expect("urls");
    let urls: Vec<String> = (0..3)
        .map(|_| {
            let m = openai::chat_messages(&w.next_request().expect("req").prompt);
            m[0]["content"][0]["image_url"]["url"]
                .as_str()
                .expect("url")
                .to_string()
        })
        .collect();
    assert_eq!(
        urls,
        [
            "https://example.com/a.jpg",
            "https://example.com/b.jpg",
            "https://example.com/a.jpg"
        ]
    );
    let err = build(&args(&["--image-urls", list.to_str().expect("path")]), 1)
        .err()
        .expect("no --images")
        .to_string();
    assert!(err.contains("--images"), "{err}");
}

#[test]
fn datasets_sample_with_and_without_replacement() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("d.jsonl");
    std::fs::write(&p, "{\"prompt\": \"alpha beta\", \"len\": 5}\n{\"prompt\": \"gamma\", \"len\": 6}\n{\"prompt\": \"delta\", \"len\": 7}\n").expect("w");
    let path = p.to_str().expect("path");
    let (mut w, c) = build(&args(&["--dataset", path, "--output-field", "len"]), 2).expect("build");
    let mut got = Vec::new();
    while let Some(s) = w.next_request() {
        assert_eq!(s.prompt_tokens, Some(c.count(&text(&s))));
        got.push((text(&s), s.max_tokens));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("alpha beta".into(), Some(5)),
            ("delta".into(), Some(7)),
            ("gamma".into(), Some(6))
        ]
    );
    let (mut w, _) = build(
        &args(&[
            "--dataset",
            path,
            "--dataset-sampling",
            "with-replacement",
            "--output-tokens",
            "9",
        ]),
        2,
    )
    .expect("build");
    for _ in 0..10 {
        assert_eq!(w.next_request().expect("endless").max_tokens, Some(9));
    }
    assert_eq!(w.describe()["sampling"], "with-replacement");
    let (mut w, _) = build(
        &args(&["--dataset", path, "--dataset-sampling", "sequential"]),
        2,
    )
    .expect("build");
    assert_eq!(text(&w.next_request().expect("first")), "alpha beta");
    let err = build(&args(&["--dataset", path, "--prompt-tokens", "5"]), 1)
        .err()
        .expect("conflict")
        .to_string();
    assert!(err.contains("--prompt-tokens"), "{err}");
}

#[test]
fn multi_turn_and_trace_through_build() {
    let (mut w, _) = build(
        &args(&[
            "--turns",
            "3",
            "--think-time",
            "0",
            "--prompt-tokens",
            "10",
            "--output-tokens",
            "5",
        ]),
        1,
    )
    .expect("turns");
    assert!(w.wants_responses());
    let t1 = w.next_request().expect("t1");
    w.on_response(t1.tag.as_deref(), "an answer");
    let t2 = w.next_request().expect("t2");
    assert_eq!(t2.tag.as_deref(), Some("s0/t2"));

    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("t.jsonl");
    std::fs::write(&p, "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 4, \"hash_ids\": [1, 2]}\n{\"timestamp\": 250, \"input_length\": 40, \"output_length\": 3, \"hash_ids\": [1]}\n").expect("w");
    let (mut w, c) = build(
        &args(&[
            "--trace",
            p.to_str().expect("path"),
            "--trace-time-scale",
            "2",
        ]),
        1,
    )
    .expect("trace");
    let a = w.next_request().expect("a");
    let b = w.next_request().expect("b");
    assert!(w.next_request().is_none());
    assert_eq!((a.at_s, b.at_s), (Some(0.0), Some(0.5)));
    assert_eq!(c.count(&text(&a)), 600);
    assert_eq!(c.count(&text(&b)), 40);
}

#[test]
fn scenario_file_drives_the_workload_and_flags_override() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("p.txt"), "one prompt\nanother prompt\n").expect("w");
    let f = dir.path().join("s.toml");
    std::fs::write(
        &f,
        "scenario = \"codegen\"\nrate = 3.0\n[workload]\ndataset = \"p.txt\"\noutput_tokens = 11\n",
    )
    .expect("w");
    let fp = f.to_str().expect("path");
    let file = llmload_workload::ScenarioFile::load(&f).expect("load");
    assert_eq!(
        file.rate,
        Some(llmload_workload::scenario::OneOrMany::One(3.0))
    );
    // The file names a dataset: its prompts are used, with the file's output length.
    let (mut w, _) = build(&args(&["--scenario", fp]), 1).expect("build");
    let s = w.next_request().expect("req");
    assert!(text(&s).ends_with("prompt"));
    assert_eq!(s.max_tokens, Some(11));
    let (mut w, _) = build(&args(&["--scenario", fp, "--output-tokens", "2"]), 1).expect("build");
    assert_eq!(w.next_request().expect("req").max_tokens, Some(2));
}
