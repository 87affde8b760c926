//! Cost of the simulator's tokenizer per request: counting and encoding a chat prompt of about
//! 256 tokens with the shared `cl100k_base` encoder, as the HTTP layer does for every request.
//! Usage (numbers in docs/performance/sim.md):
//!
//! ```text
//! cargo bench -p llmload-sim --bench tokenize -- [iterations]
//! ```

use std::time::Instant;

use llmload_sim::tokenize;

const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at",
    "from", "his", "her", "it", "an", "were", "are", "which", "this", "be", "or", "had", "not",
    "but", "have", "one", "their", "has", "they", "been", "its", "all", "other", "more", "new",
];

fn main() {
    let iters: usize = std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let t0 = Instant::now();
    tokenize::warm_up();
    println!(
        "encoder built in {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    // distinct prompts (a unique head per request, as llmload's prompts have)
    let prompts: Vec<String> = (0..64)
        .map(|i| {
            let mut s = format!("{i} ");
            for k in 0..255 {
                if k > 0 {
                    s.push(' ');
                }
                s.push_str(WORDS[(k * 7 + i) % WORDS.len()]);
            }
            s
        })
        .collect();
    let mut ids = Vec::with_capacity(512);
    let mut total = 0u64;
    let t = Instant::now();
    for i in 0..iters {
        ids.clear();
        tokenize::push_message_template("user", &mut ids);
        total += tokenize::tokenize_into(&prompts[i % prompts.len()], &mut ids) as u64;
        tokenize::push_assistant_prompt(&mut ids);
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "{iters} chat prompts of {:.0} text tokens: {:.1} us per request, {:.0} requests/s on one core",
        total as f64 / iters as f64,
        dt / iters as f64 * 1e6,
        iters as f64 / dt
    );
}
