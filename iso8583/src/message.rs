//! A decoded message: the frame it came from, its MTI, its bitmap and a fixed table of where each
//! present field lies. Accessors slice; nothing is copied per field.
//!
//! The MTI and bitmaps are parsed with `nom` combinators over `&[u8]`. The fields are the hot
//! loop and are table-driven: the dialect precomputes one `FieldOp` per field (prefix digits and
//! their zero byte, length, one word check folding format and charset, translation), so each
//! field costs one table load, a prefix parse and one dispatch to a word-at-a-time check (8 bytes
//! per test, no per-byte loop). The previous per-field `nom` parser is kept in `reference` as the
//! oracle of a differential test: same acceptance, same errors, same spans.
//!
//! For a dialect that is ASCII throughout, the message keeps only the frame (`Bytes`, reference
//! counted) and every accessor returns a slice of it: zero copies, zero allocations. For a
//! dialect with EBCDIC characters, decode makes one copy of the frame and translates each
//! character field in it as it is validated, so accessors still return plain `&[u8]` ASCII.

use std::fmt;

use bytes::Bytes;
use nom::Parser;
use nom::bytes::complete::take;

use crate::charset::{self, Charset};
use crate::dialect::{BitmapEncoding, Dialect, FIELD_MAX, FieldSpec, Format, Translate};
use crate::error::{DecodeError, ErrorKind};

/// A message type indicator: 4 ASCII digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mti([u8; 4]);

impl Mti {
    /// An MTI from 4 ASCII digits; `None` otherwise.
    pub fn new(digits: &[u8]) -> Option<Mti> {
        let d: [u8; 4] = digits.try_into().ok()?;
        d.iter().all(u8::is_ascii_digit).then_some(Mti(d))
    }

    /// An MTI from a number 0..=9999 (`Mti::from_u16(100)` is 0100).
    pub fn from_u16(value: u16) -> Option<Mti> {
        (value <= 9999).then(|| {
            let v = value;
            Mti([
                b'0' + (v / 1000) as u8,
                b'0' + (v / 100 % 10) as u8,
                b'0' + (v / 10 % 10) as u8,
                b'0' + (v % 10) as u8,
            ])
        })
    }

    /// The 4 digits.
    pub fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }

    /// The 4 digits as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    /// The MTI as a number (0100 → 100).
    pub fn as_u16(&self) -> u16 {
        self.0
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'))
    }

    /// Digit 1: ISO 8583 version (0 = 1987).
    pub fn version(&self) -> u8 {
        self.0[0] - b'0'
    }
    /// Digit 2: class (1 authorization, 2 financial, 4 reversal, 8 network management ...).
    pub fn class(&self) -> u8 {
        self.0[1] - b'0'
    }
    /// Digit 3: function (0 request, 1 response, 2 advice, 3 advice response).
    pub fn function(&self) -> u8 {
        self.0[2] - b'0'
    }
    /// Digit 4: origin (0 acquirer, 1 acquirer repeat, 2 issuer, 3 issuer repeat).
    pub fn origin(&self) -> u8 {
        self.0[3] - b'0'
    }
    /// True for a repeat (origin 1 or 3).
    pub fn is_repeat(&self) -> bool {
        self.origin() % 2 == 1
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mti({})", self.as_str())
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mti {
    type Err = crate::error::EncodeError;
    fn from_str(s: &str) -> Result<Mti, Self::Err> {
        Mti::new(s.as_bytes()).ok_or_else(|| crate::error::EncodeError::BadMti(s.to_string()))
    }
}

/// Which fields are present: bit `n` of the 128-bit number (`1 << (128 - n)`) for field `n`.
/// Bit 1 (the secondary bitmap indicator) is never set here; it is derived on encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldSet(u128);

impl FieldSet {
    /// No fields.
    pub const EMPTY: FieldSet = FieldSet(0);

    #[inline]
    fn mask(n: usize) -> u128 {
        1u128 << (FIELD_MAX - n)
    }
    /// Whether field `n` is present.
    #[inline]
    pub fn contains(&self, n: usize) -> bool {
        (2..=FIELD_MAX).contains(&n) && self.0 & FieldSet::mask(n) != 0
    }
    #[inline]
    pub(crate) fn insert(&mut self, n: usize) {
        self.0 |= FieldSet::mask(n);
    }
    #[inline]
    pub(crate) fn remove(&mut self, n: usize) {
        self.0 &= !FieldSet::mask(n);
    }
    /// True when a field above 64 is present (a secondary bitmap is needed).
    #[inline]
    pub fn needs_secondary(&self) -> bool {
        self.0 as u64 != 0
    }
    /// The bitmap(s) as they go on the wire: primary (with bit 1 derived) and secondary.
    #[inline]
    pub fn wire_bitmaps(&self) -> (u64, Option<u64>) {
        let primary = (self.0 >> 64) as u64;
        let secondary = self.0 as u64;
        if secondary != 0 {
            (primary | 1u64 << 63, Some(secondary))
        } else {
            (primary, None)
        }
    }
    /// Field numbers in ascending order.
    #[inline]
    pub fn iter(&self) -> FieldIter {
        FieldIter {
            hi: (self.0 >> 64) as u64,
            lo: self.0 as u64,
        }
    }
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }
    /// True when no field is present.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// Iterator over the field numbers of a [`FieldSet`] (two 64-bit words: cheaper than u128).
pub struct FieldIter {
    hi: u64,
    lo: u64,
}

impl Iterator for FieldIter {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.hi != 0 {
            let lz = self.hi.leading_zeros() as usize;
            self.hi &= u64::MAX >> lz >> 1;
            Some(lz + 1)
        } else if self.lo != 0 {
            let lz = self.lo.leading_zeros() as usize;
            self.lo &= u64::MAX >> lz >> 1;
            Some(lz + 65)
        } else {
            None
        }
    }
}

