//! EMV data on the host side: cryptogram profiles, the card and transaction inputs taken from
//! DE 2/23/55, the MAC input of the ARQC, the derivation data and the ARPC input.
//!
//! Pure: no I/O, no clock, no key. Everything here is public data the card sent in the clear;
//! secrets only ever appear inside the token (see `pkcs11`). Malformed input is an [`EmvError`],
//! never a panic.

use std::fmt;
use std::str::FromStr;

use sha1::{Digest, Sha1};

/// The cryptogram versions the authorizer ships (`docs/network.md`, "Chip data (DE 55) and
/// cryptogram versions"; `docs/cryptograms.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    VisaCvn10,
    VisaCvn18,
    VisaCvn22,
    McCvn16,
    McCvn17,
    McCvn20,
    McCvn21,
}

/// How the card's ICC master key diversifier Y is formed from PAN and PSN (EMV Book 2, A1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IccMkOption {
    /// Option A always.
    A,
    /// Option A for PANs of up to 16 digits, option B (SHA-1, decimalised) above.
    AOrB,
}

/// How the session key for the application cryptogram is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKeyMethod {
    /// No session key: the ICC master key MACs directly (Visa CVN 10).
    None,
    /// EMV common session key, R = ATC ‖ 00×6.
    Common,
    /// Mastercard's method, R = ATC ‖ 00 00 ‖ UN.
    Mastercard,
}

/// ISO/IEC 9797-1 padding of the MAC input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Method 1: zeros up to a multiple of 8 (none if already aligned).
    Method1,
    /// Method 2: 0x80 then zeros up to a multiple of 8.
    Method2,
}

/// Which key computes the ARPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpcKey {
    /// The ICC master key.
    IccMaster,
    /// The AC session key.
    Session,
}

/// ARPC method (EMV Book 2, 8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpcMethod {
    /// 8-byte ARPC = 3DES(key, ARQC xor (ARC ‖ 00×6)), sent with the 2-byte ARC.
    Method1(ArpcKey),
    /// 4-byte ARPC = MAC(SK, ARQC ‖ CSU), sent with the 4-byte CSU.
    Method2,
}

impl Profile {
    pub const ALL: [Profile; 7] = [
        Profile::VisaCvn10,
        Profile::VisaCvn18,
        Profile::VisaCvn22,
        Profile::McCvn16,
        Profile::McCvn17,
        Profile::McCvn20,
        Profile::McCvn21,
    ];

