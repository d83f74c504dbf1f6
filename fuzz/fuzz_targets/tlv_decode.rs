//! Any bytes as DE 55: the BER-TLV reader must not panic; valid data rewritten by the writer (in
//! minimal form) must read back as the same tags and values.
#![no_main]

use iso8583::tlv::{Reader, Tlv, Writer};
use libfuzzer_sys::fuzz_target;

fn rewrite(reader: Reader<'_>, w: &mut Writer) {
    for item in reader {
        let Ok(t) = item else { return };
        match t.children() {
            Some(children) if children.validate().is_ok() => {
                w.constructed(t.tag, |w| rewrite(children, w));
            }
            _ => {
                w.put(t.tag, t.value);
            }
        }
    }
}

fn flat(reader: Reader<'_>, out: &mut Vec<(u32, Vec<u8>)>) {
    for item in reader {
        let Ok(t): Result<Tlv<'_>, _> = item else {
            return;
        };
        match t.children() {
            Some(children) if children.validate().is_ok() => flat(children, out),
            _ => out.push((t.tag, t.value.to_vec())),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let reader = Reader::new(data);
    let _ = reader.find(0x9F26);
    if reader.validate().is_err() {
        for _ in reader {}
        return;
    }
    let mut w = Writer::new();
    rewrite(reader.clone(), &mut w);
    let rewritten = w.into_bytes();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    flat(reader, &mut a);
    flat(Reader::new(&rewritten), &mut b);
    assert_eq!(a, b);
});