/// Start and end of a field's value in the message buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u16,
    pub(crate) end: u16,
}

/// A decoded, validated message. See the module documentation for what it holds.
#[derive(Clone)]
pub struct Message {
    frame: Bytes,
    /// The frame with every character field translated to ASCII; `None` when the dialect is
    /// ASCII throughout (then the frame itself is the logical form).
    translated: Option<Box<[u8]>>,
    mti: Mti,
    fields: FieldSet,
    /// `Dialect::id` of the dialect that validated the values.
    dialect_id: u64,
    spans: [Span; FIELD_MAX + 1],
}

impl fmt::Debug for Message {
    /// Shows the MTI and the field numbers only: values may hold a PAN or track data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("mti", &self.mti)
            .field("fields", &self.fields.iter().collect::<Vec<_>>())
            .finish()
    }
}

impl PartialEq for Message {
    /// Same MTI and same logical field values (whatever the wire bytes).
    fn eq(&self, other: &Message) -> bool {
        self.mti == other.mti
            && self.fields == other.fields
            && self.fields.iter().all(|n| self.field(n) == other.field(n))
    }
}

/// A nom error carrying our kind; the offset is computed from what input remains.
#[derive(Debug)]
struct Fail {
    remaining: usize,
    kind: ErrorKind,
}

impl nom::error::ParseError<&[u8]> for Fail {
    fn from_error_kind(input: &[u8], _kind: nom::error::ErrorKind) -> Fail {
        // The only nom combinator that can fail here is `take`: the input is too short.
        Fail {
            remaining: input.len(),
            kind: ErrorKind::Truncated {
                needed: 0,
                available: input.len(),
            },
        }
    }
    fn append(_: &[u8], _: nom::error::ErrorKind, other: Fail) -> Fail {
        other
    }
}

type PResult<'a, T> = nom::IResult<&'a [u8], T, Fail>;

/// `take(n)` with a precise truncation error.
#[inline(always)]
fn take_exact(input: &[u8], n: usize) -> PResult<'_, &[u8]> {
    take(n).parse(input).map_err(|e: nom::Err<Fail>| {
        e.map(|f: Fail| Fail {
            remaining: f.remaining,
            kind: ErrorKind::Truncated {
                needed: n,
                available: input.len(),
            },
        })
    })
}

#[inline(always)]
fn fail<T>(remaining: usize, kind: ErrorKind) -> PResult<'static, T> {
    Err(nom::Err::Error(Fail { remaining, kind }))
}