    /// The configuration name (`visa-cvn18`).
    pub fn name(self) -> &'static str {
        match self {
            Profile::VisaCvn10 => "visa-cvn10",
            Profile::VisaCvn18 => "visa-cvn18",
            Profile::VisaCvn22 => "visa-cvn22",
            Profile::McCvn16 => "mc-cvn16",
            Profile::McCvn17 => "mc-cvn17",
            Profile::McCvn20 => "mc-cvn20",
            Profile::McCvn21 => "mc-cvn21",
        }
    }

    pub fn icc_mk_option(self) -> IccMkOption {
        match self {
            Profile::VisaCvn18 | Profile::VisaCvn22 => IccMkOption::AOrB,
            _ => IccMkOption::A,
        }
    }

    pub fn session_key(self) -> SessionKeyMethod {
        match self {
            Profile::VisaCvn10 => SessionKeyMethod::None,
            Profile::VisaCvn18 | Profile::VisaCvn22 | Profile::McCvn20 | Profile::McCvn21 => {
                SessionKeyMethod::Common
            }
            Profile::McCvn16 | Profile::McCvn17 => SessionKeyMethod::Mastercard,
        }
    }

    pub fn padding(self) -> Padding {
        match self {
            Profile::VisaCvn10 => Padding::Method1,
            _ => Padding::Method2,
        }
    }

    pub fn arpc_method(self) -> ArpcMethod {
        match self {
            Profile::VisaCvn10 | Profile::McCvn16 | Profile::McCvn17 => {
                ArpcMethod::Method1(ArpcKey::IccMaster)
            }
            Profile::McCvn20 | Profile::McCvn21 => ArpcMethod::Method1(ArpcKey::Session),
            Profile::VisaCvn18 | Profile::VisaCvn22 => ArpcMethod::Method2,
        }
    }

    /// The part of 9F10 (issuer application data) that ends the MAC input, per card application.
    ///
    /// Layouts (public descriptions; the byte positions are proven consistent with pyemv by the
    /// generated vectors, which build 9F10 from these same positions, so the pyemv cases prove
    /// the MAC input, not the card application's layout itself):
    /// * Visa IAD formats 0/1/3 (CVN 10): `len(1) DKI(1) CVN(1) CVR(4, its own length byte 03
    ///   first)`: the tail is bytes 4..8, CVR with its length byte (confirmed by the published
    ///   vector, CVR `03A06010`).
    /// * Visa CVN 18/22: the whole of 9F10 (confirmed by the published vector).
    /// * M/Chip (CVN 16/20): `DKI(1) CVN(1) CVR(6) DAC/IDN(2) counters(8) ...`: the tail is CVR,
    ///   bytes 3..9. CVN 17/21 add the 8 counter bytes after the DAC, bytes 11..19.
    ///   Not confirmed against a real M/Chip card: from M/Chip 4 public summaries only.
    pub fn mac_tail(self, iad: &[u8]) -> Result<MacTail<'_>, EmvError> {
        let need = |len: usize| {
            if iad.len() < len {
                Err(EmvError::IadTooShort {
                    profile: self,
                    len: iad.len(),
                    need: len,
                })
            } else {
                Ok(())
            }
        };
        match self {
            Profile::VisaCvn10 => {
                need(7)?;
                Ok(MacTail::One(&iad[3..7]))
            }
            Profile::VisaCvn18 | Profile::VisaCvn22 => {
                need(1)?;
                Ok(MacTail::One(iad))
            }
            Profile::McCvn16 | Profile::McCvn20 => {
                need(8)?;
                Ok(MacTail::One(&iad[2..8]))
            }
            Profile::McCvn17 | Profile::McCvn21 => {
                need(18)?;
                Ok(MacTail::Two(&iad[2..8], &iad[10..18]))
            }
        }
    }
}

/// The tail of the MAC input: one or two slices of 9F10.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacTail<'a> {
    One(&'a [u8]),
    Two(&'a [u8], &'a [u8]),
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = EmvError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| EmvError::UnknownProfile(s.to_owned()))
    }
}

/// Bad chip data from the request. The authorizer answers these as "ARQC not verified" or as a
/// format error; they never reach the HSM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmvError {
    #[error(
        "unknown cryptogram profile {0:?}: use one of visa-cvn10, visa-cvn18, visa-cvn22, mc-cvn16, mc-cvn17, mc-cvn20, mc-cvn21"
    )]
    UnknownProfile(String),
    #[error("tag {tag:04X} missing from DE 55: the MAC input needs it")]
    MissingTag { tag: u32 },
    #[error("tag {tag:04X} has {len} bytes, expected {expected}")]
    TagLength {
        tag: u32,
        len: usize,
        expected: usize,
    },
    #[error("tag 9F10 has {len} bytes, longer than 32")]
    IadTooLong { len: usize },
    #[error("tag 9F10 has {len} bytes, profile {profile} needs at least {need}")]
    IadTooShort {
        profile: Profile,
        len: usize,
        need: usize,
    },
    #[error("PAN must be 12 to 19 decimal digits (got {len} characters)")]
    Pan { len: usize },
    #[error("PAN sequence number {0} is not 0..=99")]
    Psn(u16),
    #[error("BER-TLV: {0}")]
    Tlv(&'static str),
}

/// The card: PAN (DE 2) and PAN sequence number (5F34 or DE 23). `Debug` masks the PAN.
#[derive(Clone, PartialEq, Eq)]
pub struct CardData {
    pan_digits: String,
    psn: u8,
}

