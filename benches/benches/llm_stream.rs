//! Provider overhead on streamed answers: `OpenAiProvider::complete_stream` against a plain
//! `reqwest` read of the same server-sent events (split into events, JSON parsed, text taken).
//!
//! - `sse_local/*`: a local server that sends a 256-token answer at once, so only client-side
//!   cost is measured (throughput is reported in tokens/s).
//! - `real_llm/*`: when `ANANTA_TEST_OPENAI_URL` names a running OpenAI-compatible server (see
//!   `scripts/llm-server.sh`), time to first token and whole-answer time (tokens/s) of a
//!   32-token answer through both paths.
//!
//! `cargo bench -p ananta-benches --bench llm_stream`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use ananta_core::LlmProvider;
use ananta_core::llm::{ChatMessage, ChatRequest};
use ananta_llm::OpenAiProvider;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LOCAL_TOKENS: usize = 256;

/// Serves every request with the same SSE answer of `LOCAL_TOKENS` chunks.
async fn local_sse_server() -> String {
    let mut body = String::new();
    for i in 0..LOCAL_TOKENS {
        let chunk = json!({"id": "c", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": format!(" tok{i}")}, "finish_reason": null}]});
        body.push_str(&format!("data: {chunk}\n\n"));
    }
    let end = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": LOCAL_TOKENS}});
    body.push_str(&format!("data: {end}\n\ndata: [DONE]\n\n"));
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    // One request per connection turn: headers plus a small JSON body.
                    if let Some(pos) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..pos]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if seen.len() >= pos + 4 + len {
                            seen.drain(..pos + 4 + len);
                            if socket.write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    url
}

fn request(max_tokens: u32) -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::user("Count from one to fifty in words.")])
        .temperature(0.0)
        .max_tokens(max_tokens)
}

/// Time to first text and total time through the provider.
async fn via_provider(llm: &OpenAiProvider, max_tokens: u32) -> (Duration, Duration, usize) {
    let started = Instant::now();
    let mut stream = llm.complete_stream(request(max_tokens)).await.unwrap();
    let mut first = None;
    let mut pieces = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if !chunk.delta.is_empty() {
            first.get_or_insert_with(|| started.elapsed());
            pieces += 1;
        }
    }
    (first.unwrap_or_default(), started.elapsed(), pieces)
}

/// The same with plain reqwest: POST, split the body into events, parse each JSON, take text.
async fn via_reqwest(
    client: &reqwest::Client,
    base: &str,
    max_tokens: u32,
) -> (Duration, Duration, usize) {
    let body = json!({
        "messages": [{"role": "user", "content": "Count from one to fifty in words."}],
        "temperature": 0.0, "max_tokens": max_tokens, "stream": true,
        "stream_options": {"include_usage": true},
    });
    let started = Instant::now();
    let response = client
        .post(format!("{base}/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut bytes = response.bytes_stream();
    let mut buf = String::new();
    let mut first = None;
    let mut pieces = 0;
    'read: while let Some(chunk) = bytes.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data: ") else {
                continue;
            };
            // Stop at the end marker, as the provider does (the server may take a while to
            // end the body after it).
            if data == "[DONE]" {
                break 'read;
            }
            let value: Value = serde_json::from_str(data).unwrap();
            if let Some(text) = value
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                && !text.is_empty()
            {
                first.get_or_insert_with(|| started.elapsed());
                pieces += 1;
            }
        }
    }
    (first.unwrap_or_default(), started.elapsed(), pieces)
}

fn local(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = rt.block_on(local_sse_server());
    let llm = OpenAiProvider::builder(&base).build().unwrap();
    ananta_core::tls::install_default_provider();
    let client = reqwest::Client::new();
    let mut group = c.benchmark_group("sse_local");
    group.throughput(Throughput::Elements(LOCAL_TOKENS as u64));
    group.bench_function("openai_provider", |b| {
        b.to_async(&rt).iter(|| async {
            let (_, _, n) = via_provider(&llm, 0).await;
            assert_eq!(n, LOCAL_TOKENS);
        })
    });
    group.bench_function("plain_reqwest", |b| {
        b.to_async(&rt).iter(|| async {
            let (_, _, n) = via_reqwest(&client, &base, 0).await;
            assert_eq!(n, LOCAL_TOKENS);
        })
    });
    group.finish();
}

fn real(c: &mut Criterion) {
    let Some(base) = std::env::var("ANANTA_TEST_OPENAI_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("real_llm benches not run: ANANTA_TEST_OPENAI_URL is not set");
        return;
    };
    let base = base.trim_end_matches('/').to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // llama-server closes a connection after a streamed answer; a pooled connection can then
    // fail the next request (a race no client can see coming), so both paths connect afresh.
    ananta_core::tls::install_default_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let llm = OpenAiProvider::llama_cpp(&base)
        .client(client.clone())
        .build()
        .unwrap();
    const MAX: u32 = 32;
    let mut group = c.benchmark_group("real_llm");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    // Time to first token: iter_custom reports the TTFT of each answer as its time.
    group.bench_function("ttft/openai_provider", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let llm = llm.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += via_provider(&llm, MAX).await.0;
                }
                total
            }
        })
    });
    group.bench_function("ttft/plain_reqwest", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += via_reqwest(&client, &base, MAX).await.0;
                }
                total
            }
        })
    });
    group.throughput(Throughput::Elements(u64::from(MAX)));
    group.bench_function("answer/openai_provider", |b| {
        b.to_async(&rt).iter(|| via_provider(&llm, MAX))
    });
    group.bench_function("answer/plain_reqwest", |b| {
        b.to_async(&rt).iter(|| via_reqwest(&client, &base, MAX))
    });
    group.finish();
}

criterion_group!(benches, local, real);
criterion_main!(benches);
