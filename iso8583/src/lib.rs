//! ISO 8583 codec for the issuer authorizer: dialects as data, a strict zero-copy `nom` parser,
//! an encoder that derives the bitmaps, BER-TLV for DE 55, DE 48 subelements, and (feature
//! `tokio`) the 2-byte length framing of the network link.
//!
//! What it is for: turning the bytes of one message into a validated [`Message`] whose accessors
//! slice the frame, and a [`MessageBuilder`] back into bytes, at millions of messages per second.
//!
//! What it must never do: panic or allocate without bound on any input (every length is checked
//! against the dialect before it is used, offsets are `u16` and messages over 65,535 bytes are
//! refused); do I/O in its core (only [`Dialect::load`] reads a file, at start-up, and the
//! framing codec lives behind a feature); log or print a field value (`Debug` shows field
//! numbers only, because values hold PANs, track data and PIN blocks).
//!
//! ```
//! use iso8583::{Dialect, Message, MessageBuilder, Mti};
//! let dialect = Dialect::ascii();
//! let mut b = MessageBuilder::new(Mti::from_u16(800).unwrap());
//! b.set(7, "0102030405").set(11, "000001").set(70, "301");
//! let bytes = b.encode(&dialect).unwrap();
//! let m = Message::decode(&dialect, bytes).unwrap();
//! assert_eq!(m.stan(), Some(1));
//! assert_eq!(m.text(70), Some("301"));
//! ```

#![forbid(unsafe_code)]

mod charset;
pub mod de48;
mod dialect;
#[cfg(test)]
mod differential_tests;
mod ebcdic_tables;
mod encode;
mod error;
mod fields;
#[cfg(feature = "tokio")]
pub mod framing;
pub mod mask;
mod message;
pub mod tlv;

// The unit tests share the test suite's sample messages, which name the crate `iso8583`.
#[cfg(test)]
extern crate self as iso8583;
#[cfg(test)]
#[path = "../tests/common/samples.rs"]
mod samples;

pub use charset::Charset;
pub use dialect::{
    BUILTIN_NAMES, BitmapEncoding, Dialect, FIELD_MAX, FieldSpec, Format, LengthKind,
};
pub use encode::{MessageBuilder, response_to};
pub use error::{DecodeError, DialectError, EncodeError, ErrorKind, Part, ValueError};
pub use fields::{
    Expiry, OriginalData, PosEntryMode, ProcessingCode, ReplacementAmounts, TransmissionDateTime,
};
pub use message::{FieldIter, FieldSet, Message, Mti};