impl CardData {
    /// `pan_digits`: 12 to 19 ASCII digits. `psn`: 0..=99; a card without PSN uses 0.
    pub fn new(pan_digits: &str, psn: u16) -> Result<CardData, EmvError> {
        let len = pan_digits.len();
        if !(12..=19).contains(&len) || !pan_digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EmvError::Pan { len });
        }
        let psn = u8::try_from(psn)
            .ok()
            .filter(|p| *p <= 99)
            .ok_or(EmvError::Psn(psn))?;
        Ok(CardData {
            pan_digits: pan_digits.to_owned(),
            psn,
        })
    }

    /// The PAN masked as the project logs it ([`iso8583::mask`]: first 6 and last 4 digits from
    /// 13 digits on, all `*` below).
    pub fn masked_pan(&self) -> String {
        iso8583::mask::masked_pan(&self.pan_digits)
    }

    pub fn psn(&self) -> u8 {
        self.psn
    }

    /// The 8-byte derivation block Y of the ICC master key (EMV Book 2, A1.4.1/A1.4.2).
    pub fn icc_mk_y(&self, option: IccMkOption) -> [u8; 8] {
        let mut digits: Vec<u8> = Vec::with_capacity(22);
        digits.extend(self.pan_digits.bytes().map(|b| b - b'0'));
        digits.push(self.psn / 10);
        digits.push(self.psn % 10);
        if option == IccMkOption::AOrB && self.pan_digits.len() > 16 {
            // Option B: SHA-1 over packed BCD PAN ‖ PSN (a leading 0 nibble if odd), then
            // decimalise: the decimal nibbles first, then A..F mapped to 0..5.
            if digits.len() % 2 == 1 {
                digits.insert(0, 0);
            }
            let packed: Vec<u8> = digits.chunks(2).map(|c| (c[0] << 4) | c[1]).collect();
            let hash = Sha1::digest(&packed);
            let nibbles: Vec<u8> = hash.iter().flat_map(|b| [b >> 4, b & 0x0F]).collect();
            let mut out: Vec<u8> = nibbles
                .iter()
                .copied()
                .filter(|n| *n < 10)
                .take(16)
                .collect();
            if out.len() < 16 {
                let need = 16 - out.len();
                out.extend(
                    nibbles
                        .iter()
                        .filter(|n| **n >= 10)
                        .take(need)
                        .map(|n| n - 10),
                );
            }
            return pack16(&out);
        }
        // Option A: the rightmost 16 digits, left-padded with zeros.
        let mut sixteen = [0u8; 16];
        let take = digits.len().min(16);
        sixteen[16 - take..].copy_from_slice(&digits[digits.len() - take..]);
        pack16(&sixteen)
    }
}

fn pack16(d: &[u8]) -> [u8; 8] {
    let mut y = [0u8; 8];
    for (i, byte) in y.iter_mut().enumerate() {
        *byte = (d[2 * i] << 4) | d[2 * i + 1];
    }
    y
}

impl fmt::Debug for CardData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardData")
            .field("pan", &self.masked_pan())
            .field("psn", &self.psn)
            .finish()
    }
}

/// The DE 55 tags the ARQC check needs, already length-checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmvData {
    pub arqc: [u8; 8],
    pub amount_authorised: [u8; 6],
    pub amount_other: [u8; 6],
    pub terminal_country: [u8; 2],
    pub tvr: [u8; 5],
    pub currency: [u8; 2],
    pub date: [u8; 3],
    pub transaction_type: [u8; 1],
    pub unpredictable_number: [u8; 4],
    pub aip: [u8; 2],
    pub atc: [u8; 2],
    iad: [u8; 32],
    iad_len: u8,
    /// 5F34 when DE 55 carried it (the caller may prefer DE 23).
    pub psn: Option<u8>,
}

