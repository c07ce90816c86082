//! Agent matching: the latency of finding the 5 best of 1,000, 10,000 and 100,000 agents by
//! cosine similarity over 384-dimensional unit vectors (`EmbeddingIndex::top_k`, one pass over a
//! contiguous matrix), and of embedding a task description with the model-free
//! `LexicalEmbedder`.
//!
//! `cargo bench -p ananta-benches --bench matching`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ananta_core::embed::{EmbeddingIndex, LexicalEmbedder};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const DIM: usize = 384;

fn bench(c: &mut Criterion) {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut random = || (0..DIM).map(|_| rng.f32() - 0.5).collect::<Vec<f32>>();
    let query = random();
    let mut group = c.benchmark_group("best_match_top5_dim384");
    for agents in [1_000usize, 10_000, 100_000] {
        let mut index = EmbeddingIndex::new(DIM);
        for _ in 0..agents {
            index.push(&random()).unwrap();
        }
        group.bench_with_input(BenchmarkId::from_parameter(agents), &index, |b, index| {
            b.iter(|| std::hint::black_box(index.top_k(&query, 5)))
        });
    }
    group.finish();

    let cards = [
        "researcher: searches the web and collects sources on a topic",
        "summariser: condenses long texts into short summaries",
        "translator: translates text between German and English",
        "code reviewer: reviews Rust pull requests for bugs and style",
        "data analyst: analyses CSV data with pandas and plots charts",
    ];
    let embedder = LexicalEmbedder::fit(DIM, cards);
    c.bench_function("lexical_embed_task_description", |b| {
        b.iter(|| {
            std::hint::black_box(embedder.embed(
                "Research the current AI trends, summarise them, then translate the summary into English",
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