fn parse_mti(input: &[u8], cs: Charset) -> PResult<'_, Mti> {
    let (rest, raw) = take_exact(input, 4)?;
    let class = cs.class_table();
    if let Some(i) = charset::first_invalid(raw, class, charset::DIGIT) {
        return fail(input.len() - i, ErrorKind::BadMti { byte: raw[i] });
    }
    let dec = cs.decode_table();
    Ok((
        rest,
        Mti([
            dec[raw[0] as usize],
            dec[raw[1] as usize],
            dec[raw[2] as usize],
            dec[raw[3] as usize],
        ]),
    ))
}

fn parse_bitmap_word(input: &[u8], enc: BitmapEncoding, cs: Charset) -> PResult<'_, u64> {
    match enc {
        BitmapEncoding::Binary => {
            let (rest, raw) = take_exact(input, 8)?;
            let mut word = [0u8; 8];
            word.copy_from_slice(raw);
            Ok((rest, u64::from_be_bytes(word)))
        }
        BitmapEncoding::Hex => {
            let (rest, raw) = take_exact(input, 16)?;
            let dec = cs.decode_table();
            let mut word = 0u64;
            for (i, &b) in raw.iter().enumerate() {
                let c = dec[b as usize];
                let v = match c {
                    b'0'..=b'9' => c - b'0',
                    b'A'..=b'F' => c - b'A' + 10,
                    b'a'..=b'f' => c - b'a' + 10,
                    _ => return fail(input.len() - i, ErrorKind::BadBitmap { byte: b }),
                };
                word = word << 4 | u64::from(v);
            }
            Ok((rest, word))
        }
    }
}

/// Parses the MTI and the bitmap(s) with `nom`; returns them and the offset of the first field.
fn parse_header(dialect: &Dialect, input: &[u8]) -> Result<(Mti, FieldSet, usize), DecodeError> {
    let total = input.len();
    let offset = |remaining: usize| total - remaining;
    let to_err = |e: nom::Err<Fail>| match e {
        nom::Err::Error(f) | nom::Err::Failure(f) => {
            DecodeError::at(None, offset(f.remaining), f.kind)
        }
        nom::Err::Incomplete(_) => DecodeError::at(
            None,
            total,
            ErrorKind::Truncated {
                needed: 1,
                available: 0,
            },
        ),
    };
    let (rest, mti) = parse_mti(input, dialect.mti_charset()).map_err(to_err)?;
    let enc = dialect.bitmap_encoding();
    let (mut rest, primary) =
        parse_bitmap_word(rest, enc, dialect.mti_charset()).map_err(to_err)?;
    let secondary = if primary & (1 << 63) != 0 {
        let (r, s) = parse_bitmap_word(rest, enc, dialect.mti_charset()).map_err(to_err)?;
        if s == 0 {
            // Found by fuzzing: accepted, it made re-encoding 8 bytes shorter.
            return Err(DecodeError::at(
                None,
                offset(rest.len()),
                ErrorKind::EmptySecondaryBitmap,
            ));
        }
        rest = r;
        s
    } else {
        0
    };
    let fields = FieldSet((u128::from(primary) << 64 | u128::from(secondary)) & !(1u128 << 127));
    Ok((mti, fields, offset(rest.len())))
}

/// Where a character field's value breaks its format: offset in the value and the wire byte.
/// The general (slow) rule, used when the fast word check fails and for `x+n`.
#[cold]
#[inline(never)]
fn charset_error(value: &[u8], spec: &FieldSpec) -> Option<(usize, u8)> {
    if spec.format == Format::B {
        return None;
    }
    let class = spec.data.class_table();
    if let Some(i) = charset::first_invalid_in(value, spec.data, spec.format.class_mask()) {
        let sign_ok =
            spec.format == Format::Xn && i == 0 && class[value[0] as usize] & charset::SIGN != 0;
        let bad = if sign_ok {
            charset::first_invalid_in(&value[1..], spec.data, charset::DIGIT).map(|j| j + 1)
        } else {
            Some(i)
        };
        bad.map(|i| (i, value[i]))
    } else if spec.format == Format::Xn {
        // x+n starts with C or D, never a digit.
        Some((0, value.first().copied().unwrap_or(0)))
    } else {
        None
    }
}

