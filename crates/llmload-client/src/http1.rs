//! The HTTP/1.1 client codec. It runs inside the task that sends the request: no connection
//! task, no channel between them. A [`Conn`] is a socket plus one reusable read buffer; the
//! request task writes the whole request (head and body, one vectored write), parses the
//! response head (`httparse`) and decodes the body itself (`Content-Length`, chunked with
//! extensions and trailers, or delimited by the close of the connection).
//!
//! Stamps: [`Conn::write_request`] returns the instant taken just before the write call that put
//! the request's first bytes on the socket; every byte slice the body decoder hands out carries
//! the instant the read that delivered it returned.
//!
//! Requests are never pipelined: a connection carries its next request only after its previous
//! response was read to the end (the caller owns the connection for the whole exchange).

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Read buffer held by every connection (SSE events are small; 10,000 streams stay cheap).
pub(crate) const READ_BUF: usize = 4096;
/// Least free room a read is given (smaller leftovers are moved to the front first).
const MIN_ROOM: usize = 1024;
/// Largest response head accepted (status line and headers, including skipped 1xx heads).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one response head.
const MAX_HEADERS: usize = 96;
/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Most bytes of trailer fields after the last chunk.
const MAX_TRAILERS: usize = 64 * 1024;
/// A buffer grown beyond this (a large body) is given back before the connection is pooled.
const KEEP_BUF: usize = 64 * 1024;

/// Why reading a response failed.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// The socket failed.
    Io(io::Error),
    /// The server closed the connection before the response was complete; `what` says where.
    Closed { what: &'static str },
    /// The bytes are not a valid HTTP/1.1 response (the message says what was wrong).
    Malformed(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Io(e) => write!(f, "reading from the connection failed: {e}"),
            HttpError::Closed { what } => {
                write!(f, "the server closed the connection {what}")
            }
            HttpError::Malformed(m) => f.write_str(m),
        }
    }
}

/// A failed request write: when the first bytes went out (if any) and how many did.
#[derive(Debug)]
pub(crate) struct WriteError {
    pub first_write: Option<Instant>,
    pub written: u64,
    pub error: io::Error,
}

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Read until the server closes the connection.
    Close,
}

/// What the codec needs from a response head.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub status: u16,
    pub framing: Framing,
    /// The connection may carry another request once this response was read to its end.
    pub keep_alive: bool,
    /// `Content-Type` starts with `application/json`.
    pub json: bool,
    /// `Location`, kept for redirects only.
    pub location: Option<String>,
}

/// One HTTP/1.1 connection: the socket and its read buffer (`buf[pos..]` is not consumed yet).
pub(crate) struct Conn<S = TcpStream> {
    io: S,
    buf: Vec<u8>,
    pos: usize,
    /// Response bytes read during the current exchange.
    pub read_bytes: u64,
    /// When the latest read returned.
    last_read: Instant,
    /// The server closed its side.
    eof: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(crate) fn new(io: S) -> Self {
        Self {
            io,
            buf: Vec::with_capacity(READ_BUF),
            pos: 0,
            read_bytes: 0,
            last_read: Instant::now(),
            eof: false,
        }
    }

    /// Unconsumed bytes in the buffer.
    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Consume `n` buffered bytes; they arrived with the latest read.
    fn take(&mut self, n: usize) -> (&[u8], Instant) {
        let s = self.pos;
        self.pos += n;
        (&self.buf[s..s + n], self.last_read)
    }

    /// Make room for at least `min_room` more bytes after the unconsumed ones: drop consumed
    /// bytes, move the unconsumed ones to the front, grow only when that is not enough.
    fn make_room(&mut self, min_room: usize) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() >= min_room {
            return;
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos.., 0);
            self.buf.truncate(self.buf.len() - self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < min_room {
            self.buf.reserve_exact(min_room.max(READ_BUF));
        }
    }

