//! End-to-end tests of the client against the scripted server on 127.0.0.1.
//!
//! Timing tolerances hold on a loaded 2-core machine: client stamps are compared with the
//! server's own write times (same process, same monotonic clock), within 20 ms.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use llmload_client::testkit::{
    Framing, Reply, ServerOptions, Step, Stream, StreamScript, TestServer, UsageMode,
};
use llmload_client::{Api, Client, ClientConfig, ClientError, Outcome, Target};
use llmload_core::{ErrorClass, RequestSpec, TokenCounter, TokenSource};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TOL: f64 = 0.020;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(epoch: Instant, t: Instant) -> f64 {
    t.duration_since(epoch).as_secs_f64()
}

fn cfg(server: &TestServer) -> ClientConfig {
    let mut c = ClientConfig::new(server.url(), "test-model");
    c.record_chunks = true;
    c.capture_answer = true;
    c
}

struct Words;
impl TokenCounter for Words {
    fn count(&self, text: &str) -> u64 {
        text.split_whitespace().count() as u64
    }
    fn name(&self) -> String {
        "words".into()
    }
}

async fn send_one(client: &Client, epoch: Instant) -> Outcome {
    client
        .send(
            &RequestSpec::text("hello there", Some(2), Some(16)),
            epoch,
            &CancellationToken::new(),
        )
        .await
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < TOL
}

#[tokio::test]
async fn metrics_equal_their_definitions_against_server_truth() {
    let server =
        TestServer::start(|_| Stream::new(8).role_first().ttft(ms(80)).gap(ms(15)).reply()).await;
    let client = Client::new(cfg(&server), None).unwrap();
    let epoch = Instant::now();
    let out = send_one(&client, epoch).await;
    let r = &out.record;
    assert_eq!(r.error, None, "{:?}", r.error_message);
    let served = &server.log()[0];
    // Dispatch precedes the server's receipt, closely.
    let t_recv = secs(epoch, served.t_received);
    assert!(
        r.t_dispatch <= t_recv + 1e-6,
        "{} > {}",
        r.t_dispatch,
        t_recv
    );
    assert!(t_recv - r.t_dispatch < TOL);
    // Every output event: client arrival vs server write.
    let truth: Vec<f64> = served
        .token_writes
        .iter()
        .map(|t| secs(epoch, *t))
        .collect();
    let chunks = r.chunk_times.as_ref().unwrap();
    assert_eq!(truth.len(), 8);
    assert_eq!(chunks.len(), 8);
    for (c, s) in chunks.iter().zip(&truth) {
        assert!(*c >= *s - 1e-6, "client {c} before server write {s}");
        assert!(close(*c, *s), "client {c} vs server {s}");
    }
    // The role-only chunk (sent at once) is not the first token.
    assert!(r.ttft().unwrap() > 0.070, "ttft {:?}", r.ttft());
    assert!(close(r.t_first_token.unwrap(), truth[0]));
    assert_eq!(r.t_first_output, r.t_first_token);
    assert!(close(r.t_last_token.unwrap(), truth[7]));
    // Definitions.
    let ttft = r.t_first_token.unwrap() - r.t_dispatch;
    let e2e = r.t_last_token.unwrap() - r.t_dispatch;
    assert!((r.ttft().unwrap() - ttft).abs() < 1e-12);
    assert!((r.e2e_latency().unwrap() - e2e).abs() < 1e-12);
    let tpot = (r.t_last_token.unwrap() - r.t_first_token.unwrap()) / 7.0;
    assert!((r.tpot().unwrap() - tpot).abs() < 1e-12);
    assert!((r.tpot().unwrap() - 0.015).abs() < 0.010, "tpot {}", tpot);
    assert!((r.tpot_incl_ttft().unwrap() - e2e / 8.0).abs() < 1e-12);
    assert!(r.request_latency() >= r.e2e_latency().unwrap());
    let truth_ttft = truth[0] - t_recv;
    assert!(
        close(ttft, truth_ttft),
        "ttft {ttft} vs server {truth_ttft}"
    );
    // ITL gaps.
    assert_eq!(out.gaps.len(), 7);
    for (i, g) in out.gaps.iter().enumerate() {
        let sg = truth[i + 1] - truth[i];
        assert!(close(*g, sg), "gap {i}: {g} vs {sg}");
    }
    assert_eq!(r.output_tokens, Some(8));
    assert_eq!(r.prompt_tokens, Some(10));
    assert_eq!(r.prompt_tokens_client, Some(2));
    assert_eq!(r.token_source, TokenSource::Usage);
    assert_eq!(r.output_events, 8);
    assert_eq!(r.multi_token_events, 0);
    assert_eq!(r.finish_reason.as_deref(), Some("length"));
    assert_eq!(r.status, Some(200));
    assert_eq!(r.max_tokens, Some(16));
    assert_eq!(r.in_flight_at_dispatch, 1);
    assert_eq!(r.retries, 0);
    assert_eq!(out.answer.as_deref(), Some("t0 t1 t2 t3 t4 t5 t6 t7 "));
    // t_end is the [DONE] arrival.
    let t_done = secs(epoch, served.t_done.unwrap());
    assert!(close(r.t_end, t_done));
    // The body we sent.
    let body = served.request.json();
    assert_eq!(served.request.path, "/v1/chat/completions");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["ignore_eos"], true);
    assert_eq!(body["max_tokens"], 16);
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["messages"][0]["content"], "hello there");
}

