//! A dialect is data: for each of the 128 fields its format, length kind and maximum, and the
//! character encodings of the MTI, the bitmap, the data and the length prefixes.
//!
//! The built-in dialects (`ascii`, `mastercard`) are themselves dialect files compiled into the
//! binary (`iso8583/dialects/*.toml`), parsed and checked once. A bank whose network differs in a
//! detail writes its own file (format: `docs/dialect-file.md`) instead of recompiling.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use crate::charset::{self, Charset};
use crate::error::DialectError;

/// Highest field number.
pub const FIELD_MAX: usize = 128;

/// The format of a field's value (ISO 8583 notation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Digits `0-9`.
    N,
    /// Letters, digits and space.
    An,
    /// Printable ASCII (0x20..=0x7E).
    Ans,
    /// Raw bytes; lengths count bytes.
    B,
    /// Track 2/3 characters: digits and `: ; < = > ?` (`=` is the separator).
    Z,
    /// `x+n`: `C` (credit) or `D` (debit) then digits (ISO fee amounts, DE 28-31, 97).
    #[serde(rename = "x+n")]
    Xn,
}

impl Format {
    /// The class bit every byte of the value must have (the first byte of `x+n` is checked apart).
    #[inline]
    pub(crate) fn class_mask(self) -> u8 {
        match self {
            Format::N | Format::Xn => charset::DIGIT,
            Format::An => charset::ALNUM,
            Format::Ans => charset::PRINT,
            Format::Z => charset::TRACK,
            Format::B => 0,
        }
    }

    /// The name used in dialect files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::N => "n",
            Format::An => "an",
            Format::Ans => "ans",
            Format::B => "b",
            Format::Z => "z",
            Format::Xn => "x+n",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the length of a field is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum LengthKind {
    /// Always exactly `max` characters (bytes for `b`).
    #[serde(rename = "fixed")]
    Fixed,
    /// A 2-digit length prefix, then up to `max` (≤ 99).
    #[serde(rename = "LLVAR")]
    LlVar,
    /// A 3-digit length prefix, then up to `max` (≤ 999).
    #[serde(rename = "LLLVAR")]
    LllVar,
}

impl LengthKind {
    /// Number of prefix digits.
    #[inline]
    pub fn prefix_digits(self) -> usize {
        match self {
            LengthKind::Fixed => 0,
            LengthKind::LlVar => 2,
            LengthKind::LllVar => 3,
        }
    }
}

/// How the primary and secondary bitmaps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BitmapEncoding {
    /// 8 raw bytes per bitmap.
    Binary,
    /// 16 hex characters per bitmap, in the MTI's charset; written uppercase, read in either case.
    Hex,
}

/// The definition of one data element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Format of the value.
    pub format: Format,
    /// Fixed or variable length.
    pub length: LengthKind,
    /// Exact length (fixed) or maximum (variable), in characters, or bytes for `b`.
    pub max_len: u16,
    /// Encoding of the value's characters (ignored for `b`).
    pub data: Charset,
    /// Encoding of the length prefix digits.
    pub prefix: Charset,
}

/// How a field's bytes are checked against its format: the format and charset folded into one
/// value, so the hot loops dispatch once per field (one jump) instead of testing format, charset
/// and special cases one after the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// `b`: any byte.
    Binary,
    /// ASCII digits 0x30..=0x39.
    AsciiDigits,
    /// EBCDIC digits 0xF0..=0xF9 (the same in every supported code page).
    EbcdicDigits,
    /// ASCII letters, digits and space.
    AsciiAlnum,
    /// ASCII 0x20..=0x7E.
    AsciiPrint,
    /// ASCII 0x30..=0x3F.
    AsciiTrack,
    /// Through the charset's class table with this class mask (EBCDIC `an`, `ans`, `z`).
    Classes(u8),
    /// `x+n`: a sign character then digits (rare; checked by the general code).
    Signed,
}

impl Check {
    /// The check of format `format` for bytes in charset `cs`.
    pub(crate) fn new(format: Format, cs: Charset) -> Check {
        match (format, cs.is_ascii()) {
            (Format::B, _) => Check::Binary,
            (Format::Xn, _) => Check::Signed,
            (Format::N, true) => Check::AsciiDigits,
            (Format::N, false) => Check::EbcdicDigits,
            (Format::An, true) => Check::AsciiAlnum,
            (Format::Ans, true) => Check::AsciiPrint,
            (Format::Z, true) => Check::AsciiTrack,
            (f, false) => Check::Classes(f.class_mask()),
        }
    }
}

