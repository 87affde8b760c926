//! A strict JSON scanner for the few fields llmload reads from OpenAI answers.
//!
//! Every response (and every stream event) is parsed, on the thread that times the requests,
//! so the parse is on the measurement's critical path. serde_json's derived deserializers spent
//! 0.8-1.2 µs on a 330-byte answer; most of that was field matching and moving large
//! `Option` structs, not reading bytes. This scanner reads the wanted fields straight into
//! their places, borrows unescaped strings from the input, and skips everything else while
//! still validating it.
//!
//! It accepts exactly the JSON (RFC 8259) that serde_json accepts, with serde_json's choices:
//! strings must not hold raw control characters, escapes are checked (a lone UTF-16 surrogate
//! is an error), strings that are read must be UTF-8, nesting is limited to 128 levels, and
//! nothing but whitespace may follow the value. The `chunk` module's tests hold it to
//! serde_json on generated, damaged and arbitrary documents. Strings are scanned 16 bytes at a
//! time (SSE2, part of every x86-64; 8 bytes with word tricks elsewhere).

use std::borrow::Cow;
use std::fmt;

/// Nesting limit (serde_json's).
const MAX_DEPTH: u32 = 128;

/// What is wrong with a document, and where (byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    what: Cow<'static, str>,
    at: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

pub(crate) type Result<T> = std::result::Result<T, JsonError>;

