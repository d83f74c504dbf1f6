//! Scripted cases with the answers the contract expects (`docs/network.md`), each judged field
//! by field: the MTI, DE 39, DE 38 present iff approved, the echo set, DE 44 of a format error,
//! and tag 91, which the software card checks for every chip request whose ARQC must verify.
//!
//! The population is fixed and deterministic for a seed ([`population`]): one account and one
//! card per role (a card per HSM profile, a lost card, a frozen account, a small limit...), with
//! known limits and no balance, so every expected answer is known in advance. Its ids and PANs
//! depend on the seed: against a daemon whose state holds an earlier run (holds, ATCs), use
//! another seed.
//!
//! The cases run one after the other on the current connection; the session cases (garbage and
//! oversized frames, the daemon's idle echo) watch what the [`Device`] sees. The sign-off on stop
//! is the caller's to provoke: [`await_sign_off`] judges it.
//!
//! The files: `population.rs` (the fixed population and its roles), `judge.rs` (one answer
//! against what the contract expects), this file (the cases, in order, and the session cases).
//!
//! Must never: print a PAN (failures show DE 2 masked, and binary or secret fields by length
//! only); send two cases' requests at once (each case reads the state the one before left).

mod judge;
mod population;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hsm::Profile;
use iso8583::{Dialect, Message, MessageBuilder, Mti, tlv};

use crate::card::{SoftCard, Terminal};
use crate::device::{Device, SessionEvent};
use crate::netsim::{ACQUIRER_ID, FORWARDER_ID, Population, TEST_IMK, civil, de7, luhn_complete};
use crate::now_unix_s;
use crate::rng::Rng;

use judge::{Expect, judge, mismatch};
pub use population::population;

/// What the echo set of an answer to an authorization or an advice is (`docs/network.md`).
pub const AUTHORIZATION_ECHO: [usize; 16] =
    [2, 3, 4, 7, 11, 32, 33, 37, 41, 42, 49, 63, 5, 6, 50, 51];
/// ... to a reversal.
pub const REVERSAL_ECHO: [usize; 11] = [2, 3, 4, 7, 11, 32, 33, 37, 41, 49, 90];
/// ... to network management.
pub const NETWORK_ECHO: [usize; 4] = [7, 11, 33, 70];

/// The limit of the small accounts (minor units).
pub const SMALL_LIMIT: i64 = 10_000;
/// The limit of the other accounts.
pub const LARGE_LIMIT: i64 = 1_000_000;

/// The judgement of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub name: String,
    pub verdict: Verdict,
}

impl Outcome {
    /// `PASS name`, `FAIL name: ...`, `SKIP name: ...`.
    pub fn line(&self) -> String {
        match &self.verdict {
            Verdict::Pass => format!("PASS {}", self.name),
            Verdict::Fail(why) => format!("FAIL {}: {why}", self.name),
            Verdict::Skip(why) => format!("SKIP {}: {why}", self.name),
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }
}

/// How the cases run.
#[derive(Clone, Debug)]
pub struct ScenarioOptions {
    pub seed: u64,
    /// One answer not there after this long fails its case.
    pub answer_timeout: Duration,
    /// How long to wait, quiet, for the daemon's idle echo; zero skips that case.
    pub daemon_echo_wait: Duration,
    /// Bytes of the oversized frame (above the daemon's `max_frame_bytes`); zero skips it.
    pub oversized_bytes: usize,
    /// How long the daemon may take to dial again and sign on after the oversized frame.
    pub reconnect_wait: Duration,
}

impl ScenarioOptions {
    pub fn new(seed: u64) -> ScenarioOptions {
        ScenarioOptions {
            seed,
            answer_timeout: Duration::from_secs(10),
            daemon_echo_wait: Duration::ZERO,
            oversized_bytes: 8_000,
            reconnect_wait: Duration::from_secs(60),
        }
    }
}

/// Runs the cases against the authorizer connected to `device`.
pub struct Scenarios<'d> {
    device: &'d Device,
    dialect: Arc<Dialect>,
    pop: Population,
    index: HashMap<&'static str, usize>,
    options: ScenarioOptions,
    rng: Rng,
    stan: u32,
}

type Tags = Vec<(u32, Vec<u8>)>;

