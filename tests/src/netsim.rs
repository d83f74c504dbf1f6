//! The card network's interface device, simulated: a population of cards and accounts, and a
//! seeded generator of the requests a network sends an issuer, with what each one expects back.
//!
//! The mix (per mille): chip 0100 with ARQC 380, contactless chip 150, magnetic stripe with PIN
//! 100, e-commerce with DE 48 120, repeat of an earlier 0100 as 0101 40, stand-in advice 0120 40,
//! full reversal 60, partial reversal (DE 95) 40, echo 0800 20, and bad requests: an ARQC that
//! does not verify 10, an unknown card 20, a malformed field 20. Cards are lost, stolen, blocked
//! or expired in small shares, so every decline path shows.

use std::collections::VecDeque;

use bytes::Bytes;
use hsm::Profile;
use iso8583::{Dialect, Message, MessageBuilder, Mti, tlv};

use crate::card::{SoftCard, Terminal};
use crate::cloud::{AccountEvent, CardEvent};
use crate::rng::Rng;
use ledger::PanKey;

/// (year, month, day, hour, minute, second) in UTC of a Unix time (days-from-civil inverse,
/// proleptic Gregorian).
pub fn civil(unix_s: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = unix_s.div_euclid(86_400);
    let secs = unix_s.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        ((secs / 60) % 60) as u32,
        (secs % 60) as u32,
    )
}

