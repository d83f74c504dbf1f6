//! What can still be read of a frame that did not decode: the fields before the one in error.
//!
//! The contract answers an unparsable request with DE 39 = 30 and DE 44 = the field in error when
//! its MTI and DE 11 can be recovered. The codec stops at the first bad field; every field before
//! it was read and validated. So the frame is cut just before that field and the bitmap cleared
//! of it and of everything after, which gives a message the codec accepts, holding exactly the
//! fields that were sound. This works on the wire bytes through the codec's public API only.
//!
//! Only binary bitmaps (both built-in dialects) are salvaged; a dialect with hex bitmaps gives
//! `None` here, and the frame is counted as garbage.
//!
//! Must never: invent a value (only bytes that decoded are kept), panic on any input.

use bytes::{BufMut, BytesMut};
use iso8583::{BitmapEncoding, DecodeError, Dialect, ErrorKind, Message};

/// The message made of the fields of `frame` before the one `error` names, with that field's
/// number (DE 44); `None` when the MTI or bitmaps are in error, or no field is named.
pub fn salvage(dialect: &Dialect, frame: &[u8], error: &DecodeError) -> Option<(Message, u8)> {
    let bad = error.field?;
    if dialect.bitmap_encoding() != BitmapEncoding::Binary {
        return None;
    }
    const MTI_LEN: usize = 4;
    let word = |at: usize| -> Option<u64> {
        let b: [u8; 8] = frame.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_be_bytes(b))
    };
    let primary = word(MTI_LEN)?;
    let has_secondary = primary & (1 << 63) != 0;
    let secondary = if has_secondary { word(MTI_LEN + 8)? } else { 0 };
    let header_len = MTI_LEN + if has_secondary { 16 } else { 8 };

    // Fields 1..bad stay: in the primary word field k is bit 64 - k, in the secondary 128 - k.
    let keep_primary = |w: u64| -> u64 {
        let below = u32::from(bad.min(65) - 1); // fields 1..=below stay
        if below >= 64 {
            w
        } else {
            w & !(u64::MAX >> below)
        }
    };
    let keep_secondary = |w: u64| -> u64 {
        if bad <= 65 {
            return 0;
        }
        let below = u32::from(bad - 65); // fields 65..65+below stay
        if below >= 64 {
            w
        } else {
            w & !(u64::MAX >> below)
        }
    };
    let new_secondary = keep_secondary(secondary);
    let mut new_primary = keep_primary(primary) & !(1 << 63);
    if new_secondary != 0 {
        new_primary |= 1 << 63;
    }
    let mut cut = BytesMut::with_capacity(frame.len());
    cut.put_slice(&frame[..MTI_LEN]);
    cut.put_u64(new_primary);
    if new_secondary != 0 {
        cut.put_u64(new_secondary);
    }
    cut.put_slice(&frame[header_len..]);
    let cut = cut.freeze();
    // The sound fields now end where the bad one started: the codec says so as trailing bytes.
    let end = match Message::decode(dialect, cut.clone()) {
        Err(DecodeError {
            field: None,
            offset,
            kind: ErrorKind::TrailingBytes { .. },
        }) => offset,
        _ => return None,
    };
    let message = Message::decode(dialect, cut.slice(..end)).ok()?;
    Some((message, bad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use iso8583::{MessageBuilder, Mti};

    fn request(dialect: &Dialect) -> Vec<u8> {
        let mut b = MessageBuilder::new(Mti::from_u16(100).unwrap());
        b.set(2, "5413330089010434")
            .set(3, "000000")
            .set(4, "000000001000")
            .set(7, "1203101010")
            .set(11, "000042")
            .set(49, "978")
            .set(70, "301")
            .set(102, "ACCOUNT");
        b.encode(dialect).unwrap().to_vec()
    }

    /// Where `needle` starts in `frame`.
    fn find(frame: &[u8], needle: &[u8]) -> usize {
        frame
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    }

    #[test]
    fn a_bad_field_after_de11_leaves_the_fields_before_it() {
        for dialect in [Dialect::ascii(), Dialect::mastercard()] {
            let mut frame = request(&dialect);
            // Find DE 49 on the wire: encode the same digits in the dialect's charset.
            let mut probe = MessageBuilder::new(Mti::from_u16(100).unwrap());
            probe.set(49, "978");
            let p = probe.encode(&dialect).unwrap();
            let value = &p[p.len() - 3..];
            let at = find(&frame, value);
            frame[at] = b'?';
            let err = Message::decode(&dialect, Bytes::from(frame.clone())).unwrap_err();
            assert_eq!(err.field, Some(49));
            let (m, field) = salvage(&dialect, &frame, &err).expect("salvaged");
            assert_eq!(field, 49);
            assert_eq!(m.mti().as_u16(), 100);
            assert_eq!(m.stan(), Some(42));
            assert_eq!(m.text(7), Some("1203101010"));
            assert!(!m.has(49) && !m.has(70) && !m.has(102));
            assert_eq!(m.fields().iter().collect::<Vec<_>>(), vec![2, 3, 4, 7, 11]);
        }
    }

    #[test]
    fn a_bad_mti_or_bitmap_is_not_salvaged() {
        let dialect = Dialect::ascii();
        let mut frame = request(&dialect);
        frame[0] = b'X';
        let err = Message::decode(&dialect, Bytes::from(frame.clone())).unwrap_err();
        assert!(salvage(&dialect, &frame, &err).is_none());
        for garbage in [&b""[..], b"01", b"0100\x00", &[0xff; 40]] {
            if let Err(err) = Message::decode(&dialect, Bytes::copy_from_slice(garbage)) {
                let _ = salvage(&dialect, garbage, &err);
            }
        }
    }
}
