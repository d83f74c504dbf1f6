//! Encoding: a message is built field by field in its logical form (ASCII text, raw bytes for
//! `b`) and the dialect turns it into wire bytes. The bitmaps are derived from the fields set.
//!
//! Values are kept in one arena per builder (one allocation, not one per field). Encoding writes
//! straight into the output buffer, sized up front; an error leaves the buffer as it was.
//! Fixed-length fields shorter than their length are padded the ISO way: `n` with leading zeros,
//! `an`/`ans` with trailing spaces; `b`, `z` and `x+n` must have the exact length.
//!
//! Validation and writing run from the dialect's per-field op table (see `dialect::FieldOp`); the
//! general per-format rule runs only to name the precise error. Re-encoding a decoded message in
//! the dialect that decoded it copies its frame (the wire form is canonical; debug builds check
//! it against the field writer on every such encode). The previous encoder is kept in
//! `reference` as the oracle of a differential test.

use bytes::{Bytes, BytesMut};

use crate::charset::{self, Charset};
use crate::dialect::{
    BitmapEncoding, Dialect, FIELD_MAX, FieldOp, FieldSpec, Format, LengthKind, Translate,
};
use crate::error::EncodeError;
use crate::message::{FieldSet, Message, Mti};

/// Anything whose fields can be encoded.
pub(crate) trait FieldSource {
    fn mti(&self) -> Mti;
    fn field_set(&self) -> FieldSet;
    fn value(&self, n: usize) -> &[u8];
    /// The wire bytes this source encodes to in `dialect`, when known without encoding: a
    /// message decoded by that very dialect (bitmaps aside, see [`encode_canonical`]).
    fn canonical_frame(&self, _dialect: &Dialect) -> Option<&[u8]> {
        None
    }
}

impl FieldSource for Message {
    fn mti(&self) -> Mti {
        Message::mti(self)
    }
    fn field_set(&self) -> FieldSet {
        self.fields()
    }
    #[inline]
    fn value(&self, n: usize) -> &[u8] {
        self.field(n).unwrap_or_default()
    }
    /// Re-encoding in the dialect that decoded it reproduces the frame: the wire form is
    /// canonical (every wire byte a decode accepts maps back to itself; lengths and prefixes
    /// are what the frame says). Debug builds, and so the tests and the fuzz target, check
    /// this against the field-by-field writer on every such encode.
    #[inline]
    fn canonical_frame(&self, dialect: &Dialect) -> Option<&[u8]> {
        self.validated_by(dialect).then(|| &self.frame()[..])
    }
}

/// A message under construction.
#[derive(Clone)]
pub struct MessageBuilder {
    mti: Mti,
    fields: FieldSet,
    arena: Vec<u8>,
    spans: [(u32, u32); FIELD_MAX + 1],
    /// The first `set` with a field number out of range, reported by `encode`.
    bad_field: Option<usize>,
}

impl std::fmt::Debug for MessageBuilder {
    /// Shows the MTI and field numbers only: values may hold a PAN.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageBuilder")
            .field("mti", &self.mti)
            .field("fields", &self.fields.iter().collect::<Vec<_>>())
            .finish()
    }
}

impl MessageBuilder {
    /// An empty message of type `mti`.
    pub fn new(mti: Mti) -> MessageBuilder {
        MessageBuilder {
            mti,
            fields: FieldSet::EMPTY,
            arena: Vec::with_capacity(384),
            spans: [(0, 0); FIELD_MAX + 1],
            bad_field: None,
        }
    }