/// DE 7 text (MMDDhhmmss, UTC) of a Unix time.
pub fn de7(unix_s: i64) -> String {
    let (_, mo, d, h, mi, s) = civil(unix_s);
    format!("{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// The issuer test key every simulated chip card is personalised from (the public EMV test IMK,
/// the one `hsm::testing` imports).
pub const TEST_IMK: [u8; 16] = hsm::testing::TEST_IMK;

/// Acquirer (DE 32) and forwarder (DE 33) of the simulated network.
pub const ACQUIRER_ID: &str = "00412345";
pub const FORWARDER_ID: &str = "9876";

pub struct SimAccount {
    pub id: String,
    /// `open`, `frozen` or `closed` (`docs/kafka-contract.md`).
    pub status: &'static str,
    pub currency: &'static str,
    pub credit_limit_minor: i64,
}

pub struct SimCard {
    pub pan: String,
    pub account: usize,
    pub card_id: String,
    pub status: &'static str,
    pub expiry_yymm: String,
    pub psn: u8,
    pub chip: SoftCard,
}

/// Every account and card the simulated network knows, and PANs the issuer does not.
pub struct Population {
    pub accounts: Vec<SimAccount>,
    pub cards: Vec<SimCard>,
}

/// `body` followed by its Luhn check digit.
pub fn luhn_complete(body: &str) -> String {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

impl Population {
    /// `accounts` accounts with one card each; `now_unix_s` sets which cards are expired.
    pub fn generate(seed: u64, accounts: usize, now_unix_s: i64) -> Population {
        let mut rng = Rng::new(seed);
        let (year, month, ..) = civil(now_unix_s);
        let yy = (year % 100) as u32;
        let mut out = Population {
            accounts: Vec::with_capacity(accounts),
            cards: Vec::with_capacity(accounts),
        };
        for i in 0..accounts {
            let currency = if rng.chance(20) { "986" } else { "840" };
            out.accounts.push(SimAccount {
                id: format!("acc-{i:07}"),
                status: "open",
                currency,
                credit_limit_minor: 20_000 + rng.below(480_000) as i64,
            });
            let profile = if i % 2 == 0 {
                Profile::VisaCvn18
            } else {
                Profile::McCvn17
            };
            let bin = if profile == Profile::VisaCvn18 {
                "476173"
            } else {
                "541333"
            };
            let pan = luhn_complete(&format!("{bin}{i:09}"));
            let roll = rng.below(1000);
            let status = match roll {
                0..10 => "lost",
                10..15 => "stolen",
                15..25 => "blocked",
                25..30 => "closed",
                _ => "active",
            };
            let expiry_yymm = if rng.chance(15) {
                // expired last month (or last December)
                if month == 1 {
                    format!("{:02}12", (yy + 99) % 100)
                } else {
                    format!("{yy:02}{:02}", month - 1)
                }
            } else {
                format!(
                    "{:02}{:02}",
                    (yy + 1 + rng.below(4) as u32) % 100,
                    1 + rng.below(12)
                )
            };
            let psn = (rng.below(2)) as u8;
            out.cards.push(SimCard {
                chip: SoftCard::personalise(&TEST_IMK, &pan, psn, profile),
                pan,
                account: i,
                card_id: format!("card-{i:07}"),
                status,
                expiry_yymm,
                psn,
            });
        }
        out
    }

    /// The cloud's events for the whole population: (Kafka key, JSON value), accounts first.
    pub fn cloud_events(&self, pan_key: &PanKey, at_unix_s: i64) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::with_capacity(self.accounts.len() + self.cards.len());
        for (i, a) in self.accounts.iter().enumerate() {
            let ev = AccountEvent {
                event_id: format!("00000000-0000-4000-8000-{:012x}", 2 * i),
                at_unix_s,
                account_id: &a.id,
                version: 1,
                status: a.status,
                currency: a.currency,
                credit_limit_minor: a.credit_limit_minor,
                posted_balance_minor: 0,
                cleared_holds: &[],
            };
            out.push((a.id.clone(), ev.to_json()));
        }
        for (i, c) in self.cards.iter().enumerate() {
            let account = &self.accounts[c.account];
            let ev = CardEvent {
                event_id: format!("00000000-0000-4000-8000-{:012x}", 2 * i + 1),
                at_unix_s,
                account_id: &account.id,
                card_id: &c.card_id,
                version: 1,
                pan: &c.pan,
                expiry_yymm: &c.expiry_yymm,
                psn: c.psn,
                status: c.status,
                key_set: c.chip.profile().name(),
            };
            out.push((account.id.clone(), ev.to_json(pan_key)));
        }
        out
    }
}

/// What a generated request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Chip,
    Contactless,
    Magstripe,
    Ecommerce,
    Repeat,
    Advice,
    Reversal,
    PartialReversal,
    Echo,
    BadArqc,
    UnknownCard,
    Malformed,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Chip,
        Kind::Contactless,
        Kind::Magstripe,
        Kind::Ecommerce,
        Kind::Repeat,
        Kind::Advice,
        Kind::Reversal,
        Kind::PartialReversal,
        Kind::Echo,
        Kind::BadArqc,
        Kind::UnknownCard,
        Kind::Malformed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Chip => "chip",
            Kind::Contactless => "contactless",
            Kind::Magstripe => "magstripe+PIN",
            Kind::Ecommerce => "e-commerce",
            Kind::Repeat => "repeat 0101",
            Kind::Advice => "advice 0120",
            Kind::Reversal => "reversal",
            Kind::PartialReversal => "partial reversal",
            Kind::Echo => "echo 0800",
            Kind::BadArqc => "bad ARQC",
            Kind::UnknownCard => "unknown card",
            Kind::Malformed => "malformed",
        }
    }
}

/// The DE 55 tags a card sent, and which card (index in the population) sent them.
pub type ChipSent = (usize, Vec<(u32, Vec<u8>)>);

/// An authorization the issuer approved, kept for later reversals and repeats.
#[derive(Clone)]
struct Approved {
    frame: Bytes,
    card: usize,
    de7: String,
    stan: u32,
    amount_minor: u64,
    currency: &'static str,
    approval_code: Vec<u8>,
    /// The card's DE 55 tags, so the ARPC of a repeat's answer can be checked too.
    chip: Option<ChipSent>,
    /// The device connection it was answered on, when known.
    connection: Option<u64>,
}

