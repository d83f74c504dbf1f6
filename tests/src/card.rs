//! A chip card in software: ARQC generation and ARPC checking, for the simulators only.
//!
//! Personalisation gives each card its ICC master key MK = 3DES(IMK, Y ‖ Y xor FF…), which is
//! what a real card holds; the card never knows the IMK. The issuer side (the `hsm` crate) derives
//! the same keys inside the HSM; that both sides agree is the end-to-end proof the demo and the
//! system tests show. The derivations and MAC input come from `hsm::emv` (pure), so only the
//! block cipher runs here, with RustCrypto's `des`.

use des::Des;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use hsm::emv::{ArpcKey, ArpcMethod, Padding, icc_mk_data, pad, tag};
use hsm::{CardData, EmvData, Profile};

fn des_enc(key: &[u8], block: [u8; 8]) -> [u8; 8] {
    let c = Des::new_from_slice(key).expect("8-byte DES key");
    let mut b = GenericArray::from(block);
    c.encrypt_block(&mut b);
    b.into()
}

fn des_dec(key: &[u8], block: [u8; 8]) -> [u8; 8] {
    let c = Des::new_from_slice(key).expect("8-byte DES key");
    let mut b = GenericArray::from(block);
    c.decrypt_block(&mut b);
    b.into()
}

/// Two-key triple DES (EDE) of one block.
fn tdes2_enc(key: &[u8; 16], block: [u8; 8]) -> [u8; 8] {
    des_enc(&key[..8], des_dec(&key[8..], des_enc(&key[..8], block)))
}

/// Two-key triple DES ECB of two blocks: the EMV key derivation.
fn tdes2_ecb(key: &[u8; 16], data: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for i in 0..2 {
        let block: [u8; 8] = data[i * 8..i * 8 + 8].try_into().expect("8 bytes");
        out[i * 8..i * 8 + 8].copy_from_slice(&tdes2_enc(key, block));
    }
    out
}

fn xor8(a: [u8; 8], b: &[u8]) -> [u8; 8] {
    let mut out = a;
    for (o, x) in out.iter_mut().zip(b) {
        *o ^= x;
    }
    out
}

/// ISO/IEC 9797-1 MAC algorithm 3 (retail MAC) over already padded data.
fn retail_mac(key: &[u8; 16], padded: &[u8]) -> [u8; 8] {
    debug_assert!(padded.len().is_multiple_of(8) && !padded.is_empty());
    let mut h = [0u8; 8];
    for block in padded.chunks(8) {
        h = des_enc(&key[..8], xor8(h, block));
    }
    des_enc(&key[..8], des_dec(&key[8..], h))
}

/// What the terminal asks the card to sign.
#[derive(Clone, Copy, Debug)]
pub struct Terminal {
    pub amount_minor: u64,
    /// ISO 4217 numeric (840).
    pub currency: u16,
    /// ISO 3166 numeric (840).
    pub country: u16,
    /// YYMMDD as digits.
    pub date_yymmdd: u32,
    pub unpredictable_number: [u8; 4],
}

fn bcd<const N: usize>(mut value: u64) -> [u8; N] {
    let mut out = [0u8; N];
    for b in out.iter_mut().rev() {
        let lo = (value % 10) as u8;
        value /= 10;
        let hi = (value % 10) as u8;
        value /= 10;
        *b = (hi << 4) | lo;
    }
    out
}

/// A chip card: PAN, PSN, profile, ICC master key and application transaction counter.
pub struct SoftCard {
    pan: String,
    psn: u8,
    profile: Profile,
    mk: [u8; 16],
    atc: u16,
}

impl SoftCard {
    /// Personalises a card from the issuer master key `imk` (a test key).
    pub fn personalise(imk: &[u8; 16], pan: &str, psn: u8, profile: Profile) -> SoftCard {
        let card = CardData::new(pan, u16::from(psn)).expect("a 12..19 digit PAN");
        let y = card.icc_mk_y(profile.icc_mk_option());
        SoftCard {
            pan: pan.to_owned(),
            psn,
            profile,
            mk: tdes2_ecb(imk, &icc_mk_data(&y)),
            atc: 0,
        }
    }

