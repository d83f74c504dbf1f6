//! Behaviour of the codec: each field format, both dialects, both bitmaps, each error kind.

#[path = "common/samples.rs"]
mod samples;

use bytes::Bytes;
use iso8583::{
    Charset, DecodeError, Dialect, DialectError, EncodeError, ErrorKind, Format, LengthKind,
    Message, MessageBuilder, Mti, response_to,
};

fn mti(v: u16) -> Mti {
    Mti::from_u16(v).unwrap()
}

fn decode(d: &Dialect, bytes: &[u8]) -> Result<Message, DecodeError> {
    Message::decode(d, Bytes::copy_from_slice(bytes))
}

fn ebcdic(s: &str) -> Vec<u8> {
    let t = [
        (b'0', 0xF0u8),
        (b'1', 0xF1),
        (b'2', 0xF2),
        (b'3', 0xF3),
        (b'4', 0xF4),
        (b'5', 0xF5),
        (b'6', 0xF6),
        (b'7', 0xF7),
        (b'8', 0xF8),
        (b'9', 0xF9),
        (b'A', 0xC1),
        (b'B', 0xC2),
        (b' ', 0x40),
        (b'=', 0x7E),
    ];
    s.bytes()
        .map(|c| t.iter().find(|(a, _)| *a == c).expect("in table").1)
        .collect()
}

