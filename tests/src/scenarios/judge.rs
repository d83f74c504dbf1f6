//! The judge of one scenario's answer: the MTI, DE 39, DE 38 present iff approved, the echo
//! set, DE 44 of a format error, and tag 91 checked by the software card.
//!
//! Must never: print a PAN (DE 2 is shown masked, secret and binary fields by length only).

use iso8583::Message;
use iso8583::mask::masked_pan;

use crate::card::SoftCard;

use super::{AUTHORIZATION_ECHO, NETWORK_ECHO, REVERSAL_ECHO};

/// Which tag 91 the answer must carry.
pub(super) enum Arpc<'a> {
    /// None (no chip data, an unknown card, an ARQC that did not verify).
    Absent,
    /// One the card that sent these tags accepts for the answer's DE 39.
    Valid(&'a SoftCard, &'a [(u32, Vec<u8>)]),
}

pub(super) struct Expect<'a> {
    pub(super) code: &'a str,
    pub(super) arpc: Arpc<'a>,
    /// DE 38 must be exactly this (a repeat gets the first answer's).
    pub(super) de38: Option<&'a [u8]>,
    /// DE 44 of a format error.
    pub(super) de44: Option<&'a str>,
}

impl<'a> Expect<'a> {
    pub(super) fn code(code: &'a str) -> Expect<'a> {
        Expect {
            code,
            arpc: Arpc::Absent,
            de38: None,
            de44: None,
        }
    }

    pub(super) fn chip(
        code: &'a str,
        card: &'a SoftCard,
        tags: &'a [(u32, Vec<u8>)],
    ) -> Expect<'a> {
        Expect {
            arpc: Arpc::Valid(card, tags),
            ..Expect::code(code)
        }
    }
}

/// A field's value as a failure may print it: DE 2 masked, secrets and binary by length.
pub(super) fn show(n: usize, value: Option<&[u8]>) -> String {
    match value {
        None => "absent".into(),
        Some(v) if n == 2 => masked_pan(&String::from_utf8_lossy(v)),
        Some(v) if matches!(n, 35 | 45 | 52 | 55) => format!("<{} bytes>", v.len()),
        Some(v) => match std::str::from_utf8(v) {
            Ok(s) if s.chars().all(|c| c.is_ascii_graphic() || c == ' ') => s.to_owned(),
            _ => hex::encode_upper(v),
        },
    }
}

pub(super) fn mismatch(field: impl std::fmt::Display, expected: String, got: String) -> String {
    format!("field {field} expected {expected} got {got}")
}

