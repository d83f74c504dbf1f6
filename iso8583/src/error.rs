//! Error types. Every decode error names the field (when there is one), the byte offset in the
//! message and what was wrong, on one line, so the authorizer can answer DE 39 = 30 with DE 44 =
//! the field, and an engineer can find the byte in a trace.

use std::fmt;

use crate::dialect::Format;

/// Why a message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// The data element in error; `None` for the MTI, the bitmaps and the frame as a whole.
    pub field: Option<u8>,
    /// Offset in the message (after framing) of the byte in error.
    pub offset: usize,
    /// What was wrong.
    pub kind: ErrorKind,
}

/// Which part of the message a field-less error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The message type indicator.
    Mti,
    /// The primary or secondary bitmap.
    Bitmap,
    /// The message as a whole.
    Message,
}

/// What was wrong with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The message ends before the part does.
    Truncated {
        /// Bytes the part needs.
        needed: usize,
        /// Bytes left in the message.
        available: usize,
    },
    /// A length prefix holds a byte that is not a digit in the prefix charset.
    BadLengthPrefix {
        /// The offending wire byte.
        byte: u8,
    },
    /// A length prefix says more than the field's maximum.
    TooLong {
        /// Length found in the prefix.
        len: usize,
        /// The dialect's maximum for the field.
        max: usize,
    },
    /// A byte that the field's format does not allow.
    BadCharset {
        /// The offending wire byte.
        byte: u8,
        /// The field's format.
        format: Format,
    },
    /// The bitmap has a bit set for a field the dialect does not define.
    BitmapFieldUndefined,
    /// Bytes left over after the last field the bitmap announces.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// Bit 1 announces a secondary bitmap but it has no bit set. Refused because the bitmaps
    /// must describe the fields exactly (re-encoding would drop it and change the bytes).
    EmptySecondaryBitmap,
    /// An MTI byte that is not a digit.
    BadMti {
        /// The offending wire byte.
        byte: u8,
    },
    /// A hex bitmap character that is not a hex digit.
    BadBitmap {
        /// The offending wire byte.
        byte: u8,
    },
    /// The message is longer than the codec's offsets can address (65,535 bytes).
    MessageTooLarge {
        /// Message length.
        len: usize,
    },
}

impl DecodeError {
    pub(crate) fn at(field: Option<u8>, offset: usize, kind: ErrorKind) -> DecodeError {
        DecodeError {
            field,
            offset,
            kind,
        }
    }

