//! A minimal BER-TLV reader for DE 55, enough for the tests, the benchmark and tools that have
//! raw DE 55 bytes at hand. The authorizer uses the `iso8583` crate's reader and passes the
//! already-split tags to [`crate::EmvData::from_tags`]; this one exists so that `hsm` does not
//! depend on the codec. Primitive tags only at the top level (DE 55 is flat); never panics.

use crate::emv::EmvError;

/// Splits `data` into (tag, value) pairs. Tags up to 4 bytes, lengths up to 0x82 (65535).
pub fn parse(data: &[u8]) -> Result<Vec<(u32, &[u8])>, EmvError> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while i < data.len() {
        // Padding bytes between objects (00 or FF) are allowed by EMV Book 3, annex B.
        if data[i] == 0x00 || data[i] == 0xFF {
            i += 1;
            continue;
        }
        let first = data[i];
        let mut tag = u32::from(first);
        i += 1;
        if first & 0x1F == 0x1F {
            loop {
                let b = *data.get(i).ok_or(EmvError::Tlv("truncated tag"))?;
                if tag > 0x00FF_FFFF {
                    return Err(EmvError::Tlv("tag longer than 4 bytes"));
                }
                tag = (tag << 8) | u32::from(b);
                i += 1;
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        let l0 = *data.get(i).ok_or(EmvError::Tlv("truncated length"))?;
        i += 1;
        let len = match l0 {
            0x00..=0x7F => usize::from(l0),
            0x81 => {
                let b = *data.get(i).ok_or(EmvError::Tlv("truncated length"))?;
                i += 1;
                usize::from(b)
            }
            0x82 => {
                let b = data
                    .get(i..i + 2)
                    .ok_or(EmvError::Tlv("truncated length"))?;
                i += 2;
                usize::from(u16::from_be_bytes([b[0], b[1]]))
            }
            _ => return Err(EmvError::Tlv("unsupported length form")),
        };
        let value = data
            .get(i..i.checked_add(len).ok_or(EmvError::Tlv("length overflow"))?)
            .ok_or(EmvError::Tlv("value runs past the end"))?;
        i += len;
        out.push((tag, value));
    }
    Ok(out)
}

/// Encodes (tag, value) pairs as BER-TLV (short and 0x81 lengths). For tests and tools.
pub fn encode(tags: &[(u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, value) in tags {
        let tb = tag.to_be_bytes();
        let skip = tb.iter().take_while(|b| **b == 0).count().min(3);
        out.extend_from_slice(&tb[skip..]);
        if value.len() < 0x80 {
            out.push(value.len() as u8);
        } else {
            out.push(0x81);
            out.push(value.len() as u8);
        }
        out.extend_from_slice(value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_multibyte_tags() {
        let v1 = [0x00, 0x1C];
        let v2 = [0xAB; 200];
        let enc = encode(&[(0x9F36, &v1), (0x82, &[0x18, 0x00]), (0x9F10, &v2)]);
        let got = parse(&enc).unwrap();
        assert_eq!(got[0], (0x9F36, &v1[..]));
        assert_eq!(got[1].0, 0x82);
        assert_eq!(got[2], (0x9F10, &v2[..]));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let enc = encode(&[(0x9F36, &[0x00, 0x1C])]);
        for cut in 1..enc.len() {
            assert!(parse(&enc[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse(&[0x9F]).is_err());
        assert!(parse(&[0x9F, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
        assert!(parse(&[0x82, 0x83, 0, 0, 0]).is_err());
    }
}