    pub fn pan(&self) -> &str {
        &self.pan
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    fn iad(&self) -> Vec<u8> {
        match self.profile {
            // len, key index, CVN, CVR (with its own length byte)
            Profile::VisaCvn10 => hex::decode("06010A03A00000").expect("hex"),
            Profile::VisaCvn18 => hex::decode("06011203A0B800").expect("hex"),
            Profile::VisaCvn22 => hex::decode("06011603A0B800").expect("hex"),
            // key index, CVN, CVR (6), DAC (2), counters (8)
            Profile::McCvn16 | Profile::McCvn20 => {
                hex::decode("0110A0000322000000000000000000000000").expect("hex")
            }
            Profile::McCvn17 | Profile::McCvn21 => {
                hex::decode("0111A00003220000000000000000000322FF").expect("hex")
            }
        }
    }

    fn session_key(&self, emv: &EmvData) -> [u8; 16] {
        match emv.session_key_data(self.profile) {
            None => self.mk,
            Some(r) => tdes2_ecb(&self.mk, &r),
        }
    }

    /// GENERATE AC: the DE 55 tags of one transaction, ARQC included (about 16 tags, as a
    /// terminal sends them). Increments the card's ATC.
    pub fn generate_arqc(&mut self, t: &Terminal) -> Vec<(u32, Vec<u8>)> {
        self.atc = self.atc.wrapping_add(1);
        let mut tags: Vec<(u32, Vec<u8>)> = vec![
            (tag::ARQC, vec![0; 8]),
            (0x9F27, vec![0x80]),
            (tag::IAD, self.iad()),
            (tag::UNPREDICTABLE_NUMBER, t.unpredictable_number.to_vec()),
            (tag::ATC, self.atc.to_be_bytes().to_vec()),
            (tag::TVR, vec![0x00, 0x00, 0x04, 0x80, 0x00]),
            (tag::DATE, bcd::<3>(u64::from(t.date_yymmdd)).to_vec()),
            (tag::TRANSACTION_TYPE, vec![0x00]),
            (tag::AMOUNT_AUTHORISED, bcd::<6>(t.amount_minor).to_vec()),
            (tag::CURRENCY, bcd::<2>(u64::from(t.currency)).to_vec()),
            (tag::AIP, vec![0x18, 0x00]),
            (
                tag::TERMINAL_COUNTRY,
                bcd::<2>(u64::from(t.country)).to_vec(),
            ),
            (0x9F34, vec![0x1E, 0x03, 0x00]),
            (0x9F33, vec![0xE0, 0xF8, 0xC8]),
            (tag::AMOUNT_OTHER, vec![0; 6]),
            (tag::PSN, bcd::<1>(u64::from(self.psn)).to_vec()),
            (0x84, hex::decode("A0000000041010").expect("hex")),
        ];
        let pairs: Vec<(u32, &[u8])> = tags.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let emv = EmvData::from_tags(&pairs).expect("the card's own tags are complete");
        let sk = self.session_key(&emv);
        let input = emv
            .mac_input(self.profile)
            .expect("the card's own IAD fits its profile");
        let arqc = retail_mac(&sk, &input);
        tags[0].1 = arqc.to_vec();
        tags
    }

    /// Checks tag 91 of the issuer's answer to `request_tags` (what this card sent), for the
    /// answer code `de39`. True when the issuer proved it knows the card's keys.
    pub fn check_arpc(&self, request_tags: &[(u32, Vec<u8>)], tag91: &[u8], de39: [u8; 2]) -> bool {
        let pairs: Vec<(u32, &[u8])> = request_tags
            .iter()
            .map(|(t, v)| (*t, v.as_slice()))
            .collect();
        let Ok(emv) = EmvData::from_tags(&pairs) else {
            return false;
        };
        match self.profile.arpc_method() {
            ArpcMethod::Method1(key) => {
                let k = match key {
                    ArpcKey::IccMaster => self.mk,
                    ArpcKey::Session => self.session_key(&emv),
                };
                tag91.len() == 10
                    && tag91[8..] == de39
                    && tdes2_enc(&k, xor8(emv.arqc, &de39)) == tag91[..8]
            }
            ArpcMethod::Method2 => {
                if tag91.len() != 8 {
                    return false;
                }
                let mut d = emv.arqc.to_vec();
                d.extend_from_slice(&tag91[4..8]);
                pad(&mut d, Padding::Method2);
                retail_mac(&self.session_key(&emv), &d)[..4] == tag91[..4]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hsm::testing::{PUBLISHED_PAN, PUBLISHED_VECTORS, TEST_IMK};

    /// The published vectors of `docs/cryptograms.md`: the software card must compute
    /// the same ARQC and accept the same ARPC as the HSM does, or the demo proves nothing.
    #[test]
    fn the_software_card_agrees_with_every_published_vector() {
        for v in PUBLISHED_VECTORS {
            let card = SoftCard::personalise(&TEST_IMK, PUBLISHED_PAN, 0, v.profile);
            let tags = v.tags();
            let emv = v.emv();
            let mac = retail_mac(&card.session_key(&emv), &emv.mac_input(v.profile).unwrap());
            assert_eq!(hex::encode_upper(mac), v.arqc, "{}: ARQC", v.profile);
            let tag91 = hex::decode(v.tag91).unwrap();
            let arc = v.response().arc;
            assert!(card.check_arpc(&tags, &tag91, arc), "{}: ARPC", v.profile);
            // The ARPC binds the answer: another code is refused (method 1 carries the ARC;
            // method 2 is bound through the CSU in tag 91, changed here).
            let mut forged = tag91.clone();
            let last = forged.len() - 1;
            forged[last] ^= 0x01;
            assert!(
                !card.check_arpc(&tags, &forged, arc),
                "{}: forged",
                v.profile
            );
        }
    }
}