pub mod tag {
    pub const ARQC: u32 = 0x9F26;
    pub const AMOUNT_AUTHORISED: u32 = 0x9F02;
    pub const AMOUNT_OTHER: u32 = 0x9F03;
    pub const TERMINAL_COUNTRY: u32 = 0x9F1A;
    pub const TVR: u32 = 0x95;
    pub const CURRENCY: u32 = 0x5F2A;
    pub const DATE: u32 = 0x9A;
    pub const TRANSACTION_TYPE: u32 = 0x9C;
    pub const UNPREDICTABLE_NUMBER: u32 = 0x9F37;
    pub const AIP: u32 = 0x82;
    pub const ATC: u32 = 0x9F36;
    pub const IAD: u32 = 0x9F10;
    pub const PSN: u32 = 0x5F34;
}

impl EmvData {
    /// From raw DE 55 bytes, read with the codec's BER-TLV reader ([`iso8583::tlv`], whose
    /// padding rule applies: `00` and `FF` between elements are skipped). Only the top level is
    /// read (DE 55 is flat); the first occurrence of a tag wins, as in [`EmvData::from_tags`].
    pub fn from_de55(de55: &[u8]) -> Result<EmvData, EmvError> {
        let mut tags: Vec<(u32, &[u8])> = Vec::with_capacity(16);
        for item in iso8583::tlv::Reader::new(de55) {
            let t = item.map_err(|e| {
                EmvError::Tlv(match e.kind {
                    iso8583::tlv::TlvErrorKind::Truncated => "data ends inside an element",
                    iso8583::tlv::TlvErrorKind::TagTooLong => "tag longer than 4 bytes",
                    iso8583::tlv::TlvErrorKind::BadLength => "indefinite or over-long length",
                })
            })?;
            tags.push((t.tag, t.value));
        }
        EmvData::from_tags(&tags)
    }

    /// From DE 55 tags already split into (tag, value) pairs, for example by the `iso8583`
    /// crate's BER-TLV reader ([`EmvData::from_de55`] does both). The first occurrence of a tag wins.
    /// 9F03 (amount, other) may be absent and then counts as zero; every other input is required.
    pub fn from_tags(tags: &[(u32, &[u8])]) -> Result<EmvData, EmvError> {
        let find = |t: u32| tags.iter().find(|(k, _)| *k == t).map(|(_, v)| *v);
        fn fixed<const N: usize>(t: u32, v: Option<&[u8]>) -> Result<[u8; N], EmvError> {
            let v = v.ok_or(EmvError::MissingTag { tag: t })?;
            v.try_into().map_err(|_| EmvError::TagLength {
                tag: t,
                len: v.len(),
                expected: N,
            })
        }
        let iad_value = find(tag::IAD).ok_or(EmvError::MissingTag { tag: tag::IAD })?;
        if iad_value.len() > 32 {
            return Err(EmvError::IadTooLong {
                len: iad_value.len(),
            });
        }
        let mut iad = [0u8; 32];
        iad[..iad_value.len()].copy_from_slice(iad_value);
        let psn = match find(tag::PSN) {
            None => None,
            Some(v) => {
                let [b]: [u8; 1] = fixed(tag::PSN, Some(v))?;
                // 5F34 is n2: two BCD digits.
                let (hi, lo) = (b >> 4, b & 0x0F);
                if hi > 9 || lo > 9 {
                    return Err(EmvError::Psn(u16::from(b)));
                }
                Some(hi * 10 + lo)
            }
        };
        Ok(EmvData {
            arqc: fixed(tag::ARQC, find(tag::ARQC))?,
            amount_authorised: fixed(tag::AMOUNT_AUTHORISED, find(tag::AMOUNT_AUTHORISED))?,
            amount_other: match find(tag::AMOUNT_OTHER) {
                None => [0; 6],
                v => fixed(tag::AMOUNT_OTHER, v)?,
            },
            terminal_country: fixed(tag::TERMINAL_COUNTRY, find(tag::TERMINAL_COUNTRY))?,
            tvr: fixed(tag::TVR, find(tag::TVR))?,
            currency: fixed(tag::CURRENCY, find(tag::CURRENCY))?,
            date: fixed(tag::DATE, find(tag::DATE))?,
            transaction_type: fixed(tag::TRANSACTION_TYPE, find(tag::TRANSACTION_TYPE))?,
            unpredictable_number: fixed(
                tag::UNPREDICTABLE_NUMBER,
                find(tag::UNPREDICTABLE_NUMBER),
            )?,
            aip: fixed(tag::AIP, find(tag::AIP))?,
            atc: fixed(tag::ATC, find(tag::ATC))?,
            iad,
            iad_len: iad_value.len() as u8,
            psn,
        })
    }