/// Judges `answer` to `request` against `expect`: the first difference, if any.
pub(super) fn judge(
    request: &Message,
    answer: &Message,
    expect: &Expect<'_>,
) -> Result<(), String> {
    let want_mti = request.mti().as_u16() / 10 * 10 + 10;
    if answer.mti().as_u16() != want_mti {
        return Err(mismatch(
            "MTI",
            format!("{want_mti:04}"),
            answer.mti().as_str().to_owned(),
        ));
    }
    let code = answer.text(39).unwrap_or("");
    if code != expect.code {
        return Err(mismatch(39, expect.code.into(), show(39, answer.field(39))));
    }
    let class = request.mti().class();
    if want_mti == 110 {
        let approved = code == "00";
        if approved != answer.has(38) {
            let word = |b: bool| if b { "present" } else { "absent" };
            return Err(mismatch(
                38,
                word(approved).into(),
                show(38, answer.field(38)),
            ));
        }
        if let Some(de38) = expect.de38
            && answer.field(38) != Some(de38)
        {
            return Err(mismatch(
                38,
                show(38, Some(de38)),
                show(38, answer.field(38)),
            ));
        }
    }
    let echo: &[usize] = match (code, class) {
        ("30", _) => &[7, 11],
        (_, 1 | 2) => &AUTHORIZATION_ECHO,
        (_, 4) => &REVERSAL_ECHO,
        _ => &NETWORK_ECHO,
    };
    for &n in echo {
        if request.has(n) && answer.field(n) != request.field(n) {
            return Err(mismatch(
                n,
                show(n, request.field(n)),
                show(n, answer.field(n)),
            ));
        }
    }
    if let Some(de44) = expect.de44
        && answer.text(44) != Some(de44)
    {
        return Err(mismatch(44, de44.into(), show(44, answer.field(44))));
    }
    let tag91 = answer
        .icc_data()
        .and_then(|r| r.find(0x91).ok().flatten())
        .map(|t| t.value.to_vec());
    match (&expect.arpc, tag91) {
        (Arpc::Absent, None) => {}
        (Arpc::Absent, Some(_)) => {
            return Err(mismatch("55 tag 91", "absent".into(), "present".into()));
        }
        (Arpc::Valid(..), None) => {
            return Err(mismatch("55 tag 91", "present".into(), "absent".into()));
        }
        (Arpc::Valid(card, tags), Some(t)) => {
            let arc = <[u8; 2]>::try_from(code.as_bytes()).unwrap_or(*b"??");
            if !card.check_arpc(tags, &t, arc) {
                return Err(mismatch(
                    "55 tag 91",
                    "an ARPC the card accepts".into(),
                    "one it refuses".into(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use hsm::Profile;
    use iso8583::{Dialect, MessageBuilder, Mti, tlv};

    use super::super::arqc;
    use super::*;
    use crate::netsim::TEST_IMK;
    use crate::rng::Rng;

    fn decode(b: &MessageBuilder) -> Message {
        let d = Dialect::ascii();
        Message::decode(&d, b.encode(&d).unwrap()).unwrap()
    }

    fn request() -> MessageBuilder {
        let mut b = MessageBuilder::new(Mti::from_u16(100).unwrap());
        b.set(2, "5413330089010434")
            .set(3, "000000")
            .set(4, "000000001000")
            .set(7, "1122101500")
            .set(11, "000017")
            .set(37, "000000000017")
            .set(41, "TERM0001")
            .set(49, "840");
        b
    }

    fn answer_to(req: &Message, code: &str) -> MessageBuilder {
        let mut b = iso8583::response_to(req, Mti::from_u16(110).unwrap(), &AUTHORIZATION_ECHO);
        b.set(39, code);
        if code == "00" {
            b.set(38, "A1B2C3");
        }
        b
    }

    /// The judge finds each kind of wrong answer (so a PASS means something).
    #[test]
    fn the_judge_names_the_first_wrong_field() {
        let req = decode(&request());
        let ok = decode(&answer_to(&req, "00"));
        assert_eq!(judge(&req, &ok, &Expect::code("00")), Ok(()));
        assert_eq!(
            judge(&req, &ok, &Expect::code("51")),
            Err("field 39 expected 51 got 00".into())
        );
        let mut no38 = answer_to(&req, "00");
        no38.clear(38);
        assert_eq!(
            judge(&req, &decode(&no38), &Expect::code("00")),
            Err("field 38 expected present got absent".into())
        );
        let mut wrong_pan = answer_to(&req, "00");
        wrong_pan.set(2, "5413330089010442");
        assert_eq!(
            judge(&req, &decode(&wrong_pan), &Expect::code("00")),
            Err("field 2 expected 541333******0434 got 541333******0442".into())
        );
        let mut mti = answer_to(&req, "00");
        mti.set_mti(Mti::from_u16(130).unwrap());
        assert!(
            judge(&req, &decode(&mti), &Expect::code("00"))
                .unwrap_err()
                .starts_with("field MTI")
        );
        let other = Expect {
            de38: Some(b"ZZZZZZ"),
            ..Expect::code("00")
        };
        assert!(
            judge(&req, &ok, &other)
                .unwrap_err()
                .starts_with("field 38 expected ZZZZZZ")
        );
        // tag 91: present when none may be, and one the card refuses
        let mut card = SoftCard::personalise(&TEST_IMK, "5413330089010434", 0, Profile::McCvn17);
        let mut rng = Rng::new(1);
        let mut chip_req = request();
        let tags = arqc(&mut rng, &mut chip_req, &mut card, 1_000, "840");
        let chip_req = decode(&chip_req);
        let mut forged = answer_to(&chip_req, "00");
        let mut w = tlv::Writer::new();
        w.put(0x91, &[0u8; 10]);
        forged.set(55, w.as_bytes());
        let forged = decode(&forged);
        assert_eq!(
            judge(&chip_req, &forged, &Expect::code("00")),
            Err("field 55 tag 91 expected absent got present".into())
        );
        assert!(
            judge(&chip_req, &forged, &Expect::chip("00", &card, &tags))
                .unwrap_err()
                .contains("one it refuses")
        );
        assert_eq!(
            judge(
                &chip_req,
                &decode(&answer_to(&chip_req, "00")),
                &Expect::chip("00", &card, &tags)
            ),
            Err("field 55 tag 91 expected present got absent".into())
        );
    }

    #[test]
    fn show_never_prints_a_pan_or_track_data() {
        assert_eq!(show(2, Some(b"5413330089010434")), "541333******0434");
        assert_eq!(show(35, Some(b"5413330089010434=2811")), "<21 bytes>");
        assert_eq!(show(39, Some(b"05")), "05");
    }
}