/// How the wire bytes of a character field become logical (ASCII) bytes and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Translate {
    /// The wire byte is the logical byte (ASCII data, or `b`).
    None,
    /// EBCDIC digits: logical = wire - 0xC0 (vectorizes).
    Digits,
    /// Through the charset's tables.
    Table,
}

/// One field's definition flattened into what the decode and encode loops need (14 bytes, so
/// the whole table is under 2 KiB and stays in L1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldOp {
    /// False for fields the dialect does not define (and for entries 0 and 1).
    pub(crate) defined: bool,
    /// 0 (fixed), 2 (LLVAR) or 3 (LLLVAR).
    pub(crate) prefix_digits: u8,
    /// The wire byte of the digit 0 in the prefix charset (digits are contiguous in every one).
    pub(crate) prefix_zero: u8,
    /// Check of the wire bytes (decode).
    pub(crate) wire_check: Check,
    /// Check of the logical bytes (encode).
    pub(crate) logical_check: Check,
    /// Wire/logical translation.
    pub(crate) translate: Translate,
    /// Exact length (fixed) or maximum (variable).
    pub(crate) len: u16,
    /// Charset of the value's characters.
    pub(crate) data: Charset,
    /// A fixed-length field whose value must have exactly `len` (`b`, `z`, `x+n`: no padding).
    pub(crate) exact: bool,
    /// Padding of a short fixed-length value: leading (`n`, zeros) or trailing (spaces).
    pub(crate) pad_left: bool,
    /// The wire byte of that padding character.
    pub(crate) pad: u8,
}

impl FieldOp {
    pub(crate) const UNDEFINED: FieldOp = FieldOp {
        defined: false,
        prefix_digits: 0,
        prefix_zero: b'0',
        wire_check: Check::Binary,
        logical_check: Check::Binary,
        translate: Translate::None,
        len: 0,
        data: Charset::Ascii,
        exact: false,
        pad_left: false,
        pad: b' ',
    };

    fn new(spec: FieldSpec) -> FieldOp {
        let translate = match (spec.format, spec.data.is_ascii()) {
            (Format::B, _) | (_, true) => Translate::None,
            (Format::N, false) => Translate::Digits,
            (_, false) => Translate::Table,
        };
        FieldOp {
            defined: true,
            prefix_digits: spec.length.prefix_digits() as u8,
            // Digits are 0x30-0x39 in ASCII and 0xF0-0xF9 in every EBCDIC code page.
            prefix_zero: if spec.prefix.is_ascii() { b'0' } else { 0xF0 },
            wire_check: Check::new(spec.format, spec.data),
            logical_check: Check::new(spec.format, Charset::Ascii),
            translate,
            len: spec.max_len,
            data: spec.data,
            exact: spec.length == LengthKind::Fixed
                && matches!(spec.format, Format::B | Format::Z | Format::Xn),
            pad_left: spec.format == Format::N,
            pad: spec.data.encode_table()
                [usize::from(if spec.format == Format::N { b'0' } else { b' ' })],
        }
    }
}

/// A complete wire dialect. Cheap to clone (about 3 KiB, no heap but the name).
#[derive(Clone)]
pub struct Dialect {
    name: String,
    mti: Charset,
    bitmap: BitmapEncoding,
    /// Dialect-wide charsets (a field may have its own).
    data: Charset,
    prefix: Charset,
    /// Index = field number; `None` = not defined (a message carrying it is rejected).
    /// Entries 0 and 1 are always `None` (field 1 is the secondary bitmap, derived).
    fields: [Option<FieldSpec>; FIELD_MAX + 1],
    /// Per field, everything the decode and encode loops need, precomputed from `fields` (see
    /// [`FieldOp`]); entries 0, 1 and undefined fields have `defined == false`.
    ops: [FieldOp; FIELD_MAX + 1],
    /// True when any character anywhere is not ASCII on the wire, so decode must translate.
    translates: bool,
    /// Identity of this parse (clones share it): a message decoded with a dialect of the same
    /// id holds values already valid for it, and re-encodes without validating them again.
    id: u64,
}

impl PartialEq for Dialect {
    /// Same settings and field table (the parse identity is not compared).
    fn eq(&self, other: &Dialect) -> bool {
        self.name == other.name
            && self.mti == other.mti
            && self.bitmap == other.bitmap
            && self.data == other.data
            && self.prefix == other.prefix
            && self.fields == other.fields
    }
}

impl Eq for Dialect {}

impl fmt::Debug for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dialect")
            .field("name", &self.name)
            .field("mti", &self.mti)
            .field("bitmap", &self.bitmap)
            .finish_non_exhaustive()
    }
}

