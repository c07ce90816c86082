//! Text embeddings without a model, and the similarity index agent matching searches.
//!
//! [`LexicalEmbedder`] turns text into a fixed-size vector from hashed word unigrams, word
//! bigrams and character trigrams, weighted by TF-IDF once it has been [fitted](LexicalEmbedder::fit)
//! to a corpus (the agents' cards), and normalised to unit length — so matching works on a
//! fresh machine with no model at all. [`EmbeddingIndex`] keeps unit vectors in one contiguous
//! row-major matrix and finds the `k` rows most similar to a query (cosine similarity) in one
//! tight pass.
//!
//! ```
//! use ananta_core::embed::{EmbeddingIndex, LexicalEmbedder};
//!
//! let cards = [
//!     "researcher: searches the web and collects sources on a topic",
//!     "translator: translates text between German and English",
//!     "code reviewer: reviews Rust pull requests for bugs and style",
//! ];
//! let embedder = LexicalEmbedder::fit(384, cards);
//! let mut index = EmbeddingIndex::new(384);
//! for card in cards {
//!     index.push(&embedder.embed(card))?;
//! }
//! let best = index.top_k(&embedder.embed("translate the summary into English"), 2);
//! assert_eq!(best[0].0, 1);
//! assert!(best[0].1 > best[1].1);
//! # Ok::<(), ananta_core::embed::IndexError>(())
//! ```

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

/// The dimension of the lexical vectors the matcher compares: wide, so few features collide.
pub const LEXICAL_DIMENSION: usize = 2048;

/// The dimension of [`LexicalEmbedder`] vectors unless chosen otherwise.
pub const DEFAULT_DIMENSION: usize = 384;

/// Words too common to say anything about a task.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it",
    "its", "of", "on", "or", "that", "the", "then", "this", "to", "with", "der", "die", "das",
    "und", "ein", "eine", "zu", "mit", "von", "den", "dem",
];

/// FNV-1a: stable across runs and platforms (a std `Hasher` is keyed randomly per process).
fn fnv1a(kind: u8, parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |byte: u8| {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    eat(kind);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            eat(0x1f);
        }
        for b in part.bytes() {
            eat(b);
        }
    }
    hash
}

/// A light stem: common English inflections cut (`tests` → `test`, `deploying` → `deploy`).
fn stem(word: String) -> String {
    for suffix in ["ing", "ed", "es", "s"] {
        if word.len() > suffix.len() + 3 && word.ends_with(suffix) && !word.ends_with("ss") {
            return word[..word.len() - suffix.len()].to_string();
        }
    }
    word
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .map(stem)
        .collect()
}

/// A model-free embedder: hashed word unigrams (weight 1), word bigrams (weight ½) and
/// character trigrams of each word (weight ¼ spread over the word's trigrams, so typos and
/// word forms still overlap), TF-IDF weighted, unit length. Deterministic: the same text
/// always gives the same vector.
#[derive(Debug, Clone, PartialEq)]
pub struct LexicalEmbedder {
    dimension: usize,
    /// Inverse document frequency per bucket (all 1 before fitting).
    idf: Vec<f32>,
}

impl LexicalEmbedder {
    /// An embedder of `dimension` (at least 1) weighting by term frequency only.
    pub fn new(dimension: usize) -> Self {
        let dimension = dimension.max(1);
        Self {
            dimension,
            idf: vec![1.0; dimension],
        }
    }