/// A generated request and what the simulator needs to check its answer.
pub struct Sent {
    pub kind: Kind,
    pub frame: Bytes,
    /// The card and the DE 55 tags it sent, when the answer must carry a checkable ARPC.
    pub chip: Option<ChipSent>,
    /// For a repeat: the DE 38 the first answer carried (the repeat must get it again).
    pub first_approval_code: Option<Vec<u8>>,
    /// An 0100 whose approval may later be reversed or repeated.
    reversible: Option<Approved>,
    /// For a repeat or a reversal: the connection its original was answered on. A sender with
    /// several connections (several daemons) sends it there while that one is open, as the
    /// instance that decided the original is the one sure to know it at once.
    pub via: Option<u64>,
}

/// What the simulator found in an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    pub response_code: [u8; 2],
    /// `Some(true)` when tag 91 was present and the card accepted it.
    pub arpc_ok: Option<bool>,
    /// `Some(false)` when a repeat got another answer than the first.
    pub repeat_consistent: Option<bool>,
}

/// The generator. Deterministic for a seed and a sequence of `now`s.
pub struct Traffic {
    rng: Rng,
    stan: u32,
    approved: VecDeque<Approved>,
}

const APPROVED_KEPT: usize = 4096;

impl Traffic {
    pub fn new(seed: u64) -> Traffic {
        Traffic {
            rng: Rng::new(seed),
            stan: 0,
            approved: VecDeque::with_capacity(APPROVED_KEPT),
        }
    }

    fn next_stan(&mut self) -> u32 {
        self.stan = self.stan % 999_999 + 1;
        self.stan
    }

    fn pick_kind(&mut self) -> Kind {
        let r = self.rng.below(1000);
        let kind = match r {
            0..380 => Kind::Chip,
            380..530 => Kind::Contactless,
            530..630 => Kind::Magstripe,
            630..750 => Kind::Ecommerce,
            750..790 => Kind::Repeat,
            790..830 => Kind::Advice,
            830..890 => Kind::Reversal,
            890..930 => Kind::PartialReversal,
            930..950 => Kind::Echo,
            950..960 => Kind::BadArqc,
            960..980 => Kind::UnknownCard,
            _ => Kind::Malformed,
        };
        let needs_original = matches!(kind, Kind::Repeat | Kind::Reversal | Kind::PartialReversal);
        if needs_original && self.approved.is_empty() {
            Kind::Chip
        } else {
            kind
        }
    }

    /// The next request at time `now_unix_s`.
    pub fn next(&mut self, pop: &mut Population, dialect: &Dialect, now_unix_s: i64) -> Sent {
        let kind = self.pick_kind();
        self.next_of(kind, pop, dialect, now_unix_s)
    }

