//! Property test: for every tokenizer kind, a generated prompt re-tokenizes to exactly the
//! target count. The Hugging Face tokenizers are small tokenizer.json files written here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use llmload_workload::synth::{PrefixPool, TokenVocab};
use llmload_workload::tokenizer::Tokenizer;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// 600 pseudo-words of 3-6 lowercase letters (deterministic).
fn pseudo_words() -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 600 {
        let len = rand::Rng::random_range(&mut rng, 3..=6);
        let w: String = (0..len)
            .map(|_| (b'a' + rand::Rng::random_range(&mut rng, 0..26u8)) as char)
            .collect();
        seen.insert(w);
    }
    seen.into_iter().collect()
}

fn word_level(dir: &Path) -> PathBuf {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), 0.into());
    for (i, w) in pseudo_words().into_iter().enumerate() {
        vocab.insert(w, (i + 1).into());
    }
    let j = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    let p = dir.join("wordlevel.json");
    std::fs::write(&p, j.to_string()).expect("write");
    p
}

/// A BPE whose merges build each word left to right, with the space marker `space`
/// (`Ġ` for byte-level, `▁` for Metaspace).
fn bpe(
    dir: &Path,
    name: &str,
    space: &str,
    pre: serde_json::Value,
    decoder: serde_json::Value,
) -> PathBuf {
    let mut vocab: Vec<String> = Vec::new();
    let mut merges: Vec<String> = Vec::new();
    let add = |t: &str, vocab: &mut Vec<String>| {
        if !vocab.iter().any(|v| v == t) {
            vocab.push(t.to_string());
        }
    };
    add(space, &mut vocab);
    for c in b'a'..=b'z' {
        add(&(c as char).to_string(), &mut vocab);
    }
    for w in pseudo_words() {
        for form in [format!("{space}{w}"), w.clone()] {
            let chars: Vec<String> = form.chars().map(|c| c.to_string()).collect();
            let mut cur = chars[0].clone();
            for c in &chars[1..] {
                let m = format!("{cur} {c}");
                if !merges.contains(&m) {
                    merges.push(m);
                }
                cur.push_str(c);
                add(&cur, &mut vocab);
            }
        }
    }
    let vocab: serde_json::Map<String, serde_json::Value> = vocab
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i.into()))
        .collect();
    let j = serde_json::json!({
        "version": "1.0", "truncation": {"direction": "Right", "max_length": 16, "strategy": "LongestFirst", "stride": 0},
        "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": pre, "post_processor": null, "decoder": decoder,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab, "merges": merges}
    });
    let p = dir.join(name);
    std::fs::write(&p, j.to_string()).expect("write");
    p
}

struct Case {
    tok: Tokenizer,
    vocab: TokenVocab,
}

fn cases() -> &'static Vec<Case> {
    static CASES: std::sync::OnceLock<Vec<Case>> = std::sync::OnceLock::new();
    CASES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp").keep();
        let bytelevel = bpe(
            &dir,
            "bytelevel.json",
            "Ġ",
            serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
            serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
        );
        let metaspace = bpe(
            &dir,
            "metaspace.json",
            "▁",
            serde_json::json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}),
            serde_json::json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}),
        );
        let toks = vec![
            Tokenizer::resolve(Some("cl100k_base")).expect("cl100k"),
            Tokenizer::resolve(Some("o200k_base")).expect("o200k"),
            Tokenizer::resolve(Some(word_level(&dir).to_str().expect("utf8 path"))).expect("wordlevel"),
            Tokenizer::resolve(Some(bytelevel.to_str().expect("utf8 path"))).expect("bytelevel"),
            Tokenizer::resolve(Some(metaspace.to_str().expect("utf8 path"))).expect("metaspace"),
        ];
        toks.into_iter()
            .map(|tok| {
                let vocab = TokenVocab::build(&tok)
                    .unwrap_or_else(|e| panic!("vocab for {}: {e}", tok.name()));
                Case { tok, vocab }
            })
            .collect()
    })
}

#[test]
fn every_tokenizer_builds_a_table() {
    for c in cases() {
        assert!(
            c.vocab.units() >= 16,
            "{}: {} units",
            c.tok.name(),
            c.vocab.units()
        );
        // The truncation configured in the test BPE files (16) must not cap counts.
        assert_eq!(
            c.tok
                .count_tokens(&c.vocab.prompt(100, 1, &mut ChaCha8Rng::seed_from_u64(1))),
            100,
            "{}",
            c.tok.name()
        );
    }
}

#[test]
fn small_lengths_are_exact_for_every_tokenizer() {
    for c in cases() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for n in 1..=64usize {
            let p = c.vocab.prompt(n, n as u64 * 7919, &mut rng);
            assert_eq!(c.tok.count_tokens(&p), n, "{} n={n}: {p:?}", c.tok.name());
        }
    }
}

#[test]
fn shared_prefix_prompts_are_exact() {
    for c in cases() {
        let pool = PrefixPool::new(&c.vocab, 50, 2, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (i, rest) in [1usize, 2, 4, 5, 300].into_iter().enumerate() {
            let mut s = pool.texts[i % 2].to_string();
            let m = c.vocab.push_marker(&mut s, i as u64, rest, false);
            c.vocab.push_random(&mut s, rest - m, false, &mut rng);
            assert_eq!(c.tok.count_tokens(&s), 50 + rest, "{}", c.tok.name());
            let ids = c.tok.encode(&s);
            assert_eq!(
                ids[..50],
                c.tok.encode(&pool.texts[i % 2])[..],
                "{}",
                c.tok.name()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn generated_prompts_retokenize_to_the_target(n in 1usize..=4096, seq in any::<u64>(), seed in any::<u64>()) {
        for c in cases() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let p = c.vocab.prompt(n, seq, &mut rng);
            prop_assert_eq!(c.tok.count_tokens(&p), n, "{}", c.tok.name());
        }
    }
}

#[test]
fn counter_trait_reports_names() {
    let names: Vec<String> = cases().iter().map(|c| c.tok.name()).collect();
    assert_eq!(names[0], "tiktoken:cl100k_base");
    assert!(names[2].starts_with("tokenizer.json:") && names[2].ends_with("wordlevel.json"));
    let _: Arc<dyn llmload_core::TokenCounter> = Arc::new(Tokenizer::resolve(None).expect("tok"));
}