#[tokio::test]
async fn several_tokens_per_event_are_counted() {
    let server = TestServer::start(|_| Stream::new(9).per_chunk(3).gap(ms(5)).reply()).await;
    let client = Client::new(cfg(&server), None).unwrap();
    let epoch = Instant::now();
    let r = send_one(&client, epoch).await.record;
    assert_eq!(r.error, None, "{:?}", r.error_message);
    assert_eq!(r.output_events, 3);
    assert_eq!(r.output_tokens, Some(9));
    assert_eq!(r.multi_token_events, 3);
    let tpot = (r.t_last_token.unwrap() - r.t_first_token.unwrap()) / 8.0;
    assert!((r.tpot().unwrap() - tpot).abs() < 1e-12);
}

#[tokio::test]
async fn continuous_usage_finds_multi_token_events_exactly() {
    let server = TestServer::start(|_| {
        let c = |text: &str, n: u32, cum: u64| Step::Content {
            text: text.into(),
            tokens: n,
            usage: Some((5, cum)),
            finish: None,
        };
        Reply::Stream(StreamScript::from_steps(vec![
            Step::Role,
            Step::Wait(ms(2)),
            c("a", 1, 1),
            Step::Wait(ms(2)),
            c("b c", 2, 3),
            Step::Wait(ms(2)),
            c("d", 1, 4),
            Step::Wait(ms(2)),
            c("e f g", 3, 7),
            Step::Finish("length".into()),
            Step::Usage(5, 7),
            Step::Done,
        ]))
    })
    .await;
    let client = Client::new(cfg(&server), None).unwrap();
    let r = send_one(&client, Instant::now()).await.record;
    assert_eq!(r.error, None, "{:?}", r.error_message);
    assert_eq!(r.output_events, 4);
    assert_eq!(r.output_tokens, Some(7));
    assert_eq!(r.multi_token_events, 2);
}

#[tokio::test]
async fn usage_in_last_chunk_missing_or_counted() {
    let server = TestServer::start(|req| {
        let mode = match req.header("x-mode") {
            Some("last") => UsageMode::InLast,
            _ => UsageMode::Absent,
        };
        Stream::new(5).usage(mode).reply()
    })
    .await;
    let mut c = cfg(&server);
    c.headers = vec![("X-Mode".into(), "last".into())];
    let r = send_one(&Client::new(c.clone(), None).unwrap(), Instant::now())
        .await
        .record;
    assert_eq!(
        (r.output_tokens, r.token_source),
        (Some(5), TokenSource::Usage)
    );

    c.headers = vec![("X-Mode".into(), "none".into())];
    let tc: Arc<dyn TokenCounter> = Arc::new(Words);
    let r = send_one(&Client::new(c.clone(), Some(tc)).unwrap(), Instant::now())
        .await
        .record;
    assert_eq!(r.error, None, "{:?}", r.error_message);
    assert_eq!(r.token_source, TokenSource::Tokenizer);
    assert_eq!(r.output_tokens, Some(5));
    assert_eq!(
        r.prompt_tokens,
        Some(2),
        "prompt from the spec's client count"
    );

    let r = send_one(&Client::new(c, None).unwrap(), Instant::now())
        .await
        .record;
    assert_eq!(r.error, None);
    assert_eq!(r.token_source, TokenSource::None);
    assert_eq!(r.output_tokens, None);
}

#[tokio::test]
async fn reasoning_sets_first_token_not_first_output() {
    let server =
        TestServer::start(|_| Stream::new(6).reasoning(3).ttft(ms(10)).gap(ms(25)).reply()).await;
    let client = Client::new(cfg(&server), None).unwrap();
    let epoch = Instant::now();
    let r = send_one(&client, epoch).await.record;
    assert_eq!(r.error, None, "{:?}", r.error_message);
    let truth: Vec<f64> = server.log()[0]
        .token_writes
        .iter()
        .map(|t| secs(epoch, *t))
        .collect();
    assert!(close(r.t_first_token.unwrap(), truth[0]));
    assert!(close(r.t_first_output.unwrap(), truth[3]));
    assert!(r.ttfot().unwrap() - r.ttft().unwrap() > 0.050);
}

