//! Differential tests: the table-driven decode loop against the previous decoder
//! (`message::reference`), kept verbatim as the oracle. Both must accept and reject exactly the
//! same inputs, with the same error (field, offset, kind), the same spans and the same translated
//! copy, in ASCII, EBCDIC, hex-bitmap and mixed-charset dialects.

use bytes::Bytes;
use proptest::prelude::*;

use crate::message::reference;
use crate::{Dialect, Message, MessageBuilder, Mti};

/// The built-ins plus dialects that exercise the other settings: hex bitmaps, another code page,
/// ASCII data with EBCDIC prefixes.
fn dialects() -> Vec<Dialect> {
    vec![
        Dialect::ascii(),
        Dialect::mastercard(),
        Dialect::from_toml_str("name = \"hexmap\"\nbase = \"ascii\"\nbitmap = \"hex\"\n").unwrap(),
        Dialect::from_toml_str(
            "name = \"cp500hex\"\nbase = \"mastercard\"\ncode_page = \"500\"\nbitmap = \"hex\"\n",
        )
        .unwrap(),
        Dialect::from_toml_str(
            "name = \"mixed\"\nbase = \"ascii\"\ncode_page = \"1047\"\nlength_prefix = \"ebcdic\"\n\
             [fields]\n43 = { data = \"ebcdic\" }\n127 = { defined = false }\n",
        )
        .unwrap(),
    ]
}

/// The benchmark mix plus a message with the rarer formats (`x+n`, `z`, LLLVAR `ans`).
fn builders() -> Vec<MessageBuilder> {
    let mut v = crate::samples::mix();
    let mut odd = MessageBuilder::new(Mti::from_u16(220).unwrap());
    odd.set(2, "4000000000000002")
        .set(28, "C00000150")
        .set(29, "D00000000")
        .set(35, "4000000000000002=2512")
        .set(36, "0123456789=:;<>?")
        .set(43, "Cafe? no: plain ASCII {}[]|~")
        .set(44, "A")
        .set(46, "fee text")
        .set(97, "C0000000000000123");
    v.push(odd);
    v
}

fn frames() -> Vec<(usize, Bytes)> {
    let mut out = Vec::new();
    for (i, d) in dialects().iter().enumerate() {
        for b in builders() {
            if let Ok(f) = b.encode(d) {
                out.push((i, f));
            }
        }
    }
    out
}

/// Decodes `bytes` both ways and asserts the outcomes are identical.
fn same(dialect: &Dialect, bytes: &[u8]) {
    let new = Message::decode(dialect, Bytes::copy_from_slice(bytes));
    let old = reference::decode(dialect, Bytes::copy_from_slice(bytes));
    match (&new, &old) {
        (Ok(m), Ok((mti, fields, spans, translated))) => {
            let (n_mti, n_fields, n_spans, n_translated) = m.parts();
            assert_eq!(n_mti, *mti, "{} {:02X?}", dialect.name(), bytes);
            assert_eq!(n_fields, *fields, "{} {:02X?}", dialect.name(), bytes);
            assert_eq!(n_spans, spans, "{} {:02X?}", dialect.name(), bytes);
            assert_eq!(n_translated, translated.as_deref(), "{}", dialect.name());
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "{} {:02X?}", dialect.name(), bytes),
        _ => panic!(
            "{}: new {:?} old {:?} for {:02X?}",
            dialect.name(),
            new.as_ref().map(|_| ()),
            old.as_ref().map(|_| ()),
            bytes
        ),
    }
}

#[test]
fn every_sample_decodes_the_same() {
    let ds = dialects();
    let fs = frames();
    assert!(
        fs.len() >= 5 * 9 - 2,
        "most samples encode in every dialect"
    );
    for (d, f) in &fs {
        assert!(Message::decode(&ds[*d], f.clone()).is_ok());
        same(&ds[*d], f);
    }
}