const ASCII_TOML: &str = include_str!("../dialects/ascii.toml");
const MASTERCARD_TOML: &str = include_str!("../dialects/mastercard.toml");

/// Names accepted by [`Dialect::builtin`].
pub const BUILTIN_NAMES: [&str; 2] = ["ascii", "mastercard"];

impl Dialect {
    /// The `ascii` dialect of `docs/network.md`: ASCII characters and prefixes, binary bitmaps.
    pub fn ascii() -> Dialect {
        static D: OnceLock<Dialect> = OnceLock::new();
        D.get_or_init(|| {
            Dialect::parse(ASCII_TOML, &|_| None).expect("built-in dialect `ascii` is valid")
        })
        .clone()
    }

    /// The `mastercard` dialect: EBCDIC cp037 characters, prefixes and MTI, binary bitmaps.
    pub fn mastercard() -> Dialect {
        static D: OnceLock<Dialect> = OnceLock::new();
        D.get_or_init(|| {
            Dialect::from_toml_str(MASTERCARD_TOML).expect("built-in dialect `mastercard` is valid")
        })
        .clone()
    }

    /// A built-in dialect by name (`ascii`, `mastercard`).
    pub fn builtin(name: &str) -> Option<Dialect> {
        match name {
            "ascii" => Some(Dialect::ascii()),
            "mastercard" => Some(Dialect::mastercard()),
            _ => None,
        }
    }

    /// Parses a dialect file (format: `docs/dialect-file.md`). `base` may name a built-in.
    pub fn from_toml_str(text: &str) -> Result<Dialect, DialectError> {
        Dialect::parse(text, &|name| Dialect::builtin(name))
    }

