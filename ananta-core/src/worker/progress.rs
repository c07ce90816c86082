//! Live progress of a Worker: the model's answer as it streams in, and each command's output
//! as it is printed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::exec::{OutputChunk, OutputStream};
use crate::ids::TaskId;

/// Most characters of one step's command output sent as progress; the rest is only in the
/// step's record (a chatty command cannot flood the listeners).
pub const PROGRESS_OUTPUT_CAP: usize = 64 * 1024;

/// Something a Worker is doing right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Progress {
    /// A piece of the model's answer for the next step of `task_id`.
    LlmDelta {
        /// The task.
        task_id: TaskId,
        /// The step being proposed.
        step: u32,
        /// The new text.
        text: String,
    },
    /// A piece of a running command's output.
    CommandOutput {
        /// The task.
        task_id: TaskId,
        /// The step running.
        step: u32,
        /// Which stream.
        stream: OutputStream,
        /// The new text (UTF-8; a character split between chunks is joined).
        text: String,
    },
}

/// Where a Worker reports [`Progress`]: called on the Worker's task, so it must be quick.
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// The Worker's listeners, each under a key so the same listener is never added twice.
#[derive(Default)]
pub(super) struct Listeners {
    sinks: std::sync::RwLock<Vec<(String, ProgressSink)>>,
}

impl Listeners {
    pub(super) fn add(&self, key: String, sink: ProgressSink) {
        let mut sinks = self.sinks.write().unwrap_or_else(|p| p.into_inner());
        sinks.retain(|(k, _)| *k != key);
        sinks.push((key, sink));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.sinks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    pub(super) fn send(&self, progress: Progress) {
        let sinks: Vec<ProgressSink> = self
            .sinks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, s)| s.clone())
            .collect();
        for sink in sinks {
            sink(progress.clone());
        }
    }
}

/// Turns output chunks into [`Progress::CommandOutput`] until the channel closes: text split
/// inside a UTF-8 character is joined, and at most [`PROGRESS_OUTPUT_CAP`] characters per step
/// go out, then one note that the rest is in the step's record.
pub(super) async fn forward_output(
    mut chunks: tokio::sync::mpsc::Receiver<OutputChunk>,
    listeners: Arc<Listeners>,
    task_id: TaskId,
    step: u32,
) {
    let mut carry: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut sent = 0usize;
    let mut capped = false;
    while let Some(chunk) = chunks.recv().await {
        if capped {
            continue;
        }
        let slot = match chunk.stream {
            OutputStream::Stdout => 0,
            OutputStream::Stderr => 1,
        };
        let buffer = &mut carry[slot];
        buffer.extend_from_slice(&chunk.data);
        let valid = match std::str::from_utf8(buffer) {
            Ok(_) => buffer.len(),
            // An incomplete character at the end waits for the next chunk.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => buffer.len(),
        };
        let bytes: Vec<u8> = buffer.drain(..valid).collect();
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if text.is_empty() {
            continue;
        }
        if sent + text.len() > PROGRESS_OUTPUT_CAP {
            let room = PROGRESS_OUTPUT_CAP.saturating_sub(sent);
            let mut cut = room.min(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("\n[live output capped; the step's record holds it all]\n");
            capped = true;
        }
        sent += text.len();
        listeners.send(Progress::CommandOutput {
            task_id,
            step,
            stream: chunk.stream,
            text,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn collecting() -> (Arc<Listeners>, Arc<Mutex<Vec<Progress>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listeners = Arc::new(Listeners::default());
        let sink = seen.clone();
        listeners.add(
            "test".into(),
            Arc::new(move |p| sink.lock().unwrap_or_else(|e| e.into_inner()).push(p)),
        );
        (listeners, seen)
    }

    fn texts(seen: &Mutex<Vec<Progress>>) -> String {
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|p| match p {
                Progress::CommandOutput { text, .. } => text.as_str(),
                Progress::LlmDelta { text, .. } => text.as_str(),
            })
            .collect()
    }

    #[tokio::test]
    async fn split_characters_are_joined_and_output_is_capped() {
        let (listeners, seen) = collecting();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let task = TaskId::new();
        let forward = tokio::spawn(forward_output(rx, listeners, task, 1));
        let euro = "€".as_bytes();
        for data in [&euro[..1], &euro[1..], b"!".as_slice()] {
            let chunk = OutputChunk {
                stream: OutputStream::Stdout,
                data: data.to_vec(),
            };
            tx.send(chunk).await.unwrap_or_else(|e| panic!("{e}"));
        }
        drop(tx);
        forward.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(texts(&seen), "€!");

        let (listeners, seen) = collecting();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let forward = tokio::spawn(forward_output(rx, listeners, task, 2));
        for _ in 0..100 {
            let chunk = OutputChunk {
                stream: OutputStream::Stderr,
                data: vec![b'x'; 4096],
            };
            tx.send(chunk).await.unwrap_or_else(|e| panic!("{e}"));
        }
        drop(tx);
        forward.await.unwrap_or_else(|e| panic!("{e}"));
        let all = texts(&seen);
        assert!(all.len() < PROGRESS_OUTPUT_CAP + 100, "{}", all.len());
        assert!(all.ends_with("the step's record holds it all]\n"));
    }

    #[test]
    fn a_listener_under_the_same_key_is_replaced() {
        let listeners = Listeners::default();
        assert!(listeners.is_empty());
        listeners.add("hub".into(), Arc::new(|_| {}));
        listeners.add("hub".into(), Arc::new(|_| {}));
        assert_eq!(listeners.sinks.read().map(|s| s.len()).unwrap_or(0), 1);
    }
}
