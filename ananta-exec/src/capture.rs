//! Reading one output pipe in chunks: keep at most `cap` bytes, drain and discard the rest,
//! forward every chunk to the caller's sink without ever blocking on it.

use ananta_core::exec::{OutputChunk, OutputSink, OutputStream};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc::error::TrySendError;

/// Size of one read from a pipe (and so the largest streamed chunk).
const READ_CHUNK: usize = 64 * 1024;

/// The bytes kept from one stream, filled by [`pump`]. Lives outside the reading future so that
/// what was read survives when the future is dropped (drain window over).
#[derive(Debug)]
pub(crate) struct Capture {
    stream: OutputStream,
    cap: usize,
    kept: Vec<u8>,
    total: u64,
    truncated: bool,
    dropped_chunks: u64,
}

impl Capture {
    /// An empty capture keeping at most `cap` bytes of `stream`.
    pub(crate) fn new(stream: OutputStream, cap: usize) -> Self {
        Self {
            stream,
            cap,
            kept: Vec::new(),
            total: 0,
            truncated: false,
            dropped_chunks: 0,
        }
    }

    /// Records one chunk: keeps what fits under the cap, flags the rest as truncated.
    fn push(&mut self, chunk: &[u8]) {
        self.total = self.total.saturating_add(chunk.len() as u64);
        let room = self.cap.saturating_sub(self.kept.len());
        let take = room.min(chunk.len());
        self.kept.extend_from_slice(&chunk[..take]);
        if take < chunk.len() {
            self.truncated = true;
        }
    }

    /// Total bytes that arrived (kept or not).
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Chunks the sink could not take (full channel).
    pub(crate) fn dropped_chunks(&self) -> u64 {
        self.dropped_chunks
    }

    /// The kept bytes as text of at most `cap` bytes, and whether anything was cut.
    pub(crate) fn into_text(self) -> (String, bool) {
        let mut bytes = self.kept;
        let mut truncated = self.truncated;
        if truncated {
            // The cap may have cut a multi-byte character: drop its incomplete start rather
            // than turn it into a replacement character.
            let keep = complete_prefix_len(&bytes);
            bytes.truncate(keep);
        }
        let mut text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        };
        // Each invalid byte became a 3-byte U+FFFD: cut again so the text honours the cap.
        if text.len() > self.cap {
            let mut end = self.cap;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            truncated = true;
        }
        (text, truncated)
    }
}

/// Length of `bytes` without a trailing, incomplete UTF-8 sequence (if there is one).
fn complete_prefix_len(bytes: &[u8]) -> usize {
    let len = bytes.len();
    // A sequence is at most 4 bytes, so an incomplete one starts within the last 3.
    for back in 1..=3.min(len) {
        let i = len - back;
        let b = bytes[i];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead byte
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1, // ASCII or invalid lead: nothing incomplete to strip
        };
        return if back < needed { i } else { len };
    }
    len
}

/// Reads `pipe` to EOF in chunks into `capture`, sending each chunk to `sink` with `try_send`.
///
/// Never stops reading because of the cap (the child must not block on a full pipe) or because
/// of the sink (a full channel drops the chunk, a closed one is forgotten). A read error ends
/// the stream (logged, and the capture marked truncated since output may be missing).
pub(crate) async fn pump<R>(
    mut pipe: R,
    capture: &mut Capture,
    mut sink: Option<OutputSink>,
    redactor: &crate::redact::Redactor,
) where
    R: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::warn!(stream = ?capture.stream, error = %err, "reading command output failed");
                capture.truncated = true;
                break;
            }
        };
        let chunk = &buf[..n];
        capture.push(chunk);
        if let Some(tx) = &sink {
            // Per chunk: a secret split across two reads is not caught here (the outcome's
            // text, redacted whole, is).
            match tx.try_send(OutputChunk {
                stream: capture.stream,
                data: redactor.redact_bytes(chunk).into_owned(),
            }) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => capture.dropped_chunks += 1,
                Err(TrySendError::Closed(_)) => sink = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_cap_and_flags_the_rest() {
        let mut c = Capture::new(OutputStream::Stdout, 5);
        c.push(b"abc");
        c.push(b"defgh");
        assert_eq!(c.total(), 8);
        let (text, truncated) = c.into_text();
        assert_eq!(text, "abcde");
        assert!(truncated);
    }

    #[test]
    fn exact_cap_is_not_truncated() {
        let mut c = Capture::new(OutputStream::Stdout, 3);
        c.push(b"abc");
        assert_eq!(c.into_text(), ("abc".to_string(), false));
    }

    #[test]
    fn cap_inside_a_character_drops_the_partial_character() {
        let mut c = Capture::new(OutputStream::Stdout, 4);
        c.push("ab€".as_bytes()); // € is 3 bytes: cap cuts after its first 2
        let (text, truncated) = c.into_text();
        assert_eq!(text, "ab");
        assert!(truncated);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_still_within_cap() {
        let mut c = Capture::new(OutputStream::Stderr, 10);
        c.push(b"\xff\xfeabc");
        assert_eq!(c.into_text(), ("\u{FFFD}\u{FFFD}abc".to_string(), false));

        let mut c = Capture::new(OutputStream::Stderr, 4);
        c.push(b"\xff\xff\xff\xff");
        let (text, truncated) = c.into_text();
        assert_eq!(text, "\u{FFFD}");
        assert!(text.len() <= 4 && truncated);
    }

    #[test]
    fn complete_prefix_len_cases() {
        assert_eq!(complete_prefix_len(b""), 0);
        assert_eq!(complete_prefix_len(b"abc"), 3);
        assert_eq!(complete_prefix_len("a€".as_bytes()), 4);
        assert_eq!(complete_prefix_len(&"a€".as_bytes()[..3]), 1);
        assert_eq!(complete_prefix_len(&"a😀".as_bytes()[..4]), 1);
        assert_eq!(complete_prefix_len(b"a\xff"), 2);
    }

    #[tokio::test]
    async fn pump_streams_and_survives_a_full_sink() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let mut c = Capture::new(OutputStream::Stdout, 100);
        let data = vec![b'x'; 3 * READ_CHUNK];
        pump(
            &data[..],
            &mut c,
            Some(tx),
            &crate::redact::Redactor::default(),
        )
        .await;
        assert_eq!(c.total(), data.len() as u64);
        assert_eq!(c.dropped_chunks(), 2);
        let first = rx.recv().await.unwrap();
        assert_eq!(first.data.len(), READ_CHUNK);
        let (text, truncated) = c.into_text();
        assert_eq!(text.len(), 100);
        assert!(truncated);
    }
}
