//! Newline framing with a hard length limit. The decoder is pure (bytes in, frames out) so the
//! server, the client and the fuzz tests share one implementation, and a line that never ends
//! costs the daemon at most [`crate::MAX_LINE_BYTES`] of memory.

/// One unit of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its `\n` (a trailing `\r` is removed too).
    Line(Vec<u8>),
    /// A line longer than the limit; its bytes were discarded up to and including its newline
    /// (or up to the end of input). Reported once per over-long line.
    TooLong,
}

/// Splits a byte stream into [`Frame`]s.
#[derive(Debug)]
pub struct LineDecoder {
    buf: Vec<u8>,
    max_bytes: usize,
    /// Inside an over-long line: drop bytes until the next newline.
    discarding: bool,
}

impl LineDecoder {
    /// A decoder accepting lines of at most `max_bytes` bytes (newline excluded).
    pub fn new(max_bytes: usize) -> Self {
        Self { buf: Vec::new(), max_bytes, discarding: false }
    }

    /// Feed bytes; complete frames go to `out` in order.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut impl FnMut(Frame)) {
        while !chunk.is_empty() {
            let nl = chunk.iter().position(|&b| b == b'\n');
            let (part, rest, complete) = match nl {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &[][..], false),
            };
            chunk = rest;
            if self.discarding {
                if complete {
                    self.discarding = false;
                }
                continue;
            }
            // A trailing `\r` may be half of a `\r\n` whose `\n` is in the next chunk: it is allowed
            // on top of the limit whether or not the newline came with it, so where the stream was
            // cut cannot change the frames.
            let ends_with_cr = part.last().or_else(|| self.buf.last()) == Some(&b'\r');
            if self.buf.len() + part.len() > self.max_bytes + usize::from(ends_with_cr) {
                // Over the limit: report now (not at the newline, which may never come) and
                // skip the rest of the line.
                self.buf = Vec::new();
                self.discarding = !complete;
                out(Frame::TooLong);
                continue;
            }
            self.buf.extend_from_slice(part);
            if complete {
                let mut line = std::mem::take(&mut self.buf);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                out(Frame::Line(line));
            }
        }
    }

    /// End of input: an unterminated last line is delivered as a line (`printf '{…}' | nc`).
    pub fn finish(&mut self, out: &mut impl FnMut(Frame)) {
        self.discarding = false;
        if !self.buf.is_empty() {
            let mut line = std::mem::take(&mut self.buf);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            out(Frame::Line(line));
        }
    }

    /// Bytes held for an incomplete line.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut d = LineDecoder::new(max);
        let mut v = Vec::new();
        for c in chunks {
            d.push(c, &mut |f| v.push(f));
        }
        d.finish(&mut |f| v.push(f));
        v
    }

    #[test]
    fn lines_split_across_chunks_and_crlf() {
        let f = frames(100, &[b"ab", b"c\r\nde", b"f\n", b"tail"]);
        assert_eq!(f, vec![Frame::Line(b"abc".to_vec()), Frame::Line(b"def".to_vec()), Frame::Line(b"tail".to_vec())]);
    }

    #[test]
    fn an_over_long_line_is_reported_once_and_skipped() {
        let f = frames(4, &[b"12345", b"6789", b"\nok\n"]);
        assert_eq!(f, vec![Frame::TooLong, Frame::Line(b"ok".to_vec())]);
        // Exactly at the limit is fine.
        assert_eq!(frames(4, &[b"1234\n"]), vec![Frame::Line(b"1234".to_vec())]);
        assert_eq!(frames(4, &[b"1234\r\n"]), vec![Frame::Line(b"1234".to_vec())]);
        // The same with the stream cut between `\r` and `\n` (found by the chunking proptest).
        assert_eq!(frames(4, &[b"1234\r", b"\n"]), vec![Frame::Line(b"1234".to_vec())]);
        assert_eq!(frames(4, &[b"1234\r", b"\r\n"]), vec![Frame::TooLong]);
        assert_eq!(frames(4, &[b"1234\r", b"5\n"]), vec![Frame::TooLong]);
    }
}
