//! The project's one PAN masking rule, for logs, events, `Debug` output and the CLI:
//!
//! * 13 digits or more: the first 6 and the last 4, `*` between (so at least 3 stay hidden);
//! * fewer than 13 digits: all `*`, same length.
//!
//! Everything that shows a PAN (the authorizer's `MaskedPan`, `hsm::CardData`'s `Debug`, the
//! `iso8583 decode` command) calls [`mask_pan_into`] or [`masked_pan`].

/// The shortest PAN whose first 6 and last 4 digits may be shown.
pub const SHOW_FROM_DIGITS: usize = 13;

/// Writes `pan` masked into `out` (`out.len()` bytes are written; `out` must be as long as
/// `pan`, or the shorter of the two is used). Never allocates.
pub fn mask_pan_into(pan: &[u8], out: &mut [u8]) {
    let len = pan.len().min(out.len());
    let out = &mut out[..len];
    out.fill(b'*');
    if len >= SHOW_FROM_DIGITS {
        out[..6].copy_from_slice(&pan[..6]);
        out[len - 4..].copy_from_slice(&pan[len - 4..len]);
    }
}

/// `pan` masked (see the module): `"5413330089010434"` → `"541333******0434"`.
/// Text that is not ASCII is not a PAN: it is masked whole, one `*` per character.
pub fn masked_pan(pan: &str) -> String {
    if !pan.is_ascii() {
        return "*".repeat(pan.chars().count());
    }
    let mut out = vec![b'*'; pan.len()];
    mask_pan_into(pan.as_bytes(), &mut out);
    String::from_utf8(out).expect("ASCII in, ASCII out")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_by_length() {
        for (pan, masked) in [
            ("5413330089", "**********"),
            ("54133300890", "***********"),
            ("541333008901", "************"),
            ("5413330089012", "541333***9012"),
            ("5413330089010434", "541333******0434"),
            ("4761739001010010123", "476173*********0123"),
            ("", ""),
        ] {
            assert_eq!(masked_pan(pan), masked, "{} digits", pan.len());
            let shown = masked.bytes().filter(u8::is_ascii_digit).count();
            assert!(shown <= 10 && shown + 3 <= pan.len().max(3), "{masked}");
        }
    }

    #[test]
    fn non_ascii_is_masked_whole() {
        assert_eq!(masked_pan("541333ééé0089010434"), "*".repeat(19));
    }
}
