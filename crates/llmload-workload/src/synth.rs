//! Token-exact synthetic text.
//!
//! A prompt is a sequence of *units*: words that are exactly one token on their own (`"word"`
//! at the start, `" word"` after it) and that the tokenizer never merges across a boundary (its
//! pre-tokenizer splits at spaces: tiktoken's regex, byte-level BPE, Metaspace, whitespace).
//! A prompt of `n` units therefore has exactly `n` tokens, and building one is string
//! concatenation: no re-encoding per prompt. [`TokenVocab::build`] picks the units once per
//! tokenizer and verifies the property on long random sequences, dropping any word that breaks
//! it; the property tests re-encode generated prompts of many lengths.
//!
//! Uniqueness: the first tokens of every prompt spell its sequence number in a mixed radix over
//! the unit table (a *marker*), so no two prompts share their first block and a server's prefix
//! cache is not hit by accident. With shared prefixes on, the marker follows the prefix.

use std::sync::Arc;

use rand::Rng;

use crate::error::{Result, WorkloadError};
use crate::tokenizer::Tokenizer;

/// Number of marker tokens written at the start of the unique part of a prompt.
pub const MARKER_TOKENS: usize = 4;

/// Common English words tried first (the prompt reads like word salad, not like token soup).
const WORDS: &str = "the of and to in is was for on that with as by at from his her it an were are \
which this be or had not but have one their has they been its all other more new first two time \
after also who would can may there when into years some only over these many such most city any \
used she both between state him later during year through under then where made well them our \
three since about part world team known than out while several people being found season work \
game before we each group because name area school began national based film series number \
university following until same home won however against system best family government early \
second include became music served received small large place called born public general played \
title album released river county central line life main four along high first water did much \
history show took best town village could last like way often another member just around around \
against power market money order paper point story study table today value voice window word \
answer animal ask back ball bank bear bird black blue boat body book bread bring brother build \
car care carry catch chair change child church class clean clear close cloud cold color come \
company cook cool corner country cover cross cup cut dark day deep desk door down draw dream \
dress drink drive dry ear earth east eat edge egg end enough even evening event every eye face \
fact fall farm fast father field fight fill find fine fire fish floor flower fly follow food \
foot forest form free friend front fruit full garden gas give glass gold good grass great green \
ground grow hair half hand happy hard head hear heart heat help hill hold hope horse hot hour \
house idea island job join keep key kind king kitchen land late laugh lead learn leave left let \
letter level light list listen little live long look love low machine make man map mark matter \
mean measure meet milk mind minute miss moment month moon morning mother mountain move music \
near need never next night noise north note nothing notice ocean offer office old open paint \
pair park pass pay picture piece plan plant play plane poor possible press pretty problem pull \
push question quick quiet rain reach read ready real record red rest rich ride right ring road \
rock roll room round rule run safe salt sand save say school sea seat see sell send sense set \
shape share ship shop short side sign simple sing sister sit size sky sleep slow smile snow \
soft soil song sound south space speak special speed spring square stand star start station \
stay step stone stop store street strong student sugar summer sun support sure table talk teach \
test thank thing think tree trip true turn under unit until upon use usual valley visit walk \
wall want warm wash watch wave wear weather week west wheel white whole wide wild win wind \
winter wish woman wood work write wrong yard yellow young";

/// The unit table of one tokenizer.
#[derive(Debug)]
pub struct TokenVocab {
    /// Words usable at the start of a text (`"word"` is one token).
    heads: Vec<Box<str>>,
    /// Words usable after a unit (`" word"` is one token), with their leading space.
    units: Vec<Box<str>>,
    /// Tokenizer name, for descriptions.
    tokenizer: String,
}

fn is_plain_word(w: &str) -> bool {
    (2..=12).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase())
}

