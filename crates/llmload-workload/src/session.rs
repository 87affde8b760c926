//! Multi-turn conversations: each session sends `turns` user messages; turn `k` carries the
//! whole history so far (earlier user messages and the server's answers, received through
//! [`Workload::on_response`]) plus a new user message.
//!
//! A follow-up turn becomes available only after the previous answer arrived and the think
//! time passed since; until then [`Workload::next_request`] starts new sessions, so the engine
//! always has work. Because the engine pulls requests a few ahead, a follow-up may wait a
//! little longer than the think time (never less); `RequestSpec::tag` is `s<session>/t<turn>`
//! (turns count from 1) so results can be split per turn.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmload_core::{ChatMessage, ContentPart, Prompt, RequestSpec, TokenCounter, Workload};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::dist::LengthDist;
use crate::synth::TokenVocab;
use crate::tokenizer::Tokenizer;

/// Sessions waiting for an answer beyond this are forgotten (their request failed).
const MAX_WAITING: usize = 100_000;

#[derive(Debug)]
struct Session {
    messages: Vec<ChatMessage>,
    tokens: u64,
    turn: u32,
}

/// Multi-turn synthetic conversations.
#[derive(Debug)]
pub struct SessionWorkload {
    vocab: Arc<TokenVocab>,
    tok: Arc<Tokenizer>,
    prompt: LengthDist,
    output: LengthDist,
    turns: u32,
    think: Duration,
    rng: ChaCha8Rng,
    seed: u64,
    next_id: u64,
    waiting: BTreeMap<u64, Session>,
    ready: VecDeque<(Instant, u64, Session)>,
}

impl SessionWorkload {
    /// `turns >= 1`; `prompt` is the length of each new user message. The workload never
    /// ends on its own (the engine's stop conditions end the run).
    pub fn new(
        vocab: Arc<TokenVocab>,
        tok: Arc<Tokenizer>,
        prompt: LengthDist,
        output: LengthDist,
        turns: u32,
        think: Duration,
        seed: u64,
    ) -> Self {
        Self {
            vocab,
            tok,
            prompt,
            output,
            turns: turns.max(1),
            think,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            next_id: 0,
            waiting: BTreeMap::new(),
            ready: VecDeque::new(),
        }
    }

    fn spec(&mut self, id: u64, mut s: Session) -> RequestSpec {
        let n = self.prompt.sample(&mut self.rng).unwrap_or(64) as usize;
        let text = if s.messages.is_empty() {
            self.vocab.prompt(n, id, &mut self.rng)
        } else {
            let mut t = String::with_capacity(n * 8);
            self.vocab.push_random(&mut t, n, true, &mut self.rng);
            t
        };
        s.messages.push(ChatMessage::text("user", text));
        s.tokens += n as u64;
        s.turn += 1;
        let spec = RequestSpec {
            prompt: Prompt::Messages(s.messages.clone()),
            prompt_tokens: Some(s.tokens),
            max_tokens: self.output.sample(&mut self.rng),
            images: Vec::new(),
            at_s: None,
            tag: Some(format!("s{id}/t{}", s.turn)),
        };
        self.waiting.insert(id, s);
        while self.waiting.len() > MAX_WAITING {
            self.waiting.pop_first();
        }
        spec
    }
}

/// Parse `s<id>/t<turn>`.
fn parse_tag(tag: &str) -> Option<(u64, u32)> {
    let (s, t) = tag.split_once('/')?;
    Some((
        s.strip_prefix('s')?.parse().ok()?,
        t.strip_prefix('t')?.parse().ok()?,
    ))
}

impl Workload for SessionWorkload {
    fn next_request(&mut self) -> Option<RequestSpec> {
        let now = Instant::now();
        if self.ready.front().is_some_and(|(at, _, _)| *at <= now) {
            let (_, id, s) = self.ready.pop_front()?;
            return Some(self.spec(id, s));
        }
        let id = self.next_id;
        self.next_id += 1;
        Some(self.spec(
            id,
            Session {
                messages: Vec::new(),
                tokens: 0,
                turn: 0,
            },
        ))
    }

