//! HL7 v2 files cut into messages as they are read: each `MSH` segment starts a new message.
//!
//! The cut works on bytes, before decoding, so one wrongly encoded message does not spoil its
//! neighbours (CR and LF never occur inside a GB18030 character). It holds one message at a
//! time, so a batch file of a million messages takes no more memory than one message.

use std::io::{self, BufRead};

/// One message cut from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMessage {
    /// The 1-based number of its first segment in the file (blank lines do not count).
    pub first_segment: usize,
    /// Its segments joined by CR, without MLLP framing bytes.
    pub bytes: Vec<u8>,
    /// Whether it was longer than the limit and cut there.
    pub cut: bool,
}

/// Cuts the HL7 v2 text of `input` into messages. Segments end at CR, LF or CRLF; MLLP framing
/// bytes around a segment and blank lines are dropped; segments before the first MSH form a
/// message of their own (which then fails to parse).
pub struct MessageSplitter<R> {
    input: R,
    /// The longest message kept; the rest of a longer one is read and dropped.
    max: usize,
    segment: Vec<u8>,
    segments: usize,
    pending: Option<SplitMessage>,
    done: bool,
}

impl<R: BufRead> MessageSplitter<R> {
    /// Splits `input`, keeping at most `max` bytes of any message.
    pub fn new(input: R, max: usize) -> Self {
        MessageSplitter {
            input,
            max,
            segment: Vec::new(),
            segments: 0,
            pending: None,
            done: false,
        }
    }

    /// Reads one segment into `segment` (at most `max + 1` bytes of it, so that a cut shows);
    /// `false` at the end of the input.
    fn read_segment(&mut self) -> io::Result<bool> {
        self.segment.clear();
        let mut any = false;
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(any);
            }
            any = true;
            let end = buf.iter().position(|b| *b == b'\r' || *b == b'\n');
            let take = end.unwrap_or(buf.len());
            let room = self
                .max
                .saturating_add(1)
                .saturating_sub(self.segment.len());
            self.segment
                .extend_from_slice(buf.get(..take.min(room)).unwrap_or_default());
            match end {
                Some(i) => {
                    self.input.consume(i + 1);
                    return Ok(true);
                }
                None => self.input.consume(take),
            }
        }
    }
}

fn trim_framing(mut s: &[u8]) -> &[u8] {
    while let [0x0b | 0x1c, rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., 0x0b | 0x1c] = s {
        s = rest;
    }
    s
}

/// Appends `bytes` to `msg`, cutting it at `max`.
fn append(msg: &mut SplitMessage, bytes: &[u8], max: usize) {
    let room = max.saturating_sub(msg.bytes.len());
    if bytes.len() > room {
        msg.cut = true;
    }
    msg.bytes
        .extend_from_slice(bytes.get(..bytes.len().min(room)).unwrap_or_default());
}

impl<R: BufRead> Iterator for MessageSplitter<R> {
    type Item = io::Result<SplitMessage>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return self.pending.take().map(Ok);
            }
            match self.read_segment() {
                Err(e) => {
                    // The message being read is incomplete; the error ends the file.
                    self.done = true;
                    self.pending = None;
                    return Some(Err(e));
                }
                Ok(false) => {
                    self.done = true;
                    continue;
                }
                Ok(true) => {}
            }
            let seg = trim_framing(&self.segment);
            if seg.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.segments += 1;
            match &mut self.pending {
                Some(msg) if !seg.starts_with(b"MSH") => {
                    append(msg, b"\r", self.max);
                    append(msg, seg, self.max);
                }
                _ => {
                    let mut msg = SplitMessage {
                        first_segment: self.segments,
                        bytes: Vec::new(),
                        cut: false,
                    };
                    append(&mut msg, seg, self.max);
                    if let Some(previous) = self.pending.replace(msg) {
                        return Some(Ok(previous));
                    }
                }
            }
        }
    }
}

/// Splits a whole file's bytes into messages: each one's bytes with the number of its first
/// segment.
pub fn split_messages(bytes: &[u8]) -> Vec<(usize, Vec<u8>)> {
    MessageSplitter::new(bytes, usize::MAX)
        .filter_map(Result::ok)
        .map(|m| (m.first_segment, m.bytes))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &str = "MSH|^~\\&|HIS|H|||20261128||ADT^A01|1|P|2.5\rPID|1||P1||王^五";

    /// Splits through a reader that hands out `chunk` bytes at a time.
    fn split_in_chunks(bytes: &[u8], chunk: usize, max: usize) -> Vec<SplitMessage> {
        let reader = std::io::BufReader::with_capacity(chunk, bytes);
        MessageSplitter::new(reader, max)
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn messages_start_at_each_msh_whatever_the_line_ends_and_framing() {
        let text = format!("\u{0b}{ADT}\u{1c}\r\n\n{ADT}\n\r\nPID|2\r\nMSH|^~\\&|X");
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let msgs = split_in_chunks(text.as_bytes(), chunk, usize::MAX);
            let firsts: Vec<usize> = msgs.iter().map(|m| m.first_segment).collect();
            assert_eq!(firsts, [1, 3, 6], "chunk {chunk}");
            assert_eq!(msgs[0].bytes, ADT.as_bytes(), "chunk {chunk}");
            assert_eq!(
                msgs[1].bytes,
                format!("{ADT}\rPID|2").as_bytes(),
                "chunk {chunk}"
            );
            assert!(msgs.iter().all(|m| !m.cut));
        }
        let stray = split_messages(b"PID|1\rMSH|^~\\&|A");
        assert_eq!(stray.len(), 2);
        assert_eq!(stray[0], (1, b"PID|1".to_vec()));
    }

    #[test]
    fn a_message_over_the_limit_is_cut_and_its_neighbours_are_whole() {
        let long = format!("MSH|^~\\&|A\rOBX|1|{}", "x".repeat(100));
        let text = format!("{ADT}\r{long}\r{ADT}");
        for chunk in [3, 4096] {
            let msgs = split_in_chunks(text.as_bytes(), chunk, 80);
            assert_eq!(msgs.len(), 3);
            assert!(!msgs[0].cut && !msgs[2].cut);
            assert!(msgs[1].cut);
            assert_eq!(msgs[1].bytes.len(), 80);
            assert_eq!(msgs[2].bytes, ADT.as_bytes());
        }
    }

    #[test]
    fn a_read_error_ends_the_file_after_the_whole_messages_before_it() {
        struct Breaks(Vec<u8>);
        impl std::io::Read for Breaks {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("disk gone"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let text = format!("{ADT}\r{ADT}\rPID|");
        let reader = std::io::BufReader::with_capacity(8, Breaks(text.into_bytes()));
        let items: Vec<_> = MessageSplitter::new(reader, usize::MAX).collect();
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(items[0].is_ok());
        assert!(items[1].is_err(), "the second message is incomplete");
    }
}
