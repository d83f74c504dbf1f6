//! Character encodings on the wire (ASCII, EBCDIC code pages 037, 500, 1047) and the character
//! classes of each field format, as 256-entry lookup tables built at compile time.
//!
//! The logical (decoded) form of every character field is ASCII. An EBCDIC byte is translated
//! with one table load; a byte is checked against a format with one table load and a mask. This
//! module never allocates and never fails: deciding what an invalid byte means is the caller's.

use crate::ebcdic_tables::{CP037_TO_LATIN1, CP500_TO_LATIN1, CP1047_TO_LATIN1};

/// How the characters of a field (or of a length prefix, the MTI, a hex bitmap) are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    /// ASCII: the wire byte is the character.
    Ascii,
    /// EBCDIC code page 037 (US/Canada).
    Cp037,
    /// EBCDIC code page 500 (International).
    Cp500,
    /// EBCDIC code page 1047 (Open Systems Latin-1).
    Cp1047,
}

/// A character class bit in the class tables.
pub(crate) const DIGIT: u8 = 1;
/// Letters, digits and space (`an`).
pub(crate) const ALNUM: u8 = 2;
/// Printable ASCII 0x20..=0x7E (`ans`).
pub(crate) const PRINT: u8 = 4;
/// Track 2 data characters 0x30..=0x3F: digits and `: ; < = > ?` (`z`).
pub(crate) const TRACK: u8 = 8;
/// Hex digits 0-9 A-F a-f (hex bitmaps).
pub(crate) const HEX: u8 = 16;
/// `C` or `D`, the sign character of `x+n` amounts.
pub(crate) const SIGN: u8 = 32;

const fn ascii_class(c: u8) -> u8 {
    let mut class = 0;
    if c.is_ascii_digit() {
        class |= DIGIT | ALNUM | PRINT | TRACK | HEX;
    }
    if c.is_ascii_alphabetic() || c == b' ' {
        class |= ALNUM;
    }
    if c >= 0x20 && c <= 0x7E {
        class |= PRINT;
    }
    if c >= 0x30 && c <= 0x3F {
        class |= TRACK;
    }
    if (c >= b'A' && c <= b'F') || (c >= b'a' && c <= b'f') {
        class |= HEX;
    }
    if c == b'C' || c == b'D' {
        class |= SIGN;
    }
    class
}

const fn identity() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t
}

const fn invert(forward: &[u8; 256]) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[forward[i] as usize] = i as u8;
        i += 1;
    }
    t
}

/// Class of each wire byte: the class of the ASCII character it decodes to, 0 for bytes that
/// decode to something outside ASCII.
const fn classes(to_latin1: &[u8; 256]) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = to_latin1[i];
        t[i] = if c < 0x80 { ascii_class(c) } else { 0 };
        i += 1;
    }
    t
}

static IDENTITY: [u8; 256] = identity();
static ASCII_CLASS: [u8; 256] = classes(&IDENTITY);
static CP037_FROM_LATIN1: [u8; 256] = invert(&CP037_TO_LATIN1);
static CP500_FROM_LATIN1: [u8; 256] = invert(&CP500_TO_LATIN1);
static CP1047_FROM_LATIN1: [u8; 256] = invert(&CP1047_TO_LATIN1);
static CP037_CLASS: [u8; 256] = classes(&CP037_TO_LATIN1);
static CP500_CLASS: [u8; 256] = classes(&CP500_TO_LATIN1);
static CP1047_CLASS: [u8; 256] = classes(&CP1047_TO_LATIN1);
static CP037_DEC: [u8; 256] = CP037_TO_LATIN1;
static CP500_DEC: [u8; 256] = CP500_TO_LATIN1;
static CP1047_DEC: [u8; 256] = CP1047_TO_LATIN1;