/// Every position of every sample frame, replaced by each interesting byte (digits and letters in
/// both charsets, the x+n signs, track characters, space, control and high bytes), and every
/// truncation.
#[test]
fn every_single_byte_change_decodes_the_same() {
    const BYTES: [u8; 22] = [
        0x00, 0x01, 0x20, b'0', b'5', b'9', b':', b'=', b'?', b'@', b'A', b'C', b'D', b'z', 0x7E,
        0x7F, 0x80, 0x40, 0xC1, 0xC3, 0xF0, 0xF9,
    ];
    let ds = dialects();
    for (d, f) in frames() {
        let dialect = &ds[d];
        let mut buf = f.to_vec();
        for at in 0..buf.len() {
            let keep = buf[at];
            for b in BYTES.into_iter().chain([keep ^ 0x01, keep ^ 0x80, 0xFF]) {
                buf[at] = b;
                same(dialect, &buf);
            }
            buf[at] = keep;
            same(dialect, &buf[..at]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Several random edits (replace, insert, delete) of a sample frame.
    #[test]
    fn random_edits_decode_the_same(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((0u8..3, any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let ds = dialects();
        let fs = frames();
        let (d, f) = &fs[pick.index(fs.len())];
        let mut buf = f.to_vec();
        for (kind, at, byte) in edits {
            if buf.is_empty() {
                break;
            }
            let i = at.index(buf.len());
            match kind {
                0 => buf[i] = byte,
                1 => buf.insert(i, byte),
                _ => {
                    buf.remove(i);
                }
            }
        }
        same(&ds[*d], &buf);
    }

    /// A valid header (MTI and bitmaps of a sample) followed by random bytes.
    #[test]
    fn random_bodies_decode_the_same(
        pick in any::<prop::sample::Index>(),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let ds = dialects();
        let fs = frames();
        let (d, f) = &fs[pick.index(fs.len())];
        let header = if ds[*d].name().ends_with("hex") || ds[*d].name() == "hexmap" { 36 } else { 20 };
        let mut buf = f[..header.min(f.len())].to_vec();
        buf.extend_from_slice(&body);
        same(&ds[*d], &buf);
    }
}

/// A value made to sit near the edges of a field's rules: a random alphabet (digits, letters,
/// printable, track characters, signed amounts, any byte) and a length around the field's.
fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    let alphabet = prop_oneof![
        Just(b"0123456789".to_vec()),
        Just(b"0123456789ABCXYZ abcxyz".to_vec()),
        Just((0x20..=0x7Eu8).collect::<Vec<_>>()),
        Just((0x30..=0x3Fu8).collect::<Vec<_>>()),
        Just(b"CD0123456789".to_vec()),
        Just((0..=255u8).collect::<Vec<_>>()),
    ];
    let len = prop_oneof![0usize..=20, 0usize..=120, Just(0), Just(1)];
    (
        alphabet,
        len,
        prop::collection::vec(any::<prop::sample::Index>(), 120),
    )
        .prop_map(|(alphabet, len, picks)| {
            picks[..len.min(picks.len())]
                .iter()
                .map(|i| alphabet[i.index(alphabet.len())])
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Random builders (random fields, values near the rules' edges) encode to the same bytes,
    /// or fail with the same error, as with the previous encoder, in every test dialect.
    #[test]
    fn random_builders_encode_the_same(
        fields in prop::collection::vec((2usize..=128, value_strategy()), 0..12),
        fixups in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4), 0..12),
    ) {
        for dialect in dialects() {
            let mut b = MessageBuilder::new(Mti::from_u16(100).unwrap());
            for (n, v) in &fields {
                b.set(*n, v);
            }
            // Make some values valid so that whole messages encode, not only errors.
            for (i, (pick, how)) in fixups.iter().enumerate() {
                let Some((n, _)) = fields.get(pick.index(fields.len().max(1)) % fields.len().max(1)) else {
                    continue;
                };
                let Some(spec) = dialect.field(*n) else { continue };
                let len = match (how, spec.length) {
                    (0, _) | (_, crate::LengthKind::Fixed) => spec.max_len as usize,
                    _ => (i * 7) % (spec.max_len as usize + 1),
                };
                let v: Vec<u8> = match spec.format {
                    crate::Format::Xn => std::iter::once(b'C')
                        .chain(std::iter::repeat_n(b'7', len.saturating_sub(1)))
                        .collect(),
                    crate::Format::B => vec![0xA5; len],
                    _ => vec![b'4'; len],
                };
                b.set(*n, v);
            }
            let new = b.encode(&dialect).map(|x| x.to_vec());
            let old = crate::encode::reference::encode(&b, &dialect);
            prop_assert_eq!(&new, &old, "{}", dialect.name());
            let mut out = bytes::BytesMut::from(&b"pre"[..]);
            let into = b.encode_into(&dialect, &mut out);
            prop_assert_eq!(into.is_ok(), new.is_ok());
            if let Ok(bytes) = &new {
                prop_assert_eq!(&out[3..], &bytes[..]);
            } else {
                prop_assert_eq!(&out[..], b"pre");
            }
        }
    }
}