    /// An embedder whose IDF weights come from `corpus` (e.g. the agents' match texts):
    /// features many documents share weigh less than distinctive ones.
    pub fn fit<'a>(dimension: usize, corpus: impl IntoIterator<Item = &'a str>) -> Self {
        let mut embedder = Self::new(dimension);
        let mut df = vec![0u32; embedder.dimension];
        let mut documents = 0u32;
        for text in corpus {
            documents += 1;
            let buckets: HashSet<usize> = embedder
                .features(text)
                .into_iter()
                .map(|(bucket, _)| bucket)
                .collect();
            for b in buckets {
                df[b] += 1;
            }
        }
        for (idf, df) in embedder.idf.iter_mut().zip(df) {
            *idf = ((1.0 + documents as f32) / (1.0 + df as f32)).ln() + 1.0;
        }
        embedder
    }

    /// The length of its vectors.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    fn features(&self, text: &str) -> Vec<(usize, f32)> {
        let dim = self.dimension as u64;
        let bucket = |h: u64| (h % dim) as usize;
        let words = words(text);
        let mut out = Vec::with_capacity(words.len() * 8);
        for w in &words {
            out.push((bucket(fnv1a(b'w', &[w])), 1.0));
            let padded: Vec<char> = format!(" {w} ").chars().collect();
            let grams = padded.len().saturating_sub(2).max(1);
            for window in padded.windows(3) {
                let gram: String = window.iter().collect();
                out.push((bucket(fnv1a(b'c', &[&gram])), 0.25 / grams as f32));
            }
        }
        for pair in words.windows(2) {
            out.push((bucket(fnv1a(b'b', &[&pair[0], &pair[1]])), 0.5));
        }
        out
    }

    /// The unit vector of `text` (all zeros when it has no words).
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dimension];
        for (bucket, weight) in self.features(text) {
            v[bucket] += weight;
        }
        for (x, idf) in v.iter_mut().zip(&self.idf) {
            *x *= idf;
        }
        normalize(&mut v);
        v
    }
}

impl Default for LexicalEmbedder {
    fn default() -> Self {
        Self::new(DEFAULT_DIMENSION)
    }
}

/// The dot product of `a` and `b` (over the shorter length). Eight independent partial sums
/// let the compiler keep them in SIMD registers — a plain `sum()` must add in order, one lane
/// at a time.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut xs = a.chunks_exact(LANES);
    let mut ys = b.chunks_exact(LANES);
    for (x, y) in (&mut xs).zip(&mut ys) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        for x in v.iter_mut() {
            *x /= norm;
        }
    }
}

/// A vector does not fit the index.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The vector's length is not the index's dimension.
    #[error("vector of dimension {got} does not fit an index of dimension {expected}")]
    Dimension {
        /// The index's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// The vector holds NaN or infinity.
    #[error("vector holds a value that is not finite")]
    NotFinite,
    /// No row with this number.
    #[error("no row {0} in the index")]
    NoRow(usize),
}

/// Unit vectors in one contiguous row-major matrix; [`top_k`](Self::top_k) finds the rows
/// most similar to a query by cosine similarity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmbeddingIndex {
    dimension: usize,
    data: Vec<f32>,
}

#[derive(PartialEq)]
struct Scored(f32, usize);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    /// Worse first, so a max-heap of `Scored` pops the worst kept candidate: lower score, or
    /// on a tie the later row.
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

impl EmbeddingIndex {
    /// An empty index of `dimension`-long vectors.
    pub fn new(dimension: usize) -> Self {
        Self {
            dimension,
            data: Vec::new(),
        }
    }