#[tokio::test]
async fn tool_calls_are_output() {
    let server = TestServer::start(|_| {
        Reply::Stream(StreamScript::from_steps(vec![
            Step::Role,
            Step::Wait(ms(30)),
            Step::ToolCall {
                name: "get_weather".into(),
                arguments: "{\"city\":".into(),
            },
            Step::Wait(ms(5)),
            Step::ToolCall {
                name: String::new(),
                arguments: "\"Paris\"}".into(),
            },
            Step::Finish("tool_calls".into()),
            Step::Usage(3, 6),
            Step::Done,
        ]))
    })
    .await;
    let r = send_one(&Client::new(cfg(&server), None).unwrap(), Instant::now())
        .await
        .record;
    assert_eq!(r.error, None, "{:?}", r.error_message);
    assert_eq!(r.output_events, 2);
    assert!(r.ttfot().unwrap() > 0.025);
    assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn completions_api_and_wire_variants() {
    let server = TestServer::start(|req| {
        let s = Stream::new(4).completions().gap(ms(2));
        match req.header("x-variant") {
            Some("crlf") => s.crlf().no_space().comments().reply(),
            Some("close") => s.no_done().framing(Framing::Close).reply(),
            _ => s.reply(),
        }
    })
    .await;
    for variant in ["plain", "crlf", "close"] {
        let mut c = cfg(&server);
        c.api = Api::Completions;
        c.headers = vec![("x-variant".into(), variant.into())];
        let out = send_one(&Client::new(c, None).unwrap(), Instant::now()).await;
        let r = &out.record;
        assert_eq!(r.error, None, "{variant}: {:?}", r.error_message);
        assert_eq!(r.output_events, 4, "{variant}");
        assert_eq!(r.output_tokens, Some(4), "{variant}");
        assert_eq!(out.answer.as_deref(), Some("t0 t1 t2 t3 "));
    }
    let log = server.log();
    assert_eq!(log[0].request.path, "/v1/completions");
    assert_eq!(log[0].request.json()["prompt"], "hello there");
}

#[tokio::test]
async fn events_split_anywhere_across_writes() {
    let text = "h\u{e9}llo \u{1F600}";
    let ev = format!(
        "data: {}\n\n",
        json!({"choices":[{"index":0,"delta":{"content":text},"finish_reason":"stop"}]})
    );
    let bytes = ev.as_bytes().to_vec();
    // Cut inside the emoji and inside "data:".
    let emoji_at = bytes
        .windows(4)
        .position(|w| w == "\u{1F600}".as_bytes())
        .unwrap()
        + 2;
    let server = TestServer::start(move |_| {
        Reply::Stream(StreamScript::from_steps(vec![
            Step::Raw(b"da".to_vec()),
            Step::Wait(ms(5)),
            Step::Raw(bytes[2..emoji_at].to_vec()),
            Step::Wait(ms(5)),
            Step::Raw(bytes[emoji_at..].to_vec()),
            Step::Wait(ms(5)),
            Step::Raw(
                b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\r"
                    .to_vec(),
            ),
            Step::Wait(ms(5)),
            Step::Raw(b"\n\r\ndata: [DONE]\n\n".to_vec()),
        ]))
    })
    .await;
    let out = send_one(&Client::new(cfg(&server), None).unwrap(), Instant::now()).await;
    assert_eq!(out.record.error, None, "{:?}", out.record.error_message);
    assert_eq!(out.answer.as_deref(), Some(text));
    assert_eq!(out.record.output_tokens, Some(2));
    assert_eq!(out.record.output_events, 1);
    assert_eq!(out.record.multi_token_events, 1);
}

#[tokio::test]
async fn non_streaming_mode() {
    let server = TestServer::start(|_| Reply::chat_body(12, 7, ms(40))).await;
    let mut c = cfg(&server);
    c.stream = false;
    let epoch = Instant::now();
    let r = send_one(&Client::new(c, None).unwrap(), epoch).await.record;
    assert_eq!(r.error, None, "{:?}", r.error_message);
    assert_eq!(r.t_first_token, r.t_last_token);
    assert!(r.ttft().unwrap() >= 0.035);
    assert_eq!(r.output_tokens, Some(12));
    assert_eq!(r.output_events, 1);
    let body = server.log()[0].request.json();
    assert_eq!(body["stream"], false);
    assert!(body.get("stream_options").is_none());
}

async fn class_of(
    reply: Reply,
    tweak: impl FnOnce(&mut ClientConfig),
) -> (Option<ErrorClass>, String, Outcome) {
    let server = TestServer::start(move |_| reply.clone()).await;
    let mut c = cfg(&server);
    tweak(&mut c);
    let out = send_one(&Client::new(c, None).unwrap(), Instant::now()).await;
    (
        out.record.error,
        out.record.error_message.clone().unwrap_or_default(),
        out,
    )
}

#[tokio::test]
async fn http_errors_are_classified_with_hints() {
    let (c, m, o) = class_of(
        Reply::error(400, "Unrecognized request argument supplied: ignore_eos"),
        |_| {},
    )
    .await;
    assert_eq!(c, Some(ErrorClass::Http4xx));
    assert!(
        m.contains("`ignore_eos`") && m.contains("--no-ignore-eos"),
        "{m}"
    );
    assert!(m.contains("HTTP 400"), "{m}");
    assert_eq!(o.record.status, Some(400));

    let (c, m, _) = class_of(Reply::error(422, "unknown field top_k"), |c| {
        c.extra_body = json!({"top_k": 5}).as_object().unwrap().clone();
    })
    .await;
    assert_eq!(c, Some(ErrorClass::Http4xx));
    assert!(m.contains("--body-json") && m.contains("top_k"), "{m}");

    let (c, m, _) = class_of(Reply::error(429, "slow down"), |_| {}).await;
    assert_eq!(c, Some(ErrorClass::Http429));
    assert!(m.contains("429") && m.contains("slow down"), "{m}");

    let (c, m, _) = class_of(Reply::error(503, "overloaded"), |_| {}).await;
    assert_eq!(c, Some(ErrorClass::Http5xx));
    assert!(m.contains("503") && m.contains("overloaded"), "{m}");

    let (c, _, _) = class_of(Reply::error(404, "no such route"), |_| {}).await;
    assert_eq!(c, Some(ErrorClass::Http4xx));
}

#[tokio::test]
async fn broken_and_malformed_streams() {
    // Cut after 3 events: stream_broken, with the stamps so far.
    let (c, m, o) = class_of(Stream::new(10).gap(ms(2)).cut_after(3).reply(), |_| {}).await;
    assert_eq!(c, Some(ErrorClass::StreamBroken), "{m}");
    assert_eq!(o.record.output_events, 3);
    assert!(o.record.t_first_token.is_some());

    // Ends without [DONE], finish or usage: broken.
    let (c, m, _) = class_of(
        Stream::new(3)
            .usage(UsageMode::Absent)
            .no_done()
            .cut_after(2)
            .framing(Framing::Close)
            .reply(),
        |_| {},
    )
    .await;
    assert_eq!(c, Some(ErrorClass::StreamBroken), "{m}");

    // Ends at close after finish_reason and usage, without [DONE]: complete.
    let (c, m, _) = class_of(
        Stream::new(3).no_done().framing(Framing::Close).reply(),
        |_| {},
    )
    .await;
    assert_eq!(c, None, "{m}");

    // Malformed JSON: protocol, with the offending bytes.
    let (c, m, _) = class_of(
        Reply::Stream(StreamScript::from_steps(vec![
            Step::Role,
            Step::Raw(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]\n\n".to_vec()),
        ])),
        |_| {},
    )
    .await;
    assert_eq!(c, Some(ErrorClass::Protocol));
    assert!(m.contains("{\"choices\":[{\"delta\""), "{m}");

    // Not SSE at all.
    let (c, m, _) = class_of(
        Reply::Stream(StreamScript::from_steps(vec![Step::Raw(
            b"<html><body>proxy error</body></html>\n".to_vec(),
        )])),
        |_| {},
    )
    .await;
    assert_eq!(c, Some(ErrorClass::Protocol));
    assert!(m.contains("<html>"), "{m}");

    // A JSON body answered to a streaming request.
    let (c, m, _) = class_of(Reply::chat_body(3, 3, Duration::ZERO), |_| {}).await;
    assert_eq!(c, Some(ErrorClass::Protocol));
    assert!(m.contains("--no-stream"), "{m}");

    // Invalid HTTP.
    let (c, _, _) = class_of(
        Reply::Raw {
            bytes: b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(),
            close: true,
        },
        |_| {},
    )
    .await;
    assert_eq!(c, Some(ErrorClass::Protocol));

    // An error object inside the stream (vLLM style).
    let (c, m, o) = class_of(
        Reply::Stream(StreamScript::from_steps(vec![
            Step::Role,
            Step::Content {
                text: "a".into(),
                tokens: 1,
                usage: None,
                finish: None,
            },
            Step::Wait(ms(2)),
            Step::Error(json!({"message":"engine dead","type":"InternalServerError","code":500})),
        ])),
        |_| {},
    )
    .await;
    assert_eq!(c, Some(ErrorClass::Http5xx));
    assert!(m.contains("engine dead"), "{m}");
    assert_eq!(o.record.output_events, 1);
}

#[tokio::test]
async fn connect_timeout_and_cancel() {
    // Connect: a port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let out = send_one(
        &Client::new(ClientConfig::new(url, "m"), None).unwrap(),
        Instant::now(),
    )
    .await;
    assert_eq!(out.record.error, Some(ErrorClass::Connect));
    let m = out.record.error_message.unwrap();
    assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}");
    assert!(m.to_lowercase().contains("refused"), "{m}");

    // Timeout.
    let server = TestServer::start(|_| Stream::new(50).gap(ms(20)).reply()).await;
    let mut c = cfg(&server);
    c.request_timeout = Some(ms(150));
    let t0 = Instant::now();
    let out = send_one(&Client::new(c, None).unwrap(), t0).await;
    assert_eq!(out.record.error, Some(ErrorClass::Timeout));
    assert!(out.record.output_events > 0);
    assert!(t0.elapsed() < Duration::from_secs(2));

    // Cancel mid-stream: returns at once with the stamps so far.
    let client = Client::new(cfg(&server), None).unwrap();
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(120)).await;
        c2.cancel();
    });
    let t0 = Instant::now();
    let out = client
        .send(&RequestSpec::text("x", None, Some(50)), t0, &cancel)
        .await;
    assert_eq!(out.record.error, Some(ErrorClass::Cancelled));
    assert!(out.record.t_first_token.is_some());
    assert!(t0.elapsed() < ms(600), "{:?}", t0.elapsed());
    assert!((out.record.t_end - 0.120).abs() < 0.1);
    assert_eq!(client.in_flight(), 0);
}