/// An 0100 with DE 2, 3, 4 and 11: primary bitmap 7020 0000 0000 0000.
fn small_ascii() -> Vec<u8> {
    let mut v = b"0100".to_vec();
    v.extend_from_slice(&[0x70, 0x20, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(b"165413330089010012000000000000012500004711");
    v
}

#[test]
fn ascii_wire_bytes_are_exact() {
    let d = Dialect::ascii();
    let mut b = MessageBuilder::new(mti(100));
    b.set(2, "5413330089010012")
        .set(3, "000000")
        .set_number(4, 12500)
        .set(11, "004711");
    let bytes = b.encode(&d).unwrap();
    assert_eq!(&bytes[..], &small_ascii()[..]);
    let m = decode(&d, &bytes).unwrap();
    assert_eq!(m.mti(), mti(100));
    assert_eq!(m.pan(), Some("5413330089010012"));
    assert_eq!(m.amount_transaction(), Some(12500));
    assert_eq!(m.stan(), Some(4711));
    assert_eq!(m.fields().iter().collect::<Vec<_>>(), vec![2, 3, 4, 11]);
    assert_eq!(m.field(5), None);
}

#[test]
fn mastercard_wire_bytes_are_ebcdic() {
    let d = Dialect::mastercard();
    let mut b = MessageBuilder::new(mti(100));
    b.set(2, "5413330089010012")
        .set(3, "000000")
        .set_number(4, 12500)
        .set(11, "004711");
    let bytes = b.encode(&d).unwrap();
    let mut want = ebcdic("0100");
    want.extend_from_slice(&[0x70, 0x20, 0, 0, 0, 0, 0, 0]);
    want.extend_from_slice(&ebcdic("165413330089010012000000000000012500004711"));
    assert_eq!(&bytes[..], &want[..]);
    let m = decode(&d, &bytes).unwrap();
    // Accessors give the logical (ASCII) form, raw_field the wire form.
    assert_eq!(m.pan(), Some("5413330089010012"));
    assert_eq!(m.raw_field(11), Some(&ebcdic("004711")[..]));
    assert_eq!(m.mti().as_str(), "0100");
}

#[test]
fn secondary_bitmap_is_derived() {
    for d in [Dialect::ascii(), Dialect::mastercard()] {
        let mut b = MessageBuilder::new(mti(800));
        b.set(7, "1122143000").set(11, "000042").set(70, "301");
        let bytes = b.encode(&d).unwrap();
        // Bit 1 (secondary present), 7, 11; secondary: bit 70 → bit 6 of the second word.
        assert_eq!(&bytes[4..12], &[0x82, 0x20, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[12..20], &[0x04, 0, 0, 0, 0, 0, 0, 0]);
        let m = decode(&d, &bytes).unwrap();
        assert_eq!(m.text(70), Some("301"));
        assert!(!m.has(1));
        // Without fields above 64 there is no secondary bitmap.
        b.clear(70);
        let bytes = b.encode(&d).unwrap();
        assert_eq!(bytes[4], 0x02);
        assert_eq!(bytes.len(), 4 + 8 + 10 + 6);
    }
}

#[test]
fn field_65_is_a_field_not_a_bitmap() {
    let d = Dialect::ascii();
    let mut b = MessageBuilder::new(mti(100));
    b.set(65, [1u8, 2, 3, 4, 5, 6, 7, 8]);
    let m = decode(&d, &b.encode(&d).unwrap()).unwrap();
    assert_eq!(m.field(65), Some(&[1u8, 2, 3, 4, 5, 6, 7, 8][..]));
}

#[test]
fn every_format_roundtrips_in_both_dialects() {
    let cases: [(usize, &[u8]); 9] = [
        (2, b"4111111111111111"),                       // n LLVAR
        (28, b"C00001000"),                             // x+n fixed
        (35, b"4111111111111111=2512101?"),             // z LLVAR
        (37, b"AB12 CD34 EF"),                          // an fixed
        (43, b"Cafe [Test] ^ {x} | ~ !  Paris    FRA"), // ans fixed, padded
        (48, b"R4203abc"),                              // ans LLLVAR
        (52, &[0, 0xFF, 0x40, 0xF0, 1, 2, 3, 4]),       // b fixed
        (55, &[0x9F, 0x26, 0x01, 0x00]),                // b LLLVAR
        (97, b"D0000000000001234"),                     // x+n 17
    ];
    for d in [Dialect::ascii(), Dialect::mastercard()] {
        let mut b = MessageBuilder::new(mti(100));
        for (n, v) in cases {
            b.set(n, v);
        }
        let bytes = b.encode(&d).unwrap();
        let m = decode(&d, &bytes).unwrap();
        for (n, v) in cases {
            let got = m.field(n).unwrap();
            if n == 43 {
                assert_eq!(got.len(), 40);
                assert_eq!(&got[..v.len()], v);
                assert!(got[v.len()..].iter().all(|&c| c == b' '));
            } else {
                assert_eq!(got, v, "field {n} in {}", d.name());
            }
        }
        assert_eq!(m.encode(&d).unwrap(), bytes, "re-encode is byte-identical");
    }
}

#[test]
fn fixed_numeric_is_zero_padded() {
    let d = Dialect::ascii();
    let mut b = MessageBuilder::new(mti(100));
    b.set(4, "1");
    let m = decode(&d, &b.encode(&d).unwrap()).unwrap();
    assert_eq!(m.text(4), Some("000000000001"));
}

#[test]
fn encode_errors() {
    let d = Dialect::ascii();
    let enc = |n: usize, v: &[u8]| {
        let mut b = MessageBuilder::new(mti(100));
        b.set(n, v);
        b.encode(&d).unwrap_err()
    };
    assert_eq!(
        enc(4, b"1234567890123"),
        EncodeError::TooLong {
            field: 4,
            len: 13,
            max: 12
        }
    );
    assert_eq!(
        enc(2, &[b'1'; 20]),
        EncodeError::TooLong {
            field: 2,
            len: 20,
            max: 19
        }
    );
    assert_eq!(
        enc(52, &[1, 2, 3]),
        EncodeError::WrongLength {
            field: 52,
            len: 3,
            expected: 8
        }
    );
    assert_eq!(
        enc(4, b"12a"),
        EncodeError::BadCharset {
            field: 4,
            index: 2,
            byte: b'a',
            format: Format::N
        }
    );
    assert_eq!(
        enc(35, b"4111D2512"),
        EncodeError::BadCharset {
            field: 35,
            index: 4,
            byte: b'D',
            format: Format::Z
        }
    );
    assert_eq!(
        enc(37, b"AB-"),
        EncodeError::BadCharset {
            field: 37,
            index: 2,
            byte: b'-',
            format: Format::An
        }
    );
    assert_eq!(
        enc(43, "é".as_bytes()),
        EncodeError::BadCharset {
            field: 43,
            index: 0,
            byte: 0xC3,
            format: Format::Ans
        }
    );
    assert_eq!(
        enc(28, b"X00001000"),
        EncodeError::BadCharset {
            field: 28,
            index: 0,
            byte: b'X',
            format: Format::Xn
        }
    );
    assert_eq!(enc(1, b"x"), EncodeError::NoSuchField { field: 1 });
    assert_eq!(enc(129, b"x"), EncodeError::NoSuchField { field: 129 });
    assert_eq!(
        enc(4, b"12a").to_string(),
        "field 4 at character 2: byte 0x61 is not allowed in a `n` field"
    );
    assert_eq!(
        "01x0".parse::<Mti>(),
        Err(EncodeError::BadMti("01x0".into()))
    );
}

#[test]
fn error_truncated() {
    let d = Dialect::ascii();
    let full = small_ascii();
    assert_eq!(
        decode(&d, &full[..2]).unwrap_err(),
        DecodeError {
            field: None,
            offset: 0,
            kind: ErrorKind::Truncated {
                needed: 4,
                available: 2
            }
        }
    );
    assert_eq!(
        decode(&d, &full[..9]).unwrap_err(),
        DecodeError {
            field: None,
            offset: 4,
            kind: ErrorKind::Truncated {
                needed: 8,
                available: 5
            }
        }
    );
    // DE 11 starts at byte 48 and needs 6.
    let e = decode(&d, &full[..full.len() - 1]).unwrap_err();
    assert_eq!(
        e,
        DecodeError {
            field: Some(11),
            offset: 48,
            kind: ErrorKind::Truncated {
                needed: 6,
                available: 5
            }
        }
    );
    assert_eq!(
        e.to_string(),
        "field 11 at byte 48: truncated: needs 6 bytes, the message has 5 left"
    );
    // DE 2's prefix says 16 but the message ends first.
    let e = decode(&d, &full[..20]).unwrap_err();
    assert_eq!(
        e,
        DecodeError {
            field: Some(2),
            offset: 12,
            kind: ErrorKind::Truncated {
                needed: 18,
                available: 8
            }
        }
    );
}

#[test]
fn error_bad_length_prefix() {
    let d = Dialect::ascii();
    let mut v = small_ascii();
    v[13] = b'X';
    let e = decode(&d, &v).unwrap_err();
    assert_eq!(
        e,
        DecodeError {
            field: Some(2),
            offset: 13,
            kind: ErrorKind::BadLengthPrefix { byte: b'X' }
        }
    );
    // An ASCII digit is not a digit in an EBCDIC prefix.
    let mc = Dialect::mastercard();
    let mut m = ebcdic("0100");
    m.extend_from_slice(&[0x40, 0, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(b"16");
    let e = decode(&mc, &m).unwrap_err();
    assert_eq!(
        e,
        DecodeError {
            field: Some(2),
            offset: 12,
            kind: ErrorKind::BadLengthPrefix { byte: b'1' }
        }
    );
}

#[test]
fn error_too_long() {
    let d = Dialect::ascii();
    let mut v = small_ascii();
    v[12] = b'2';
    v[13] = b'0';
    let e = decode(&d, &v).unwrap_err();
    assert_eq!(
        e,
        DecodeError {
            field: Some(2),
            offset: 12,
            kind: ErrorKind::TooLong { len: 20, max: 19 }
        }
    );
    assert_eq!(
        e.to_string(),
        "field 2 at byte 12: length 20 exceeds the maximum 19"
    );
}

#[test]
fn error_bad_charset() {
    let d = Dialect::ascii();
    let mut v = small_ascii();
    v[23] = b'A'; // 10th PAN digit
    let e = decode(&d, &v).unwrap_err();
    assert_eq!(
        e,
        DecodeError {
            field: Some(2),
            offset: 23,
            kind: ErrorKind::BadCharset {
                byte: b'A',
                format: Format::N
            }
        }
    );
    assert_eq!(
        e.to_string(),
        "field 2 at byte 23: byte 0x41 is not allowed in a `n` field"
    );
    // EBCDIC digits are not ASCII digits: an ASCII byte inside a mastercard field is refused.
    let mc = Dialect::mastercard();
    let mut b = MessageBuilder::new(mti(100));
    b.set(3, "000000");
    let mut bytes = b.encode(&mc).unwrap().to_vec();
    bytes[14] = b'0';
    let e = decode(&mc, &bytes).unwrap_err();
    assert_eq!(e.field, Some(3));
    assert_eq!(e.offset, 14);
    assert!(matches!(
        e.kind,
        ErrorKind::BadCharset {
            byte: b'0',
            format: Format::N
        }
    ));
    // x+n must start with C or D.
    let mut b = MessageBuilder::new(mti(100));
    b.set(28, "C00001000");
    let mut bytes = b.encode(&d).unwrap().to_vec();
    bytes[12] = b'1';
    assert!(matches!(
        decode(&d, &bytes).unwrap_err().kind,
        ErrorKind::BadCharset {
            byte: b'1',
            format: Format::Xn
        }
    ));
}

#[test]
fn error_bitmap_field_undefined() {
    let d = Dialect::from_toml_str(
        "name = \"x\"\nbase = \"ascii\"\n[fields]\n3 = { defined = false }\n",
    )
    .unwrap();
    let e = decode(&d, &small_ascii()).unwrap_err();
    assert_eq!(
        e,
        DecodeError {
            field: Some(3),
            offset: 30,
            kind: ErrorKind::BitmapFieldUndefined
        }
    );
    let mut b = MessageBuilder::new(mti(100));
    b.set(3, "000000");
    assert_eq!(
        b.encode(&d).unwrap_err(),
        EncodeError::FieldUndefined {
            field: 3,
            dialect: "x".into()
        }
    );
}

#[test]
fn error_trailing_bytes() {
    let d = Dialect::ascii();
    let mut v = small_ascii();
    let end = v.len();
    v.extend_from_slice(b"99");
    let e = decode(&d, &v).unwrap_err();
    assert_eq!(
        e,
        DecodeError {
            field: None,
            offset: end,
            kind: ErrorKind::TrailingBytes { count: 2 }
        }
    );
    assert_eq!(
        e.to_string(),
        format!("message at byte {end}: 2 trailing bytes after the last field")
    );
}

#[test]
fn error_bad_mti() {
    let d = Dialect::ascii();
    let mut v = small_ascii();
    v[2] = b'x';
    let e = decode(&d, &v).unwrap_err();
    assert_eq!(
        e,
        DecodeError {
            field: None,
            offset: 2,
            kind: ErrorKind::BadMti { byte: b'x' }
        }
    );
    assert_eq!(e.to_string(), "MTI at byte 2: MTI byte 0x78 is not a digit");
}

#[test]
fn hex_bitmaps_and_bad_bitmap() {
    let d =
        Dialect::from_toml_str("name = \"hexmap\"\nbase = \"ascii\"\nbitmap = \"hex\"\n").unwrap();
    let mut b = MessageBuilder::new(mti(800));
    b.set(11, "000042").set(70, "301");
    let bytes = b.encode(&d).unwrap();
    assert_eq!(&bytes[..36], b"080080200000000000000400000000000000");
    let m = decode(&d, &bytes).unwrap();
    assert_eq!(m.text(70), Some("301"));
    let mut lower = bytes.to_vec();
    lower[4..20].make_ascii_lowercase();
    assert_eq!(decode(&d, &lower).unwrap(), m);
    let mut bad = bytes.to_vec();
    bad[6] = b'G';
    assert_eq!(
        decode(&d, &bad).unwrap_err(),
        DecodeError {
            field: None,
            offset: 6,
            kind: ErrorKind::BadBitmap { byte: b'G' }
        }
    );
    assert_eq!(
        decode(&d, &bad).unwrap_err().to_string(),
        "bitmap at byte 6: hex bitmap byte 0x47 is not a hex digit"
    );
}

/// A decode accepts lowercase hex bitmap digits; re-encoding the message (which copies its
/// canonical frame) must still write them uppercase, in ASCII and in EBCDIC, into a new buffer
/// and into a caller's buffer.
#[test]
fn reencoding_a_lowercase_hex_bitmap_writes_uppercase() {
    for (text, lower) in [
        (
            "name = \"hexmap\"\nbase = \"ascii\"\nbitmap = \"hex\"\n",
            (b'A'..=b'F').map(|c| (c, c + 0x20)).collect::<Vec<_>>(),
        ),
        (
            "name = \"cp500hex\"\nbase = \"mastercard\"\ncode_page = \"500\"\nbitmap = \"hex\"\n",
            (0xC1..=0xC6u8).map(|c| (c, c - 0x40)).collect::<Vec<_>>(),
        ),
    ] {
        let d = Dialect::from_toml_str(text).unwrap();
        let mut b = MessageBuilder::new(mti(100));
        // Fields 1-4 (1: secondary present) and 9, 11, 12: bitmap digits F and B.
        b.set(2, "4000000000000002")
            .set(3, "000000")
            .set(4, "000000000100")
            .set(9, "61000000")
            .set(11, "000001")
            .set(12, "120000")
            .set(70, "301");
        let upper = b.encode(&d).unwrap();
        let mut frame = upper.to_vec();
        for byte in &mut frame[4..36] {
            if let Some(&(_, l)) = lower.iter().find(|(u, _)| u == byte) {
                *byte = l;
            }
        }
        assert_ne!(
            &frame[..],
            &upper[..],
            "{}: the bitmap has letters",
            d.name()
        );
        let m = decode(&d, &frame).unwrap();
        assert_eq!(m.encode(&d).unwrap(), upper, "{}", d.name());
        let mut out = bytes::BytesMut::from(&b"xy"[..]);
        m.encode_into(&d, &mut out).unwrap();
        assert_eq!(&out[..2], b"xy");
        assert_eq!(&out[2..], &upper[..], "{}", d.name());
    }
}

#[test]
fn error_message_too_large() {
    let d = Dialect::ascii();
    let v = vec![b'0'; 70_000];
    assert_eq!(
        decode(&d, &v).unwrap_err(),
        DecodeError {
            field: None,
            offset: 0,
            kind: ErrorKind::MessageTooLarge { len: 70_000 }
        }
    );
}

#[test]
fn typed_accessors() {
    let d = Dialect::mastercard();
    let mix = samples::mix();
    let chip = decode(&d, &mix[0].encode(&d).unwrap()).unwrap();
    let pc = chip.processing_code().unwrap();
    assert_eq!(
        (pc.transaction_type, pc.from_account, pc.to_account),
        (0, 0, 0)
    );
    let t = chip.transmission_datetime().unwrap().unwrap();
    assert_eq!(
        (t.month, t.day, t.hour, t.minute, t.second),
        (11, 22, 14, 30, 15)
    );
    let e = chip.expiry().unwrap().unwrap();
    assert_eq!((e.year, e.month), (28, 12));
    let p = chip.pos_entry_mode().unwrap();
    assert_eq!((p.pan_entry, p.pin_capability), (5, 1));
    assert_eq!(chip.numeric(49), Some(978));
    assert_eq!(chip.amount_billing(), None);
    let icc = chip.icc_data().unwrap();
    assert_eq!(icc.clone().count(), 16);
    assert_eq!(icc.find(0x9F36).unwrap().unwrap().value, &[0x00, 0x2A]);

    let ecom = decode(&d, &mix[3].encode(&d).unwrap()).unwrap();
    let de48 = ecom.de48().unwrap();
    assert_eq!(de48.tcc(), Ok(b'T'));
    assert_eq!(de48.get(92).unwrap(), Some(&b"123"[..]));

    let rev = decode(&d, &mix[5].encode(&d).unwrap()).unwrap();
    let o = rev.original_data().unwrap().unwrap();
    assert_eq!(o.mti, mti(100));
    assert_eq!(o.stan, 4711);
    assert_eq!(o.transmission_datetime.second, 15);
    assert_eq!(o.acquirer_id, 123456);
    assert_eq!(o.forwarding_id, 654321);
    let r = rev.replacement_amounts().unwrap().unwrap();
    assert_eq!(
        (r.transaction_minor, r.settlement_minor, r.billing_minor),
        (5000, 5000, 5000)
    );
    assert!(!r.is_zero());

    // Content errors name the field.
    let mut b = MessageBuilder::new(mti(400));
    b.set(7, "1322143000")
        .set(14, "2813")
        .set(95, "00000000500A000000005000000000005000000000");
    let m = decode(&d, &b.encode(&d).unwrap()).unwrap();
    assert_eq!(m.transmission_datetime().unwrap_err().field, 7);
    assert_eq!(m.expiry().unwrap_err().field, 14);
    assert_eq!(m.replacement_amounts().unwrap_err().field, 95);
}

#[test]
fn response_echoes_request_fields() {
    let d = Dialect::ascii();
    let req = decode(&d, &samples::mix()[0].encode(&d).unwrap()).unwrap();
    let echo = [2, 3, 4, 5, 6, 7, 11, 32, 33, 37, 41, 42, 49, 50, 51, 63];
    let mut resp = response_to(&req, mti(110), &echo);
    resp.set(39, "00").set(38, "A1B2C3");
    let m = decode(&d, &resp.encode(&d).unwrap()).unwrap();
    assert_eq!(m.mti(), mti(110));
    for n in echo {
        assert_eq!(m.field(n), req.field(n), "field {n}");
    }
    assert_eq!(
        m.fields().iter().collect::<Vec<_>>(),
        vec![2, 3, 4, 7, 11, 32, 33, 37, 38, 39, 41, 42, 49, 63]
    );
}

#[test]
fn sample_mix_roundtrips_in_both_dialects_and_converts() {
    let (a, mc) = (Dialect::ascii(), Dialect::mastercard());
    for b in samples::mix() {
        let ab = b.encode(&a).unwrap();
        let mb = b.encode(&mc).unwrap();
        let ma = decode(&a, &ab).unwrap();
        let mm = decode(&mc, &mb).unwrap();
        assert_eq!(ma, mm, "same logical message");
        assert_eq!(ma.encode(&mc).unwrap(), mb, "ascii → mastercard");
        assert_eq!(mm.encode(&a).unwrap(), ab, "mastercard → ascii");
        assert_eq!(ma.to_builder().encode(&a).unwrap(), ab);
    }
}

#[test]
fn builtin_dialects_follow_network_dialects_md() {
    let (a, mc) = (Dialect::ascii(), Dialect::mastercard());
    for n in 2..=128 {
        let (fa, fm) = (a.field(n).unwrap(), mc.field(n).unwrap());
        assert_eq!(
            (fa.format, fa.length, fa.max_len),
            (fm.format, fm.length, fm.max_len)
        );
        assert_eq!(fa.data, Charset::Ascii);
        assert_eq!(fm.data, Charset::Cp037);
        assert_eq!(fm.prefix, Charset::Cp037);
    }
    let spec = |n| {
        let f = a.field(n).unwrap();
        (f.format, f.length, f.max_len)
    };
    use Format::*;
    use LengthKind::*;
    assert_eq!(spec(2), (N, LlVar, 19));
    assert_eq!(spec(35), (Z, LlVar, 37));
    assert_eq!(spec(43), (Ans, Fixed, 40));
    assert_eq!(spec(48), (Ans, LllVar, 999));
    assert_eq!(spec(52), (B, Fixed, 8));
    assert_eq!(spec(54), (An, LllVar, 120));
    assert_eq!(spec(55), (B, LllVar, 255));
    assert_eq!(spec(60), (Ans, LllVar, 60));
    assert_eq!(spec(63), (Ans, LllVar, 50));
    assert_eq!(spec(90), (N, Fixed, 42));
    assert_eq!(spec(94), (Ans, Fixed, 7));
    assert_eq!(spec(95), (An, Fixed, 42));
    assert_eq!(spec(96), (B, Fixed, 8));
    assert_eq!(spec(102), (Ans, LlVar, 28));
    assert_eq!(spec(128), (B, Fixed, 8));
    assert_eq!(mc.mti_charset(), Charset::Cp037);
    assert!(Dialect::builtin("visa").is_none());
}

#[test]
fn dialect_file_code_page_and_overrides() {
    let d = Dialect::from_toml_str(
        "name = \"mc500\"\nbase = \"mastercard\"\ncode_page = \"500\"\n[fields]\n48 = { max = 300 }\n55 = { data = \"ascii\", format = \"ans\" }\n",
    )
    .unwrap();
    assert_eq!(d.mti_charset(), Charset::Cp500);
    assert_eq!(d.field(2).unwrap().data, Charset::Cp500);
    assert_eq!(d.field(48).unwrap().max_len, 300);
    assert_eq!(d.field(55).unwrap().data, Charset::Ascii);
    assert_eq!(d.field(55).unwrap().prefix, Charset::Cp500);
    let mut b = MessageBuilder::new(mti(100));
    b.set(43, "[x]").set(55, "AB");
    let bytes = b.encode(&d).unwrap();
    assert_eq!(bytes[12], 0x4A, "cp500 [");
    assert_eq!(&bytes[bytes.len() - 2..], b"AB");
    assert_eq!(decode(&d, &bytes).unwrap().field(43).unwrap()[..3], *b"[x]");
}

#[test]
fn dialect_file_errors() {
    let e = |s: &str| Dialect::from_toml_str(s).unwrap_err();
    assert!(matches!(e("name ="), DialectError::Syntax(_)));
    assert!(matches!(
        e("name = \"x\"\nbogus = 1\n"),
        DialectError::Syntax(_)
    ));
    assert_eq!(
        e("name = \"x\"\nbase = \"visa\"\n"),
        DialectError::UnknownBase("visa".into())
    );
    assert_eq!(
        e("name = \"x\"\nbase = \"ascii\"\ncode_page = \"273\"\n"),
        DialectError::UnknownCodePage("273".into())
    );
    assert_eq!(
        e("name = \"x\"\nbase = \"ascii\"\ndata = \"ebcdic\"\n"),
        DialectError::MissingCodePage("data".into())
    );
    assert_eq!(
        e("name = \"x\"\nmti = \"ascii\"\ndata = \"ascii\"\nlength_prefix = \"ascii\"\n"),
        DialectError::MissingSetting("bitmap".into())
    );
    assert_eq!(
        e("name = \"x\"\nbase = \"ascii\"\n[fields]\n129 = { max = 1 }\n"),
        DialectError::BadFieldNumber("129".into())
    );
    assert_eq!(
        e("name = \"x\"\nbase = \"ascii\"\n[fields]\n2 = { max = 100 }\n"),
        DialectError::BadMax {
            field: 2,
            max: 100,
            limit: 99
        }
    );
    assert_eq!(
        e(
            "name = \"x\"\nmti = \"ascii\"\nbitmap = \"binary\"\ndata = \"ascii\"\nlength_prefix = \"ascii\"\n[fields]\n2 = { format = \"n\", length = \"fixed\", max = 3 }\n"
        ),
        DialectError::MissingField(3)
    );
    assert_eq!(
        e(
            "name = \"x\"\nmti = \"ascii\"\nbitmap = \"binary\"\ndata = \"ascii\"\nlength_prefix = \"ascii\"\n[fields]\n2 = { format = \"n\", max = 3 }\n"
        ),
        DialectError::IncompleteField {
            field: 2,
            missing: "length"
        }
    );
    assert!(matches!(
        Dialect::load("/nonexistent/d.toml").unwrap_err(),
        DialectError::Read { .. }
    ));
    let msg = e("name = \"x\"\nbase = \"ascii\"\n[fields]\n2 = { max = 100 }\n").to_string();
    assert!(msg.contains("field 2") && msg.contains("100"), "{msg}");
}

#[test]
fn debug_never_shows_values() {
    let d = Dialect::ascii();
    let m = decode(&d, &small_ascii()).unwrap();
    let s = format!("{m:?}");
    assert!(!s.contains("5413"), "{s}");
    assert!(s.contains("[2, 3, 4, 11]"), "{s}");
}

#[test]
fn documented_example_dialect_file_works() {
    let doc = include_str!("../../docs/dialect-file.md");
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let text = &doc[start..start + doc[start..].find("```").unwrap()];
    let d = Dialect::from_toml_str(text).unwrap();
    assert_eq!(d.name(), "mybank-switch");
    assert_eq!(d.mti_charset(), Charset::Cp500);
    assert_eq!(d.bitmap_encoding(), iso8583::BitmapEncoding::Hex);
    assert_eq!(d.field(48).unwrap().max_len, 500);
    assert_eq!(d.field(55).unwrap().prefix, Charset::Ascii);
    assert_eq!(d.field(55).unwrap().data, Charset::Cp500);
    assert_eq!(d.field(112).unwrap().length, LengthKind::LllVar);
    assert!(d.field(127).is_none());
    let mut b = MessageBuilder::new(mti(100));
    b.set(2, "5413330089010012")
        .set(55, [0x9F, 0x26, 0x00])
        .set(112, "private");
    let bytes = b.encode(&d).unwrap();
    assert_eq!(&bytes[..4], &[0xF0, 0xF1, 0xF0, 0xF0]);
    assert_eq!(bytes[4], 0xC3, "hex bitmap 'C' in EBCDIC: bits 1 and 2");
    let m = decode(&d, &bytes).unwrap();
    assert_eq!(m.pan(), Some("5413330089010012"));
    assert_eq!(m.text(112), Some("private"));
}

#[test]
fn loaded_dialect_equals_builtin_and_reencodes_validated() {
    let path = &std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("dialects/ascii.toml");
    let loaded = Dialect::load(path).unwrap();
    assert_eq!(loaded, Dialect::ascii());
    assert_ne!(loaded, Dialect::mastercard());
    // A message decoded with one parse and encoded with another (equal) parse is validated
    // again and gives the same bytes.
    let bytes = samples::mix()[0].encode(&Dialect::ascii()).unwrap();
    let m = decode(&Dialect::ascii(), &bytes).unwrap();
    assert_eq!(m.encode(&loaded).unwrap(), bytes);
}

#[test]
fn typed_accessors_never_panic_on_redefined_fields() {
    let d = Dialect::from_toml_str(
        "name = \"odd\"\nbase = \"ascii\"\n[fields]\n3 = { format = \"ans\" }\n22 = { format = \"ans\" }\n7 = { format = \"ans\" }\n90 = { format = \"ans\" }\n",
    )
    .unwrap();
    let mut b = MessageBuilder::new(mti(400));
    b.set(3, "AB!!CD")
        .set(22, "#$%")
        .set(7, "12!4567890")
        .set(90, "x".repeat(42));
    let m = decode(&d, &b.encode(&d).unwrap()).unwrap();
    assert_eq!(m.processing_code(), None);
    assert_eq!(m.pos_entry_mode(), None);
    assert_eq!(m.transmission_datetime().unwrap_err().field, 7);
    assert_eq!(m.original_data().unwrap_err().field, 90);
}

/// Regression: fuzz/regressions/decode_message/crash-afe01fdb… (decode_message target). Bit 1 set
/// with an all-zero secondary bitmap used to decode, and re-encoding dropped the empty bitmap.
#[test]
fn fuzz_regression_empty_secondary_bitmap() {
    let crash = hex::decode(
        "f6f9f5f282000000000082000000000000000000f8f3f5f9f7f4f5f9f3f9f3f8f0f0f0f6f6f4f9f2f0f9",
    )
    .unwrap();
    let e = decode(&Dialect::mastercard(), &crash).unwrap_err();
    assert_eq!(
        e,
        DecodeError {
            field: None,
            offset: 12,
            kind: ErrorKind::EmptySecondaryBitmap
        }
    );
    assert_eq!(
        e.to_string(),
        "bitmap at byte 12: bit 1 announces a secondary bitmap but it is empty"
    );
    let file = include_bytes!(
        "../../fuzz/regressions/decode_message/crash-afe01fdb0a77f42d8bbb6af0cb9892a2a2d22a11"
    );
    assert_eq!(&file[..], &crash[..]);
    // The same shape in ASCII.
    let mut v = b"0800".to_vec();
    v.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        decode(&Dialect::ascii(), &v).unwrap_err().kind,
        ErrorKind::EmptySecondaryBitmap
    );
}
