//! Character encodings on the wire (ASCII, EBCDIC code pages 037, 500, 1047) and the character
//! classes of each field format, as 256-entry lookup tables built at compile time.
//!
//! The logical (decoded) form of every character field is ASCII. An EBCDIC byte is translated
//! with one table load; a byte is checked against a format with one table load and a mask. This
//! module never allocates and never fails: deciding what an invalid byte means is the caller's.

use crate::dialect::Check;
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

    /// Translates wire bytes to logical bytes in place; `digits_only` when the bytes are known
    /// to be digits (EBCDIC F0-F9 → ASCII 30-39 is a subtraction, which vectorizes).
    #[inline]
    pub(crate) fn decode_in_place(self, bytes: &mut [u8], digits_only: bool) {
        if digits_only && !self.is_ascii() {
            for b in bytes {
                *b = b.wrapping_sub(0xC0);
            }
        } else if !self.is_ascii() {
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

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Checks 8 bytes at a time with `word_ok`, the rest one by one with `byte_ok`. The hot path of
/// validation: a 12-digit amount is two word checks instead of twelve table loads.
#[inline(always)]
fn all_swar(bytes: &[u8], word_ok: impl Fn(u64) -> bool, byte_ok: impl Fn(u8) -> bool) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    let words_ok = chunks.all(|c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        word_ok(u64::from_le_bytes(w))
    });
    words_ok && chunks.remainder().iter().all(|&b| byte_ok(b))
}

/// Every byte has high nibble `hi` and low nibble 0..=9 (ASCII or EBCDIC digits).
#[inline(always)]
fn all_digits(bytes: &[u8], hi: u8) -> bool {
    let hi_word = ONES * u64::from(hi << 4);
    all_swar(
        bytes,
        |x| x & (ONES * 0xF0) == hi_word && ((x & (ONES * 0x0F)) + ONES * 6) & (ONES * 0xF0) == 0,
        |b| b >> 4 == hi && b & 0x0F <= 9,
    )
}

/// Every byte is in 0x20..=0x7E (exact "has a byte < n" / "has a byte > n" word tests).
#[inline(always)]
fn all_printable(bytes: &[u8]) -> bool {
    all_swar(
        bytes,
        |x| {
            let less = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
            // 127 - 0x7E = 1: adding 1 to each byte sets the high bit of 0x7F and up.
            let more = (x.wrapping_add(ONES) | x) & HIGHS;
            less | more == 0
        },
        |b| (0x20..=0x7E).contains(&b),
    )
}

/// Every byte is in 0x30..=0x3F (track 2 characters).
#[inline(always)]
fn all_track(bytes: &[u8]) -> bool {
    all_swar(bytes, |x| x & (ONES * 0xF0) == ONES * 0x30, |b| b >> 4 == 3)
}

/// True when every byte is an ASCII letter, digit or space.
#[inline]
fn all_alnum_space(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |bad, &b| {
        let ok = (b.wrapping_sub(b'0') <= 9) | ((b | 0x20).wrapping_sub(b'a') <= 25) | (b == b' ');
        bad | u8::from(!ok)
    }) == 0
}

/// Little-endian load of the 8 bytes at `at` (callers keep `at + 8 <= bytes.len()`).
#[inline(always)]
fn load8(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn load4(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[at..at + 4]);
    u64::from(u32::from_le_bytes(w))
}

#[inline(always)]
fn load2(bytes: &[u8], at: usize) -> u64 {
    u64::from(bytes[at]) | u64::from(bytes[at + 1]) << 8
}

/// True when `word_ok` accepts words that together cover every byte of `bytes`. A per-byte-lane
/// predicate only ever sees bytes of `bytes`: the tail is an overlapping load of the last 8
/// bytes, and a short value is loaded in two overlapping halves and repeated to fill the word.
/// No per-byte loop: a 6-digit field is one 4+4 load and one word test.
#[inline(always)]
fn all_words(bytes: &[u8], word_ok: impl Fn(u64) -> bool) -> bool {
    let n = bytes.len();
    if n >= 8 {
        let mut at = 0;
        while at + 8 < n {
            if !word_ok(load8(bytes, at)) {
                return false;
            }
            at += 8;
        }
        word_ok(load8(bytes, n - 8))
    } else if n >= 4 {
        word_ok(load4(bytes, 0) | load4(bytes, n - 4) << 32)
    } else if n >= 2 {
        word_ok((load2(bytes, 0) | load2(bytes, n - 2) << 16) * 0x0000_0001_0000_0001)
    } else if n == 1 {
        word_ok(ONES * u64::from(bytes[0]))
    } else {
        true
    }
}

/// Word test: every byte has high nibble `hi` and low nibble 0..=9.
#[inline(always)]
fn digits_word(x: u64, hi: u8) -> bool {
    x & (ONES * 0xF0) == ONES * u64::from(hi << 4)
        && ((x & (ONES * 0x0F)) + ONES * 6) & (ONES * 0xF0) == 0
}

/// Word test: every byte is in 0x20..=0x7E.
#[inline(always)]
fn printable_word(x: u64) -> bool {
    let less = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
    // 127 - 0x7E = 1: adding 1 to each byte sets the high bit of 0x7F and up.
    let more = (x.wrapping_add(ONES) | x) & HIGHS;
    less | more == 0
}