impl TokenVocab {
    /// Pick and verify the unit table for `tok`. Fails (with an explanation) only for a
    /// tokenizer whose pre-tokenizer merges across spaces for most words.
    pub fn build(tok: &Tokenizer) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        let mut candidates: Vec<String> = WORDS
            .split_whitespace()
            .filter(|w| seen.insert(w.to_string()))
            .map(str::to_string)
            .collect();
        let (mut heads, mut units) = single_token_words(tok, &candidates);
        if units.len() < 128 || heads.is_empty() {
            // Few of our words are single tokens (a small or foreign-language vocabulary):
            // take plain words from the vocabulary itself.
            for id in 0..tok.vocab_size() {
                if let Some(text) = tok.decode_one(id) {
                    let w = text.trim();
                    if is_plain_word(w) && seen.insert(w.to_string()) {
                        candidates.push(w.to_string());
                    }
                }
            }
            (heads, units) = single_token_words(tok, &candidates);
            units.truncate(8192);
            heads.truncate(8192);
        }
        verify_composition(tok, &mut heads, &mut units)?;
        if units.len() < 16 || heads.is_empty() {
            return Err(WorkloadError::Tokenizer(format!(
                "tokenizer {} has too few words that stay one token each ({} found, 16 needed), so synthetic prompts of an exact length cannot be built; use --dataset with real prompts instead",
                tok.name(),
                units.len()
            )));
        }
        Ok(Self {
            heads: heads.into_iter().map(|(w, _)| w.into_boxed_str()).collect(),
            units: units.into_iter().map(|(w, _)| w.into_boxed_str()).collect(),
            tokenizer: tok.name(),
        })
    }

    /// Number of distinct units after the first token.
    pub fn units(&self) -> usize {
        self.units.len()
    }

    /// Number of distinct first tokens.
    pub fn heads(&self) -> usize {
        self.heads.len()
    }

    /// The tokenizer this table was built for.
    pub fn tokenizer(&self) -> &str {
        &self.tokenizer
    }

    /// Append `n` random unit tokens to `out`. `at_start` says whether `out` holds no token yet
    /// (the first token is then a head word, without a leading space).
    pub fn push_random<R: Rng + ?Sized>(
        &self,
        out: &mut String,
        n: usize,
        at_start: bool,
        rng: &mut R,
    ) {
        let mut n = n;
        if n == 0 {
            return;
        }
        if at_start {
            out.push_str(&self.heads[rng.random_range(0..self.heads.len())]);
            n -= 1;
        }
        let len = self.units.len();
        for _ in 0..n {
            out.push_str(&self.units[rng.random_range(0..len)]);
        }
    }

    /// Append up to `max_tokens` tokens spelling `seq` (at most [`MARKER_TOKENS`]); returns the
    /// number of tokens written. Distinct `seq` give distinct markers for
    /// `seq < heads * units^3` (more than 10^9 for every tokenizer accepted) when `at_start`.
    pub fn push_marker(
        &self,
        out: &mut String,
        seq: u64,
        max_tokens: usize,
        at_start: bool,
    ) -> usize {
        let k = MARKER_TOKENS.min(max_tokens);
        let mut rest = seq;
        for i in 0..k {
            let table = if i == 0 && at_start {
                &self.heads
            } else {
                &self.units
            };
            let radix = table.len() as u64;
            let digit = (rest % radix) as usize;
            rest /= radix;
            out.push_str(&table[digit]);
        }
        k
    }

    /// A whole prompt of exactly `n` tokens: marker `seq` then random units.
    pub fn prompt<R: Rng + ?Sized>(&self, n: usize, seq: u64, rng: &mut R) -> String {
        let mut out = String::with_capacity(n * 8);
        let m = self.push_marker(&mut out, seq, n, true);
        self.push_random(&mut out, n - m, m == 0, rng);
        out
    }
}

/// Words whose `"word"` (heads) and `" word"` (units) forms are single tokens, with their ids.
fn single_token_words(
    tok: &Tokenizer,
    words: &[String],
) -> (Vec<(String, u32)>, Vec<(String, u32)>) {
    let mut heads = Vec::new();
    let mut units = Vec::new();
    for w in words {
        if let [id] = tok.encode(w)[..] {
            heads.push((w.clone(), id));
        }
        let spaced = format!(" {w}");
        if let [id] = tok.encode(&spaced)[..] {
            units.push((spaced, id));
        }
    }
    (heads, units)
}