/// Decodes the fields of `fields` from `input[pos..]`: the hot loop, one precomputed
/// [`FieldOp`](crate::dialect::FieldOp) per field. Fills `spans`, translates character fields in
/// `translated` (a copy of the frame) when the dialect needs it, and returns where the fields end.
/// `TRANSLATE` is whether `translated` is `Some`: the ASCII loop is compiled without the
/// translation code (fewer live registers in the hot loop).
#[inline(always)]
fn decode_fields<const TRANSLATE: bool>(
    dialect: &Dialect,
    input: &[u8],
    mut pos: usize,
    fields: FieldSet,
    spans: &mut [Span; FIELD_MAX + 1],
    mut translated: Option<&mut [u8]>,
) -> Result<usize, DecodeError> {
    let total = input.len();
    for n in fields.iter() {
        let op = dialect.op(n);
        let field = Some(n as u8);
        if !op.defined {
            return Err(DecodeError::at(field, pos, ErrorKind::BitmapFieldUndefined));
        }
        let field_start = pos;
        let digits = op.prefix_digits as usize;
        let len = if digits == 0 {
            op.len as usize
        } else {
            let Some(prefix) = input.get(pos..pos + digits) else {
                return Err(DecodeError::at(
                    field,
                    pos,
                    ErrorKind::Truncated {
                        needed: digits,
                        available: total - pos,
                    },
                ));
            };
            let mut len = 0usize;
            for (i, &b) in prefix.iter().enumerate() {
                let v = b.wrapping_sub(op.prefix_zero);
                if v > 9 {
                    return Err(DecodeError::at(
                        field,
                        pos + i,
                        ErrorKind::BadLengthPrefix { byte: b },
                    ));
                }
                len = len * 10 + usize::from(v);
            }
            if len > op.len as usize {
                return Err(DecodeError::at(
                    field,
                    pos,
                    ErrorKind::TooLong {
                        len,
                        max: op.len as usize,
                    },
                ));
            }
            pos += digits;
            len
        };
        let end = pos + len;
        let Some(value) = input.get(pos..end) else {
            // Reported at the field's start, counting the prefix.
            return Err(DecodeError::at(
                field,
                field_start,
                ErrorKind::Truncated {
                    needed: digits + len,
                    available: total - field_start,
                },
            ));
        };
        // A translated field is checked after translation, as ASCII: a wire byte is valid
        // exactly when the character it stands for is (the class tables are built that way),
        // and the ASCII checks are word-at-a-time where the EBCDIC class tables are per byte.
        let valid = match translated.as_deref_mut() {
            Some(copy) if TRANSLATE && op.translate != Translate::None => {
                match copy.get_mut(pos..end) {
                    Some(v) => {
                        op.data
                            .decode_in_place(v, op.translate == Translate::Digits);
                        charset::all_valid(v, op.logical_check, Charset::Ascii)
                    }
                    None => false,
                }
            }
            _ => charset::all_valid(value, op.wire_check, op.data),
        };
        if !valid
            && let Some(spec) = dialect.field(n)
            && let Some((i, byte)) = charset_error(value, spec)
        {
            return Err(DecodeError::at(
                field,
                pos + i,
                ErrorKind::BadCharset {
                    byte,
                    format: spec.format,
                },
            ));
        }
        spans[n] = Span {
            start: pos as u16,
            end: end as u16,
        };
        pos = end;
    }
    Ok(pos)
}

impl Message {
    /// Decodes and validates one message (without its length frame).
    pub fn decode(dialect: &Dialect, frame: Bytes) -> Result<Message, DecodeError> {
        let total = frame.len();
        if total > u16::MAX as usize {
            return Err(DecodeError::at(
                None,
                0,
                ErrorKind::MessageTooLarge { len: total },
            ));
        }
        let (mti, fields, body) = parse_header(dialect, &frame)?;
        let mut spans = [Span::default(); FIELD_MAX + 1];
        // One copy of the frame, translated field by field as the loop validates them.
        let mut translated: Option<Box<[u8]>> = dialect.translates().then(|| Box::from(&*frame));
        let end = if translated.is_some() {
            decode_fields::<true>(
                dialect,
                &frame,
                body,
                fields,
                &mut spans,
                translated.as_deref_mut(),
            )?
        } else {
            decode_fields::<false>(dialect, &frame, body, fields, &mut spans, None)?
        };
        if end != total {
            return Err(DecodeError::at(
                None,
                end,
                ErrorKind::TrailingBytes { count: total - end },
            ));
        }
        Ok(Message {
            frame,
            translated,
            mti,
            fields,
            dialect_id: dialect.id(),
            spans,
        })
    }

