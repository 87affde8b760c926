//! Incremental Server-Sent Events parser (the WHATWG `text/event-stream` format), byte-exact
//! across reads: events and lines may be split anywhere, even inside a UTF-8 character or a
//! `\r\n` pair.
//!
//! Lines end with `\n`, `\r\n` or `\r`; `:` starts a comment; `data:` takes an optional single
//! space; several `data:` lines of one event are joined with `\n`; `event`, `id` and `retry`
//! fields are accepted (the event name is kept); a blank line dispatches the event. A line
//! whose field name is none of these is reported as [`SseItem::Invalid`] (the SSE standard
//! would ignore it, but an OpenAI-compatible server never sends one, so it means the body is
//! not an event stream: a JSON body or an HTML error page).

/// What the parser found.
#[derive(Debug, PartialEq, Eq)]
pub enum SseItem<'a> {
    /// A dispatched event: its data (lines joined with `\n`) and its `event:` name, if any.
    Event { data: &'a [u8], name: &'a [u8] },
    /// A line that is not SSE (the whole line, without its terminator).
    Invalid(&'a [u8]),
}

/// Streaming SSE parser; feed it bytes as they arrive.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of an unterminated line carried over to the next read.
    partial: Vec<u8>,
    /// Data of the event being assembled.
    data: Vec<u8>,
    data_lines: u32,
    name: Vec<u8>,
    /// The previous read ended with `\r`: a `\n` starting the next read belongs to it.
    skip_lf: bool,
    started: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse `input`, calling `f` for every dispatched event or invalid line. Returns `false`
    /// as soon as `f` does (the rest of the input is then not parsed).
    pub fn feed(&mut self, mut input: &[u8], f: &mut dyn FnMut(SseItem<'_>) -> bool) -> bool {
        if !self.started && !input.is_empty() {
            // A UTF-8 byte order mark may open the stream.
            if input.starts_with(b"\xEF\xBB\xBF") {
                input = &input[3..];
            }
            self.started = true;
        }
        if self.skip_lf
            && let Some((&first, rest)) = input.split_first()
        {
            self.skip_lf = false;
            if first == b'\n' {
                input = rest;
            }
        }
        while !input.is_empty() {
            let Some(i) = memchr::memchr2(b'\n', b'\r', input) else {
                self.partial.extend_from_slice(input);
                return true;
            };
            let line_end = i;
            let mut next = i + 1;
            if input[i] == b'\r' {
                if next < input.len() {
                    if input[next] == b'\n' {
                        next += 1;
                    }
                } else {
                    self.skip_lf = true;
                }
            }
            let keep_going = if self.partial.is_empty() {
                let line = &input[..line_end];
                // Fast path: a one-line `data:` event followed at once by its blank line is
                // dispatched straight from the input, without copying.
                if self.data_lines == 0
                    && line.starts_with(b"data:")
                    && next < input.len()
                    && (input[next] == b'\n' || input[next] == b'\r')
                {
                    let v = &line[5..];
                    let value = v.strip_prefix(b" ").unwrap_or(v);
                    let mut after = next + 1;
                    if input[next] == b'\r' {
                        if after < input.len() {
                            if input[after] == b'\n' {
                                after += 1;
                            }
                        } else {
                            self.skip_lf = true;
                        }
                    }
                    let r = f(SseItem::Event {
                        data: value,
                        name: &self.name,
                    });
                    self.name.clear();
                    if !r {
                        return false;
                    }
                    input = &input[after..];
                    continue;
                }
                self.line(line, f)
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&input[..line_end]);
                let r = self.line(&line, f);
                line.clear();
                self.partial = line;
                r
            };
            if !keep_going {
                return false;
            }
            input = &input[next..];
        }
        true
    }

    /// The stream ended. An event whose data lines were complete but that never got its blank
    /// line is dispatched (servers that close right after the last `data:` line are common);
    /// an unterminated last line is returned as the trailing garbage it is.
    pub fn finish(&mut self, f: &mut dyn FnMut(SseItem<'_>) -> bool) -> Option<Vec<u8>> {
        let trailing = if self.partial.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.partial))
        };
        if self.data_lines > 0 {
            self.dispatch(f);
        }
        trailing
    }

    /// Bytes of an unterminated line held for the next read.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    fn dispatch(&mut self, f: &mut dyn FnMut(SseItem<'_>) -> bool) -> bool {
        let r = f(SseItem::Event {
            data: &self.data,
            name: &self.name,
        });
        self.data.clear();
        self.name.clear();
        self.data_lines = 0;
        r
    }

    fn line(&mut self, line: &[u8], f: &mut dyn FnMut(SseItem<'_>) -> bool) -> bool {
        if line.is_empty() {
            if self.data_lines > 0 {
                return self.dispatch(f);
            }
            self.name.clear();
            return true;
        }
        if line[0] == b':' {
            return true; // comment, e.g. `: ping`
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data_lines > 0 {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.data_lines += 1;
                true
            }
            b"event" => {
                self.name.clear();
                self.name.extend_from_slice(value);
                true
            }
            b"id" | b"retry" => true,
            _ => f(SseItem::Invalid(line)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Got {
        Ev(String, String),
        Bad(String),
    }

    fn run(chunks: &[&[u8]]) -> (Vec<Got>, Option<Vec<u8>>) {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut f = |it: SseItem<'_>| {
            out.push(match it {
                SseItem::Event { data, name } => Got::Ev(
                    String::from_utf8(data.to_vec()).unwrap(),
                    String::from_utf8(name.to_vec()).unwrap(),
                ),
                SseItem::Invalid(l) => Got::Bad(String::from_utf8_lossy(l).into_owned()),
            });
            true
        };
        for c in chunks {
            p.feed(c, &mut f);
        }
        let t = p.finish(&mut f);
        (out, t)
    }

    fn ev(d: &str) -> Got {
        Got::Ev(d.into(), String::new())
    }

    #[test]
    fn several_events_in_one_read() {
        let (o, t) = run(&[b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n"]);
        assert_eq!(o, vec![ev("{\"a\":1}"), ev("{\"b\":2}"), ev("[DONE]")]);
        assert!(t.is_none());
    }

    #[test]
    fn crlf_cr_and_no_space() {
        let (o, _) = run(&[b"data:x\r\n\r\ndata: y\r\rdata:  z\n\n"]);
        assert_eq!(o, vec![ev("x"), ev("y"), ev(" z")]);
    }

    #[test]
    fn split_crlf_between_reads_is_one_terminator() {
        // "\r" ends read 1, "\n" starts read 2: one line end, not a blank line.
        let (o, _) = run(&[b"data: a\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(o, vec![ev("a\nb")]);
    }

    #[test]
    fn fast_path_edges() {
        // Blank line `\r` ends the read; its `\n` opens the next one.
        let (o, _) = run(&[b"data: a\r\n\r", b"\ndata: b\n\n"]);
        assert_eq!(o, vec![ev("a"), ev("b")]);
        // An event name before a one-line event is kept, then cleared.
        let (o, _) = run(&[b"event: error\ndata: x\n\ndata: y\n\n"]);
        assert_eq!(o, vec![Got::Ev("x".into(), "error".into()), ev("y")]);
        // `data:` then a second data line is not the fast path.
        let (o, _) = run(&[b"data: a\ndata: b\n\n"]);
        assert_eq!(o, vec![ev("a\nb")]);
    }

    #[test]
    fn comments_multiline_and_event_names() {
        let (o, _) = run(&[b": ping\n\nevent: error\ndata: l1\ndata: l2\nid: 7\n\n"]);
        assert_eq!(o, vec![Got::Ev("l1\nl2".into(), "error".into())]);
    }

    #[test]
    fn split_inside_utf8_and_field_name() {
        let s = "data: {\"t\":\"h\u{e9}llo \u{1F600}\"}\n\n".as_bytes();
        for cut in 1..s.len() {
            let (o, _) = run(&[&s[..cut], &s[cut..]]);
            assert_eq!(o, vec![ev("{\"t\":\"h\u{e9}llo \u{1F600}\"}")], "cut {cut}");
        }
    }

    #[test]
    fn close_without_blank_line_dispatches_complete_data() {
        let (o, t) = run(&[b"data: a\n\ndata: b\n"]);
        assert_eq!(o, vec![ev("a"), ev("b")]);
        assert!(t.is_none());
        let (o, t) = run(&[b"data: a\n\ndata: {\"trunc"]);
        assert_eq!(o, vec![ev("a")]);
        assert_eq!(t.unwrap(), b"data: {\"trunc");
    }

    #[test]
    fn non_sse_is_reported() {
        let (o, _) = run(&[b"{\"id\":\"x\",\"choices\":[]}\n"]);
        assert_eq!(o, vec![Got::Bad("{\"id\":\"x\",\"choices\":[]}".into())]);
        let (o, _) = run(&[b"<html>\n"]);
        assert_eq!(o, vec![Got::Bad("<html>".into())]);
    }

    #[test]
    fn bom_and_blank_lines() {
        let (o, _) = run(&[b"\xEF\xBB\xBF\n\ndata: a\n\n\n\n"]);
        assert_eq!(o, vec![ev("a")]);
    }

    #[test]
    fn stop_early() {
        let mut p = SseParser::new();
        let mut n = 0;
        let r = p.feed(b"data: a\n\ndata: b\n\n", &mut |_| {
            n += 1;
            false
        });
        assert!(!r);
        assert_eq!(n, 1);
    }
}