/// A cursor over one JSON document.
pub(crate) struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    depth: u32,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Self { b, i: 0, depth: 0 }
    }

    /// An error at the current position.
    pub(crate) fn error(&self, what: impl Into<Cow<'static, str>>) -> JsonError {
        JsonError {
            what: what.into(),
            at: self.i,
        }
    }

    #[inline(always)]
    fn ws(&mut self) {
        // Compact JSON (what servers send) has no whitespace: one comparison.
        if self.b.get(self.i).is_some_and(|&c| c > b' ') {
            return;
        }
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    /// The next byte that is not whitespace (not consumed).
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn unexpected(&self, what: &'static str) -> JsonError {
        match self.b.get(self.i) {
            None => self.error(format!("EOF while parsing; expected {what}")),
            Some(&c) => self.error(format!("expected {what}, found {}", shown(c))),
        }
    }

    /// The document ends here (only whitespace follows).
    pub(crate) fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters after the JSON value")),
        }
    }

    /// Consume a `null` if one comes next.
    pub(crate) fn null(&mut self) -> Result<bool> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.error("invalid literal (expected true, false or null)"))
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nesting deeper than 128 levels"));
        }
        Ok(())
    }

    /// An object: `field` is called with each key, positioned at the key's value, and must
    /// consume that value. The key is its raw bytes when it has no escapes (so that known
    /// names match without decoding), its decoded text otherwise; a key that matches no known
    /// name must go to [`Scanner::other`], which checks it.
    pub(crate) fn object(
        &mut self,
        what: &'static str,
        mut field: impl FnMut(&mut Self, Cow<'a, [u8]>) -> Result<()>,
    ) -> Result<()> {
        self.members(what, |s, start, end, escaped| {
            let key = if escaped {
                match s.decode(start, end, true)? {
                    Cow::Owned(k) => Cow::Owned(k.into_bytes()),
                    Cow::Borrowed(k) => Cow::Borrowed(k.as_bytes()),
                }
            } else {
                Cow::Borrowed(&s.b[start..end])
            };
            field(s, key)
        })
    }

    /// The value of a member whose key is not one of the wanted ones: the key must be UTF-8
    /// (as serde_json requires of a struct's keys); the value is skipped.
    pub(crate) fn other(&mut self, key: &[u8]) -> Result<()> {
        if !key.is_ascii() && std::str::from_utf8(key).is_err() {
            return Err(self.error("invalid UTF-8 in a key"));
        }
        self.skip()
    }

    /// An object's members, each key given as its raw bytes' range (`start..end`, quotes
    /// excluded) and whether it holds escapes.
    fn members(
        &mut self,
        what: &'static str,
        mut field: impl FnMut(&mut Self, usize, usize, bool) -> Result<()>,
    ) -> Result<()> {
        self.container(b'{', b'}', what, |s| {
            if s.peek() != Some(b'"') {
                return Err(s.unexpected("a key (a string)"));
            }
            s.i += 1;
            let (start, end, escaped) = s.scan_string()?;
            s.expect(b':', "`:`")?;
            field(s, start, end, escaped)
        })
    }

    /// An array: `item` is called positioned at each element and must consume it.
    pub(crate) fn array(
        &mut self,
        what: &'static str,
        item: impl FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        self.container(b'[', b']', what, item)
    }

    /// An object or array opened by `open` and closed by `close`: `entry` reads each member
    /// or element; entries are separated by commas.
    #[inline(always)]
    fn container(
        &mut self,
        open: u8,
        close: u8,
        what: &'static str,
        mut entry: impl FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        if self.peek() != Some(open) {
            return Err(self.unexpected(what));
        }
        self.i += 1;
        self.enter()?;
        if self.peek() != Some(close) {
            loop {
                entry(self)?;
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(c) if c == close => break,
                    _ => {
                        return Err(self.unexpected(if close == b'}' {
                            "`,` or `}`"
                        } else {
                            "`,` or `]`"
                        }));
                    }
                }
            }
        }
        self.i += 1;
        self.depth -= 1;
        Ok(())
    }

    /// A string, borrowed from the input when it has no escapes.
    pub(crate) fn string(&mut self) -> Result<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a string"));
        }
        self.i += 1;
        let (start, end, escaped) = self.scan_string()?;
        self.decode(start, end, escaped)
    }

    /// From just after an opening quote: the string's contents (`start..end`) and whether
    /// they hold escapes; the cursor moves past the closing quote.
    #[inline(always)]
    fn scan_string(&mut self) -> Result<(usize, usize, bool)> {
        let start = self.i;
        let j = plain_run(self.b, start);
        let (end, escaped) = if self.b.get(j) == Some(&b'"') {
            (j, false)
        } else {
            self.string_end(j)?
        };
        self.i = end + 1;
        Ok((start, end, escaped))
    }

    /// The text of the string whose contents are `b[start..end]` (checked by `string_end`).
    #[inline]
    fn decode(&self, start: usize, end: usize, escaped: bool) -> Result<Cow<'a, str>> {
        let raw: &'a [u8] = &self.b[start..end];
        if escaped {
            return self.unescape(start, end);
        }
        if raw.is_ascii() {
            // SAFETY: ASCII is UTF-8.
            return Ok(Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(raw) }));
        }
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(e) => Err(JsonError {
                what: "invalid UTF-8 in a string".into(),
                at: start + e.valid_up_to(),
            }),
        }
    }

    /// The text of a string with escapes (`b[start..end]`, checked by `string_end`).
    #[inline(never)]
    fn unescape(&self, start: usize, end: usize) -> Result<Cow<'a, str>> {
        let raw: &'a [u8] = &self.b[start..end];
        let mut out = Vec::with_capacity(raw.len());
        let mut j = 0;
        while j < raw.len() {
            let c = raw[j];
            if c != b'\\' {
                out.push(c);
                j += 1;
                continue;
            }
            let at = start + j;
            let e = raw[j + 1];
            j += 2;
            let ch = match e {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                _ => {
                    // `u`: string_end checked the four hex digits.
                    let hi = hex4(&raw[j..j + 4]);
                    j += 4;
                    let cp = if (0xD800..0xDC00).contains(&hi) {
                        let lo = if raw[j..].starts_with(b"\\u") {
                            hex4(&raw[j + 2..j + 6])
                        } else {
                            0
                        };
                        if !(0xDC00..0xE000).contains(&lo) {
                            return Err(JsonError {
                                what: "lone leading surrogate in a \\u escape".into(),
                                at,
                            });
                        }
                        j += 6;
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else if (0xDC00..0xE000).contains(&hi) {
                        return Err(JsonError {
                            what: "lone trailing surrogate in a \\u escape".into(),
                            at,
                        });
                    } else {
                        hi
                    };
                    // Surrogates were excluded above, so this is a scalar value.
                    char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER)
                }
            };
            let mut tmp = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
        }
        String::from_utf8(out)
            .map(Cow::Owned)
            .map_err(|_| JsonError {
                what: "invalid UTF-8 in a string".into(),
                at: start,
            })
    }

    /// From `from`, inside a string whose bytes before it need no look: the index of the
    /// closing quote and whether escapes came before it. Checks escapes and control
    /// characters (not UTF-8).
    fn string_end(&mut self, from: usize) -> Result<(usize, bool)> {
        let b = self.b;
        let mut j = from;
        let mut escaped = false;
        loop {
            let Some(&c) = b.get(j) else {
                self.i = j;
                return Err(self.error("EOF while parsing a string"));
            };
            match c {
                b'"' => return Ok((j, escaped)),
                b'\\' => {
                    escaped = true;
                    match b.get(j + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j += 2,
                        Some(b'u') => {
                            let digits = b.get(j + 2..j + 6);
                            if !digits.is_some_and(|d| d.iter().all(u8::is_ascii_hexdigit)) {
                                self.i = j;
                                return Err(self.error("invalid \\u escape (four hex digits)"));
                            }
                            j += 6;
                        }
                        None => {
                            self.i = j + 1;
                            return Err(self.error("EOF while parsing a string"));
                        }
                        Some(_) => {
                            self.i = j;
                            return Err(self.error("invalid escape in a string"));
                        }
                    }
                }
                0..=0x1F => {
                    self.i = j;
                    return Err(self.error("control character in a string (must be escaped)"));
                }
                _ => j = plain_run(b, j + 1),
            }
        }
    }

    /// A non-negative integer that fits u64 (a fraction, exponent or sign is an error).
    pub(crate) fn u64(&mut self) -> Result<u64> {
        let start = match self.peek() {
            Some(b'0'..=b'9') => self.i,
            Some(b'-') => return Err(self.error("expected a non-negative integer")),
            _ => return Err(self.unexpected("an integer")),
        };
        let mut v: u64 = 0;
        let mut j = start;
        while let Some(&c) = self.b.get(j) {
            if !c.is_ascii_digit() {
                break;
            }
            v = match v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
            {
                Some(v) => v,
                None => return Err(self.error("integer does not fit in 64 bits")),
            };
            j += 1;
        }
        if j - start > 1 && self.b[start] == b'0' {
            return Err(self.error("invalid number (leading zero)"));
        }
        if matches!(self.b.get(j), Some(b'.' | b'e' | b'E')) {
            return Err(self.error("expected an integer, found a fraction or exponent"));
        }
        self.i = j;
        Ok(v)
    }

    /// Skip one value of any kind, checking it.
    pub(crate) fn skip(&mut self) -> Result<()> {
        match self.peek() {
            // Keys of skipped objects are checked, not decoded (as serde_json ignores them).
            Some(b'{') => self.members("an object", |s, _, _, _| s.skip()),
            Some(b'[') => self.array("an array", |s| s.skip()),
            Some(b'"') => {
                self.i += 1;
                self.scan_string().map(|_| ())
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.unexpected("a value")),
        }
    }

    /// One value's bytes (checked, not interpreted).
    pub(crate) fn raw(&mut self) -> Result<&'a [u8]> {
        self.ws();
        let start = self.i;
        self.skip()?;
        Ok(&self.b[start..self.i])
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<()> {
        let b = self.b;
        let mut j = self.i;
        if b.get(j) == Some(&b'-') {
            j += 1;
        }
        let digits = |j: &mut usize| {
            let s = *j;
            while b.get(*j).is_some_and(u8::is_ascii_digit) {
                *j += 1;
            }
            *j - s
        };
        match b.get(j) {
            Some(b'0') => j += 1,
            Some(b'1'..=b'9') => {
                digits(&mut j);
            }
            _ => {
                self.i = j;
                return Err(self.error("invalid number"));
            }
        }
        if b.get(j) == Some(&b'.') {
            j += 1;
            if digits(&mut j) == 0 {
                self.i = j;
                return Err(self.error("invalid number (no digit after the point)"));
            }
        }
        if matches!(b.get(j), Some(b'e' | b'E')) {
            j += 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if digits(&mut j) == 0 {
                self.i = j;
                return Err(self.error("invalid number (no digit in the exponent)"));
            }
        }
        self.i = j;
        Ok(())
    }
}