impl Charset {
    /// Wire byte to logical (Latin-1, ASCII for every valid character) byte.
    #[inline]
    pub(crate) fn decode_table(self) -> &'static [u8; 256] {
        match self {
            Charset::Ascii => &IDENTITY,
            Charset::Cp037 => &CP037_DEC,
            Charset::Cp500 => &CP500_DEC,
            Charset::Cp1047 => &CP1047_DEC,
        }
    }

    /// Logical byte to wire byte.
    #[inline]
    pub(crate) fn encode_table(self) -> &'static [u8; 256] {
        match self {
            Charset::Ascii => &IDENTITY,
            Charset::Cp037 => &CP037_FROM_LATIN1,
            Charset::Cp500 => &CP500_FROM_LATIN1,
            Charset::Cp1047 => &CP1047_FROM_LATIN1,
        }
    }

    /// Class bits of each wire byte.
    #[inline]
    pub(crate) fn class_table(self) -> &'static [u8; 256] {
        match self {
            Charset::Ascii => &ASCII_CLASS,
            Charset::Cp037 => &CP037_CLASS,
            Charset::Cp500 => &CP500_CLASS,
            Charset::Cp1047 => &CP1047_CLASS,
        }
    }

    /// True when the wire byte equals the logical byte (no translation needed).
    #[inline]
    pub fn is_ascii(self) -> bool {
        self == Charset::Ascii
    }

    /// The name used in dialect files.
    pub fn name(self) -> &'static str {
        match self {
            Charset::Ascii => "ascii",
            Charset::Cp037 => "cp037",
            Charset::Cp500 => "cp500",
            Charset::Cp1047 => "cp1047",
        }
    }

    /// Translates wire bytes to logical bytes in place.
    #[inline]
    pub(crate) fn decode_in_place(self, bytes: &mut [u8]) {
        if !self.is_ascii() {
            let table = self.decode_table();
            for b in bytes {
                *b = table[*b as usize];
            }
        }
    }
}

/// The ASCII class table (the class of each logical byte).
#[inline]
pub(crate) fn logical_class() -> &'static [u8; 256] {
    &ASCII_CLASS
}

/// Index of the first byte whose class lacks `mask`, if any.
#[inline]
pub(crate) fn first_invalid(bytes: &[u8], table: &[u8; 256], mask: u8) -> Option<usize> {
    // The common case (all valid) is a branch-light fold; the position is searched only on failure.
    let all = bytes
        .iter()
        .fold(mask, |acc, &b| acc & (table[b as usize] | !mask));
    if all == mask {
        None
    } else {
        bytes.iter().position(|&b| table[b as usize] & mask == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ebcdic_digits_and_letters_agree_on_all_code_pages() {
        for cs in [Charset::Cp037, Charset::Cp500, Charset::Cp1047] {
            for (i, d) in (b'0'..=b'9').enumerate() {
                assert_eq!(cs.encode_table()[d as usize], 0xF0 + i as u8);
            }
            assert_eq!(cs.encode_table()[b'A' as usize], 0xC1);
            assert_eq!(cs.encode_table()[b'a' as usize], 0x81);
            assert_eq!(cs.encode_table()[b' ' as usize], 0x40);
            assert_eq!(cs.encode_table()[b'=' as usize], 0x7E);
        }
    }

    #[test]
    fn code_pages_differ_on_brackets() {
        assert_eq!(Charset::Cp037.encode_table()[b'[' as usize], 0xBA);
        assert_eq!(Charset::Cp500.encode_table()[b'[' as usize], 0x4A);
        assert_eq!(Charset::Cp1047.encode_table()[b'[' as usize], 0xAD);
        assert_eq!(Charset::Cp037.encode_table()[b'^' as usize], 0xB0);
        assert_eq!(Charset::Cp1047.encode_table()[b'^' as usize], 0x5F);
    }

    #[test]
    fn tables_roundtrip_every_byte() {
        for cs in [
            Charset::Ascii,
            Charset::Cp037,
            Charset::Cp500,
            Charset::Cp1047,
        ] {
            for b in 0..=255u8 {
                let logical = cs.decode_table()[b as usize];
                assert_eq!(
                    cs.encode_table()[logical as usize],
                    b,
                    "{cs:?} byte {b:#04x}"
                );
            }
        }
    }

    #[test]
    fn classes_follow_the_formats() {
        let t = logical_class();
        assert_eq!(first_invalid(b"0123456789", t, DIGIT), None);
        assert_eq!(first_invalid(b"01A3", t, DIGIT), Some(2));
        assert_eq!(first_invalid(b"AB 12", t, ALNUM), None);
        assert_eq!(first_invalid(b"AB-12", t, ALNUM), Some(2));
        assert_eq!(first_invalid(b"~ !", t, PRINT), None);
        assert_eq!(first_invalid(b"a\x7F", t, PRINT), Some(1));
        assert_eq!(first_invalid(b"5413=2512?", t, TRACK), None);
        assert_eq!(first_invalid(b"5413D2512", t, TRACK), Some(4));
        // EBCDIC: the class is the class of the decoded character.
        let e = Charset::Cp037.class_table();
        assert_eq!(first_invalid(&[0xF1, 0xF2], e, DIGIT), None);
        assert_eq!(first_invalid(&[0xF1, 0x31], e, DIGIT), Some(1));
    }
}