    /// Issuer application data (9F10).
    pub fn iad(&self) -> &[u8] {
        &self.iad[..usize::from(self.iad_len)]
    }

    /// The padded MAC input of the ARQC: 9F02 ‖ 9F03 ‖ 9F1A ‖ 95 ‖ 5F2A ‖ 9A ‖ 9C ‖ 9F37 ‖ 82 ‖
    /// 9F36 ‖ tail of 9F10, padded per profile. At most 33 + 32 + 8 bytes.
    pub fn mac_input(&self, profile: Profile) -> Result<Vec<u8>, EmvError> {
        let mut d = Vec::with_capacity(80);
        d.extend_from_slice(&self.amount_authorised);
        d.extend_from_slice(&self.amount_other);
        d.extend_from_slice(&self.terminal_country);
        d.extend_from_slice(&self.tvr);
        d.extend_from_slice(&self.currency);
        d.extend_from_slice(&self.date);
        d.extend_from_slice(&self.transaction_type);
        d.extend_from_slice(&self.unpredictable_number);
        d.extend_from_slice(&self.aip);
        d.extend_from_slice(&self.atc);
        match profile.mac_tail(self.iad())? {
            MacTail::One(a) => d.extend_from_slice(a),
            MacTail::Two(a, b) => {
                d.extend_from_slice(a);
                d.extend_from_slice(b);
            }
        }
        pad(&mut d, profile.padding());
        Ok(d)
    }

    /// The session-key diversifier R as the two derivation halves R_L ‖ R_R (byte 2 set to F0
    /// and 0F), or `None` when the profile MACs with the ICC master key.
    pub fn session_key_data(&self, profile: Profile) -> Option<[u8; 16]> {
        let mut r = [0u8; 8];
        r[..2].copy_from_slice(&self.atc);
        match profile.session_key() {
            SessionKeyMethod::None => return None,
            SessionKeyMethod::Common => {}
            SessionKeyMethod::Mastercard => r[4..].copy_from_slice(&self.unpredictable_number),
        }
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&r);
        out[8..].copy_from_slice(&r);
        out[2] = 0xF0;
        out[10] = 0x0F;
        Some(out)
    }
}

/// ISO/IEC 9797-1 padding in place.
pub fn pad(d: &mut Vec<u8>, padding: Padding) {
    if padding == Padding::Method2 {
        d.push(0x80);
    }
    while !d.len().is_multiple_of(8) {
        d.push(0);
    }
}

/// Derivation data for `CKM_DES3_ECB_ENCRYPT_DATA` giving the ICC master key: Y ‖ (Y xor FF..FF).
pub fn icc_mk_data(y: &[u8; 8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(y);
    for i in 0..8 {
        out[8 + i] = !y[i];
    }
    out
}

/// Derivation data whose result is the single-DES key K_L as a two-key 3DES with equal halves:
/// the left half of `data` twice.
pub fn left_twice(data: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&data[..8]);
    out[8..].copy_from_slice(&data[..8]);
    out
}

/// What the issuer answers the card, from which the ARPC is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthorisationResponse {
    /// Authorisation response code for ARPC method 1 (normally DE 39 as two ASCII characters).
    pub arc: [u8; 2],
    /// Card status update for ARPC method 2.
    pub csu: [u8; 4],
}

impl AuthorisationResponse {
    /// The project's rule (`docs/network.md`, "ARPC"): ARC = DE 39 as ASCII; CSU = 00800000 when
    /// approved, 00000000 when declined.
    pub fn from_response_code(de39: [u8; 2], approved: bool) -> Self {
        AuthorisationResponse {
            arc: de39,
            csu: if approved {
                [0x00, 0x80, 0x00, 0x00]
            } else {
                [0; 4]
            },
        }
    }
}