    /// The next request of this `kind` at time `now_unix_s` (a repeat or a reversal with no
    /// approval to refer to yet is a chip request instead).
    pub fn next_of(
        &mut self,
        kind: Kind,
        pop: &mut Population,
        dialect: &Dialect,
        now_unix_s: i64,
    ) -> Sent {
        let needs_original = matches!(kind, Kind::Repeat | Kind::Reversal | Kind::PartialReversal);
        let kind = if needs_original && self.approved.is_empty() {
            Kind::Chip
        } else {
            kind
        };
        let de7 = de7(now_unix_s);
        match kind {
            Kind::Echo => {
                let stan = self.next_stan();
                let mut b = MessageBuilder::new(Mti::from_u16(800).expect("mti"));
                b.set(7, &de7)
                    .set_number(11, u64::from(stan))
                    .set(70, "301");
                Sent::plain(kind, encode(&b, dialect))
            }
            Kind::Repeat => {
                let i = self.rng.below(self.approved.len() as u64) as usize;
                let a = self.approved[i].clone();
                let m = Message::decode(dialect, a.frame.clone()).expect("our own frame");
                let mut b = m.to_builder();
                b.set_mti(Mti::from_u16(101).expect("mti"));
                Sent {
                    kind,
                    frame: encode(&b, dialect),
                    chip: a.chip,
                    first_approval_code: Some(a.approval_code),
                    reversible: None,
                    via: a.connection,
                }
            }
            Kind::Reversal | Kind::PartialReversal => {
                let i = self.rng.below(self.approved.len() as u64) as usize;
                let a = self.approved.remove(i).expect("index in range");
                let stan = self.next_stan();
                let card = &pop.cards[a.card];
                let mut b = MessageBuilder::new(Mti::from_u16(400).expect("mti"));
                b.set(2, &card.pan)
                    .set(3, "000000")
                    .set(4, format!("{:012}", a.amount_minor))
                    .set(7, &de7)
                    .set_number(11, u64::from(stan))
                    .set(32, ACQUIRER_ID)
                    .set(33, FORWARDER_ID)
                    .set(37, format!("{:012}", stan))
                    .set(41, "TERM0001")
                    .set(49, a.currency)
                    .set(
                        90,
                        format!(
                            "0100{:06}{}{:0>11}{:0>11}",
                            a.stan, a.de7, ACQUIRER_ID, FORWARDER_ID
                        ),
                    );
                if kind == Kind::PartialReversal {
                    let remains = a.amount_minor / 2;
                    b.set(95, format!("{remains:012}{:012}{:012}000000", 0, 0));
                }
                Sent {
                    via: a.connection,
                    ..Sent::plain(kind, encode(&b, dialect))
                }
            }
            _ => self.authorization(kind, pop, dialect, now_unix_s, &de7),
        }
    }

    fn authorization(
        &mut self,
        kind: Kind,
        pop: &mut Population,
        dialect: &Dialect,
        now_unix_s: i64,
        de7: &str,
    ) -> Sent {
        let stan = self.next_stan();
        let card_index = self.rng.below(pop.cards.len() as u64) as usize;
        let amount_max = if self.rng.chance(50) { 400_000 } else { 15_000 };
        let amount_minor = 100 + self.rng.below(amount_max);
        let card = &mut pop.cards[card_index];
        let currency = pop.accounts[card.account].currency;
        let (_, mo, d, h, mi, s) = civil(now_unix_s);
        let (year, ..) = civil(now_unix_s);
        let unknown_pan;
        let pan: &str = if kind == Kind::UnknownCard {
            unknown_pan = luhn_complete(&format!("999999{:09}", self.rng.below(1_000_000_000)));
            &unknown_pan
        } else {
            &card.pan
        };
        let mti = if kind == Kind::Advice { 120 } else { 100 };
        let mut b = MessageBuilder::new(Mti::from_u16(mti).expect("mti"));
        b.set(2, pan)
            .set(3, "000000")
            .set(4, format!("{amount_minor:012}"))
            .set(7, de7)
            .set_number(11, u64::from(stan))
            .set(12, format!("{h:02}{mi:02}{s:02}"))
            .set(13, format!("{mo:02}{d:02}"))
            .set(18, if self.rng.chance(100) { "7011" } else { "5411" })
            .set(25, "00")
            .set(32, ACQUIRER_ID)
            .set(33, FORWARDER_ID)
            .set(37, format!("{:012}", stan))
            .set(41, "TERM0001")
            .set(42, "MERCHANT0000001")
            .set(43, "SIMULATED MERCHANT     SAO PAULO     BR")
            .set(49, currency);
        if kind == Kind::Malformed {
            b.set(14, "2613"); // month 13
        }
        if kind == Kind::Advice {
            b.set(39, if self.rng.chance(800) { "00" } else { "05" });
        }
        let mut chip = None;
        match kind {
            Kind::Chip | Kind::Contactless | Kind::BadArqc | Kind::UnknownCard => {
                let terminal = Terminal {
                    amount_minor,
                    currency: currency.parse().expect("numeric currency"),
                    country: 76,
                    date_yymmdd: (year as u32 % 100) * 10_000 + mo * 100 + d,
                    unpredictable_number: self.rng.bytes(),
                };
                let mut tags = card.chip.generate_arqc(&terminal);
                if kind == Kind::BadArqc {
                    // the amount the card signed is not the amount sent: the ARQC fails
                    tags[8].1[5] ^= 0x01;
                }
                let mut w = tlv::Writer::new();
                for (t, v) in &tags {
                    w.put(*t, v);
                }
                b.set(
                    22,
                    if kind == Kind::Contactless {
                        "071"
                    } else {
                        "051"
                    },
                )
                .set(23, format!("{:03}", card.psn))
                .set(55, w.as_bytes());
                if kind != Kind::UnknownCard {
                    chip = Some((card_index, tags));
                }
            }
            Kind::Magstripe => {
                b.set(22, "901")
                    .set(
                        35,
                        format!("{}={}1011234567890", card.pan, card.expiry_yymm),
                    )
                    .set(52, self.rng.bytes::<8>());
            }
            Kind::Ecommerce => {
                b.set(22, "810").set(48, "T4203210");
            }
            Kind::Advice | Kind::Malformed => {
                b.set(22, "051");
            }
            _ => {}
        }
        let frame = encode(&b, dialect);
        let reversible = (mti == 100 && kind != Kind::UnknownCard).then(|| Approved {
            frame: frame.clone(),
            card: card_index,
            de7: de7.to_owned(),
            stan,
            amount_minor,
            currency,
            approval_code: Vec::new(),
            chip: chip.clone(),
            connection: None,
        });
        Sent {
            kind,
            frame,
            chip,
            first_approval_code: None,
            reversible,
            via: None,
        }
    }