/// Word test: every byte is an ASCII letter, digit or space. Each byte is below 0x80 once the
/// first test passes, so the range tests below never carry into the next byte.
#[inline(always)]
fn alnum_word(x: u64) -> bool {
    if x & HIGHS != 0 {
        return false;
    }
    // High bit of each byte set when the byte is >= lo / > hi.
    let ge = |t: u64, lo: u8| (t + ONES * u64::from(0x80 - lo)) & HIGHS;
    let gt = |t: u64, hi: u8| (t + ONES * u64::from(0x7F - hi)) & HIGHS;
    let digit = ge(x, b'0') & !gt(x, b'9');
    let folded = x | (ONES * 0x20);
    let letter = ge(folded, b'a') & !gt(folded, b'z');
    let space = !((x ^ (ONES * 0x20)) + ONES * 0x7F) & HIGHS;
    digit | letter | space == HIGHS
}

/// True when every wire byte passes `check` (`cs` is the field's data charset, used by
/// [`Check::Classes`]). [`Check::Signed`] always answers false: `x+n` is rare and its rule (sign
/// then digits) is applied by the caller's general path, which also finds the offending byte.
#[inline(always)]
pub(crate) fn all_valid(bytes: &[u8], check: Check, cs: Charset) -> bool {
    match check {
        Check::Binary => true,
        Check::AsciiDigits => all_words(bytes, |x| digits_word(x, 0x3)),
        Check::EbcdicDigits => all_words(bytes, |x| digits_word(x, 0xF)),
        Check::AsciiAlnum => all_words(bytes, alnum_word),
        Check::AsciiPrint => all_words(bytes, printable_word),
        Check::AsciiTrack => all_words(bytes, |x| x & (ONES * 0xF0) == ONES * 0x30),
        Check::Classes(mask) => first_invalid(bytes, cs.class_table(), mask).is_none(),
        Check::Signed => false,
    }
}

/// Index of the first wire byte in charset `cs` whose class lacks `mask`, with arithmetic fast
/// paths for the classes that are byte ranges (ASCII formats, EBCDIC digits F0-F9).
#[inline(always)]
pub(crate) fn first_invalid_in(bytes: &[u8], cs: Charset, mask: u8) -> Option<usize> {
    let all_ok = match (cs.is_ascii(), mask) {
        (true, DIGIT) => all_digits(bytes, 0x3),
        (false, DIGIT) => all_digits(bytes, 0xF),
        (true, PRINT) => all_printable(bytes),
        (true, TRACK) => all_track(bytes),
        (true, ALNUM) => all_alnum_space(bytes),
        _ => return first_invalid(bytes, cs.class_table(), mask),
    };
    if all_ok {
        None
    } else {
        let table = cs.class_table();
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

    /// The word-at-a-time checks agree with the class tables for every length 0..=24, every
    /// byte value at every position (and at two positions at once), in every charset and format.
    #[test]
    fn word_checks_agree_with_the_tables() {
        use crate::dialect::Format;
        for cs in [
            Charset::Ascii,
            Charset::Cp037,
            Charset::Cp500,
            Charset::Cp1047,
        ] {
            for format in [Format::N, Format::An, Format::Ans, Format::Z, Format::B] {
                let check = Check::new(format, cs);
                let mask = format.class_mask();
                let fill =
                    cs.encode_table()[if format == Format::An { b'Q' } else { b'7' } as usize];
                for len in 0..=24usize {
                    let mut v = vec![fill; len];
                    assert!(all_valid(&v, check, cs), "{cs:?} {format} len {len}");
                    for at in 0..len {
                        for b in 0..=255u8 {
                            v[at] = b;
                            let want = format == Format::B
                                || first_invalid(&v, cs.class_table(), mask).is_none();
                            assert_eq!(
                                all_valid(&v, check, cs),
                                want,
                                "{cs:?} {format} len {len} byte {b:#x} at {at}"
                            );
                            // A second byte elsewhere: the bad lane may hide behind a good one.
                            let other = (at + len / 2 + 1) % len;
                            if other != at {
                                let keep = v[other];
                                v[other] = b.wrapping_add(0x41);
                                let want = format == Format::B
                                    || first_invalid(&v, cs.class_table(), mask).is_none();
                                assert_eq!(all_valid(&v, check, cs), want, "{cs:?} {format} two");
                                v[other] = keep;
                            }
                        }
                        v[at] = fill;
                    }
                }
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
        // The fast paths agree with the tables on every byte.
        for cs in [
            Charset::Ascii,
            Charset::Cp037,
            Charset::Cp500,
            Charset::Cp1047,
        ] {
            for mask in [DIGIT, ALNUM, PRINT, TRACK] {
                for b in 0..=255u8 {
                    for at in [0usize, 3, 7, 8, 12] {
                        let mut v = [b'1'; 13];
                        if !cs.is_ascii() {
                            v = v.map(|c| cs.encode_table()[c as usize]);
                        }
                        v[at] = b;
                        let want = first_invalid(&v, cs.class_table(), mask);
                        assert_eq!(
                            first_invalid_in(&v, cs, mask),
                            want,
                            "{cs:?} {mask} {b:#x} at {at}"
                        );
                    }
                }
            }
        }
    }
}
