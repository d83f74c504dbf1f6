//! Any bytes, both built-in dialects: decode must not panic; what decodes must re-encode to the
//! same bytes (the wire form is canonical), convert to the other dialect and back unchanged, and
//! every typed accessor, the DE 55 TLV reader and the DE 48 reader must not panic.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use iso8583::{Dialect, Message};
use libfuzzer_sys::fuzz_target;

fn dialects() -> &'static [Dialect; 2] {
    static D: OnceLock<[Dialect; 2]> = OnceLock::new();
    D.get_or_init(|| [Dialect::ascii(), Dialect::mastercard()])
}

fuzz_target!(|data: &[u8]| {
    let [a, mc] = dialects();
    for (d, other) in [(a, mc), (mc, a)] {
        let Ok(m) = Message::decode(d, Bytes::copy_from_slice(data)) else {
            continue;
        };
        assert_eq!(
            &m.encode(d).expect("a decoded message re-encodes")[..],
            data
        );
        let converted = m.encode(other).expect("converts to the other dialect");
        let back = Message::decode(other, converted).expect("converted message decodes");
        assert_eq!(back, m);
        let _ = (
            m.pan(),
            m.processing_code(),
            m.amount_transaction(),
            m.amount_billing(),
        );
        let _ = (
            m.transmission_datetime(),
            m.stan(),
            m.expiry(),
            m.pos_entry_mode(),
        );
        let _ = (m.original_data(), m.replacement_amounts());
        if let Some(icc) = m.icc_data() {
            let _ = icc.validate();
        }
        if let Some(de48) = m.de48() {
            let _ = de48.tcc();
            for s in de48 {
                if s.is_err() {
                    break;
                }
            }
        }
    }
});