    /// The part of the message that is in error, when it is not a field.
    pub fn part(&self) -> Part {
        match (self.field, self.kind) {
            (Some(_), _) => Part::Message,
            (None, ErrorKind::BadMti { .. }) => Part::Mti,
            (None, ErrorKind::BadBitmap { .. } | ErrorKind::EmptySecondaryBitmap) => Part::Bitmap,
            (None, ErrorKind::Truncated { .. }) if self.offset < 4 => Part::Mti,
            (None, ErrorKind::Truncated { .. }) => Part::Bitmap,
            _ => Part::Message,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(n) => write!(f, "field {n} at byte {}: ", self.offset)?,
            None => match self.part() {
                Part::Mti => write!(f, "MTI at byte {}: ", self.offset)?,
                Part::Bitmap => write!(f, "bitmap at byte {}: ", self.offset)?,
                Part::Message => write!(f, "message at byte {}: ", self.offset)?,
            },
        }
        match self.kind {
            ErrorKind::Truncated { needed, available } => write!(
                f,
                "truncated: needs {needed} bytes, the message has {available} left"
            ),
            ErrorKind::BadLengthPrefix { byte } => {
                write!(f, "length prefix byte {byte:#04X} is not a digit")
            }
            ErrorKind::TooLong { len, max } => {
                write!(f, "length {len} exceeds the maximum {max}")
            }
            ErrorKind::BadCharset { byte, format } => {
                write!(f, "byte {byte:#04X} is not allowed in a `{format}` field")
            }
            ErrorKind::BitmapFieldUndefined => {
                write!(f, "bitmap announces a field this dialect does not define")
            }
            ErrorKind::TrailingBytes { count } => {
                write!(f, "{count} trailing bytes after the last field")
            }
            ErrorKind::EmptySecondaryBitmap => {
                write!(f, "bit 1 announces a secondary bitmap but it is empty")
            }
            ErrorKind::BadMti { byte } => write!(f, "MTI byte {byte:#04X} is not a digit"),
            ErrorKind::BadBitmap { byte } => {
                write!(f, "hex bitmap byte {byte:#04X} is not a hex digit")
            }
            ErrorKind::MessageTooLarge { len } => {
                write!(f, "message of {len} bytes exceeds 65535")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// `MessageBuilder::set` was given a field number outside 2..=128.
    #[error("field {field}: no such field (settable fields are 2..=128)")]
    NoSuchField {
        /// The number given.
        field: usize,
    },
    /// The dialect does not define the field.
    #[error("field {field}: not defined by dialect `{dialect}`")]
    FieldUndefined {
        /// The field.
        field: u8,
        /// The dialect's name.
        dialect: String,
    },
    /// The value is longer than the field allows.
    #[error("field {field}: value of {len} exceeds the maximum {max}")]
    TooLong {
        /// The field.
        field: u8,
        /// Length of the value.
        len: usize,
        /// The dialect's maximum.
        max: usize,
    },
    /// A fixed-length field that cannot be padded (`b`, `z`, `x+n`) has the wrong length.
    #[error("field {field}: value of {len} but the field is fixed at {expected}")]
    WrongLength {
        /// The field.
        field: u8,
        /// Length of the value.
        len: usize,
        /// The fixed length.
        expected: usize,
    },
    /// A character the field's format does not allow.
    #[error(
        "field {field} at character {index}: byte {byte:#04X} is not allowed in a `{format}` field"
    )]
    BadCharset {
        /// The field.
        field: u8,
        /// Index of the character in the value.
        index: usize,
        /// The offending byte.
        byte: u8,
        /// The field's format.
        format: Format,
    },
    /// The MTI is not 4 digits.
    #[error("MTI {0:?} is not 4 digits")]
    BadMti(String),
}

impl EncodeError {
    /// The field in error, when there is one.
    pub fn field(&self) -> Option<u8> {
        match self {
            EncodeError::NoSuchField { .. } | EncodeError::BadMti(_) => None,
            EncodeError::FieldUndefined { field, .. }
            | EncodeError::TooLong { field, .. }
            | EncodeError::WrongLength { field, .. }
            | EncodeError::BadCharset { field, .. } => Some(*field),
        }
    }
}

/// Why a dialect file was refused. Each names the setting or field and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialectError {
    /// The file could not be read.
    #[error("cannot read dialect file {path}: {reason}")]
    Read {
        /// The path.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// TOML syntax or an unknown key/value.
    #[error("dialect file: {0}")]
    Syntax(String),
    /// `base` names no built-in dialect.
    #[error("dialect file: base {0:?} is not a built-in dialect (use \"ascii\" or \"mastercard\")")]
    UnknownBase(String),
    /// `code_page` is not 037, 500 or 1047.
    #[error("dialect file: code_page {0:?} is not supported (use \"037\", \"500\" or \"1047\")")]
    UnknownCodePage(String),
    /// An `ebcdic` setting without `code_page`.
    #[error("dialect file: `{0}` is \"ebcdic\" but no code_page is set (add code_page = \"037\")")]
    MissingCodePage(String),
    /// A dialect-wide setting missing and no base to inherit it from.
    #[error("dialect file: `{0}` is not set and there is no base to inherit it from")]
    MissingSetting(String),
    /// A key in `[fields]` that is not 2..=128.
    #[error("dialect file: field key {0:?} is not a field number 2..=128")]
    BadFieldNumber(String),
    /// A field without base lacks an attribute.
    #[error("dialect file: field {field} has no `{missing}`")]
    IncompleteField {
        /// The field.
        field: usize,
        /// The attribute.
        missing: &'static str,
    },
    /// `max` out of range for the length kind.
    #[error("dialect file: field {field} has max {max}, allowed 1..={limit} (x+n at least 2)")]
    BadMax {
        /// The field.
        field: usize,
        /// The value given.
        max: u16,
        /// The limit for the length kind.
        limit: u16,
    },
    /// Without `base`, every field 2..=128 must be listed.
    #[error(
        "dialect file: field {0} is not listed (list all of 2..=128, or set base, or write `defined = false`)"
    )]
    MissingField(usize),
}

/// A decoded field whose characters are valid but whose content is not (month 13, DE 95 letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {what}")]
pub struct ValueError {
    /// The field.
    pub field: u8,
    /// What is wrong with it.
    pub what: &'static str,
}
