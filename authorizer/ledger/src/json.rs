//! A JSON reader for the flat event objects of the log: one pass over the bytes, strings borrowed
//! from the payload when they have no escapes, no allocation otherwise (except for escaped
//! strings, string lists and deeply nested ignored values). It replaced `serde_json` on the
//! ledger's hot path: about twice the events per second (`ledger_bench`, "parse only").
//!
//! It accepts and rejects exactly what `serde_json::from_slice` into the wire structs of
//! [`super::event`] did (the serde path is kept there as the test reference; a differential
//! proptest and the `event_parse` fuzz target compare the two). The quirks it reproduces:
//! * whitespace is ` `, `\t`, `\n`, `\r`; nothing but whitespace may follow the object;
//! * object keys and string fields are decoded (escapes, paired surrogates) and must be UTF-8;
//!   strings of ignored values are only checked for their escapes and control characters;
//! * `null` for a field is the same as its absence; a known field twice is an error;
//! * integers follow JSON's grammar (no leading zero, `-0` is a float): a float, or an integer out
//!   of the field's range, is a type error;
//! * ignored values nest without limit (no recursion here, an explicit stack).
//!
//! One deliberate difference: serde also took a JSON *array* as a struct (fields by position);
//! the contract says objects, so an array is rejected here, and the reference was changed to match.
//!
//! Must never: panic on any input, read past the payload, accept what the reference rejects.
//! Errors are [`EventError::Json`] with serde_json-style messages (`... at line L column C`).

use std::borrow::Cow;
use std::fmt;

use super::event::EventError;

/// Boxed, so that every `JsonResult` of a field (moved on each read) stays as small as its
/// value: an `EventError` is 56 bytes.
pub(crate) type JsonResult<T> = Result<T, Box<EventError>>;

/// A cursor over one JSON payload.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    /// The payload as text when all of it is UTF-8 (the rule): a string between two quotes is
    /// then a slice of it, without a UTF-8 check per string (a quote is a character boundary).
    text: Option<&'a str>,
    at: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;

/// Whether `b` ends a run of plain string bytes (`"`, `\`, or a control character).
fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// Equality of two short byte strings by 8-byte words (no call to `memcmp`).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn word(s: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0;
    }
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

fn hex_value(b: u8) -> Option<u16> {
    match b {
        b'0'..=b'9' => Some(u16::from(b - b'0')),
        b'a'..=b'f' => Some(u16::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u16::from(b - b'A' + 10)),
        _ => None,
    }
}