#[tokio::test]
async fn keep_alive_pool_reuses_connections() {
    let server = TestServer::start(|_| Stream::new(3).reply()).await;
    let mut c = cfg(&server);
    c.max_connections = 4;
    let client = Client::new(c, None).unwrap();
    let epoch = Instant::now();
    for _ in 0..10 {
        assert_eq!(send_one(&client, epoch).await.record.error, None);
    }
    assert_eq!(server.connections(), 1);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let cl = client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                assert_eq!(send_one(&cl, epoch).await.record.error, None);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(server.connections() <= 5, "{}", server.connections());
}

#[tokio::test]
async fn stale_keep_alive_connections_are_handled() {
    let opts = ServerOptions {
        idle_close_after: Some(ms(30)),
        ..Default::default()
    };
    let server = TestServer::start_with(opts.clone(), |_| Stream::new(2).reply()).await;
    // The server closed the idle connection long ago: a fresh one is used, no error.
    let client = Client::new(cfg(&server), None).unwrap();
    let epoch = Instant::now();
    assert_eq!(send_one(&client, epoch).await.record.error, None);
    tokio::time::sleep(ms(120)).await;
    let r = send_one(&client, epoch).await.record;
    assert_eq!(r.error, None, "{:?}", r.error_message);
    // Dropping a connection the server closed is not a retry: nothing was sent on it.
    assert_eq!(r.retries, 0);
    assert_eq!(server.connections(), 2);

    // The race where the stale connection is taken anyway (the test hook skips the liveness
    // check): the server reset it, so writing the request fails before any byte is answered;
    // retried on a fresh connection and counted.
    let opts = ServerOptions {
        idle_close_after: Some(ms(30)),
        idle_close_reset: true,
        ..Default::default()
    };
    let server = TestServer::start_with(opts, |_| Stream::new(2).reply()).await;
    let client = Client::new(cfg(&server), None)
        .unwrap()
        .with_trusted_idle_connections();
    assert_eq!(send_one(&client, epoch).await.record.error, None);
    tokio::time::sleep(ms(120)).await;
    let r = send_one(&client, epoch).await.record;
    assert_eq!(r.error, None, "{:?}", r.error_message);
    assert_eq!(r.retries, 1);
    // Every request reached the server exactly once.
    assert_eq!(server.log().len(), 2);
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn never_retried_once_the_server_may_have_seen_it() {
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    let server = TestServer::start(move |_| {
        if n2.fetch_add(1, Ordering::SeqCst) == 0 {
            Stream::new(2).reply()
        } else {
            Reply::Close { after: ms(5) }
        }
    })
    .await;
    let client = Client::new(cfg(&server), None).unwrap();
    let epoch = Instant::now();
    assert_eq!(send_one(&client, epoch).await.record.error, None);
    let r = send_one(&client, epoch).await.record;
    assert_eq!(r.error, Some(ErrorClass::StreamBroken));
    assert_eq!(r.retries, 0);
    assert!(r.error_message.unwrap().contains("not retried"));
    assert_eq!(server.log().len(), 2);
}

#[tokio::test]
async fn api_key_never_leaks() {
    let key = "sk-TOPSECRET-0123456789";
    let server = TestServer::start(|req| {
        // A server that echoes the credentials it got.
        let auth = req.header("authorization").unwrap_or("").to_string();
        Reply::error(401, &format!("invalid credentials: {auth}"))
    })
    .await;
    let mut c = cfg(&server);
    c.api_key = Some(key.into());
    c.headers = vec![("X-Api-Key".into(), "hdr-secret-value".into())];
    let client = Client::new(c.clone(), None).unwrap();
    let out = send_one(&client, Instant::now()).await;
    assert_eq!(out.record.error, Some(ErrorClass::Http4xx));
    // The key was sent.
    assert_eq!(
        server.log()[0].request.header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    let record_json = serde_json::to_string(&out.record).unwrap();
    for text in [
        record_json,
        format!("{:?}", out),
        format!("{client:?}"),
        format!("{c:?}"),
    ] {
        assert!(!text.contains(key), "key leaked: {text}");
        assert!(!text.contains("hdr-secret-value"), "header leaked: {text}");
    }
    // Setup errors too.
    let server = TestServer::start_with(
        ServerOptions {
            require_key: Some("other".into()),
            ..Default::default()
        },
        |_| Stream::new(1).reply(),
    )
    .await;
    let mut c = cfg(&server);
    c.api_key = Some(key.into());
    let err = llmload_client::discover_models(&Target::of(&c))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Auth { status: 401, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("--api-key") && msg.contains("OPENAI_API_KEY"),
        "{msg}"
    );
    assert!(!msg.contains(key) && !format!("{err:?}").contains(key));
}

#[tokio::test]
async fn discovery_and_preflight_errors() {
    let server = TestServer::start_with(
        ServerOptions {
            models: vec!["m-a".into(), "m-b".into()],
            ..Default::default()
        },
        |_| Stream::new(1).reply(),
    )
    .await;
    let mut c = ClientConfig::new(server.url(), "");
    let models = llmload_client::discover_models(&Target::of(&c))
        .await
        .unwrap();
    assert_eq!(models, vec!["m-a", "m-b"]);
    // /v1 suffix accepted.
    let mut c2 = c.clone();
    c2.base_url = server.url().join("/v1").unwrap();
    assert_eq!(
        llmload_client::discover_models(&Target::of(&c2))
            .await
            .unwrap(),
        models
    );
    let pf = llmload_client::preflight(&c, None, true).await.unwrap();
    assert_eq!(pf.model, "m-a");
    assert!(pf.probe.unwrap().error.is_none());
    c.model = "nope".into();
    let err = llmload_client::preflight(&c, None, false)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("nope") && msg.contains("m-a, m-b") && msg.contains("--model"),
        "{msg}"
    );

    // Unreachable.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let c = ClientConfig::new(
        url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        "",
    );
    let err = llmload_client::discover_models(&Target::of(&c))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ClientError::Unreachable { .. }));
    assert!(
        msg.contains(&format!("127.0.0.1:{port}/v1/models")),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "{msg}");

    // Not an OpenAI server: a web server answering 404 HTML.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = l.accept().await {
            let mut b = [0u8; 2048];
            let _ = s.read(&mut b).await;
            let body = "<html><h1>Not Found</h1></html>";
            let _ = s
                .write_all(
                    format!(
                        "HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    let c = ClientConfig::new(url::Url::parse(&format!("http://{addr}")).unwrap(), "");
    let err = llmload_client::discover_models(&Target::of(&c))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ClientError::NotOpenAi { status: 404, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("Not Found") && msg.contains("--target"),
        "{msg}"
    );

    // Preflight probe that the server refuses names the flag.
    let server =
        TestServer::start(|_| Reply::error(400, "unsupported parameter: ignore_eos")).await;
    let c = ClientConfig::new(server.url(), "test-model");
    let err = llmload_client::preflight(&c, None, true).await.unwrap_err();
    assert!(err.to_string().contains("--no-ignore-eos"), "{err}");
}

/// A whole HTTP response answered to every request, then the connection stays open or not.
fn raw(bytes: &[u8], close: bool) -> Reply {
    Reply::Raw {
        bytes: bytes.to_vec(),
        close,
    }
}

const SSE_BODY: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"a b\"}}]}\n\n\
    data: {\"choices\":[{\"delta\":{\"content\":\"c\"},\"finish_reason\":\"stop\"}]}\n\n\
    data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":3}}\n\n\
    data: [DONE]\n\n";