/// The value of tag 91 (issuer authentication data): ARPC ‖ ARC (method 1, 10 bytes) or
/// ARPC ‖ CSU (method 2, 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IssuerAuthData {
    bytes: [u8; 10],
    len: u8,
}

impl IssuerAuthData {
    pub fn method1(arpc: [u8; 8], arc: [u8; 2]) -> Self {
        let mut bytes = [0u8; 10];
        bytes[..8].copy_from_slice(&arpc);
        bytes[8..].copy_from_slice(&arc);
        IssuerAuthData { bytes, len: 10 }
    }
    pub fn method2(arpc: [u8; 4], csu: [u8; 4]) -> Self {
        let mut bytes = [0u8; 10];
        bytes[..4].copy_from_slice(&arpc);
        bytes[4..8].copy_from_slice(&csu);
        IssuerAuthData { bytes, len: 8 }
    }
    /// The whole value of tag 91.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
    /// The ARPC alone (8 bytes for method 1, 4 for method 2).
    pub fn arpc(&self) -> &[u8] {
        if self.len == 10 {
            &self.bytes[..8]
        } else {
            &self.bytes[..4]
        }
    }
}

impl fmt::Debug for IssuerAuthData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuerAuthData({})", hex::encode_upper(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_a_takes_rightmost_sixteen_digits() {
        let c = CardData::new("1234567890123456", 0).unwrap();
        assert_eq!(
            hex::encode_upper(c.icc_mk_y(IccMkOption::A)),
            "3456789012345600"
        );
        let short = CardData::new("123456789012", 1).unwrap();
        assert_eq!(
            hex::encode_upper(short.icc_mk_y(IccMkOption::A)),
            "0012345678901201"
        );
    }

    #[test]
    fn option_b_only_above_sixteen_digits() {
        let c = CardData::new("12345678901234567", 1).unwrap();
        assert_ne!(c.icc_mk_y(IccMkOption::AOrB), c.icc_mk_y(IccMkOption::A));
        let c16 = CardData::new("1234567890123456", 1).unwrap();
        assert_eq!(
            c16.icc_mk_y(IccMkOption::AOrB),
            c16.icc_mk_y(IccMkOption::A)
        );
    }

    #[test]
    fn pan_is_masked_in_debug() {
        let c = CardData::new("4761739001010010", 1).unwrap();
        let s = format!("{c:?}");
        assert!(s.contains("476173******0010"), "{s}");
        assert!(!s.contains("4761739001010010"));
    }

    #[test]
    fn short_pans_keep_at_least_three_digits_hidden() {
        for (pan, masked) in [
            ("123456789012", "************"),
            ("1234567890123", "123456***0123"),
            ("4761739001010010", "476173******0010"),
            ("4761739001010010123", "476173*********0123"),
        ] {
            let c = CardData::new(pan, 1).unwrap();
            assert_eq!(c.masked_pan(), masked);
            assert!(!format!("{c:?}").contains(&pan[..7]));
        }
    }

    #[test]
    fn bad_card_input_is_an_error() {
        assert_eq!(CardData::new("12345", 0), Err(EmvError::Pan { len: 5 }));
        assert_eq!(
            CardData::new("12345678901A", 0),
            Err(EmvError::Pan { len: 12 })
        );
        assert_eq!(CardData::new("123456789012", 100), Err(EmvError::Psn(100)));
    }

    #[test]
    fn session_key_data_per_method() {
        let tags = sample_tags();
        let t: Vec<(u32, &[u8])> = tags.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let e = EmvData::from_tags(&t).unwrap();
        assert_eq!(e.session_key_data(Profile::VisaCvn10), None);
        assert_eq!(
            hex::encode_upper(e.session_key_data(Profile::VisaCvn18).unwrap()),
            "001CF00000000000001C0F0000000000"
        );
        assert_eq!(
            hex::encode_upper(e.session_key_data(Profile::McCvn17).unwrap()),
            "001CF00052BF4585001C0F0052BF4585"
        );
    }

    #[test]
    fn missing_and_malformed_tags_are_errors() {
        let tags = sample_tags();
        let t: Vec<(u32, &[u8])> = tags
            .iter()
            .filter(|(k, _)| *k != tag::ATC)
            .map(|(k, v)| (*k, v.as_slice()))
            .collect();
        assert_eq!(
            EmvData::from_tags(&t),
            Err(EmvError::MissingTag { tag: tag::ATC })
        );
        let mut t: Vec<(u32, &[u8])> = tags.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        t.insert(0, (tag::TVR, &[1, 2, 3]));
        assert_eq!(
            EmvData::from_tags(&t),
            Err(EmvError::TagLength {
                tag: tag::TVR,
                len: 3,
                expected: 5
            })
        );
        let tags = sample_tags();
        let t: Vec<(u32, &[u8])> = tags.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let e = EmvData::from_tags(&t).unwrap();
        assert!(matches!(
            e.mac_input(Profile::McCvn17),
            Err(EmvError::IadTooShort { need: 18, .. })
        ));
    }

    #[test]
    fn mac_input_visa_cvn10_uses_cvr_and_zero_padding() {
        let tags = sample_tags();
        let t: Vec<(u32, &[u8])> = tags.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let e = EmvData::from_tags(&t).unwrap();
        let d = e.mac_input(Profile::VisaCvn10).unwrap();
        assert_eq!(d.len(), 40);
        assert_eq!(&d[33..37], &[0x03, 0xA0, 0xB8, 0x00]);
        assert_eq!(&d[37..], &[0, 0, 0]);
        let d18 = e.mac_input(Profile::VisaCvn18).unwrap();
        assert_eq!(d18.len(), 48);
        assert_eq!(d18[40], 0x80);
    }

    #[test]
    fn de55_bytes_read_through_the_codec_reader_with_its_padding_rule() {
        let tags = sample_tags();
        let t: Vec<(u32, &[u8])> = tags.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let mut w = iso8583::tlv::Writer::new();
        for (k, v) in &t {
            w.put(*k, v);
        }
        let de55 = w.into_bytes();
        let want = EmvData::from_tags(&t).unwrap();
        assert_eq!(EmvData::from_de55(&de55).unwrap(), want);
        // 00 and FF fill before, between and after elements is skipped.
        let split = iso8583::tlv::Reader::new(&de55)
            .nth(1)
            .unwrap()
            .unwrap()
            .offset;
        let mut padded = vec![0x00, 0xFF];
        padded.extend_from_slice(&de55[..split]);
        padded.extend_from_slice(&[0x00, 0x00]);
        padded.extend_from_slice(&de55[split..]);
        padded.push(0xFF);
        assert_eq!(EmvData::from_de55(&padded).unwrap(), want);
        // Every truncation is an error, never a panic.
        for cut in 1..de55.len() {
            assert!(EmvData::from_de55(&de55[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(EmvData::from_de55(&[0x9F]), Err(EmvError::Tlv(_))));
        assert!(matches!(
            EmvData::from_de55(&[0x9F, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(EmvError::Tlv(_))
        ));
        assert!(matches!(
            EmvData::from_de55(&[0x82, 0x85, 0, 0, 0, 0, 0]),
            Err(EmvError::Tlv(_))
        ));
    }

    fn sample_tags() -> Vec<(u32, Vec<u8>)> {
        let h = |s: &str| hex::decode(s).unwrap();
        vec![
            (tag::ARQC, h("7A788EA6B8A3E733")),
            (tag::AMOUNT_AUTHORISED, h("000000004000")),
            (tag::AMOUNT_OTHER, h("000000000000")),
            (tag::TERMINAL_COUNTRY, h("0124")),
            (tag::TVR, h("8000048000")),
            (tag::CURRENCY, h("0124")),
            (tag::DATE, h("191105")),
            (tag::TRANSACTION_TYPE, h("01")),
            (tag::UNPREDICTABLE_NUMBER, h("52BF4585")),
            (tag::AIP, h("1800")),
            (tag::ATC, h("001C")),
            (tag::IAD, h("06011203A0B800")),
        ]
    }
}