    /// One read into the spare room (after making room for at least `min_room` bytes); returns
    /// the number of bytes read (0 = the server closed). Stamps the read's return.
    async fn fill(&mut self, min_room: usize) -> Result<usize, HttpError> {
        if self.eof {
            return Ok(0);
        }
        self.make_room(min_room);
        let io = &mut self.io;
        let buf = &mut self.buf;
        let n = poll_fn(|cx| {
            let spare = buf.spare_capacity_mut();
            let mut rb = ReadBuf::uninit(spare);
            match Pin::new(&mut *io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    // SAFETY: `poll_read` initialized the first `n` spare bytes.
                    unsafe { buf.set_len(buf.len() + n) };
                    Poll::Ready(Ok(n))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        // The stamp of the read, or of the moment its failure was seen.
        self.last_read = Instant::now();
        let n = n.map_err(HttpError::Io)?;
        self.read_bytes += n as u64;
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    /// When the latest read returned (or failed); the start of the exchange before any read.
    pub(crate) fn last_read(&self) -> Instant {
        self.last_read
    }

    /// Start of an exchange, at `now`.
    pub(crate) fn begin(&mut self, now: Instant) {
        self.read_bytes = 0;
        self.last_read = now;
    }

    /// Write all of `parts` (one vectored write when the socket takes it all). Returns the
    /// instant just before the write call that carried the first bytes.
    pub(crate) async fn write_request(
        &mut self,
        parts: &mut [IoSlice<'_>],
    ) -> Result<Instant, WriteError> {
        let mut first: Option<Instant> = None;
        let mut written = 0u64;
        let mut bufs = parts;
        // Skip empty leading parts.
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            let io = &mut self.io;
            let b: &[IoSlice<'_>] = bufs;
            let res = poll_fn(|cx| {
                let t = Instant::now();
                match Pin::new(&mut *io).poll_write_vectored(cx, b) {
                    Poll::Ready(r) => Poll::Ready(r.map(|n| (n, t))),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match res {
                Ok((0, _)) => {
                    return Err(WriteError {
                        first_write: first,
                        written,
                        error: io::ErrorKind::WriteZero.into(),
                    });
                }
                Ok((n, t)) => {
                    first.get_or_insert(t);
                    written += n as u64;
                    IoSlice::advance_slices(&mut bufs, n);
                }
                Err(error) => {
                    return Err(WriteError {
                        first_write: first,
                        written,
                        error,
                    });
                }
            }
        }
        match first {
            Some(t) => Ok(t),
            // Nothing to write: a request always has a head, so this is a caller bug; report
            // it as a write error rather than panicking.
            None => Err(WriteError {
                first_write: None,
                written: 0,
                error: io::Error::new(io::ErrorKind::InvalidInput, "empty request"),
            }),
        }
    }

    /// Read the response head (skipping interim 1xx responses).
    pub(crate) async fn read_head(&mut self) -> Result<Head, HttpError> {
        loop {
            match parse_head(&self.buf[self.pos..])? {
                Some((len, head)) => {
                    self.pos += len;
                    match head {
                        Parsed::Interim => continue,
                        Parsed::Final(h) => return Ok(h),
                    }
                }
                None => {
                    if self.available() >= MAX_HEAD {
                        return Err(HttpError::Malformed(format!(
                            "the response head is larger than {} KiB (status line and headers \
                             without their end); the server does not speak HTTP/1.1 as expected",
                            MAX_HEAD / 1024
                        )));
                    }
                    let before = self.read_bytes;
                    if self.fill(MIN_ROOM).await? == 0 {
                        return Err(HttpError::Closed {
                            what: if before == 0 {
                                "before any response byte"
                            } else {
                                "in the middle of the response head"
                            },
                        });
                    }
                }
            }
        }
    }

    /// The connection may carry another request: the response was read to its end, the server
    /// did not ask to close, and nothing else arrived.
    pub(crate) fn reusable(&self, head: &Head, body: &Body) -> bool {
        head.keep_alive && body.is_done() && self.available() == 0 && !self.eof
    }

    /// Before the connection goes back to the pool: give back a buffer a large body grew.
    pub(crate) fn park(&mut self) {
        if self.buf.capacity() > KEEP_BUF {
            self.buf = Vec::with_capacity(READ_BUF);
        }
        self.buf.clear();
        self.pos = 0;
    }
}

impl Conn<TcpStream> {
    /// Whether an idle pooled connection still looks usable: the server has not closed it
    /// (nor sent anything unasked). Does not block; costs at most one `recv` call.
    pub(crate) fn looks_alive(&mut self) -> bool {
        if self.eof || self.available() != 0 {
            return false;
        }
        let mut probe = [0u8; 1];
        match self.io.try_read(&mut probe) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            // 0: closed by the server; n: bytes nobody asked for.
            Ok(_) => false,
        }
    }
}

enum Parsed {
    Interim,
    Final(Head),
}

/// Parse one response head at the start of `buf`: `None` if incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Parsed)>, HttpError> {
    // Header slots left uninitialized: httparse fills what it uses (zeroing 96 slots, 3 KB,
    // was a tenth of the head's parse).
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    // Lenient where old servers are sloppy and nothing is ambiguous: `Name : value` and
    // folded (multi-line) header values.
    let mut cfg = httparse::ParserConfig::default();
    cfg.allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true);
    let len = match cfg.parse_response_with_uninit_headers(&mut resp, buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::Malformed(format!(
                "the response head has more than {MAX_HEADERS} header fields"
            )));
        }
        Err(e) => {
            return Err(HttpError::Malformed(format!(
                "the server's answer is not valid HTTP/1.1 ({e}): {}",
                crate::error::snippet(buf, 120)
            )));
        }
    };
    let status = resp.code.unwrap_or(0);
    let minor = resp.version.unwrap_or(1);
    if status == 101 {
        return Err(HttpError::Malformed(
            "the server switched protocols (HTTP 101), which no request of ours asks for".into(),
        ));
    }
    if (100..200).contains(&status) {
        // 100 Continue, 102, 103 Early Hints: interim, the real answer follows.
        return Ok(Some((len, Parsed::Interim)));
    }
    let mut content_length: Option<u64> = None;
    let mut te_present = false;
    let mut te_chunked_last = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut json = false;
    let mut location = None;
    for h in resp.headers.iter() {
        let name = h.name;
        let value = h.value;
        if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(|&b| b == b',') {
                let v = part.trim_ascii();
                let n = parse_decimal(v).ok_or_else(|| {
                    HttpError::Malformed(format!(
                        "invalid Content-Length `{}` in the response head",
                        String::from_utf8_lossy(value)
                    ))
                })?;
                match content_length {
                    Some(prev) if prev != n => {
                        return Err(HttpError::Malformed(format!(
                            "conflicting Content-Length values {prev} and {n} in the response head"
                        )));
                    }
                    _ => content_length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for tok in value.split(|&b| b == b',') {
                let t = tok.trim_ascii();
                if t.is_empty() {
                    continue;
                }
                te_present = true;
                te_chunked_last = t.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for tok in value.split(|&b| b == b',') {
                let t = tok.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            json = value.len() >= 16 && value[..16].eq_ignore_ascii_case(b"application/json");
        } else if name.eq_ignore_ascii_case("location") && (300..400).contains(&status) {
            location = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    let mut keep_alive = if minor == 0 {
        conn_keep_alive && !conn_close
    } else {
        !conn_close
    };
    let framing = if status == 204 || status == 304 {
        Framing::Empty
    } else if te_present {
        // Transfer-Encoding wins over Content-Length; a message with both is suspect, so the
        // connection is not reused after it.
        if content_length.is_some() || minor == 0 {
            keep_alive = false;
        }
        if te_chunked_last {
            Framing::Chunked
        } else {
            keep_alive = false;
            Framing::Close
        }
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        keep_alive = false;
        Framing::Close
    };
    Ok(Some((
        len,
        Parsed::Final(Head {
            status,
            framing,
            keep_alive,
            json,
            location,
        }),
    )))
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Close,
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers(usize),
    Done,
}

/// The body decoder of one response.
#[derive(Debug)]
pub(crate) struct Body {
    state: State,
    /// Body bytes handed out so far.
    pub received: u64,
}

impl Body {
    pub(crate) fn new(head: &Head) -> Self {
        let state = match head.framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        Self { state, received: 0 }
    }

    /// The body was read to its end.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next decoded body bytes and the arrival of the read that carried them; `None` at
    /// the end of the body.
    pub(crate) async fn next<'c, S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &'c mut Conn<S>,
    ) -> Result<Option<(&'c [u8], Instant)>, HttpError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Length(rem) | State::ChunkData(rem) => {
                    if conn.available() == 0 && conn.fill(MIN_ROOM).await? == 0 {
                        return Err(HttpError::Closed {
                            what: if matches!(self.state, State::Length(_)) {
                                "before the end of the body (Content-Length)"
                            } else {
                                "in the middle of a chunk"
                            },
                        });
                    }
                    let n = (conn.available() as u64).min(rem);
                    let left = rem - n;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    self.received += n;
                    return Ok(Some(conn.take(n as usize)));
                }
                State::Close => {
                    if conn.available() == 0 && conn.fill(MIN_ROOM).await? == 0 {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    let n = conn.available();
                    self.received += n as u64;
                    return Ok(Some(conn.take(n)));
                }
                State::ChunkSize => {
                    let avail = &conn.buf[conn.pos..];
                    match memchr::memchr(b'\n', avail) {
                        Some(i) => {
                            let size = parse_chunk_size(&avail[..i])?;
                            conn.pos += i + 1;
                            self.state = if size == 0 {
                                State::Trailers(0)
                            } else {
                                State::ChunkData(size)
                            };
                        }
                        None => {
                            if avail.len() > MAX_CHUNK_LINE {
                                return Err(HttpError::Malformed(format!(
                                    "chunk-size line longer than {MAX_CHUNK_LINE} bytes in the \
                                     chunked response body"
                                )));
                            }
                            if conn.fill(MIN_ROOM).await? == 0 {
                                return Err(HttpError::Closed {
                                    what: "in the middle of a chunked body (before a chunk size)",
                                });
                            }
                        }
                    }
                }
                State::ChunkEnd => {
                    let avail = &conn.buf[conn.pos..];
                    match avail {
                        [b'\n', ..] => {
                            conn.pos += 1;
                            self.state = State::ChunkSize;
                        }
                        [b'\r', b'\n', ..] => {
                            conn.pos += 2;
                            self.state = State::ChunkSize;
                        }
                        [] | [b'\r'] => {
                            if conn.fill(MIN_ROOM).await? == 0 {
                                return Err(HttpError::Closed {
                                    what: "in the middle of a chunked body (after chunk data)",
                                });
                            }
                        }
                        other => {
                            return Err(HttpError::Malformed(format!(
                                "chunk data is not followed by CRLF in the chunked response \
                                 body (found `{}`): the chunk size does not match its data",
                                crate::error::snippet(other, 40)
                            )));
                        }
                    }
                }
                State::Trailers(seen) => {
                    let avail = &conn.buf[conn.pos..];
                    match memchr::memchr(b'\n', avail) {
                        Some(i) => {
                            let line = avail[..i].strip_suffix(b"\r").unwrap_or(&avail[..i]);
                            let empty = line.is_empty();
                            conn.pos += i + 1;
                            if empty {
                                self.state = State::Done;
                                return Ok(None);
                            }
                            if seen + i + 1 > MAX_TRAILERS {
                                return Err(trailers_too_large());
                            }
                            self.state = State::Trailers(seen + i + 1);
                        }
                        None => {
                            if seen + avail.len() > MAX_TRAILERS {
                                return Err(trailers_too_large());
                            }
                            if conn.fill(MIN_ROOM).await? == 0 {
                                return Err(HttpError::Closed {
                                    what: "in the trailer section of a chunked body",
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    /// The whole body as one slice (at most `limit` bytes, else an error): a `Content-Length`
    /// body is read into the connection's own buffer and handed out in place; other bodies are
    /// gathered into `scratch`. The instant is the arrival of the last read.
    pub(crate) async fn read_all<'c, S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &'c mut Conn<S>,
        scratch: &'c mut Vec<u8>,
        limit: usize,
    ) -> Result<(&'c [u8], Instant), HttpError> {
        if let State::Length(n) = self.state {
            if n > limit as u64 {
                return Err(too_large(limit));
            }
            let n = n as usize;
            if conn.available() < n {
                conn.make_room(n - conn.available());
            }
            while conn.available() < n {
                if conn.fill(n - conn.available()).await? == 0 {
                    return Err(HttpError::Closed {
                        what: "before the end of the body (Content-Length)",
                    });
                }
            }
            self.state = State::Done;
            self.received += n as u64;
            return Ok(conn.take(n));
        }
        scratch.clear();
        let mut last = conn.last_read;
        loop {
            match self.next(conn).await? {
                Some((d, t)) => {
                    if scratch.len() + d.len() > limit {
                        return Err(too_large(limit));
                    }
                    scratch.extend_from_slice(d);
                    last = t;
                }
                None => return Ok((scratch.as_slice(), last)),
            }
        }
    }
}

fn too_large(limit: usize) -> HttpError {
    HttpError::Malformed(format!(
        "the response body is larger than {} MiB",
        limit / (1024 * 1024)
    ))
}

fn trailers_too_large() -> HttpError {
    HttpError::Malformed(format!(
        "the trailer section of the chunked response body is larger than {} KiB",
        MAX_TRAILERS / 1024
    ))
}

/// `1*HEXDIG [BWS] [; extensions]` (the line without its `\n`; a final `\r` is allowed).
fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let bad = || {
        HttpError::Malformed(format!(
            "invalid chunk size `{}` in the chunked response body",
            crate::error::snippet(line, 60)
        ))
    };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(bad());
    }
    if digits > 16 {
        return Err(HttpError::Malformed(format!(
            "chunk size `{}` in the chunked response body does not fit 64 bits",
            crate::error::snippet(&line[..digits], 60)
        )));
    }
    let mut n: u64 = 0;
    for &b in &line[..digits] {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        n = (n << 4) | u64::from(d);
    }
    let rest = line[digits..].trim_ascii_start();
    if rest.is_empty() || rest[0] == b';' {
        Ok(n)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::task::Context;

    /// A transport that delivers scripted reads, one chunk per read call, then EOF.
    struct Scripted {
        reads: VecDeque<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Scripted {
        fn new(reads: Vec<Vec<u8>>) -> Self {
            Self {
                reads: reads.into(),
                written: Vec::new(),
            }
        }
    }

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut c) = self.reads.pop_front() {
                let n = c.len().min(buf.remaining());
                buf.put_slice(&c[..n]);
                if n < c.len() {
                    self.reads.push_front(c.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Scripted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            // Accept at most 7 bytes per call, to exercise partial vectored writes.
            let n = buf.len().min(7);
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Read one whole response from `reads`: head, body (both via `next` and `read_all`), and
    /// whether the connection could be reused.
    fn read_one(reads: Vec<Vec<u8>>) -> Result<(Head, Vec<u8>, bool), HttpError> {
        block(async {
            let mut c = Conn::new(Scripted::new(reads.clone()));
            let head = c.read_head().await?;
            let mut body = Body::new(&head);
            let mut out = Vec::new();
            while let Some((d, _)) = body.next(&mut c).await? {
                out.extend_from_slice(d);
            }
            let reuse = c.reusable(&head, &body);
            // The same through read_all.
            let mut c2 = Conn::new(Scripted::new(reads));
            let head2 = c2.read_head().await?;
            let mut body2 = Body::new(&head2);
            let mut scratch = Vec::new();
            let (all, _) = body2.read_all(&mut c2, &mut scratch, 1 << 20).await?;
            assert_eq!(all, &out[..]);
            assert_eq!(c2.reusable(&head2, &body2), reuse);
            Ok((head, out, reuse))
        })
    }

    const CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n\
        9;ext=1\r\ndata: a\n\n\r\n\
        0A \ndata: bc\n\n\r\n\
        0\r\nX-Trailer: t\r\n\r\n";
    const LENGTH: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\ncontent-type: application/json\r\n\r\n{\"a\":\"xyz\"}\n";

    #[test]
    fn every_split_of_a_chunked_response() {
        let want = b"data: a\n\ndata: bc\n\n".to_vec();
        let (h, b, reuse) = read_one(vec![CHUNKED.to_vec()]).unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(b, want);
        assert!(reuse);
        for i in 1..CHUNKED.len() {
            let (_, b, reuse) =
                read_one(vec![CHUNKED[..i].to_vec(), CHUNKED[i..].to_vec()]).unwrap();
            assert_eq!(b, want, "split at {i}");
            assert!(reuse, "split at {i}");
        }
        // One byte per read.
        let (_, b, _) = read_one(CHUNKED.iter().map(|&b| vec![b]).collect()).unwrap();
        assert_eq!(b, want);
    }

    #[test]
    fn every_split_of_a_content_length_response() {
        for i in 1..LENGTH.len() {
            for j in i + 1..LENGTH.len() {
                let (h, b, reuse) = read_one(vec![
                    LENGTH[..i].to_vec(),
                    LENGTH[i..j].to_vec(),
                    LENGTH[j..].to_vec(),
                ])
                .unwrap();
                assert_eq!(h.framing, Framing::Length(12));
                assert!(h.json);
                assert_eq!(b, b"{\"a\":\"xyz\"}\n", "split at {i}, {j}");
                assert!(reuse);
            }
        }
    }

    #[test]
    fn stamps_are_the_reads_that_carried_the_bytes() {
        block(async {
            let split = CHUNKED.len() - 25;
            let mut c = Conn::new(Scripted::new(vec![
                CHUNKED[..split].to_vec(),
                CHUNKED[split..].to_vec(),
            ]));
            let head = c.read_head().await.unwrap();
            let t1 = c.last_read;
            let mut body = Body::new(&head);
            let (d, t) = body.next(&mut c).await.unwrap().unwrap();
            assert_eq!((d, t), (&b"data: a\n\n"[..], t1));
            // The second event is cut by the read boundary: its first part carries the first
            // read's stamp, its rest the second read's.
            let (_, t) = body.next(&mut c).await.unwrap().unwrap();
            assert_eq!(t, t1);
            let (_, t2) = body.next(&mut c).await.unwrap().unwrap();
            assert!(t2 > t1);
            assert_eq!(c.last_read, t2);
        });
    }

    #[test]
    fn interim_responses_are_skipped() {
        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for i in 1..r.len() {
            let (h, b, _) = read_one(vec![r[..i].to_vec(), r[i..].to_vec()]).unwrap();
            assert_eq!(h.status, 200);
            assert_eq!(b, b"ok");
        }
        let e = read_one(vec![b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec()]).unwrap_err();
        assert!(e.to_string().contains("101"), "{e}");
    }

    #[test]
    fn close_delimited_and_http10() {
        let r = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end";
        let (h, b, reuse) = read_one(vec![r[..30].to_vec(), r[30..].to_vec()]).unwrap();
        assert_eq!(h.framing, Framing::Close);
        assert_eq!(b, b"until the end");
        assert!(!reuse);
        // HTTP/1.0 with a length: reused only with Connection: keep-alive.
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx";
        assert!(!read_one(vec![r.to_vec()]).unwrap().2);
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\nx";
        assert!(read_one(vec![r.to_vec()]).unwrap().2);
        // Connection: close on 1.1.
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx";
        assert!(!read_one(vec![r.to_vec()]).unwrap().2);
        // 204 has no body even without a length.
        let r = b"HTTP/1.1 204 No Content\r\n\r\n";
        let (h, b, reuse) = read_one(vec![r.to_vec()]).unwrap();
        assert_eq!((h.framing, b.len(), reuse), (Framing::Empty, 0, true));
        // Transfer-Encoding and Content-Length: chunked wins, not reused.
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n";
        let (h, b, reuse) = read_one(vec![r.to_vec()]).unwrap();
        assert_eq!(
            (h.framing, &b[..], reuse),
            (Framing::Chunked, &b"x"[..], false)
        );
    }

    #[test]
    fn sloppy_but_unambiguous_heads_are_accepted() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\nX-Folded: a\r\n b\r\n\r\nok";
        let (h, b, reuse) = read_one(vec![r.to_vec()]).unwrap();
        assert_eq!(
            (h.framing, &b[..], reuse),
            (Framing::Length(2), &b"ok"[..], true)
        );
    }

    #[test]
    fn leftover_bytes_prevent_reuse() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n";
        assert!(!read_one(vec![r.to_vec()]).unwrap().2);
    }

    fn err_of(r: &[u8]) -> String {
        match read_one(vec![r.to_vec()]) {
            Err(e) => e.to_string(),
            Ok((h, b, _)) => panic!("accepted: {h:?} {:?}", String::from_utf8_lossy(&b)),
        }
    }

    #[test]
    fn malformed_heads_and_chunks_are_named() {
        assert!(err_of(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").contains("not valid HTTP/1.1"));
        assert!(err_of(b"HTTP/1.1 abc OK\r\n\r\n").contains("not valid HTTP/1.1"));
        assert!(
            err_of(b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n")
                .contains("invalid Content-Length `12x`")
        );
        assert!(
            err_of(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy")
                .contains("conflicting Content-Length")
        );
        let chunked = |body: &str| {
            let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            r.extend_from_slice(body.as_bytes());
            err_of(&r)
        };
        assert!(chunked("zz\r\nab\r\n0\r\n\r\n").contains("invalid chunk size `zz`"));
        assert!(chunked("5 x\r\nabcde\r\n0\r\n\r\n").contains("invalid chunk size `5 x`"));
        assert!(chunked("11111111111111111\r\n").contains("does not fit 64 bits"));
        assert!(chunked("2\r\nabc\r\n0\r\n\r\n").contains("not followed by CRLF"));
        assert!(chunked(&"f".repeat(5000)).contains("chunk-size line longer"));
        assert!(chunked("2\r\nab\r\n0\r\n").contains("trailer section"));
        assert!(chunked("2\r\na").contains("in the middle of a chunk"));
        assert!(
            err_of(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .contains("before the end of the body")
        );
        assert!(err_of(b"").contains("before any response byte"));
        assert!(err_of(b"HTTP/1.1 200 OK\r\nContent-").contains("middle of the response head"));
    }

    #[test]
    fn oversized_heads_are_refused_with_bounded_memory() {
        block(async {
            // An endless header: rejected once 64 KiB are buffered.
            let mut reads = vec![b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec()];
            reads.extend(std::iter::repeat_n(vec![b'a'; 8192], 100));
            let mut c = Conn::new(Scripted::new(reads));
            let e = c.read_head().await.unwrap_err();
            assert!(e.to_string().contains("larger than 64 KiB"), "{e}");
            assert!(
                c.buf.capacity() <= MAX_HEAD + 2 * READ_BUF,
                "{}",
                c.buf.capacity()
            );
            // Too many header fields.
            let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..200 {
                r.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
            }
            r.extend_from_slice(b"\r\n");
            let mut c = Conn::new(Scripted::new(vec![r]));
            let e = c.read_head().await.unwrap_err();
            assert!(e.to_string().contains("more than 96 header fields"), "{e}");
            // An endless trailer section.
            let mut reads =
                vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec()];
            reads.extend(std::iter::repeat_n(
                b"X-T: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".to_vec(),
                3000,
            ));
            let mut c = Conn::new(Scripted::new(reads));
            let head = c.read_head().await.unwrap();
            let mut body = Body::new(&head);
            let e = body.next(&mut c).await.unwrap_err();
            assert!(e.to_string().contains("trailer section"), "{e}");
            assert!(c.buf.capacity() <= 2 * READ_BUF);
        });
    }

    #[test]
    fn body_limit_is_enforced_before_reading() {
        block(async {
            let r = b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n".to_vec();
            let mut c = Conn::new(Scripted::new(vec![r]));
            let head = c.read_head().await.unwrap();
            let mut body = Body::new(&head);
            let mut s = Vec::new();
            let e = body.read_all(&mut c, &mut s, 1 << 20).await.unwrap_err();
            assert!(e.to_string().contains("larger than 1 MiB"), "{e}");
            assert!(c.buf.capacity() <= 2 * READ_BUF);
        });
    }

    #[test]
    fn requests_are_written_whole_across_partial_writes() {
        block(async {
            let mut c = Conn::new(Scripted::new(vec![]));
            let mut parts = [
                IoSlice::new(b""),
                IoSlice::new(b"POST / HTTP/1.1\r\ncontent-length: "),
                IoSlice::new(b"5\r\n\r\n"),
                IoSlice::new(b"hello"),
            ];
            let t0 = Instant::now();
            let t = c.write_request(&mut parts).await.unwrap();
            assert!(t >= t0);
            assert_eq!(
                c.io.written,
                b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello"
            );
        });
    }

    #[test]
    fn chunk_size_lines() {
        assert_eq!(parse_chunk_size(b"1a").unwrap(), 26);
        assert_eq!(parse_chunk_size(b"1A;name=\"v\"\r").unwrap(), 26);
        assert_eq!(parse_chunk_size(b"0 ; x").unwrap(), 0);
        assert!(parse_chunk_size(b"").is_err());
        assert!(parse_chunk_size(b";x").is_err());
        assert!(parse_chunk_size(b"-1").is_err());
    }
}