    /// The length of its vectors.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dimension).unwrap_or(0)
    }

    /// Whether it holds no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn checked(&self, v: &[f32]) -> Result<Vec<f32>, IndexError> {
        if v.len() != self.dimension || self.dimension == 0 {
            return Err(IndexError::Dimension {
                expected: self.dimension,
                got: v.len(),
            });
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(IndexError::NotFinite);
        }
        let mut v = v.to_vec();
        normalize(&mut v);
        Ok(v)
    }

    /// Appends a vector (normalised to unit length) and returns its row number.
    pub fn push(&mut self, v: &[f32]) -> Result<usize, IndexError> {
        let v = self.checked(v)?;
        self.data.extend_from_slice(&v);
        Ok(self.len() - 1)
    }

    /// Replaces row `row` (e.g. when an agent's card changed).
    pub fn set(&mut self, row: usize, v: &[f32]) -> Result<(), IndexError> {
        let v = self.checked(v)?;
        let start = row * self.dimension;
        let slot = self
            .data
            .get_mut(start..start + self.dimension)
            .ok_or(IndexError::NoRow(row))?;
        slot.copy_from_slice(&v);
        Ok(())
    }

    /// The `k` rows most similar to `query`, best first, as `(row, cosine)`; equal scores in
    /// row order. A query of the wrong dimension, or one with no direction, matches nothing.
    pub fn top_k(&self, query: &[f32], k: usize) -> Vec<(usize, f32)> {
        let Ok(query) = self.checked(query) else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        let mut heap: BinaryHeap<Scored> = BinaryHeap::with_capacity(k + 1);
        for (row, chunk) in self.data.chunks_exact(self.dimension).enumerate() {
            let score = dot(chunk, &query);
            if heap.len() < k {
                heap.push(Scored(score, row));
            } else if heap.peek().is_some_and(|worst| score > worst.0) {
                heap.pop();
                heap.push(Scored(score, row));
            }
        }
        let mut out: Vec<(usize, f32)> = heap.into_iter().map(|s| (s.1, s.0)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        for n in [0, 1, 7, 8, 9, 384, 1001] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-3, "n = {n}");
        }
        assert_eq!(
            dot(&[1.0, 2.0, 3.0], &[4.0, 5.0]),
            14.0,
            "over the shorter length"
        );
    }

    #[test]
    fn related_texts_are_closer_than_unrelated_ones() {
        let e = LexicalEmbedder::default();
        let a = e.embed("run cargo test on the Rust crate");
        let b = e.embed("cargo tests for a rust crates workspace");
        let c = e.embed("translate the German summary into English");
        assert!(
            cosine(&a, &b) > cosine(&a, &c) + 0.2,
            "{} vs {}",
            cosine(&a, &b),
            cosine(&a, &c)
        );
        assert_eq!(
            e.embed("run cargo test on the Rust crate"),
            a,
            "deterministic"
        );
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5, "unit length");
        assert!(e.embed("  ... !!! the and of").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn fitting_weighs_distinctive_words_more() {
        let corpus = [
            "agent that writes code",
            "agent that reviews code",
            "agent that translates documents",
        ];
        let fitted = LexicalEmbedder::fit(256, corpus);
        let plain = LexicalEmbedder::new(256);
        // "translates" is in one card, "agent"/"code" in most: the fitted embedder separates
        // the translator more clearly from a query about translation.
        let q = "translates";
        let gap = |e: &LexicalEmbedder| {
            cosine(&e.embed(q), &e.embed(corpus[2])) - cosine(&e.embed(q), &e.embed(corpus[0]))
        };
        assert!(gap(&fitted) > gap(&plain));
    }

    #[test]
    fn top_k_matches_brute_force() {
        let mut rng = fastrand_free_lcg(7);
        let dim = 16;
        let mut index = EmbeddingIndex::new(dim);
        let rows: Vec<Vec<f32>> = (0..300)
            .map(|_| (0..dim).map(|_| rng() - 0.5).collect())
            .collect();
        for r in &rows {
            index.push(r).unwrap();
        }
        let q: Vec<f32> = (0..dim).map(|_| rng() - 0.5).collect();
        let mut brute: Vec<(usize, f32)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (mut r, mut q) = (r.clone(), q.clone());
                normalize(&mut r);
                normalize(&mut q);
                (i, cosine(&r, &q))
            })
            .collect();
        brute.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top = index.top_k(&q, 10);
        assert_eq!(top.len(), 10);
        for (got, want) in top.iter().zip(&brute) {
            assert_eq!(got.0, want.0);
            assert!((got.1 - want.1).abs() < 1e-5);
        }
        assert_eq!(index.top_k(&q, 1000).len(), 300);
        assert!(index.top_k(&q, 0).is_empty());
        assert!(
            index.top_k(&[1.0; 3], 5).is_empty(),
            "wrong dimension matches nothing"
        );
    }

    #[test]
    fn bad_vectors_are_refused() {
        let mut index = EmbeddingIndex::new(4);
        assert_eq!(
            index.push(&[1.0, 2.0]),
            Err(IndexError::Dimension {
                expected: 4,
                got: 2
            })
        );
        assert_eq!(
            index.push(&[f32::NAN, 0.0, 0.0, 0.0]),
            Err(IndexError::NotFinite)
        );
        assert_eq!(index.set(3, &[1.0; 4]), Err(IndexError::NoRow(3)));
        let row = index.push(&[0.0, 0.0, 0.0, 2.0]).unwrap();
        index.set(row, &[1.0, 0.0, 0.0, 0.0]).unwrap();
        assert_eq!(index.top_k(&[1.0, 0.0, 0.0, 0.0], 1), vec![(0, 1.0)]);
        // Ties keep row order.
        index.push(&[1.0, 0.0, 0.0, 0.0]).unwrap();
        assert_eq!(
            index.top_k(&[2.0, 0.0, 0.0, 0.0], 2),
            vec![(0, 1.0), (1, 1.0)]
        );
    }

    /// A tiny deterministic generator for the tests (no dependency).
    fn fastrand_free_lcg(seed: u64) -> impl FnMut() -> f32 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        }
    }
}