    /// Sets field `n` (2..=128) to `value` (logical form). A number out of range is reported by
    /// [`MessageBuilder::encode`]; setting a field again replaces it.
    pub fn set(&mut self, n: usize, value: impl AsRef<[u8]>) -> &mut MessageBuilder {
        let value = value.as_ref();
        if !(2..=FIELD_MAX).contains(&n) {
            self.bad_field.get_or_insert(n);
            return self;
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(value);
        self.spans[n] = (start as u32, self.arena.len() as u32);
        self.fields.insert(n);
        self
    }

    /// Sets a numeric field from a number (zero-padded to the field's length on encode).
    pub fn set_number(&mut self, n: usize, value: u64) -> &mut MessageBuilder {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut v = value;
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.set(n, &buf[i..])
    }

    /// Removes field `n`.
    pub fn clear(&mut self, n: usize) -> &mut MessageBuilder {
        if (2..=FIELD_MAX).contains(&n) {
            self.fields.remove(n);
        }
        self
    }

    /// Changes the MTI.
    pub fn set_mti(&mut self, mti: Mti) -> &mut MessageBuilder {
        self.mti = mti;
        self
    }

    /// The logical value of field `n` as set.
    pub fn get(&self, n: usize) -> Option<&[u8]> {
        self.fields.contains(n).then(|| {
            let (s, e) = self.spans[n];
            &self.arena[s as usize..e as usize]
        })
    }

    /// The fields set so far.
    pub fn fields(&self) -> FieldSet {
        self.fields
    }

    /// The MTI.
    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// Encodes into a new buffer.
    pub fn encode(&self, dialect: &Dialect) -> Result<Bytes, EncodeError> {
        if let Some(n) = self.bad_field {
            return Err(EncodeError::NoSuchField { field: n });
        }
        encode_new(self, dialect)
    }

    /// Encodes, appending to `out` (e.g. a framing codec's write buffer).
    pub fn encode_into(&self, dialect: &Dialect, out: &mut BytesMut) -> Result<(), EncodeError> {
        if let Some(n) = self.bad_field {
            return Err(EncodeError::NoSuchField { field: n });
        }
        encode_source(self, dialect, out)
    }
}

impl FieldSource for MessageBuilder {
    fn mti(&self) -> Mti {
        self.mti
    }
    fn field_set(&self) -> FieldSet {
        self.fields
    }
    #[inline]
    fn value(&self, n: usize) -> &[u8] {
        let (s, e) = self.spans[n];
        &self.arena[s as usize..e as usize]
    }
}

impl Message {
    /// Re-encodes this message (in the same or another dialect).
    pub fn encode(&self, dialect: &Dialect) -> Result<Bytes, EncodeError> {
        encode_new(self, dialect)
    }

    /// Re-encodes, appending to `out`.
    pub fn encode_into(&self, dialect: &Dialect, out: &mut BytesMut) -> Result<(), EncodeError> {
        encode_source(self, dialect, out)
    }

    /// A builder holding a copy of this message.
    pub fn to_builder(&self) -> MessageBuilder {
        let mut b = MessageBuilder::new(self.mti());
        for n in self.fields().iter() {
            b.set(n, self.value(n));
        }
        b
    }
}

/// A response to `request`: MTI `response_mti`, with every field of `echo` that the request has
/// copied unchanged. The caller then sets the rest (DE 39, DE 38, DE 55 ...).
pub fn response_to(request: &Message, response_mti: Mti, echo: &[usize]) -> MessageBuilder {
    let mut b = MessageBuilder::new(response_mti);
    for &n in echo {
        if let Some(v) = request.field(n) {
            b.set(n, v);
        }
    }
    b
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Checks one value against its field (the general, slow rule: the precise error) and returns
/// its wire length.
#[cold]
#[inline(never)]
fn check_value(n: usize, spec: &FieldSpec, value: &[u8]) -> Result<usize, EncodeError> {
    let field = n as u8;
    let len = value.len();
    let max = spec.max_len as usize;
    if len > max {
        return Err(EncodeError::TooLong { field, len, max });
    }
    if spec.length == LengthKind::Fixed
        && len != max
        && matches!(spec.format, Format::B | Format::Z | Format::Xn)
    {
        return Err(EncodeError::WrongLength {
            field,
            len,
            expected: max,
        });
    }
    if spec.format != Format::B {
        let table = charset::logical_class();
        let (skip, mask) = match spec.format {
            Format::Xn => {
                if value
                    .first()
                    .is_none_or(|c| table[*c as usize] & charset::SIGN == 0)
                {
                    return Err(EncodeError::BadCharset {
                        field,
                        index: 0,
                        byte: value.first().copied().unwrap_or(0),
                        format: spec.format,
                    });
                }
                (1, charset::DIGIT)
            }
            f => (0, f.class_mask()),
        };
        if let Some(i) = charset::first_invalid_in(&value[skip..], Charset::Ascii, mask) {
            return Err(EncodeError::BadCharset {
                field,
                index: i + skip,
                byte: value[i + skip],
                format: spec.format,
            });
        }
    }
    Ok(if spec.length == LengthKind::Fixed {
        max
    } else {
        len
    })
}

/// Writes into a buffer that `measure` sized exactly. Slicing past the end would mean `measure`
/// and `write` disagree: a bug, which panics loudly rather than writing a wrong message.
struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn take(&mut self, len: usize) -> &mut [u8] {
        let start = self.pos;
        self.pos += len;
        &mut self.buf[start..start + len]
    }
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.take(bytes.len()).copy_from_slice(bytes);
    }
}