    /// The message type indicator.
    #[inline]
    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// The present fields.
    #[inline]
    pub fn fields(&self) -> FieldSet {
        self.fields
    }

    /// Whether field `n` is present.
    #[inline]
    pub fn has(&self, n: usize) -> bool {
        self.fields.contains(n)
    }

    /// The logical value of field `n`: ASCII text for character fields, raw bytes for `b`.
    #[inline]
    pub fn field(&self, n: usize) -> Option<&[u8]> {
        if !self.fields.contains(n) {
            return None;
        }
        let s = self.spans[n];
        let buf: &[u8] = match &self.translated {
            Some(t) => t,
            None => &self.frame,
        };
        buf.get(s.start as usize..s.end as usize)
    }

    /// The wire bytes of field `n`'s value (EBCDIC stays EBCDIC), without its length prefix.
    #[inline]
    pub fn raw_field(&self, n: usize) -> Option<&[u8]> {
        if !self.fields.contains(n) {
            return None;
        }
        let s = self.spans[n];
        self.frame.get(s.start as usize..s.end as usize)
    }

    /// Field `n` as text (`None` when absent or when it is a binary field with non-UTF-8 bytes).
    #[inline]
    pub fn text(&self, n: usize) -> Option<&str> {
        self.field(n).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// True when `dialect` is the one that validated this message's values.
    #[inline]
    pub(crate) fn validated_by(&self, dialect: &Dialect) -> bool {
        self.dialect_id == dialect.id()
    }

    /// The frame this message was decoded from.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// Everything decode produced, for the differential test against [`reference::decode`].
    #[cfg(test)]
    #[allow(clippy::type_complexity)]
    pub(crate) fn parts(&self) -> (Mti, FieldSet, &[Span; FIELD_MAX + 1], Option<&[u8]>) {
        (
            self.mti,
            self.fields,
            &self.spans,
            self.translated.as_deref(),
        )
    }
}

/// The decoder as it was before the table-driven loop (nom `take` per field, checks in format
/// order), kept verbatim as the oracle of a differential test: the fast loop must accept and
/// reject exactly the same inputs, with the same error (field, offset, kind) and the same spans.
#[cfg(test)]
pub(crate) mod reference {
    use super::*;

    /// Parses one field value; returns the value's wire bytes.
    #[inline(always)]
    fn parse_field<'a>(input: &'a [u8], spec: &FieldSpec) -> PResult<'a, &'a [u8]> {
        let digits = spec.length.prefix_digits();
        let (rest, len) = if digits == 0 {
            (input, spec.max_len as usize)
        } else {
            let (rest, prefix) = take_exact(input, digits)?;
            // Digits are 0x30-0x39 in ASCII and 0xF0-0xF9 in every EBCDIC code page.
            let zero = if spec.prefix.is_ascii() { b'0' } else { 0xF0 };
            let mut len = 0usize;
            for (i, &b) in prefix.iter().enumerate() {
                let v = b.wrapping_sub(zero);
                if v > 9 {
                    return fail(input.len() - i, ErrorKind::BadLengthPrefix { byte: b });
                }
                len = len * 10 + usize::from(v);
            }
            if len > spec.max_len as usize {
                return fail(
                    input.len(),
                    ErrorKind::TooLong {
                        len,
                        max: spec.max_len as usize,
                    },
                );
            }
            (rest, len)
        };
        let (after, value) = take_exact(rest, len).map_err(|e| {
            // Report truncation at the field's start, counting the prefix.
            e.map(|_| Fail {
                remaining: input.len(),
                kind: ErrorKind::Truncated {
                    needed: digits + len,
                    available: input.len(),
                },
            })
        })?;
        if spec.format != Format::B {
            let class = spec.data.class_table();
            if let Some(i) = charset::first_invalid_in(value, spec.data, spec.format.class_mask()) {
                let sign_ok = spec.format == Format::Xn
                    && i == 0
                    && class[value[0] as usize] & charset::SIGN != 0;
                let bad = if sign_ok {
                    charset::first_invalid_in(&value[1..], spec.data, charset::DIGIT).map(|j| j + 1)
                } else {
                    Some(i)
                };
                if let Some(i) = bad {
                    return fail(
                        rest.len() - i,
                        ErrorKind::BadCharset {
                            byte: value[i],
                            format: spec.format,
                        },
                    );
                }
            } else if spec.format == Format::Xn {
                // x+n starts with C or D, never a digit.
                return fail(
                    rest.len(),
                    ErrorKind::BadCharset {
                        byte: value.first().copied().unwrap_or(0),
                        format: spec.format,
                    },
                );
            }
        }
        Ok((after, value))
    }