/// True when `s` is written verbatim inside a JSON string: no `"`, `\\` or control character
/// (the only bytes serde_json escapes). The request bodies' writer asks this of prompts and of
/// image data URLs of hundreds of KB.
pub(crate) fn needs_no_escape(s: &[u8]) -> bool {
    plain_run(s, 0) == s.len()
}

/// The index of the first byte at or after `j` that needs a look inside a string (`"`, `\\`
/// or a control character), or `b.len()`: sixteen bytes per step with SSE2 (every x86-64
/// has it), eight elsewhere.
#[inline]
fn plain_run(b: &[u8], mut j: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 CPU has it.
        let (k, found) = unsafe { plain_run_sse2(b, j) };
        if found {
            return k;
        }
        j = k;
    }
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(j..j + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        let quote = w ^ (ONES * u64::from(b'"'));
        let slash = w ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set where it is zero (after the xor) or below 0x20; bits above
        // the first such byte may be false alarms, the first one is exact.
        let hit = ((quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        if hit != 0 {
            return j + (hit.trailing_zeros() / 8) as usize;
        }
        j += 8;
    }
    while let Some(&c) = b.get(j) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        j += 1;
    }
    j
}

/// [`plain_run`] sixteen bytes at a time, while sixteen remain: `(index, true)` at a byte
/// that needs a look, `(where it stopped, false)` otherwise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn plain_run_sse2(b: &[u8], mut j: usize) -> (usize, bool) {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let quote = _mm_set1_epi8(b'"' as i8);
    let slash = _mm_set1_epi8(b'\\' as i8);
    let ctl = _mm_set1_epi8(0x1F);
    while j + 16 <= b.len() {
        // SAFETY: the 16 bytes at `j` are inside `b`; `loadu` needs no alignment.
        let v = unsafe { _mm_loadu_si128(b.as_ptr().add(j).cast()) };
        // A control character is a byte whose (unsigned) max with 0x1F is 0x1F.
        let hit = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)),
            _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl),
        );
        let mask = _mm_movemask_epi8(hit) as u32;
        if mask != 0 {
            return (j + mask.trailing_zeros() as usize, true);
        }
        j += 16;
    }
    (j, false)
}