/// Writes the length prefix (nothing for a fixed field).
#[inline(always)]
fn put_prefix(out: &mut Cursor<'_>, op: &FieldOp, len: usize) {
    let z = op.prefix_zero;
    match op.prefix_digits {
        2 => out.put(&[z + (len / 10 % 10) as u8, z + (len % 10) as u8]),
        3 => out.put(&[
            z + (len / 100 % 10) as u8,
            z + (len / 10 % 10) as u8,
            z + (len % 10) as u8,
        ]),
        _ => {}
    }
}

/// Writes a value (checked by `measure`), translated and padded to `wire_len`.
#[inline(always)]
fn put_value(out: &mut Cursor<'_>, op: &FieldOp, value: &[u8], wire_len: usize) {
    let pad = wire_len - value.len();
    if pad > 0 && op.pad_left {
        out.take(pad).fill(op.pad);
    }
    let dst = out.take(value.len());
    match op.translate {
        Translate::None => dst.copy_from_slice(value),
        // EBCDIC digits are ASCII digits + 0xC0 in every code page.
        Translate::Digits => {
            for (o, &b) in dst.iter_mut().zip(value) {
                *o = b.wrapping_add(0xC0);
            }
        }
        Translate::Table => {
            let enc = op.data.encode_table();
            for (o, &b) in dst.iter_mut().zip(value) {
                *o = enc[b as usize];
            }
        }
    }
    if pad > 0 && !op.pad_left {
        out.take(pad).fill(op.pad);
    }
}

fn put_bitmap(out: &mut Cursor<'_>, dialect: &Dialect, word: u64) {
    match dialect.bitmap_encoding() {
        BitmapEncoding::Binary => out.put(&word.to_be_bytes()),
        BitmapEncoding::Hex => {
            let enc = dialect.mti_charset().encode_table();
            let dst = out.take(16);
            for (i, o) in dst.iter_mut().enumerate() {
                *o = enc[HEX_UPPER[(word >> ((15 - i) * 4)) as usize & 15] as usize];
            }
        }
    }
}

/// Validates every field and returns the exact encoded size.
#[inline]
fn measure<S: FieldSource>(src: &S, dialect: &Dialect) -> Result<usize, EncodeError> {
    let fields = src.field_set();
    let word = match dialect.bitmap_encoding() {
        BitmapEncoding::Binary => 8,
        BitmapEncoding::Hex => 16,
    };
    let mut size = 4 + if fields.needs_secondary() {
        2 * word
    } else {
        word
    };
    for n in fields.iter() {
        let op = dialect.op(n);
        let value = src.value(n);
        let len = value.len();
        let max = op.len as usize;
        let wire_len = if op.defined
            && len <= max
            && !(op.exact && len != max)
            && charset::all_valid(value, op.logical_check, Charset::Ascii)
        {
            if op.prefix_digits == 0 { max } else { len }
        } else {
            let spec = dialect
                .field(n)
                .ok_or_else(|| EncodeError::FieldUndefined {
                    field: n as u8,
                    dialect: dialect.name().to_string(),
                })?;
            check_value(n, spec, value)?
        };
        size += op.prefix_digits as usize + wire_len;
    }
    Ok(size)
}

