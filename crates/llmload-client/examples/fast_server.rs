//! The minimal benchmark server: answers every request at once with N streamed tokens.
//!
//! ```text
//! cargo run --release -p llmload-client --features testkit --example fast_server -- --port 8000
//! cargo run --release -p llmload-client --features testkit --example fast_server -- --port 8000 --tokens 64 --threads 1
//! ```
//! A POST whose body has `"stream":true` gets an SSE stream (chat, or completions when the body
//! has `"prompt"`); any other request, such as `wrk`'s GET, gets the same answer as one JSON
//! body; `GET /v1/models` lists the model. Binds 127.0.0.1 only.

use clap::Parser;

#[derive(Parser)]
#[command(about = "Minimal always-ready OpenAI-compatible server for benchmarks")]
struct Args {
    /// Port on 127.0.0.1 (0 = any free port, printed on start).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Output tokens per answer (one per event).
    #[arg(long, default_value_t = 16)]
    tokens: u32,
    /// Model name listed and echoed.
    #[arg(long, default_value = "fast-model")]
    model: String,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
        println!(
            "fast_server listening on http://{} ({} tokens per answer)",
            listener.local_addr()?,
            args.tokens
        );
        llmload_client::testkit::fast::serve(listener, args.tokens, &args.model).await
    })
}