#[tokio::test]
async fn wire_framings_interim_responses_and_connection_close() {
    // 100 Continue and 103 first, chunk extensions, odd chunk sizes, trailers: kept alive.
    let mut r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for piece in SSE_BODY.as_bytes().chunks(37) {
        r.extend_from_slice(format!("{:X};name=\"v\"\r\n", piece.len()).as_bytes());
        r.extend_from_slice(piece);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n");
    let server = TestServer::start(move |_| raw(&r, false)).await;
    let client = Client::new(cfg(&server), None).unwrap();
    let epoch = Instant::now();
    for _ in 0..3 {
        let o = send_one(&client, epoch).await.record;
        assert_eq!(o.error, None, "{:?}", o.error_message);
        assert_eq!((o.output_events, o.output_tokens), (2, Some(3)));
        assert_eq!(o.finish_reason.as_deref(), Some("stop"));
    }
    assert_eq!(server.connections(), 1);

    // Connection: close with a length: each request on a new connection, all succeed.
    let r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{SSE_BODY}",
        SSE_BODY.len()
    );
    let server = TestServer::start(move |_| raw(r.as_bytes(), true)).await;
    let client = Client::new(cfg(&server), None).unwrap();
    for _ in 0..3 {
        let o = send_one(&client, epoch).await.record;
        assert_eq!(o.error, None, "{:?}", o.error_message);
        assert_eq!(o.output_tokens, Some(3));
    }
    assert_eq!(server.connections(), 3);
    assert_eq!(client.idle_connections(), 0);

    // An HTTP/1.0 server, non-streaming, body delimited by the close of the connection.
    let body = json!({"choices":[{"message":{"content":"x y"},"finish_reason":"length"}],
        "usage":{"prompt_tokens":2,"completion_tokens":2}})
    .to_string();
    let r = format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}");
    let server = TestServer::start(move |_| raw(r.as_bytes(), true)).await;
    let mut c = cfg(&server);
    c.stream = false;
    let client = Client::new(c, None).unwrap();
    for _ in 0..2 {
        let o = send_one(&client, epoch).await.record;
        assert_eq!(o.error, None, "{:?}", o.error_message);
        assert_eq!(o.output_tokens, Some(2));
        assert_eq!(o.finish_reason.as_deref(), Some("length"));
    }
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn malformed_framing_is_a_protocol_error_naming_it() {
    let (c, m, _) = class_of(
        raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
            true,
        ),
        |_| {},
    )
    .await;
    assert_eq!(c, Some(ErrorClass::Protocol), "{m}");
    assert!(m.contains("invalid chunk size `xyz`"), "{m}");

    let (c, m, _) = class_of(
        raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcde",
            true,
        ),
        |_| {},
    )
    .await;
    assert_eq!(c, Some(ErrorClass::Protocol), "{m}");
    assert!(m.contains("conflicting Content-Length"), "{m}");

    let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..3000 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(20)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let (c, m, _) = class_of(raw(&big, true), |_| {}).await;
    assert_eq!(c, Some(ErrorClass::Protocol), "{m}");
    assert!(
        m.contains("header fields") || m.contains("larger than 64 KiB"),
        "{m}"
    );

    // A body cut short of its Content-Length: broken, not a protocol error.
    let (c, m, _) = class_of(
        raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"choices\":",
            true,
        ),
        |c| c.stream = false,
    )
    .await;
    assert_eq!(c, Some(ErrorClass::StreamBroken), "{m}");
    assert!(m.contains("before the end of the body"), "{m}");
}