    /// The old `Message::decode`, returning the decoded parts.
    #[allow(clippy::type_complexity)]
    pub(crate) fn decode(
        dialect: &Dialect,
        frame: Bytes,
    ) -> Result<(Mti, FieldSet, [Span; FIELD_MAX + 1], Option<Box<[u8]>>), DecodeError> {
        let total = frame.len();
        if total > u16::MAX as usize {
            return Err(DecodeError::at(
                None,
                0,
                ErrorKind::MessageTooLarge { len: total },
            ));
        }
        let offset = |remaining: usize| total - remaining;
        let to_err = |field: Option<u8>| {
            move |e: nom::Err<Fail>| match e {
                nom::Err::Error(f) | nom::Err::Failure(f) => {
                    DecodeError::at(field, offset(f.remaining), f.kind)
                }
                nom::Err::Incomplete(_) => DecodeError::at(
                    field,
                    total,
                    ErrorKind::Truncated {
                        needed: 1,
                        available: 0,
                    },
                ),
            }
        };
        let input: &[u8] = &frame;
        let (rest, mti) = parse_mti(input, dialect.mti_charset()).map_err(to_err(None))?;
        let enc = dialect.bitmap_encoding();
        let (mut rest, primary) =
            parse_bitmap_word(rest, enc, dialect.mti_charset()).map_err(to_err(None))?;
        let secondary = if primary & (1 << 63) != 0 {
            let (r, s) =
                parse_bitmap_word(rest, enc, dialect.mti_charset()).map_err(to_err(None))?;
            if s == 0 {
                // Found by fuzzing: accepted, it made re-encoding 8 bytes shorter.
                return Err(DecodeError::at(
                    None,
                    offset(rest.len()),
                    ErrorKind::EmptySecondaryBitmap,
                ));
            }
            rest = r;
            s
        } else {
            0
        };
        let fields =
            FieldSet((u128::from(primary) << 64 | u128::from(secondary)) & !(1u128 << 127));
        let mut spans = [Span::default(); FIELD_MAX + 1];
        for n in fields.iter() {
            let Some(spec) = dialect.field(n) else {
                return Err(DecodeError::at(
                    Some(n as u8),
                    offset(rest.len()),
                    ErrorKind::BitmapFieldUndefined,
                ));
            };
            let (r, value) = parse_field(rest, spec).map_err(to_err(Some(n as u8)))?;
            let start = offset(r.len() + value.len());
            spans[n] = Span {
                start: start as u16,
                end: (start + value.len()) as u16,
            };
            rest = r;
        }
        if !rest.is_empty() {
            return Err(DecodeError::at(
                None,
                offset(rest.len()),
                ErrorKind::TrailingBytes { count: rest.len() },
            ));
        }
        let translated = dialect.translates().then(|| {
            let mut copy: Box<[u8]> = Box::from(input);
            for n in fields.iter() {
                // Every field in `fields` was defined above.
                if let Some(spec) = dialect.field(n)
                    && spec.format != Format::B
                {
                    let s = spans[n];
                    spec.data.decode_in_place(
                        &mut copy[s.start as usize..s.end as usize],
                        spec.format == Format::N,
                    );
                }
            }
            copy
        });
        Ok((mti, fields, spans, translated))
    }
}