/// What an integer token was: its sign and magnitude, `None` when it does not fit a u64, or a
/// float (fraction or exponent).
enum Number<'a> {
    Integer {
        negative: bool,
        magnitude: Option<u64>,
        text: &'a [u8],
    },
    Float {
        text: &'a [u8],
    },
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            bytes,
            text: super::utf8(bytes).ok(),
            at: 0,
        }
    }

    /// An error at byte `at`, positioned like serde_json's (line and column of that byte, 1-based).
    #[cold]
    fn error_at(&self, at: usize, message: impl fmt::Display) -> Box<EventError> {
        let at = at.min(self.bytes.len());
        let before = &self.bytes[..at];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        Box::new(EventError::Json {
            message: format!("{message} at line {line} column {}", at - line_start + 1),
        })
    }

    #[cold]
    fn error(&self, message: impl fmt::Display) -> Box<EventError> {
        self.error_at(self.at, message)
    }

    /// A known field seen twice (serde's derive rejects it).
    #[cold]
    pub(crate) fn duplicate_field(&self, name: &str) -> Box<EventError> {
        self.error(format_args!("duplicate field `{name}`"))
    }

    /// Skips whitespace; the next byte, not consumed.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes.get(self.at) {
            if !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    /// Nothing but whitespace left.
    pub(crate) fn end(&mut self) -> JsonResult<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    /// An object whose known keys are `names` (at most 32): calls `field` with the index of each
    /// known key (`None` for another key), the reader placed after the `:`; `field` must consume
    /// the value. A known key twice is an error. `expected` names the object in type errors.
    ///
    /// Keys usually come in the order of `names` (the producers write them so): the key after
    /// key `i` is first compared with `names[i + 1]` in place, without decoding it.
    pub(crate) fn object(
        &mut self,
        expected: &'static str,
        names: &[&'static str],
        mut field: impl FnMut(&mut Reader<'a>, Option<usize>) -> JsonResult<()>,
    ) -> JsonResult<()> {
        assert!(names.len() <= 32);
        match self.peek() {
            None => return Err(self.error("EOF while parsing a value")),
            Some(b'{') => self.at += 1,
            Some(_) => return Err(self.invalid_type(expected)),
        }
        let mut first = true;
        let mut seen = 0u32;
        let mut next = 0usize;
        loop {
            match self.peek() {
                None => return Err(self.error("EOF while parsing an object")),
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'"') if first => {}
                Some(_) if first => return Err(self.error("key must be a string")),
                Some(b',') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'"') => {}
                        Some(b'}') => return Err(self.error("trailing comma")),
                        Some(_) => return Err(self.error("key must be a string")),
                        None => return Err(self.error("EOF while parsing a value")),
                    }
                }
                Some(_) => return Err(self.error("expected `,` or `}`")),
            }
            first = false;
            self.at += 1;
            let index = match self.predicted_key(names, next) {
                Some(index) => Some(index),
                None => match (0..names.len()).find_map(|i| self.predicted_key(names, i)) {
                    Some(index) => Some(index),
                    // Another key, or a known one written with escapes.
                    None => {
                        let key = self.string()?;
                        names.iter().position(|name| *name == key)
                    }
                },
            };
            match self.peek() {
                Some(b':') => self.at += 1,
                Some(_) => return Err(self.error("expected `:`")),
                None => return Err(self.error("EOF while parsing an object")),
            }
            if let Some(index) = index {
                if seen & (1 << index) != 0 {
                    return Err(self.duplicate_field(names[index]));
                }
                seen |= 1 << index;
                next = index + 1;
            }
            field(self, index)?;
        }
    }

    /// Whether the key at the cursor (its opening quote consumed) is `names[index]` followed by
    /// its closing quote; if so, consumes it. A name has no `"`, `\` nor control character, so
    /// the raw bytes are the key.
    #[inline]
    fn predicted_key(&mut self, names: &[&'static str], index: usize) -> Option<usize> {
        let name = names.get(index)?.as_bytes();
        let end = self.at + name.len();
        if self.bytes.get(end) == Some(&b'"') && same_bytes(self.bytes.get(self.at..end)?, name) {
            self.at = end + 1;
            return Some(index);
        }
        None
    }

    /// Consumes a `null` and says so, or leaves any other value in place (an absent `Option`).
    #[inline]
    pub(crate) fn null(&mut self) -> JsonResult<bool> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        self.at += 1;
        self.ident(b"ull")?;
        Ok(true)
    }

    fn ident(&mut self, rest: &[u8]) -> JsonResult<()> {
        for &expected in rest {
            match self.bytes.get(self.at) {
                None => return Err(self.error("EOF while parsing a value")),
                Some(&b) => {
                    self.at += 1;
                    if b != expected {
                        return Err(self.error("expected ident"));
                    }
                }
            }
        }
        Ok(())
    }

    /// An optional string field.
    #[inline]
    pub(crate) fn text(&mut self) -> JsonResult<Option<Cow<'a, str>>> {
        match self.peek() {
            Some(b'"') => {
                self.at += 1;
                self.string().map(Some)
            }
            Some(b'n') => {
                self.at += 1;
                self.ident(b"ull")?;
                Ok(None)
            }
            _ => Err(self.invalid_type("a string")),
        }
    }

    /// An optional string field holding a secret (`pan_hash`, `pan_last4`, `trace.pan_masked`):
    /// as [`Self::text`], but a value of another type is not quoted in the error.
    pub(crate) fn secret_text(&mut self) -> JsonResult<Option<Cow<'a, str>>> {
        match self.peek() {
            Some(b'"' | b'n') => self.text(),
            Some(_) => Err(self.error("invalid type: a value withheld, expected a string")),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    fn required_text(&mut self) -> JsonResult<Cow<'a, str>> {
        match self.peek() {
            Some(b'"') => {
                self.at += 1;
                self.string()
            }
            _ => Err(self.invalid_type("a string")),
        }
    }

    /// An optional list of strings.
    pub(crate) fn texts(&mut self) -> JsonResult<Option<Vec<Cow<'a, str>>>> {
        if self.null()? {
            return Ok(None);
        }
        match self.peek() {
            Some(b'[') => self.at += 1,
            _ => return Err(self.invalid_type("a sequence")),
        }
        let mut list = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("EOF while parsing a list")),
                Some(b']') => {
                    self.at += 1;
                    return Ok(Some(list));
                }
                Some(b',') if !list.is_empty() => {
                    self.at += 1;
                    match self.peek() {
                        Some(b']') => return Err(self.error("trailing comma")),
                        None => return Err(self.error("EOF while parsing a value")),
                        Some(_) => {}
                    }
                }
                Some(_) if list.is_empty() => {}
                Some(_) => return Err(self.error("expected `,` or `]`")),
            }
            list.push(self.required_text()?);
        }
    }

    /// An optional unsigned integer field (serde's `Option<u64>`).
    pub(crate) fn uint(&mut self) -> JsonResult<Option<u64>> {
        if self.null()? {
            return Ok(None);
        }
        let start = self.at_value()?;
        match self.number(start, "u64")? {
            Number::Integer {
                negative: false,
                magnitude: Some(value),
                ..
            } => Ok(Some(value)),
            other => Err(self.number_error(start, other, "u64")),
        }
    }

    /// An optional signed integer field (serde's `Option<i64>`).
    pub(crate) fn int(&mut self) -> JsonResult<Option<i64>> {
        if self.null()? {
            return Ok(None);
        }
        let start = self.at_value()?;
        match self.number(start, "i64")? {
            Number::Integer {
                negative: false,
                magnitude: Some(value),
                ..
            } if value <= i64::MAX as u64 => Ok(Some(value as i64)),
            Number::Integer {
                negative: true,
                magnitude: Some(value),
                ..
            } if (1..=1u64 << 63).contains(&value) => Ok(Some((value as i64).wrapping_neg())),
            other => Err(self.number_error(start, other, "i64")),
        }
    }

    /// The position of the next value (after whitespace); EOF is an error.
    fn at_value(&mut self) -> JsonResult<usize> {
        match self.peek() {
            Some(_) => Ok(self.at),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    #[cold]
    fn number_error(&self, start: usize, number: Number<'_>, expected: &str) -> Box<EventError> {
        let text = |t: &[u8]| quoted(t);
        match number {
            Number::Integer {
                magnitude: Some(0),
                negative: true,
                text: t,
            } => self.error_at(
                start,
                format_args!(
                    "invalid type: floating point `{}`, expected {expected}",
                    text(t)
                ),
            ),
            Number::Integer {
                magnitude: Some(_),
                text: t,
                ..
            } => self.error_at(
                start,
                format_args!("invalid value: integer `{}`, expected {expected}", text(t)),
            ),
            Number::Integer { text: t, .. } | Number::Float { text: t } => self.error_at(
                start,
                format_args!(
                    "invalid type: floating point `{}`, expected {expected}",
                    text(t)
                ),
            ),
        }
    }

    /// A number token at `start` (JSON grammar); anything else is a type error naming `expected`.
    fn number(&mut self, start: usize, expected: &str) -> JsonResult<Number<'a>> {
        let negative = self.bytes.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        } else if !matches!(self.bytes.get(self.at), Some(b'0'..=b'9')) {
            return Err(self.invalid_type(expected));
        }
        let mut magnitude = Some(0u64);
        match self.bytes.get(self.at) {
            Some(b'0') => {
                self.at += 1;
                if matches!(self.bytes.get(self.at), Some(b'0'..=b'9')) {
                    return Err(self.error("invalid number"));
                }
            }
            Some(b'1'..=b'9') => {
                while let Some(&d @ b'0'..=b'9') = self.bytes.get(self.at) {
                    self.at += 1;
                    magnitude = magnitude
                        .and_then(|m| m.checked_mul(10))
                        .and_then(|m| m.checked_add(u64::from(d - b'0')));
                }
            }
            _ => {
                self.at += 1;
                return Err(self.error("invalid number"));
            }
        }
        if matches!(self.bytes.get(self.at), Some(b'.' | b'e' | b'E')) {
            self.skip_fraction_and_exponent()?;
            return Ok(Number::Float {
                text: &self.bytes[start..self.at],
            });
        }
        Ok(Number::Integer {
            negative,
            magnitude,
            text: &self.bytes[start..self.at],
        })
    }

    /// After an integer's digits: an optional fraction then an optional exponent (serde_json's
    /// `ignore_decimal` / `ignore_exponent`).
    fn skip_fraction_and_exponent(&mut self) -> JsonResult<()> {
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            let digits = self.skip_digits();
            if digits == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.bytes.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            match self.bytes.get(self.at) {
                Some(b'0'..=b'9') => {}
                _ => {
                    self.at += 1;
                    return Err(self.error("invalid number"));
                }
            }
            self.skip_digits();
        }
        Ok(())
    }

    fn skip_digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.bytes.get(self.at), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    /// The type error for the value at the cursor (serde_json's `peek_invalid_type`).
    #[cold]
    fn invalid_type(&mut self, expected: &str) -> Box<EventError> {
        let start = self.at;
        let unexpected = match self.bytes.get(self.at) {
            None => return self.error("EOF while parsing a value"),
            Some(b'n') => {
                self.at += 1;
                if let Err(e) = self.ident(b"ull") {
                    return e;
                }
                "null".to_owned()
            }
            Some(b't') => {
                self.at += 1;
                if let Err(e) = self.ident(b"rue") {
                    return e;
                }
                "boolean `true`".to_owned()
            }
            Some(b'f') => {
                self.at += 1;
                if let Err(e) = self.ident(b"alse") {
                    return e;
                }
                "boolean `false`".to_owned()
            }
            Some(b'-' | b'0'..=b'9') => match self.number(start, expected) {
                Err(e) => return e,
                Ok(Number::Integer { text, .. }) => {
                    format!("integer `{}`", quoted(text))
                }
                Ok(Number::Float { text }) => {
                    format!("floating point `{}`", quoted(text))
                }
            },
            Some(b'"') => {
                self.at += 1;
                match self.string() {
                    Err(e) => return e,
                    Ok(text) => format!(
                        "string {:?}",
                        text.chars()
                            .take(crate::event::REASON_VALUE_MAX)
                            .collect::<String>()
                    ),
                }
            }
            Some(b'[') => "sequence".to_owned(),
            Some(b'{') => "map".to_owned(),
            Some(_) => return self.error("expected value"),
        };
        self.error_at(
            start,
            format_args!("invalid type: {unexpected}, expected {expected}"),
        )
    }

    /// The index of the first `"`, `\` or control character at or after `from` (or the end).
    #[inline]
    fn plain_end(&self, mut from: usize) -> usize {
        let bytes = self.bytes;
        while let Some(chunk) = bytes.get(from..from + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let w = u64::from_le_bytes(word);
            // Mycroft's zero-byte test, as serde_json does: the lowest flagged byte is exact.
            let control = w.wrapping_sub(ONES * 0x20) & !w;
            let quote = w ^ (ONES * u64::from(b'"'));
            let quote = quote.wrapping_sub(ONES) & !quote;
            let backslash = w ^ (ONES * u64::from(b'\\'));
            let backslash = backslash.wrapping_sub(ONES) & !backslash;
            let flagged = (control | quote | backslash) & (ONES << 7);
            if flagged != 0 {
                return from + (flagged.trailing_zeros() / 8) as usize;
            }
            from += 8;
        }
        while let Some(&b) = bytes.get(from) {
            if is_special(b) {
                break;
            }
            from += 1;
        }
        from
    }

    /// A string whose opening quote was consumed: decoded, UTF-8 checked.
    #[inline]
    fn string(&mut self) -> JsonResult<Cow<'a, str>> {
        let start = self.at;
        let end = self.plain_end(start);
        match self.bytes.get(end) {
            Some(b'"') => {
                self.at = end + 1;
                if let Some(text) = self.text.and_then(|t| t.get(start..end)) {
                    return Ok(Cow::Borrowed(text));
                }
                let raw = &self.bytes[start..end];
                match std::str::from_utf8(raw) {
                    Ok(text) => Ok(Cow::Borrowed(text)),
                    Err(e) => {
                        Err(self.error_at(start + e.valid_up_to(), "invalid unicode code point"))
                    }
                }
            }
            _ => self.escaped_string(start),
        }
    }

    #[cold]
    fn escaped_string(&mut self, start: usize) -> JsonResult<Cow<'a, str>> {
        let mut out = Vec::with_capacity(32);
        self.at = start;
        loop {
            let end = self.plain_end(self.at);
            out.extend_from_slice(&self.bytes[self.at..end]);
            self.at = end;
            match self.bytes.get(end) {
                None => return Err(self.error("EOF while parsing a string")),
                Some(b'"') => {
                    self.at += 1;
                    return match String::from_utf8(out) {
                        Ok(text) => Ok(Cow::Owned(text)),
                        Err(_) => Err(self.error("invalid unicode code point")),
                    };
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    self.at += 1;
                    return Err(self.error(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
            }
        }
    }

    /// One escape after its `\`, decoded into `out` (surrogates must pair).
    fn escape(&mut self, out: &mut Vec<u8>) -> JsonResult<()> {
        let Some(&c) = self.bytes.get(self.at) else {
            return Err(self.error("EOF while parsing a string"));
        };
        self.at += 1;
        let simple = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => return self.unicode_escape(out),
            _ => return Err(self.error("invalid escape")),
        };
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> JsonResult<u16> {
        let Some(digits) = self.bytes.get(self.at..self.at + 4) else {
            self.at = self.bytes.len();
            return Err(self.error("EOF while parsing a string"));
        };
        self.at += 4;
        let mut value = 0u16;
        for &d in digits {
            match hex_value(d) {
                Some(v) => value = value << 4 | v,
                None => return Err(self.error("invalid escape")),
            }
        }
        Ok(value)
    }

    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> JsonResult<()> {
        let n = self.hex4()?;
        let code = match n {
            0xDC00..=0xDFFF => return Err(self.error("lone leading surrogate in hex escape")),
            0xD800..=0xDBFF => {
                if self.bytes.get(self.at) != Some(&b'\\')
                    || self.bytes.get(self.at + 1) != Some(&b'u')
                {
                    if self.at >= self.bytes.len() {
                        return Err(self.error("EOF while parsing a string"));
                    }
                    self.at += 1;
                    return Err(self.error("unexpected end of hex escape"));
                }
                self.at += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                ((u32::from(n - 0xD800) << 10) | u32::from(low - 0xDC00)) + 0x1_0000
            }
            _ => u32::from(n),
        };
        let Some(c) = char::from_u32(code) else {
            return Err(self.error("invalid unicode code point"));
        };
        let mut buffer = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
        Ok(())
    }

    /// A string that is skipped (the opening quote consumed): escapes and control characters
    /// are checked, UTF-8 is not (as serde_json's `ignore_str`).
    fn skip_string(&mut self) -> JsonResult<()> {
        loop {
            let end = self.plain_end(self.at);
            self.at = end;
            match self.bytes.get(end) {
                None => return Err(self.error("EOF while parsing a string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    let Some(&c) = self.bytes.get(self.at) else {
                        return Err(self.error("EOF while parsing a string"));
                    };
                    self.at += 1;
                    match c {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            self.hex4()?;
                        }
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                Some(_) => {
                    self.at += 1;
                    return Err(self.error(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
            }
        }
    }

    /// Skips one value of any shape (an unknown field), checking its syntax; no recursion.
    pub(crate) fn skip(&mut self) -> JsonResult<()> {
        // Open containers below the current one (`[` or `{`); allocated only for nesting.
        let mut stack: Vec<u8> = Vec::new();
        let mut enclosing: Option<u8> = None;
        loop {
            let Some(peek) = self.peek() else {
                return Err(self.error("EOF while parsing a value"));
            };
            let opened = match peek {
                b'n' => {
                    self.at += 1;
                    self.ident(b"ull")?;
                    None
                }
                b't' => {
                    self.at += 1;
                    self.ident(b"rue")?;
                    None
                }
                b'f' => {
                    self.at += 1;
                    self.ident(b"alse")?;
                    None
                }
                b'-' | b'0'..=b'9' => {
                    let start = self.at;
                    self.number(start, "a value")?;
                    None
                }
                b'"' => {
                    self.at += 1;
                    self.skip_string()?;
                    None
                }
                b'[' | b'{' => {
                    stack.extend(enclosing.take());
                    self.at += 1;
                    Some(peek)
                }
                _ => return Err(self.error("expected value")),
            };
            let (mut accept_comma, mut frame) = match opened {
                Some(frame) => (false, frame),
                None => match enclosing.take().or_else(|| stack.pop()) {
                    Some(frame) => (true, frame),
                    None => return Ok(()),
                },
            };
            loop {
                match self.peek() {
                    Some(b',') if accept_comma => {
                        self.at += 1;
                        break;
                    }
                    Some(b']') if frame == b'[' => {}
                    Some(b'}') if frame == b'{' => {}
                    Some(_) if accept_comma => {
                        return Err(self.error(if frame == b'[' {
                            "expected `,` or `]`"
                        } else {
                            "expected `,` or `}`"
                        }));
                    }
                    Some(_) => break,
                    None => {
                        return Err(self.error(if frame == b'[' {
                            "EOF while parsing a list"
                        } else {
                            "EOF while parsing an object"
                        }));
                    }
                }
                self.at += 1;
                frame = match stack.pop() {
                    Some(frame) => frame,
                    None => return Ok(()),
                };
                accept_comma = true;
            }
            if frame == b'{' {
                match self.peek() {
                    Some(b'"') => self.at += 1,
                    Some(_) => return Err(self.error("key must be a string")),
                    None => return Err(self.error("EOF while parsing an object")),
                }
                self.skip_string()?;
                match self.peek() {
                    Some(b':') => self.at += 1,
                    Some(_) => return Err(self.error("expected `:`")),
                    None => return Err(self.error("EOF while parsing an object")),
                }
            }
            enclosing = Some(frame);
        }
    }
}

/// A number's text as an error quotes it: at most [`REASON_VALUE_MAX`](crate::event::REASON_VALUE_MAX)
/// characters, then `…`.
fn quoted(t: &[u8]) -> String {
    let max = crate::event::REASON_VALUE_MAX;
    let text = String::from_utf8_lossy(&t[..t.len().min(max)]).into_owned();
    if t.len() > max { text + "…" } else { text }
}