impl<'d> Scenarios<'d> {
    /// The cases over `population(options.seed, now)`, which the daemon must already hold.
    pub fn new(device: &'d Device, options: ScenarioOptions, now_unix_s: i64) -> Scenarios<'d> {
        let (pop, index) = population(options.seed, now_unix_s);
        Scenarios {
            device,
            dialect: device.dialect().clone(),
            pop,
            index,
            rng: Rng::new(options.seed ^ 0x5ce7_a210),
            // Apart from other runs' STANs within the same second.
            stan: (options.seed % 900) as u32 * 1000,
            options,
        }
    }

    fn card(&self, role: &str) -> usize {
        self.index[role]
    }

    fn next_stan(&mut self) -> u32 {
        self.stan = self.stan % 999_999 + 1;
        self.stan
    }

    /// An 0100 (or `mti`) for `pan`, now, with a new STAN; no chip data, manual entry.
    fn base(&mut self, mti: u16, pan: &str, amount: u64, currency: &str) -> MessageBuilder {
        let now = now_unix_s();
        let (_, mo, d, h, mi, s) = civil(now);
        let stan = self.next_stan();
        let mut b = MessageBuilder::new(Mti::from_u16(mti).expect("mti"));
        b.set(2, pan)
            .set(3, "000000")
            .set(4, format!("{amount:012}"))
            .set(7, de7(now))
            .set_number(11, u64::from(stan))
            .set(12, format!("{h:02}{mi:02}{s:02}"))
            .set(13, format!("{mo:02}{d:02}"))
            .set(18, "5411")
            .set(22, "012")
            .set(25, "00")
            .set(32, ACQUIRER_ID)
            .set(33, FORWARDER_ID)
            .set(37, format!("{stan:012}"))
            .set(41, "TERM0001")
            .set(42, "MERCHANT0000001")
            .set(43, "SIMULATED MERCHANT     SAO PAULO     BR")
            .set(49, currency)
            .set(63, "NETSIM");
        b
    }

    /// An 0100 of `role`'s card in its account's currency.
    fn plain(&mut self, role: &str, amount: u64) -> MessageBuilder {
        let c = self.card(role);
        let pan = self.pop.cards[c].pan.clone();
        let currency = self.pop.accounts[c].currency;
        self.base(100, &pan, amount, currency)
    }

    /// A chip 0100 of `role`'s card (DE 23 its PSN).
    fn chip_auth(&mut self, role: &str, amount: u64, signed: u64) -> (MessageBuilder, Tags) {
        let c = self.card(role);
        let mut b = self.plain(role, amount);
        b.set(23, format!("{:03}", self.pop.cards[c].psn));
        let currency = self.pop.accounts[c].currency;
        let tags = arqc(
            &mut self.rng,
            &mut b,
            &mut self.pop.cards[c].chip,
            signed,
            currency,
        );
        (b, tags)
    }

    fn soft_card(&self, role: &str) -> &SoftCard {
        &self.pop.cards[self.card(role)].chip
    }

    /// A reversal (`mti` 400, 401, 420, 421) of `original` (an 0100), leaving `remains` held.
    fn reversal(
        &mut self,
        mti: u16,
        original: &MessageBuilder,
        remains: Option<u64>,
    ) -> MessageBuilder {
        let now = now_unix_s();
        let stan = self.next_stan();
        let get = |n| String::from_utf8_lossy(original.get(n).unwrap_or_default()).into_owned();
        let mut b = MessageBuilder::new(Mti::from_u16(mti).expect("mti"));
        b.set(2, get(2))
            .set(3, get(3))
            .set(4, get(4))
            .set(7, de7(now))
            .set_number(11, u64::from(stan))
            .set(32, ACQUIRER_ID)
            .set(33, FORWARDER_ID)
            .set(37, format!("{stan:012}"))
            .set(41, "TERM0001")
            .set(49, get(49))
            .set(
                90,
                format!(
                    "0100{:0>6}{}{ACQUIRER_ID:0>11}{FORWARDER_ID:0>11}",
                    get(11),
                    get(7)
                ),
            );
        if let Some(r) = remains {
            b.set(95, format!("{r:012}{:012}{:012}000000", 0, 0));
        }
        b
    }

    /// Sends `b`, waits for its answer, judges it.
    async fn exchange(&self, b: &MessageBuilder, expect: &Expect<'_>) -> Result<Message, String> {
        let (request, answer) = self
            .device
            .request(b, self.options.answer_timeout)
            .await
            .map_err(|e| e.to_string())?;
        let answer = answer.ok_or_else(|| {
            format!(
                "no answer to the {} within {:?}",
                request.mti().as_str(),
                self.options.answer_timeout
            )
        })?;
        judge(&request, &answer.message, expect)?;
        Ok(answer.message)
    }

    async fn expect_code(&self, b: &MessageBuilder, code: &str) -> Result<Message, String> {
        self.exchange(b, &Expect::code(code)).await
    }

    /// Every case, in order; one [`Outcome`] each.
    pub async fn run(&mut self) -> Vec<Outcome> {
        let mut out = Vec::new();
        macro_rules! case {
            ($name:expr, $body:expr) => {{
                let verdict = match $body {
                    Ok(()) => Verdict::Pass,
                    Err(why) => Verdict::Fail(why),
                };
                out.push(Outcome {
                    name: $name.to_string(),
                    verdict,
                });
            }};
        }
        for p in Profile::ALL {
            case!(
                format!("chip_approval_{}", p.name()),
                self.chip_approval(p.name()).await
            );
        }
        case!("decline_unknown_card_14", self.unknown_card().await);
        case!(
            "decline_card_lost_41",
            self.plain_code("lost", 1_000, "41").await
        );
        case!(
            "decline_card_stolen_43",
            self.plain_code("stolen", 1_000, "43").await
        );
        case!(
            "decline_card_blocked_62",
            self.plain_code("blocked", 1_000, "62").await
        );
        case!(
            "decline_card_closed_14",
            self.plain_code("card-closed", 1_000, "14").await
        );
        case!(
            "decline_expired_card_54",
            self.plain_code("expired", 1_000, "54").await
        );
        case!(
            "decline_de14_not_card_expiry_54",
            self.de14_mismatch().await
        );
        case!("decline_tampered_arqc_05", self.tampered_arqc().await);
        case!(
            "decline_chip_amount_differs_05",
            self.chip_amount_differs().await
        );
        case!("decline_atc_replay_05", self.atc_replay().await);
        case!(
            "decline_account_frozen_62",
            self.plain_code("frozen", 1_000, "62").await
        );
        case!(
            "decline_account_closed_14",
            self.plain_code("account-closed", 1_000, "14").await
        );
        case!(
            "decline_currency_neither_way_05",
            self.currency_mismatch().await
        );
        case!(
            "decline_de51_not_account_currency_05",
            self.de6(Some("978"), "05").await
        );
        case!(
            "decline_insufficient_funds_51",
            self.plain_code("small", 20_000, "51").await
        );
        case!(
            "decline_chip_insufficient_funds_51_with_arpc",
            self.chip_insufficient().await
        );
        case!("approve_de6_cross_currency", self.de6(None, "00").await);
        case!("repeat_0101_and_exact_resend_0100", self.repeats().await);
        case!(
            "decline_same_identity_other_content_94",
            self.duplicate().await
        );
        case!(
            "reversal_0400_full_and_0401_repeat",
            self.reversal_full().await
        );
        case!(
            "reversal_0400_partial_de95",
            self.reversal_partial(400).await
        );
        case!(
            "reversal_0420_partial_de95_and_0421_repeat",
            self.reversal_partial(420).await
        );
        case!(
            "reversal_before_original_then_0100_05",
            self.reversal_first().await
        );
        case!(
            "advice_0120_approved_and_0121_repeat",
            self.advice_approved().await
        );
        case!(
            "advice_0120_declined_holds_nothing",
            self.advice_declined().await
        );
        case!(
            "network_echo_0800",
            self.device
                .echo(self.options.answer_timeout)
                .await
                .map(|_| ())
        );
        case!("malformed_field_30", self.malformed().await);
        case!("transmission_time_skew_30", self.skew().await);
        case!("garbage_frame_no_answer_link_up", self.garbage().await);
        if self.options.oversized_bytes == 0 {
            out.push(skipped(
                "oversized_frame_reconnect_sign_on",
                "--oversized-bytes 0",
            ));
        } else {
            case!("oversized_frame_reconnect_sign_on", self.oversized().await);
        }
        if self.options.daemon_echo_wait.is_zero() {
            out.push(skipped(
                "daemon_idle_echo",
                "no wait for the daemon's echo was asked",
            ));
        } else {
            case!("daemon_idle_echo", self.daemon_echo().await);
        }
        out
    }

    async fn chip_approval(&mut self, role: &'static str) -> Result<(), String> {
        let (b, tags) = self.chip_auth(role, 1_234, 1_234);
        self.exchange(&b, &Expect::chip("00", self.soft_card(role), &tags))
            .await
            .map(drop)
    }

    async fn plain_code(&mut self, role: &str, amount: u64, code: &str) -> Result<(), String> {
        let b = self.plain(role, amount);
        self.expect_code(&b, code).await.map(drop)
    }

    async fn unknown_card(&mut self) -> Result<(), String> {
        let pan = luhn_complete(&format!("999999{:09}", self.rng.below(1_000_000_000)));
        let mut card = SoftCard::personalise(&TEST_IMK, &pan, 0, Profile::VisaCvn18);
        let mut b = self.base(100, &pan, 1_000, "840");
        b.set(23, "000");
        arqc(&mut self.rng, &mut b, &mut card, 1_000, "840");
        self.expect_code(&b, "14").await.map(drop)
    }

    async fn de14_mismatch(&mut self) -> Result<(), String> {
        let c = self.card("misc");
        let expiry = self.pop.cards[c].expiry_yymm.clone();
        let yy: u32 = expiry[..2].parse().unwrap_or(0);
        let mut b = self.plain("misc", 1_000);
        b.set(14, format!("{:02}{}", (yy + 1) % 100, &expiry[2..]));
        self.expect_code(&b, "54").await.map(drop)
    }

    async fn tampered_arqc(&mut self) -> Result<(), String> {
        let (mut b, mut tags) = self.chip_auth("chip-checks", 1_000, 1_000);
        tags[0].1[0] ^= 0x01;
        set_icc(&mut b, &tags);
        self.expect_code(&b, "05").await.map(drop)
    }

    async fn chip_amount_differs(&mut self) -> Result<(), String> {
        let (b, tags) = self.chip_auth("chip-checks", 2_000, 1_000);
        self.exchange(
            &b,
            &Expect::chip("05", self.soft_card("chip-checks"), &tags),
        )
        .await
        .map(drop)
    }

    async fn atc_replay(&mut self) -> Result<(), String> {
        let (b, tags) = self.chip_auth("chip-checks", 500, 500);
        self.exchange(
            &b,
            &Expect::chip("00", self.soft_card("chip-checks"), &tags),
        )
        .await?;
        // The same cryptogram again, under a new identity.
        let mut again = self.plain("chip-checks", 500);
        again.set(23, b.get(23).unwrap_or(b"000"));
        set_icc(&mut again, &tags);
        again.set(22, "051");
        self.exchange(
            &again,
            &Expect::chip("05", self.soft_card("chip-checks"), &tags),
        )
        .await
        .map(drop)
    }

    async fn currency_mismatch(&mut self) -> Result<(), String> {
        let c = self.card("brl");
        let pan = self.pop.cards[c].pan.clone();
        let b = self.base(100, &pan, 1_000, "840");
        self.expect_code(&b, "05").await.map(drop)
    }

    /// DE 4 in 840 to the 986 account with DE 6 and DE 51 (986 unless `de51`).
    async fn de6(&mut self, de51: Option<&str>, code: &str) -> Result<(), String> {
        let c = self.card("brl");
        let pan = self.pop.cards[c].pan.clone();
        let mut b = self.base(100, &pan, 1_000, "840");
        b.set(6, format!("{:012}", 5_000))
            .set(51, de51.unwrap_or("986"));
        self.expect_code(&b, code).await.map(drop)
    }

    async fn chip_insufficient(&mut self) -> Result<(), String> {
        let (b, tags) = self.chip_auth("small", 20_000, 20_000);
        self.exchange(&b, &Expect::chip("51", self.soft_card("small"), &tags))
            .await
            .map(drop)
    }

    async fn repeats(&mut self) -> Result<(), String> {
        let (mut b, tags) = self.chip_auth("repeat", 700, 700);
        let first = self
            .exchange(&b, &Expect::chip("00", self.soft_card("repeat"), &tags))
            .await?;
        let de38 = first.field(38).unwrap_or_default().to_vec();
        let same = Expect {
            de38: Some(&de38),
            ..Expect::chip("00", self.soft_card("repeat"), &tags)
        };
        b.set_mti(Mti::from_u16(101).expect("mti"));
        self.exchange(&b, &same)
            .await
            .map_err(|e| format!("0101: {e}"))?;
        b.set_mti(Mti::from_u16(100).expect("mti"));
        self.exchange(&b, &same)
            .await
            .map_err(|e| format!("resent 0100: {e}"))?;
        Ok(())
    }

    async fn duplicate(&mut self) -> Result<(), String> {
        let mut b = self.plain("repeat", 900);
        self.expect_code(&b, "00").await?;
        b.set(4, format!("{:012}", 901));
        self.expect_code(&b, "94").await.map(drop)
    }

    async fn reversal_full(&mut self) -> Result<(), String> {
        let a = self.plain("rev-full", 8_000);
        self.expect_code(&a, "00").await?;
        let mut rev = self.reversal(400, &a, None);
        self.expect_code(&rev, "00").await?;
        rev.set_mti(Mti::from_u16(401).expect("mti"));
        self.expect_code(&rev, "00")
            .await
            .map_err(|e| format!("0401: {e}"))?;
        let again = self.plain("rev-full", 8_000);
        self.expect_code(&again, "00")
            .await
            .map_err(|e| format!("after the reversal, {e} (the hold was not released)"))?;
        Ok(())
    }

    async fn reversal_partial(&mut self, mti: u16) -> Result<(), String> {
        let role = if mti == 400 {
            "rev-partial"
        } else {
            "rev-advice"
        };
        let a = self.plain(role, 8_000);
        self.expect_code(&a, "00").await?;
        let mut rev = self.reversal(mti, &a, Some(2_000));
        self.expect_code(&rev, "00").await?;
        if mti == 420 {
            rev.set_mti(Mti::from_u16(421).expect("mti"));
            self.expect_code(&rev, "00")
                .await
                .map_err(|e| format!("0421: {e}"))?;
        }
        let fits = self.plain(role, 8_000);
        self.expect_code(&fits, "00")
            .await
            .map_err(|e| format!("8,000 after the partial reversal: {e}"))?;
        let over = self.plain(role, 1);
        self.expect_code(&over, "51")
            .await
            .map_err(|e| format!("2,000 stay held: {e}"))?;
        Ok(())
    }

    async fn reversal_first(&mut self) -> Result<(), String> {
        let a = self.plain("rev-first", 1_000);
        let rev = self.reversal(400, &a, None);
        self.expect_code(&rev, "00").await?;
        self.expect_code(&a, "05")
            .await
            .map_err(|e| format!("the late 0100: {e}"))?;
        Ok(())
    }

    async fn advice_approved(&mut self) -> Result<(), String> {
        let c = self.card("advice-approved");
        let pan = self.pop.cards[c].pan.clone();
        let mut adv = self.base(120, &pan, 15_000, "840");
        adv.set(39, "00").set(22, "051");
        self.expect_code(&adv, "00").await?;
        adv.set_mti(Mti::from_u16(121).expect("mti"));
        self.expect_code(&adv, "00")
            .await
            .map_err(|e| format!("0121: {e}"))?;
        let after = self.plain("advice-approved", 1);
        self.expect_code(&after, "51")
            .await
            .map_err(|e| format!("held beyond open-to-buy: {e}"))?;
        Ok(())
    }

    async fn advice_declined(&mut self) -> Result<(), String> {
        let c = self.card("advice-declined");
        let pan = self.pop.cards[c].pan.clone();
        let mut adv = self.base(120, &pan, 8_000, "840");
        adv.set(39, "05").set(22, "051");
        self.expect_code(&adv, "00").await?;
        let after = self.plain("advice-declined", 8_000);
        self.expect_code(&after, "00")
            .await
            .map_err(|e| format!("nothing held: {e}"))?;
        Ok(())
    }

    async fn malformed(&mut self) -> Result<(), String> {
        let mut b = self.plain("misc", 1_000);
        b.set(14, "2613");
        let expect = Expect {
            de44: Some("014"),
            ..Expect::code("30")
        };
        self.exchange(&b, &expect).await.map(drop)
    }

    async fn skew(&mut self) -> Result<(), String> {
        let mut b = self.plain("misc", 1_000);
        b.set(7, de7(now_unix_s() - 3_600));
        let expect = Expect {
            de44: Some("007"),
            ..Expect::code("30")
        };
        self.exchange(&b, &expect).await.map(drop)
    }

    async fn garbage(&mut self) -> Result<(), String> {
        let connection = self.device.connections();
        let before = self.device.stats();
        self.device
            .send_raw(&[0xFF, 0x00, 0x13, 0x37, 0xAB, 0xCD], None)
            .map_err(|e| e.to_string())?;
        // The link answers in order: anything the garbage caused comes before the echo's 0810.
        let echo = self
            .device
            .echo(self.options.answer_timeout)
            .await
            .map_err(|e| format!("echo after the garbage: {e}"))?;
        let after = self.device.stats();
        if echo.connection != connection || self.device.connections() != connection {
            return Err(mismatch(
                "connection",
                format!("{connection} (kept)"),
                self.device.connections().to_string(),
            ));
        }
        if after.unmatched != before.unmatched || after.unexpected != before.unexpected {
            return Err(mismatch("answer", "none".into(), "a message".into()));
        }
        Ok(())
    }

    async fn oversized(&mut self) -> Result<(), String> {
        let connection = self.device.connections();
        let from = self.device.events().len();
        let body = vec![b'0'; self.options.oversized_bytes.min(usize::from(u16::MAX))];
        self.device
            .send_raw(&body, None)
            .map_err(|e| e.to_string())?;
        let seen = self
            .device
            .wait_event(from, self.options.reconnect_wait, |e: &SessionEvent| {
                e.connection > connection && e.code == "001"
            })
            .await;
        if seen.is_none() {
            return Err(mismatch(
                "connection",
                "a new connection and a sign-on".into(),
                format!(
                    "none within {:?} (connections {})",
                    self.options.reconnect_wait,
                    self.device.connections()
                ),
            ));
        }
        if !self
            .device
            .wait_signed_on(self.options.answer_timeout)
            .await
        {
            return Err(mismatch(
                "session",
                "signed on".into(),
                format!("{:?}", self.device.state()),
            ));
        }
        self.device
            .echo(self.options.answer_timeout)
            .await
            .map(drop)
            .map_err(|e| format!("echo on the new connection: {e}"))
    }

    async fn daemon_echo(&mut self) -> Result<(), String> {
        let expected = if self.dialect.name() == "mastercard" {
            "270"
        } else {
            "301"
        };
        let from = self.device.events().len();
        let seen = self
            .device
            .wait_event(from, self.options.daemon_echo_wait, |e| {
                e.code != "001" && e.code != "002"
            })
            .await;
        match seen {
            None => Err(mismatch(
                "MTI",
                format!("0800 DE 70 = {expected} from the daemon"),
                format!("none within {:?}", self.options.daemon_echo_wait),
            )),
            Some(e) if e.code != expected => Err(mismatch(70, expected.into(), e.code)),
            Some(_) => Ok(()),
        }
    }
}

fn skipped(name: &str, why: &str) -> Outcome {
    Outcome {
        name: name.into(),
        verdict: Verdict::Skip(why.into()),
    }
}

/// The ARQC of `card` over `signed` minor units in `currency`, today, put in DE 55 of `b`
/// (chip entry, DE 22 = 051).
fn arqc(
    rng: &mut Rng,
    b: &mut MessageBuilder,
    card: &mut SoftCard,
    signed: u64,
    currency: &str,
) -> Tags {
    let (year, mo, d, ..) = civil(now_unix_s());
    let terminal = Terminal {
        amount_minor: signed,
        currency: currency.parse().expect("numeric currency"),
        country: 76,
        date_yymmdd: (year as u32 % 100) * 10_000 + mo * 100 + d,
        unpredictable_number: rng.bytes(),
    };
    let tags = card.generate_arqc(&terminal);
    set_icc(b, &tags);
    b.set(22, "051");
    tags
}

fn set_icc(b: &mut MessageBuilder, tags: &[(u32, Vec<u8>)]) {
    let mut w = tlv::Writer::new();
    for (t, v) in tags {
        w.put(*t, v);
    }
    b.set(55, w.as_bytes());
}

/// Waits at most `timeout` for the daemon's sign-off (0800, DE 70 = 002) among the events seen
/// from index `from` on: the caller stops the daemon (SIGTERM) and judges with this.
pub async fn await_sign_off(device: &Device, from: usize, timeout: Duration) -> Outcome {
    let seen = device.wait_event(from, timeout, |e| e.code == "002").await;
    Outcome {
        name: "sign_off_on_stop".into(),
        verdict: match seen {
            Some(_) => Verdict::Pass,
            None => Verdict::Fail(mismatch(
                70,
                "002 from the daemon".into(),
                format!("none within {timeout:?}"),
            )),
        },
    }
}