    /// Reads and parses a dialect file. The only I/O in the crate's core, done at start-up.
    pub fn load(path: impl AsRef<Path>) -> Result<Dialect, DialectError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DialectError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Dialect::from_toml_str(&text)
    }

    /// A built-in name, else a path to a dialect file.
    pub fn by_name_or_path(name: &str) -> Result<Dialect, DialectError> {
        match Dialect::builtin(name) {
            Some(d) => Ok(d),
            None => Dialect::load(name),
        }
    }

    fn parse(
        text: &str,
        builtin: &dyn Fn(&str) -> Option<Dialect>,
    ) -> Result<Dialect, DialectError> {
        let file: DialectFile =
            toml::from_str(text).map_err(|e| DialectError::Syntax(e.to_string()))?;
        let base = match &file.base {
            Some(b) => Some(builtin(b).ok_or_else(|| DialectError::UnknownBase(b.clone()))?),
            None => None,
        };
        let code_page = match file.code_page.as_deref() {
            None => None,
            Some("037") => Some(Charset::Cp037),
            Some("500") => Some(Charset::Cp500),
            Some("1047") => Some(Charset::Cp1047),
            Some(other) => return Err(DialectError::UnknownCodePage(other.to_string())),
        };
        let resolve =
            |name: Option<EncodingName>, inherited: Option<Charset>, what: &str| match name {
                Some(EncodingName::Ascii) => Ok(Charset::Ascii),
                Some(EncodingName::Ebcdic) => {
                    code_page.ok_or_else(|| DialectError::MissingCodePage(what.to_string()))
                }
                None => inherited.ok_or_else(|| DialectError::MissingSetting(what.to_string())),
            };
        // Inherited dialect-wide charsets: a base's data/prefix charset, re-pointed to the new code
        // page when the file changes only the code page.
        let rebase = |c: Charset| match (c, code_page) {
            (Charset::Ascii, _) | (_, None) => c,
            (_, Some(cp)) => cp,
        };
        let (base_mti, base_data, base_prefix, base_bitmap) = match &base {
            Some(b) => (
                Some(rebase(b.mti)),
                Some(rebase(b.data)),
                Some(rebase(b.prefix)),
                Some(b.bitmap),
            ),
            None => (None, None, None, None),
        };
        let mti = resolve(file.mti, base_mti, "mti")?;
        let data = resolve(file.data, base_data, "data")?;
        let prefix = resolve(file.length_prefix, base_prefix, "length_prefix")?;
        let bitmap = file
            .bitmap
            .or(base_bitmap)
            .ok_or_else(|| DialectError::MissingSetting("bitmap".to_string()))?;

        let mut fields: [Option<FieldSpec>; FIELD_MAX + 1] = [None; FIELD_MAX + 1];
        if let Some(b) = &base {
            // A base field follows the new dialect-wide charsets unless it had its own.
            for (slot, f) in fields.iter_mut().zip(b.fields.iter()) {
                *slot = f.map(|f| FieldSpec {
                    data: if f.data == b.data {
                        data
                    } else {
                        rebase(f.data)
                    },
                    prefix: if f.prefix == b.prefix {
                        prefix
                    } else {
                        rebase(f.prefix)
                    },
                    ..f
                });
            }
        }
        for (key, entry) in &file.fields {
            let n: usize = key
                .parse()
                .ok()
                .filter(|n| (2..=FIELD_MAX).contains(n))
                .ok_or_else(|| DialectError::BadFieldNumber(key.clone()))?;
            if entry.defined == Some(false) {
                fields[n] = None;
                continue;
            }
            let old = fields[n];
            let format =
                entry
                    .format
                    .or(old.map(|f| f.format))
                    .ok_or(DialectError::IncompleteField {
                        field: n,
                        missing: "format",
                    })?;
            let length =
                entry
                    .length
                    .or(old.map(|f| f.length))
                    .ok_or(DialectError::IncompleteField {
                        field: n,
                        missing: "length",
                    })?;
            let max_len =
                entry
                    .max
                    .or(old.map(|f| f.max_len))
                    .ok_or(DialectError::IncompleteField {
                        field: n,
                        missing: "max",
                    })?;
            let data = resolve(
                entry.data,
                Some(old.map(|f| f.data).unwrap_or(data)),
                "data",
            )?;
            let prefix = resolve(
                entry.length_prefix,
                Some(old.map(|f| f.prefix).unwrap_or(prefix)),
                "length_prefix",
            )?;
            let limit = match length {
                LengthKind::Fixed => 999,
                LengthKind::LlVar => 99,
                LengthKind::LllVar => 999,
            };
            if max_len == 0 || max_len > limit {
                return Err(DialectError::BadMax {
                    field: n,
                    max: max_len,
                    limit,
                });
            }
            if format == Format::Xn && max_len < 2 {
                return Err(DialectError::BadMax {
                    field: n,
                    max: max_len,
                    limit,
                });
            }
            fields[n] = Some(FieldSpec {
                format,
                length,
                max_len,
                data,
                prefix,
            });
        }
        if base.is_none()
            && let Some(n) = (2..=FIELD_MAX)
                .find(|&n| fields[n].is_none() && !file.fields.contains_key(&n.to_string()))
        {
            return Err(DialectError::MissingField(n));
        }
        let translates = !mti.is_ascii()
            || fields
                .iter()
                .flatten()
                .any(|f| !f.prefix.is_ascii() || (f.format != Format::B && !f.data.is_ascii()));
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let ops = fields.map(|f| f.map_or(FieldOp::UNDEFINED, FieldOp::new));
        Ok(Dialect {
            id,
            ops,
            name: file.name,
            mti,
            bitmap,
            data,
            prefix,
            fields,
            translates,
        })
    }

    /// The dialect's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Definition of field `n` (2..=128), `None` when the dialect leaves it undefined.
    #[inline]
    pub fn field(&self, n: usize) -> Option<&FieldSpec> {
        self.fields.get(n).and_then(|f| f.as_ref())
    }

    /// The precomputed operation of field `n` (0..=128; `defined == false` when not defined).
    #[inline(always)]
    pub(crate) fn op(&self, n: usize) -> &FieldOp {
        self.ops.get(n).unwrap_or(&FieldOp::UNDEFINED)
    }

    /// Encoding of the MTI (and of hex bitmaps).
    #[inline]
    pub fn mti_charset(&self) -> Charset {
        self.mti
    }

    /// Bitmap encoding.
    #[inline]
    pub fn bitmap_encoding(&self) -> BitmapEncoding {
        self.bitmap
    }

    /// See the `id` field.
    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// True when decoding must translate characters (some charset is not ASCII).
    #[inline]
    pub(crate) fn translates(&self) -> bool {
        self.translates
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum EncodingName {
    Ascii,
    Ebcdic,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DialectFile {
    name: String,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    code_page: Option<String>,
    #[serde(default)]
    mti: Option<EncodingName>,
    #[serde(default)]
    bitmap: Option<BitmapEncoding>,
    #[serde(default)]
    data: Option<EncodingName>,
    #[serde(default)]
    length_prefix: Option<EncodingName>,
    #[serde(default)]
    fields: BTreeMap<String, FieldEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldEntry {
    #[serde(default)]
    #[allow(dead_code)] // documentation only
    name: Option<String>,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    length: Option<LengthKind>,
    #[serde(default)]
    max: Option<u16>,
    #[serde(default)]
    data: Option<EncodingName>,
    #[serde(default)]
    length_prefix: Option<EncodingName>,
    #[serde(default)]
    defined: Option<bool>,
}