    /// Checks the answer to `sent` (ARPC with the card, repeat consistency) and remembers
    /// approvals for later reversals and repeats.
    pub fn observe(&mut self, pop: &Population, sent: Sent, answer: &Message) -> Checked {
        self.observe_on(pop, sent, answer, None)
    }

    /// [`Traffic::observe`] for an answer that came on device connection `connection` (later
    /// repeats and reversals of an approval name it in [`Sent::via`]).
    pub fn observe_on(
        &mut self,
        pop: &Population,
        sent: Sent,
        answer: &Message,
        connection: Option<u64>,
    ) -> Checked {
        let code = answer
            .field(39)
            .and_then(|c| <[u8; 2]>::try_from(c).ok())
            .unwrap_or(*b"??");
        let tag91 = answer.icc_data().and_then(|r| r.find(0x91).ok().flatten());
        let arpc_ok = match (&sent.chip, tag91) {
            (Some((card, tags)), Some(t)) => {
                Some(pop.cards[*card].chip.check_arpc(tags, t.value, code))
            }
            (_, Some(_)) => Some(false),
            _ => None,
        };
        let repeat_consistent = sent
            .first_approval_code
            .as_ref()
            .map(|first| code == *b"00" && answer.field(38) == Some(first.as_slice()));
        if code == *b"00"
            && let (Some(mut a), Some(de38)) = (sent.reversible, answer.field(38))
        {
            a.approval_code = de38.to_vec();
            a.connection = connection;
            if self.approved.len() == APPROVED_KEPT {
                self.approved.pop_front();
            }
            self.approved.push_back(a);
        }
        Checked {
            response_code: code,
            arpc_ok,
            repeat_consistent,
        }
    }
}

impl Sent {
    fn plain(kind: Kind, frame: Bytes) -> Sent {
        Sent {
            kind,
            frame,
            chip: None,
            first_approval_code: None,
            reversible: None,
            via: None,
        }
    }
}

fn encode(b: &MessageBuilder, dialect: &Dialect) -> Bytes {
    b.encode(dialect)
        .expect("the simulator builds valid messages for the built-in dialects")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_known_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        // 2026-11-22T10:15:00Z
        assert_eq!(civil(1_795_342_500), (2026, 11, 22, 10, 15, 0));
        assert_eq!(de7(1_795_342_500), "1122101500");
    }

    #[test]
    fn luhn() {
        assert_eq!(luhn_complete("7992739871"), "79927398713");
    }
}