/// Completes `out`, a copy of the canonical frame of `src` in `dialect`: rewrites the bitmaps
/// when they are hex (a decode accepts lowercase hex digits, the encoder writes uppercase).
/// Debug builds also run the field-by-field writer and check that it produces the same bytes,
/// so tests and fuzzing keep proving the wire form canonical.
#[inline]
fn encode_canonical<S: FieldSource>(src: &S, dialect: &Dialect, out: &mut [u8]) {
    if dialect.bitmap_encoding() == BitmapEncoding::Hex {
        let mut cursor = Cursor { buf: out, pos: 4 };
        let (primary, secondary) = src.field_set().wire_bitmaps();
        put_bitmap(&mut cursor, dialect, primary);
        if let Some(s) = secondary {
            put_bitmap(&mut cursor, dialect, s);
        }
    }
    if cfg!(debug_assertions) && out.len() <= 8192 {
        let mut check = [0u8; 8192];
        write(
            src,
            dialect,
            &mut Cursor {
                buf: &mut check[..out.len()],
                pos: 0,
            },
        );
        assert!(
            check[..out.len()] == *out,
            "re-encoding a decoded message must reproduce its frame"
        );
    }
}

/// Encodes into a buffer of exactly the right size (one allocation; `freeze` adds none).
pub(crate) fn encode_new<S: FieldSource>(src: &S, dialect: &Dialect) -> Result<Bytes, EncodeError> {
    if let Some(frame) = src.canonical_frame(dialect) {
        let mut out = BytesMut::from(frame);
        encode_canonical(src, dialect, &mut out);
        return Ok(out.freeze());
    }
    let size = measure(src, dialect)?;
    // Not `BytesMut::zeroed`: that is `calloc`, which glibc serves without its thread cache
    // (about 200 instructions more per message than `malloc` and a short `memset`).
    let mut out = BytesMut::with_capacity(size);
    out.resize(size, 0);
    write(
        src,
        dialect,
        &mut Cursor {
            buf: &mut out,
            pos: 0,
        },
    );
    Ok(out.freeze())
}

pub(crate) fn encode_source<S: FieldSource>(
    src: &S,
    dialect: &Dialect,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    if let Some(frame) = src.canonical_frame(dialect) {
        let start = out.len();
        out.extend_from_slice(frame);
        encode_canonical(src, dialect, &mut out[start..]);
        return Ok(());
    }
    // Validate and size first, so that an error writes nothing and the buffer grows once.
    let size = measure(src, dialect)?;
    let start = out.len();
    out.resize(start + size, 0);
    write(
        src,
        dialect,
        &mut Cursor {
            buf: &mut out[start..],
            pos: 0,
        },
    );
    Ok(())
}

/// Writes a message `measure` accepted.
#[inline]
fn write<S: FieldSource>(src: &S, dialect: &Dialect, out: &mut Cursor<'_>) {
    let fields = src.field_set();
    let mti = src.mti();
    let menc = dialect.mti_charset().encode_table();
    out.put(&mti.as_bytes().map(|b| menc[b as usize]));
    let (primary, secondary) = fields.wire_bitmaps();
    put_bitmap(out, dialect, primary);
    if let Some(s) = secondary {
        put_bitmap(out, dialect, s);
    }
    for n in fields.iter() {
        // Checked by `measure`: defined, valid.
        let op = dialect.op(n);
        let value = src.value(n);
        let wire_len = if op.prefix_digits == 0 {
            op.len as usize
        } else {
            value.len()
        };
        put_prefix(out, op, wire_len);
        put_value(out, op, value, wire_len);
    }
    // `measure` (or the frame's length) and `write` must agree; a short write would send zeros.
    assert_eq!(out.pos, out.buf.len(), "encoder size invariant");
}

