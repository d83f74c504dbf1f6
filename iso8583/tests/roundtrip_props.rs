//! Property tests: for random valid messages, encode then decode gives the same message, decode
//! then encode gives the same bytes; corrupted bytes never panic, and whatever still decodes
//! re-encodes to exactly the bytes it came from (the wire form is canonical).

use bytes::Bytes;
use iso8583::{Dialect, FieldSpec, Format, LengthKind, Message, MessageBuilder, Mti};
use proptest::prelude::*;

fn alphabet(f: Format) -> Vec<u8> {
    match f {
        Format::N => (b'0'..=b'9').collect(),
        Format::An => (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .chain([b' '])
            .collect(),
        Format::Ans => (0x20..=0x7E).collect(),
        Format::Z => (0x30..=0x3F).collect(),
        Format::Xn | Format::B => (0..=255).collect(),
    }
}

/// A valid logical value for `spec` built from random bytes.
fn value_for(spec: &FieldSpec, len_seed: u16, raw: &[u8]) -> Vec<u8> {
    let max = spec.max_len as usize;
    let len = match spec.length {
        LengthKind::Fixed => max,
        _ => len_seed as usize % (max.min(130) + 1),
    };
    let pick = |i: usize| raw.get(i % raw.len().max(1)).copied().unwrap_or(0) as usize;
    match spec.format {
        Format::Xn => {
            let mut v = vec![if pick(0) % 2 == 0 { b'C' } else { b'D' }];
            v.extend((1..len).map(|i| b'0' + (pick(i) % 10) as u8));
            v
        }
        f => {
            let a = alphabet(f);
            (0..len).map(|i| a[(pick(i) ^ i) % a.len()]).collect()
        }
    }
}

type Draft = (u16, Vec<(usize, u16, Vec<u8>)>);

fn draft() -> impl Strategy<Value = Draft> {
    (
        0u16..=9999,
        prop::collection::vec(
            (
                2usize..=128,
                any::<u16>(),
                prop::collection::vec(any::<u8>(), 0..40),
            ),
            0..24,
        ),
    )
}

fn build(d: &Dialect, draft: &Draft) -> MessageBuilder {
    let mut b = MessageBuilder::new(Mti::from_u16(draft.0).unwrap());
    for (n, len_seed, raw) in &draft.1 {
        let spec = d.field(*n).unwrap();
        b.set(*n, value_for(spec, *len_seed, raw));
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn encode_decode_encode(draft in draft()) {
        for d in [Dialect::ascii(), Dialect::mastercard()] {
            let b = build(&d, &draft);
            let bytes = b.encode(&d).unwrap();
            let m = Message::decode(&d, bytes.clone()).unwrap();
            prop_assert_eq!(m.mti(), b.mti());
            prop_assert_eq!(m.fields(), b.fields());
            for n in b.fields().iter() {
                prop_assert_eq!(m.field(n), b.get(n), "field {}", n);
            }
            prop_assert_eq!(m.encode(&d).unwrap(), bytes);
        }
    }

    #[test]
    fn dialect_conversion_preserves_the_message(draft in draft()) {
        let (a, mc) = (Dialect::ascii(), Dialect::mastercard());
        let ascii = build(&a, &draft).encode(&a).unwrap();
        let m = Message::decode(&a, ascii.clone()).unwrap();
        let ebcdic = m.encode(&mc).unwrap();
        let back = Message::decode(&mc, ebcdic).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.encode(&a).unwrap(), ascii);
    }

    #[test]
    fn corrupted_messages_never_panic_and_stay_canonical(
        draft in draft(),
        edits in prop::collection::vec((any::<u16>(), any::<u8>()), 1..4),
        cut in any::<u16>(),
    ) {
        for d in [Dialect::ascii(), Dialect::mastercard()] {
            let mut bytes = build(&d, &draft).encode(&d).unwrap().to_vec();
            for (at, byte) in &edits {
                let i = *at as usize % bytes.len();
                bytes[i] = *byte;
            }
            if cut % 4 == 0 {
                bytes.truncate(cut as usize % (bytes.len() + 1));
            }
            match Message::decode(&d, Bytes::from(bytes.clone())) {
                Ok(m) => prop_assert_eq!(&m.encode(&d).unwrap()[..], &bytes[..]),
                Err(e) => {
                    prop_assert!(e.offset <= bytes.len());
                    prop_assert!(!e.to_string().contains('\n'));
                }
            }
        }
    }
}