    fn on_response(&mut self, tag: Option<&str>, answer: &str) {
        let Some((id, turn)) = tag.and_then(parse_tag) else {
            return;
        };
        let Some(mut s) = self.waiting.remove(&id) else {
            return;
        };
        if s.turn != turn {
            self.waiting.insert(id, s);
            return;
        }
        if turn >= self.turns {
            return;
        }
        s.tokens += self.tok.count(answer);
        s.messages.push(ChatMessage {
            role: "assistant".into(),
            content: vec![ContentPart::Text {
                text: answer.to_string(),
            }],
        });
        self.ready.push_back((Instant::now() + self.think, id, s));
    }

    fn wants_responses(&self) -> bool {
        true
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "multi_turn",
            "turns": self.turns,
            "think_time_s": self.think.as_secs_f64(),
            "prompt_tokens_per_turn": self.prompt,
            "output_tokens": self.output,
            "tokenizer": self.vocab.tokenizer(),
            "prefixes": "each turn extends its session's history (prefix reuse within a session is intended)",
            "tag": "s<session>/t<turn>",
            "seed": self.seed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(turns: u32, think: Duration) -> (SessionWorkload, Arc<Tokenizer>) {
        let tok = Arc::new(Tokenizer::resolve(None).expect("tok"));
        let vocab = Arc::new(TokenVocab::build(&tok).expect("vocab"));
        let w = SessionWorkload::new(
            vocab,
            Arc::clone(&tok),
            LengthDist::Fixed { value: 20 },
            LengthDist::Fixed { value: 8 },
            turns,
            think,
            5,
        );
        (w, tok)
    }

    #[test]
    fn follow_up_turns_carry_the_history_with_answers() {
        let (mut w, tok) = workload(3, Duration::ZERO);
        assert!(w.wants_responses());
        let t1 = w.next_request().expect("t1");
        assert_eq!(t1.tag.as_deref(), Some("s0/t1"));
        assert_eq!(t1.prompt_tokens, Some(20));
        w.on_response(t1.tag.as_deref(), "the answer one");
        let t2 = w.next_request().expect("t2");
        assert_eq!(t2.tag.as_deref(), Some("s0/t2"));
        let Prompt::Messages(m) = &t2.prompt else {
            panic!("messages expected");
        };
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].role, "assistant");
        assert_eq!(
            m[1].content,
            vec![ContentPart::Text {
                text: "the answer one".into()
            }]
        );
        assert_eq!(
            m[0],
            match &t1.prompt {
                Prompt::Messages(m1) => m1[0].clone(),
                Prompt::Text(_) => panic!("messages expected"),
            }
        );
        assert_eq!(t2.prompt_tokens, Some(40 + tok.count("the answer one")));
        w.on_response(t2.tag.as_deref(), "two");
        let t3 = w.next_request().expect("t3");
        assert_eq!(t3.tag.as_deref(), Some("s0/t3"));
        w.on_response(t3.tag.as_deref(), "three");
        // The session is done: the next request starts a new one.
        assert_eq!(w.next_request().expect("s1").tag.as_deref(), Some("s1/t1"));
    }

    #[test]
    fn think_time_holds_follow_ups_and_new_sessions_fill_in() {
        let (mut w, _) = workload(2, Duration::from_secs(3600));
        let a = w.next_request().expect("a");
        w.on_response(a.tag.as_deref(), "answer");
        let b = w.next_request().expect("b");
        assert_eq!(
            b.tag.as_deref(),
            Some("s1/t1"),
            "follow-up must wait for the think time"
        );
        // Answers with a stale or foreign tag are ignored.
        w.on_response(Some("s1/t7"), "x");
        w.on_response(Some("garbage"), "x");
        w.on_response(None, "x");
        let c = w.next_request().expect("c");
        assert_eq!(c.tag.as_deref(), Some("s2/t1"));
    }
}