/// Four hex digits (already checked).
fn hex4(d: &[u8]) -> u32 {
    d.iter().fold(0, |v, &c| {
        let x = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c - b'A' + 10,
        };
        (v << 4) | u32::from(x)
    })
}

fn shown(c: u8) -> String {
    if c.is_ascii_graphic() {
        format!("`{}`", c as char)
    } else {
        format!("byte 0x{c:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_ok(s: &str) -> bool {
        let mut sc = Scanner::new(s.as_bytes());
        sc.skip().and_then(|_| sc.end()).is_ok()
    }

    #[test]
    fn values_are_checked_like_serde_json() {
        let cases = [
            "null",
            "true",
            "false",
            "0",
            "-0",
            "12",
            "-1.5e+3",
            "1E9",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "\"a\\u00e9\\n\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"tab\there\"",
            "[1, 2 ,[ ]]",
            "[1,]",
            "[,1]",
            "{\"a\":1,\"b\":[{}]}",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "{1:2}",
            "nul",
            "truex",
            " [ ] ",
            "",
            "[] []",
        ];
        for c in cases {
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(c).is_ok();
            assert_eq!(skip_ok(c), serde, "{c:?}");
        }
    }

    #[test]
    fn strings_borrow_unless_escaped_and_decode_like_serde() {
        for s in [
            r#""plain""#,
            r#""é ü 😀""#,
            r#""a\"b\\c\/d\b\f\n\r\t""#,
            r#""\u00e9\u4e2d\ud83d\ude00""#,
            r#""\ud83d""#,
            r#""\ude00x""#,
            r#""\ud83d\u0041""#,
        ] {
            let mine = Scanner::new(s.as_bytes()).string();
            let theirs = serde_json::from_str::<String>(s);
            match (&mine, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{s}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{s}: {mine:?} vs {theirs:?}"),
            }
        }
        assert!(matches!(
            Scanner::new(br#""plain""#).string(),
            Ok(Cow::Borrowed("plain"))
        ));
        // Invalid UTF-8 in a string that is read.
        assert!(Scanner::new(b"\"a\xffb\"").string().is_err());
    }

    #[test]
    fn integers() {
        let get = |s: &str| Scanner::new(s.as_bytes()).u64();
        assert_eq!(get(" 0"), Ok(0));
        assert_eq!(get("16"), Ok(16));
        assert_eq!(get("18446744073709551615"), Ok(u64::MAX));
        for bad in ["18446744073709551616", "-1", "1.0", "2e3", "01", "x", ""] {
            assert!(get(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nesting_is_limited() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(!skip_ok(&deep));
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert!(skip_ok(&ok));
    }

    #[test]
    fn errors_say_what_and_where() {
        let mut s = Scanner::new(br#"{"a" 1}"#);
        let e = s.object("an object", |s, _| s.skip()).unwrap_err();
        assert_eq!(e.to_string(), "expected `:`, found `1` at byte 5");
        let mut s = Scanner::new(b"[1,");
        let e = s.skip().unwrap_err();
        assert!(e.to_string().starts_with("EOF while parsing"), "{e}");
    }
}
