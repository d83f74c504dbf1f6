//! Cross-check against pyiso8583 (scripts/iso8583-vectors): every vector decodes to the fields
//! the independent library encoded, re-encodes byte-identically, and builds byte-identically
//! from its fields.

use bytes::Bytes;
use iso8583::{Dialect, Format, Message, MessageBuilder, Mti};

fn check(file: &str, dialect: &Dialect) -> usize {
    let mut count = 0;
    for (line_no, line) in file.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["dialect"], dialect.name());
        let wire = hex::decode(v["hex"].as_str().unwrap()).unwrap();
        let m = Message::decode(dialect, Bytes::from(wire.clone()))
            .unwrap_or_else(|e| panic!("vector {line_no}: {e}"));
        assert_eq!(
            m.mti().as_str(),
            v["mti"].as_str().unwrap(),
            "vector {line_no}"
        );
        let fields = v["fields"].as_object().unwrap();
        assert_eq!(
            m.fields().len(),
            fields.len(),
            "vector {line_no}: field count"
        );
        let mut b = MessageBuilder::new(Mti::new(v["mti"].as_str().unwrap().as_bytes()).unwrap());
        for (k, want) in fields {
            let n: usize = k.parse().unwrap();
            let want = want.as_str().unwrap();
            let binary = dialect.field(n).unwrap().format == Format::B;
            let got = m
                .field(n)
                .unwrap_or_else(|| panic!("vector {line_no}: field {n} missing"));
            if binary {
                assert_eq!(hex::encode_upper(got), want, "vector {line_no} field {n}");
                b.set(n, hex::decode(want).unwrap());
            } else {
                assert_eq!(got, want.as_bytes(), "vector {line_no} field {n}");
                b.set(n, want);
            }
        }
        assert_eq!(
            &m.encode(dialect).unwrap()[..],
            &wire[..],
            "vector {line_no}: re-encode"
        );
        assert_eq!(
            &b.encode(dialect).unwrap()[..],
            &wire[..],
            "vector {line_no}: build"
        );
        count += 1;
    }
    count
}

#[test]
fn pyiso8583_ascii_vectors() {
    let n = check(include_str!("vectors/ascii.jsonl"), &Dialect::ascii());
    assert!(n >= 150, "{n} vectors");
}

#[test]
fn pyiso8583_mastercard_cp037_vectors() {
    let n = check(
        include_str!("vectors/mastercard.jsonl"),
        &Dialect::mastercard(),
    );
    assert!(n >= 150, "{n} vectors");
}