/// The encoder as it was before the table-driven loops, kept verbatim as the oracle of a
/// differential test: the same values must give the same bytes or the same error.
#[cfg(test)]
pub(crate) mod reference {
    use super::*;

    fn put_prefix(out: &mut Cursor<'_>, spec: &FieldSpec, len: usize) {
        // Digits are 0x30-0x39 in ASCII and 0xF0-0xF9 in every EBCDIC code page.
        let zero = if spec.prefix.is_ascii() { b'0' } else { 0xF0 };
        let d = |v: usize| zero + v as u8;
        match spec.length {
            LengthKind::Fixed => {}
            LengthKind::LlVar => out.put(&[d(len / 10 % 10), d(len % 10)]),
            LengthKind::LllVar => out.put(&[d(len / 100 % 10), d(len / 10 % 10), d(len % 10)]),
        }
    }

    fn put_value(out: &mut Cursor<'_>, spec: &FieldSpec, value: &[u8], wire_len: usize) {
        let pad = wire_len - value.len();
        let data = spec.data;
        let enc = data.encode_table();
        if pad > 0 && spec.format == Format::N {
            out.take(pad).fill(enc[b'0' as usize]);
        }
        let dst = out.take(value.len());
        if spec.format == Format::B || data.is_ascii() {
            dst.copy_from_slice(value);
        } else if spec.format == Format::N {
            // EBCDIC digits are ASCII digits + 0xC0 in every code page.
            for (o, &b) in dst.iter_mut().zip(value) {
                *o = b.wrapping_add(0xC0);
            }
        } else {
            for (o, &b) in dst.iter_mut().zip(value) {
                *o = enc[b as usize];
            }
        }
        if pad > 0 && spec.format != Format::N {
            out.take(pad).fill(enc[b' ' as usize]);
        }
    }

    /// Validates every field and returns the exact encoded size.
    fn measure<S: FieldSource>(src: &S, dialect: &Dialect) -> Result<usize, EncodeError> {
        let fields = src.field_set();
        let word = match dialect.bitmap_encoding() {
            BitmapEncoding::Binary => 8,
            BitmapEncoding::Hex => 16,
        };
        let mut size = 4 + if fields.needs_secondary() {
            2 * word
        } else {
            word
        };
        for n in fields.iter() {
            let spec = dialect
                .field(n)
                .ok_or_else(|| EncodeError::FieldUndefined {
                    field: n as u8,
                    dialect: dialect.name().to_string(),
                })?;
            let wire_len = check_value(n, spec, src.value(n))?;
            size += spec.length.prefix_digits() + wire_len;
        }
        Ok(size)
    }

    /// Writes a message `measure` accepted.
    fn write<S: FieldSource>(src: &S, dialect: &Dialect, out: &mut Cursor<'_>) {
        let fields = src.field_set();
        let mti = src.mti();
        let menc = dialect.mti_charset().encode_table();
        out.put(&mti.as_bytes().map(|b| menc[b as usize]));
        let (primary, secondary) = fields.wire_bitmaps();
        put_bitmap(out, dialect, primary);
        if let Some(s) = secondary {
            put_bitmap(out, dialect, s);
        }
        for n in fields.iter() {
            // Checked by `measure`: defined, valid.
            let Some(spec) = dialect.field(n) else {
                continue;
            };
            let value = src.value(n);
            let wire_len = if spec.length == LengthKind::Fixed {
                spec.max_len as usize
            } else {
                value.len()
            };
            put_prefix(out, spec, wire_len);
            put_value(out, spec, value, wire_len);
        }
        // `measure` (or the frame's length) and `write` must agree; a short write would send zeros.
        assert_eq!(out.pos, out.buf.len(), "encoder size invariant");
    }

    /// Encodes `src` the old way.
    pub(crate) fn encode(src: &MessageBuilder, dialect: &Dialect) -> Result<Vec<u8>, EncodeError> {
        let size = measure(src, dialect)?;
        let mut out = vec![0; size];
        write(
            src,
            dialect,
            &mut Cursor {
                buf: &mut out,
                pos: 0,
            },
        );
        Ok(out)
    }
}