/// Encode long random sequences and drop any word whose tokens differ from the expected ones
/// (a merge across a boundary), until several sequences in a row come out exact.
fn verify_composition(
    tok: &Tokenizer,
    heads: &mut Vec<(String, u32)>,
    units: &mut Vec<(String, u32)>,
) -> Result<()> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5EED_70C3);
    let mut clean_rounds = 0;
    for _ in 0..200 {
        if heads.is_empty() || units.len() < 2 {
            return Ok(());
        }
        let n = 1500;
        let mut text = String::with_capacity(n * 8);
        let mut expected = Vec::with_capacity(n);
        let mut picks = Vec::with_capacity(n);
        let h = rng.random_range(0..heads.len());
        text.push_str(&heads[h].0);
        expected.push(heads[h].1);
        for _ in 1..n {
            let u = rng.random_range(0..units.len());
            text.push_str(&units[u].0);
            expected.push(units[u].1);
            picks.push(u);
        }
        let got = tok.encode(&text);
        if got == expected {
            clean_rounds += 1;
            if clean_rounds == 4 {
                return Ok(());
            }
            continue;
        }
        clean_rounds = 0;
        let first_bad = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        if first_bad == 0 {
            heads.remove(h);
        } else {
            // Drop the words on both sides of the boundary where the tokens diverged.
            let mut drop: Vec<usize> = [first_bad.checked_sub(2), Some(first_bad - 1)]
                .into_iter()
                .flatten()
                .filter_map(|i| picks.get(i).copied())
                .collect();
            drop.sort_unstable();
            drop.dedup();
            for i in drop.into_iter().rev() {
                units.remove(i);
            }
        }
    }
    Err(WorkloadError::Tokenizer(format!(
        "tokenizer {} merges tokens across word boundaries, so synthetic prompts of an exact length cannot be built; use --dataset with real prompts instead",
        tok.name()
    )))
}

/// A pool of shared prefixes: `count` distinct texts of exactly `tokens` tokens each.
#[derive(Debug, Clone)]
pub struct PrefixPool {
    pub tokens: usize,
    pub texts: Vec<Arc<str>>,
}

impl PrefixPool {
    /// Build `count` prefixes of `tokens` tokens; prefix `i` starts with marker `i` so that
    /// distinct prefixes differ from their first token.
    pub fn new(vocab: &TokenVocab, tokens: usize, count: usize, seed: u64) -> Self {
        use rand::SeedableRng;
        let texts = (0..count)
            .map(|i| {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                    seed ^ 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1),
                );
                Arc::from(vocab.prompt(tokens, i as u64, &mut rng))
            })
            .collect();
        Self { tokens, texts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn cl100k_prompts_are_exact_and_unique() {
        let tok = Tokenizer::resolve(None).expect("cl100k");
        let vocab = TokenVocab::build(&tok).expect("vocab");
        assert!(vocab.units() >= 128);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let a = vocab.prompt(100, 0, &mut rng);
        let b = vocab.prompt(100, 1, &mut rng);
        assert_eq!(tok.count_tokens(&a), 100);
        assert_eq!(tok.count_tokens(&b), 100);
        let ta = tok.encode(&a);
        let tb = tok.encode(&b);
        assert_ne!(ta[..MARKER_TOKENS], tb[..MARKER_TOKENS]);
    }

    #[test]
    fn markers_are_distinct_for_many_sequence_numbers() {
        let tok = Tokenizer::resolve(None).expect("cl100k");
        let vocab = TokenVocab::build(&tok).expect("vocab");
        let mut seen = std::collections::HashSet::new();
        for seq in (0..20_000u64).chain([u32::MAX as u64, 1 << 33]) {
            let mut s = String::new();
            vocab.push_marker(&mut s, seq, MARKER_TOKENS, true);
            assert!(seen.insert(s), "marker of {seq} repeats");
        }
    }

    #[test]
    fn prefixes_have_exact_length_and_are_distinct() {
        let tok = Tokenizer::resolve(None).expect("cl100k");
        let vocab = TokenVocab::build(&tok).expect("vocab");
        let pool = PrefixPool::new(&vocab, 64, 3, 7);
        assert_eq!(pool.texts.len(), 3);
        for p in &pool.texts {
            assert_eq!(tok.count_tokens(p), 64);
        }
        assert_ne!(pool.texts[0], pool.texts[1]);
    }
}