#[tokio::test]
async fn requests_are_never_pipelined() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A raw server that holds each answer for 30 ms and fails the test if any byte of a next
    // request arrives before its answer was written.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let violations = Arc::new(AtomicU32::new(0));
    let served = Arc::new(AtomicU32::new(0));
    let (v2, s2) = (violations.clone(), served.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (v3, s3) = (v2.clone(), s2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: head, then its content-length body.
                    let mut tmp = [0u8; 4096];
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if buf.len() >= i + 4 + len {
                                break i + 4 + len;
                            }
                        }
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    };
                    buf.drain(..end);
                    if !buf.is_empty() {
                        v3.fetch_add(1, Ordering::SeqCst);
                    }
                    // Anything arriving while the answer is held is a pipelined request.
                    if let Ok(Ok(n)) = tokio::time::timeout(ms(30), sock.read(&mut tmp)).await {
                        if n == 0 {
                            return;
                        }
                        v3.fetch_add(1, Ordering::SeqCst);
                        buf.extend_from_slice(&tmp[..n]);
                    }
                    let body = SSE_BODY;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    s3.fetch_add(1, Ordering::SeqCst);
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut c = ClientConfig::new(
        url::Url::parse(&format!("http://{addr}")).unwrap(),
        "test-model",
    );
    c.max_connections = 2;
    let client = Client::new(c, None).unwrap();
    let epoch = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let cl = client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let o = send_one(&cl, epoch).await.record;
                assert_eq!(o.error, None, "{:?}", o.error_message);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(served.load(Ordering::SeqCst), 18);
    assert_eq!(violations.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn reserved_headers_are_refused() {
    let mut c = ClientConfig::new(url::Url::parse("http://127.0.0.1:9").unwrap(), "m");
    c.headers = vec![("Content-Length".into(), "5".into())];
    let e = Client::new(c, None).unwrap_err().to_string();
    assert!(e.contains("--header `Content-Length`"), "{e}");
}

#[tokio::test]
async fn an_answer_sent_before_the_body_was_read_is_reported() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server that refuses large bodies after reading the head only (413, then close with
    // the body unread: the kernel resets the connection, so our write fails).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let body =
                    "{\"object\":\"error\",\"message\":\"request body too large\",\"code\":413}";
                let _ = sock
                    .write_all(
                        format!(
                            "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    let c = ClientConfig::new(
        url::Url::parse(&format!("http://{addr}")).unwrap(),
        "test-model",
    );
    let client = Client::new(c, None).unwrap();
    let prompt = "x".repeat(16 << 20);
    let o = client
        .send(
            &RequestSpec::text(prompt, None, Some(4)),
            Instant::now(),
            &CancellationToken::new(),
        )
        .await
        .record;
    assert_eq!(o.retries, 0);
    assert_eq!(o.error, Some(ErrorClass::Http4xx), "{:?}", o.error_message);
    assert_eq!(o.status, Some(413));
    assert!(
        o.error_message.unwrap().contains("request body too large"),
        "the server's message is kept"
    );
}

/// A request sent unsettled and settled later gives the record sent and settled at once:
/// answers good and bad, streamed and not, with and without the server's usage. Only the
/// tokenizer's count is ever left for later.
#[tokio::test]
async fn settling_later_gives_the_same_record() {
    let body = |status: u16, body: &str| Reply::Body {
        status,
        body: body.to_string(),
        content_type: "application/json",
        delay: ms(5),
    };
    let cases: Vec<(&str, Reply, bool)> = vec![
        ("answer", Reply::chat_body(12, 7, ms(5)), false),
        (
            "error answer without usage",
            body(
                200,
                r#"{"choices":[{"index":0,"message":{"content":"a b"}}],"error":"boom"}"#,
            ),
            false,
        ),
        (
            "answer without usage (tokenizer)",
            body(
                200,
                r#"{"choices":[{"index":0,"message":{"content":"a b c d"},"finish_reason":"stop"}]}"#,
            ),
            false,
        ),
        ("malformed JSON", body(200, r#"{"choices":[{"#), false),
        (
            "error object in a 200 body",
            body(200, r#"{"error":{"message":"overloaded","code":503}}"#),
            false,
        ),
        ("no choices", body(200, r#"{"id":"x"}"#), false),
        ("HTTP 503", Reply::error(503, "overloaded"), false),
        ("stream", Stream::new(6).gap(ms(1)).reply(), true),
        (
            "stream without usage",
            Stream::new(5).usage(UsageMode::Absent).reply(),
            true,
        ),
        ("cut stream", Stream::new(8).cut_after(3).reply(), true),
    ];
    for (name, reply, stream) in cases {
        let server = TestServer::start(move |_| reply.clone()).await;
        let mut c = cfg(&server);
        c.stream = stream;
        // A client that hands answers over counts at once; this one may count later.
        c.capture_answer = false;
        let client = Client::new(c, Some(Arc::new(Words))).unwrap();
        let epoch = Instant::now();
        let cancel = CancellationToken::new();
        let ready = client.prepare(RequestSpec::text("hello there", Some(2), Some(16)));
        let now = client.send_prepared(&ready, epoch, &cancel).await;
        assert!(now.pending.is_none(), "{name}");
        let mut later = client.send_prepared_unsettled(&ready, epoch, &cancel).await;
        // Before settling: everything but the tokenizer's count.
        let tokenizer = now.record.token_source == TokenSource::Tokenizer;
        assert_eq!(later.pending.is_some(), tokenizer, "{name}");
        let r = &later.record;
        assert_eq!(r.status, now.record.status, "{name}");
        assert_eq!(r.error, now.record.error, "{name}");
        assert_eq!(r.token_source, now.record.token_source, "{name}");
        if tokenizer {
            assert_eq!(r.output_tokens, None, "{name}");
        }
        // Settled on another thread.
        let c2 = client.clone();
        later = std::thread::spawn(move || {
            c2.settle(&mut later);
            later
        })
        .join()
        .unwrap();
        assert!(later.pending.is_none(), "{name}");
        let (a, b) = (&now.record, &later.record);
        assert_eq!(a.error, b.error, "{name}: {:?}", b.error_message);
        assert_eq!(a.error_message, b.error_message, "{name}");
        assert_eq!(a.output_tokens, b.output_tokens, "{name}");
        assert_eq!(a.prompt_tokens, b.prompt_tokens, "{name}");
        assert_eq!(a.token_source, b.token_source, "{name}");
        assert_eq!(a.finish_reason, b.finish_reason, "{name}");
        assert_eq!(a.output_events, b.output_events, "{name}");
        assert_eq!(a.multi_token_events, b.multi_token_events, "{name}");
        assert_eq!(
            a.t_first_token.map(|t| t - a.t_dispatch).is_some(),
            b.t_first_token.map(|t| t - b.t_dispatch).is_some(),
            "{name}"
        );
        assert_eq!(now.gaps.len(), later.gaps.len(), "{name}");
        assert_eq!(now.answer, later.answer, "{name}");
        if !stream && a.error.is_none() {
            // A non-streamed answer's token stamp is its arrival, taken before settling.
            assert_eq!(b.t_first_token, Some(b.t_end), "{name}");
        }
    }
}
