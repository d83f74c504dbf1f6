//! The decision rules: what to answer to an authorization, an advice or a reversal, and which
//! event to publish for it.
//!
//! [`decide`] is a pure function of the ledger [`State`], a [`Request`] (a plain struct the
//! network layer fills from a parsed ISO 8583 message), the [`Facts`] learned outside the ledger
//! (the HSM's cryptogram check) and `now`. It never mutates the state: the caller publishes
//! [`Decision::event`] and applies it to its own state at once (before deciding the next request),
//! which is what makes a repeat find the first answer and what keeps approvals within
//! open-to-buy.
//!
//! The rules are `network-dialects.md` "Decision rules the answers must follow" (normative):
//! * authorization (0100/0101), checks in order, the first that fails decides: duplicate (the
//!   first answer again, byte for byte in DE 38 and DE 39), unknown card 14, card lost 41 /
//!   stolen 43 / blocked 62 / closed 14, expired 54, ARQC present but not verified 05
//!   (configurable), account frozen 62 / closed 14 / not yet known 05, currency 05, too many
//!   holds on the account 05, open-to-buy 51, otherwise 00 with a DE 38 derived from the hold id;
//! * advice (0120/0121): never declined, answered 00; DE 39 of the advice 00 holds the amount
//!   (even beyond open-to-buy), any other code holds nothing;
//! * reversal (0400/0401/0420/0421): answered 00; releases the hold found through DE 90 down to
//!   the amount that *remains* (DE 95 billing when non-zero, else transaction; none or zeros:
//!   full release); an unknown original is recorded so that a late original is released.
//!
//! Must never: approve beyond open-to-buy; decline an advice; read a clock; see a PAN (the
//! request carries the PAN hash and the masked PAN only).

use std::borrow::Cow;

use sha2::{Digest, Sha256};

pub use crate::state::PrefetchStage;
use crate::state::parts;
use crate::time::transmission_instant;
use crate::{
    AccountIndex, AccountStatus, AmountMinor, ApprovalCode, AuthorizationEvent, AuthorizationKind,
    CardStatus, Currency, HOLD_DURATION_MAX_S, HoldId, InstitutionId, NetworkIdentity, PanHash,
    ResponseCode, Stan, State, Trace, TransmissionStamp, UnixSeconds,
};

/// Which flow a request belongs to (from its MTI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageClass {
    /// 0100, 0101.
    Authorization,
    /// 0120, 0121.
    Advice,
    /// 0400, 0401, 0420, 0421.
    Reversal,
}

/// DE 90, original data elements (the identity of the original request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginalRequest {
    pub mti: [u8; 4],
    pub stan: Stan,
    pub transmission: TransmissionStamp,
    pub acquirer: InstitutionId,
    pub forwarder: InstitutionId,
}

/// DE 95, replacement amounts: what *remains* after a partial reversal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemainingAmounts {
    pub transaction: AmountMinor,
    pub settlement: AmountMinor,
    pub billing: AmountMinor,
}

/// The request to decide, filled by the network layer from a validated message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub class: MessageClass,
    /// The MTI as received ("0100", "0421", …).
    pub mti: [u8; 4],
    /// HMAC-SHA256 of DE 2 ([`PanHash::of_pan`]).
    pub pan_hash: PanHash,
    /// DE 2 masked: first 6 and last 4 digits, `*` between.
    pub pan_masked: &'a str,
    /// DE 7.
    pub transmission: TransmissionStamp,
    /// DE 11.
    pub stan: Stan,
    /// DE 32.
    pub acquirer: InstitutionId,
    /// DE 33 (0 when absent).
    pub forwarder: InstitutionId,
    /// DE 4 and DE 49.
    pub amount_transaction: AmountMinor,
    pub currency_transaction: Currency,
    /// DE 6 and DE 51, when present.
    pub amount_billing: Option<AmountMinor>,
    pub currency_billing: Option<Currency>,
    /// DE 14, when present.
    pub card_expiry: Option<crate::CardExpiry>,
    /// DE 18, when present.
    pub merchant_category: Option<u16>,
    /// DE 39 of an advice: the network's stand-in decision.
    pub network_response_code: Option<ResponseCode>,
    /// DE 90 of a reversal.
    pub original: Option<OriginalRequest>,
    /// DE 95 of a reversal, when present.
    pub replacement: Option<RemainingAmounts>,
    /// DE 37, when present (12 characters at most).
    pub retrieval_reference: Option<&'a str>,
}

impl Request<'_> {
    pub fn identity(&self) -> NetworkIdentity {
        NetworkIdentity {
            pan_hash: self.pan_hash,
            transmission: self.transmission,
            stan: self.stan,
            acquirer: self.acquirer,
            forwarder: self.forwarder,
        }
    }

    /// The identity of the hold this request concerns: its own, or, for a reversal, the
    /// original's (DE 90).
    pub fn hold_identity(&self) -> Option<NetworkIdentity> {
        match self.class {
            MessageClass::Reversal => self.original.map(|o| NetworkIdentity {
                pan_hash: self.pan_hash,
                transmission: o.transmission,
                stan: o.stan,
                acquirer: o.acquirer,
                forwarder: o.forwarder,
            }),
            MessageClass::Authorization | MessageClass::Advice => Some(self.identity()),
        }
    }
}

/// The chip cryptogram check the caller did with the HSM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cryptogram {
    /// No ARQC in DE 55 (magnetic stripe, e-commerce, …).
    Absent,
    Verified,
    /// Present but did not verify (or could not be verified).
    NotVerified,
}

/// What the caller learned outside the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    pub cryptogram: Cryptogram,
}

/// The input of the ARPC (tag 91) the caller computes with the HSM, when the answer must carry
/// one (chip request whose ARQC verified, approved or declined).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpcInput {
    /// Method 1: ARC = DE 39 as two ASCII characters.
    pub arc: [u8; 2],
    /// Method 2: CSU, `00800000` when approved, `00000000` when declined.
    pub csu: [u8; 4],
}

/// The outcome of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    /// DE 39 of the answer.
    pub response_code: ResponseCode,
    /// DE 38 of an approved authorization.
    pub approval_code: Option<ApprovalCode>,
    /// DE 44 when `response_code` is 30: the number of the first field in error.
    pub field_in_error: Option<u8>,
    /// The hold this request concerns.
    pub hold_id: Option<HoldId>,
    /// The account of [`Decision::event`], as an index into the state decided on: lets
    /// [`State::apply_decided`] skip looking the account up again.
    pub account: Option<AccountIndex>,
    /// The event to publish (and apply) before answering; `None` when nothing changes (a repeat,
    /// an unknown card, a reversal of a declined original, a format error).
    pub event: Option<AuthorizationEvent<'a>>,
    /// `Some` when the answer must carry tag 91.
    pub arpc: Option<ArpcInput>,
    /// The request repeats one already decided: this is the first answer again.
    pub repeat: bool,
}

impl Decision<'_> {
    /// The same decision, owning its event's text (to keep it past the request and the config).
    pub fn into_owned(self) -> Decision<'static> {
        Decision {
            response_code: self.response_code,
            approval_code: self.approval_code,
            field_in_error: self.field_in_error,
            hold_id: self.hold_id,
            account: self.account,
            event: self.event.map(AuthorizationEvent::into_owned),
            arpc: self.arpc,
            repeat: self.repeat,
        }
    }
}

/// One merchant-category rule of the hold-expiry table: MCCs `from..=to` hold for `duration_s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MccHoldRule {
    pub from: u16,
    pub to: u16,
    pub duration_s: i64,
}

/// Configuration of the decision rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecideConfig {
    /// The authorizer instance name written in events.
    pub instance: String,
    /// Hold duration when no rule matches the merchant category (or DE 18 is absent).
    pub hold_duration_default_s: i64,
    /// First matching rule wins. At most [`DecideConfig::MCC_RULES_MAX`] rules.
    pub hold_duration_rules: Vec<MccHoldRule>,
    /// Decline (05) a chip request whose ARQC did not verify. `false` lets it continue.
    pub decline_unverified_arqc: bool,
    /// An account with this many hold records gets 05 on new authorizations.
    pub holds_per_account_max: usize,
}

/// Why a [`DecideConfig`] is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    InstanceName {
        value: String,
    },
    HoldDuration {
        mcc_from: u16,
        mcc_to: u16,
        duration_s: i64,
    },
    TooManyRules {
        count: usize,
    },
    HoldsPerAccount {
        value: usize,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::InstanceName { value } => {
                write!(
                    f,
                    "instance name {value:?} must be 1..=64 printable ASCII characters"
                )
            }
            ConfigError::HoldDuration {
                mcc_from,
                mcc_to,
                duration_s,
            } => write!(
                f,
                "hold duration {duration_s} s for MCC {mcc_from:04}..={mcc_to:04} must be 60..={HOLD_DURATION_MAX_S} s (and from <= to <= 9999)"
            ),
            ConfigError::TooManyRules { count } => {
                write!(
                    f,
                    "{count} hold-duration rules; at most {} allowed",
                    DecideConfig::MCC_RULES_MAX
                )
            }
            ConfigError::HoldsPerAccount { value } => {
                write!(f, "holds_per_account_max {value} must be 1..=65536")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl DecideConfig {
    pub const MCC_RULES_MAX: usize = 256;

    /// Defaults: holds live 7 days; hotels and lodging (3501–3999, 7011), car rental (3351–3500,
    /// 7512) and cruise lines (4411) 31 days; unverified ARQC declined; 1,024 holds per account.
    pub fn new(instance: impl Into<String>) -> DecideConfig {
        const DAY_S: i64 = 86_400;
        DecideConfig {
            instance: instance.into(),
            hold_duration_default_s: 7 * DAY_S,
            hold_duration_rules: vec![
                MccHoldRule {
                    from: 3501,
                    to: 3999,
                    duration_s: 31 * DAY_S,
                },
                MccHoldRule {
                    from: 7011,
                    to: 7011,
                    duration_s: 31 * DAY_S,
                },
                MccHoldRule {
                    from: 3351,
                    to: 3500,
                    duration_s: 31 * DAY_S,
                },
                MccHoldRule {
                    from: 7512,
                    to: 7512,
                    duration_s: 31 * DAY_S,
                },
                MccHoldRule {
                    from: 4411,
                    to: 4411,
                    duration_s: 31 * DAY_S,
                },
            ],
            decline_unverified_arqc: true,
            holds_per_account_max: 1024,
        }
    }

    /// Checks every bound; call once at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.instance.is_empty()
            || self.instance.len() > 64
            || !self.instance.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::InstanceName {
                value: self.instance.clone(),
            });
        }
        if self.hold_duration_rules.len() > Self::MCC_RULES_MAX {
            return Err(ConfigError::TooManyRules {
                count: self.hold_duration_rules.len(),
            });
        }
        let default = MccHoldRule {
            from: 0,
            to: 9999,
            duration_s: self.hold_duration_default_s,
        };
        for rule in std::iter::once(&default).chain(&self.hold_duration_rules) {
            if !(60..=HOLD_DURATION_MAX_S).contains(&rule.duration_s)
                || rule.from > rule.to
                || rule.to > 9999
            {
                return Err(ConfigError::HoldDuration {
                    mcc_from: rule.from,
                    mcc_to: rule.to,
                    duration_s: rule.duration_s,
                });
            }
        }
        if !(1..=65_536).contains(&self.holds_per_account_max) {
            return Err(ConfigError::HoldsPerAccount {
                value: self.holds_per_account_max,
            });
        }
        Ok(())
    }

    /// How long a hold for this merchant category counts against open-to-buy.
    pub fn hold_duration_s(&self, merchant_category: Option<u16>) -> i64 {
        let duration_s = merchant_category
            .and_then(|mcc| {
                self.hold_duration_rules
                    .iter()
                    .find(|r| (r.from..=r.to).contains(&mcc))
            })
            .map_or(self.hold_duration_default_s, |r| r.duration_s);
        debug_assert!((60..=HOLD_DURATION_MAX_S).contains(&duration_s));
        duration_s.clamp(60, HOLD_DURATION_MAX_S)
    }
}

/// Decides one request. Pure: same inputs, same decision.
pub fn decide<'a>(
    state: &State,
    request: &Request<'a>,
    facts: &Facts,
    config: &'a DecideConfig,
    now: UnixSeconds,
) -> Decision<'a> {
    decide_prepared(state, &Prepared::new(request), facts, config, now)
}

/// Decides a [`Prepared`] request: the same decision as [`decide`] on its request.
pub fn decide_prepared<'a>(
    state: &State,
    prepared: &Prepared<'_, 'a>,
    facts: &Facts,
    config: &'a DecideConfig,
    now: UnixSeconds,
) -> Decision<'a> {
    let request = prepared.request;
    match (request.class, prepared.hold_id) {
        (MessageClass::Authorization, Some(hold_id)) => {
            decide_authorization(state, request, hold_id, facts, config, now)
        }
        (MessageClass::Advice, Some(hold_id)) => {
            decide_advice(state, request, hold_id, config, now)
        }
        (MessageClass::Reversal, Some(hold_id)) => {
            decide_reversal(state, request, hold_id, config, now)
        }
        // Only a reversal can lack its hold's identity: DE 90 is missing.
        (_, None) => format_error(90),
    }
}

/// A request with what can be computed from it alone before its turn: the id of the hold it
/// concerns (a SHA-256). The ledger thread prepares the requests a few places ahead of the one
/// it decides, and starts loading the records they will read ([`Prepared::prefetch`]), so that
/// deciding does not wait for main memory. Only [`Prepared::new`] makes one, so the hold id
/// always belongs to the request.
#[derive(Clone, Copy, Debug)]
pub struct Prepared<'r, 'a> {
    request: &'r Request<'a>,
    hold_id: Option<HoldId>,
}

impl<'r, 'a> Prepared<'r, 'a> {
    pub fn new(request: &'r Request<'a>) -> Prepared<'r, 'a> {
        Prepared {
            request,
            hold_id: request.hold_identity().map(|i| HoldId::derive(&i)),
        }
    }

    pub fn request(&self) -> &'r Request<'a> {
        self.request
    }

    /// The hold this request concerns (`None`: a reversal without DE 90).
    pub fn hold_id(&self) -> Option<HoldId> {
        self.hold_id
    }

    /// Starts loading what deciding this request will read. A hint: changes nothing, and a stale
    /// one (the state changed since) only costs the load.
    pub fn prefetch(&self, state: &State, stage: PrefetchStage) {
        state.prefetch(&self.request.pan_hash, self.hold_id.as_ref(), stage);
    }
}

/// How many requests ahead [`for_each_prefetched`] starts loading the records of a request: the
/// index lines `2 * PREFETCH_DISTANCE` ahead, the records `PREFETCH_DISTANCE` ahead, the account
/// `PREFETCH_DISTANCE / 2` ahead.
pub const PREFETCH_DISTANCE: usize = 8;

/// Calls `step` on each request in order, prepared, after starting to load what the next ones
/// will read. `step` may change the state (decide, then apply the decision's event): prefetching
/// is only a hint, so the decisions are exactly those of calling [`decide`] on each in turn.
///
/// `prepare` makes each item's [`Prepared`] once: [`Prepared::new`] for requests (the hold id is
/// then computed here, on the ledger thread), or a copy for items the link threads prepared.
pub fn for_each_prefetched<'r, 'a: 'r, T>(
    state: &mut State,
    items: &'r [T],
    prepare: impl Fn(&'r T) -> Prepared<'r, 'a>,
    mut step: impl FnMut(&mut State, &Prepared<'r, 'a>),
) {
    const FAR: usize = 2 * PREFETCH_DISTANCE;
    const NEAR: usize = PREFETCH_DISTANCE;
    const ACCOUNT: usize = PREFETCH_DISTANCE / 2;
    const RING: usize = FAR + 1;
    let mut ring: [Option<Prepared<'r, 'a>>; RING] = [None; RING];
    for (j, item) in items.iter().enumerate().take(FAR) {
        let prepared = prepare(item);
        prepared.prefetch(state, PrefetchStage::Index);
        ring[j % RING] = Some(prepared);
    }
    for i in 0..items.len() {
        if let Some(item) = items.get(i + FAR) {
            let prepared = prepare(item);
            prepared.prefetch(state, PrefetchStage::Index);
            ring[(i + FAR) % RING] = Some(prepared);
        }
        if i + NEAR < items.len()
            && let Some(prepared) = &ring[(i + NEAR) % RING]
        {
            prepared.prefetch(state, PrefetchStage::Records);
        }
        if i + ACCOUNT < items.len()
            && let Some(prepared) = &ring[(i + ACCOUNT) % RING]
        {
            prepared.prefetch(state, PrefetchStage::Account);
        }
        let prepared = ring[i % RING]
            .take()
            .expect("each item is prepared FAR places ahead");
        step(state, &prepared);
    }
}

fn format_error(field: u8) -> Decision<'static> {
    Decision {
        response_code: ResponseCode::FORMAT_ERROR,
        approval_code: None,
        field_in_error: Some(field),
        hold_id: None,
        account: None,
        event: None,
        arpc: None,
        repeat: false,
    }
}

fn answer(response_code: ResponseCode, hold_id: Option<HoldId>) -> Decision<'static> {
    Decision {
        response_code,
        approval_code: None,
        field_in_error: None,
        hold_id,
        account: None,
        event: None,
        arpc: None,
        repeat: false,
    }
}

/// Tag 91 goes with every answer to a chip request whose ARQC verified.
fn with_arpc<'a>(mut decision: Decision<'a>, facts: &Facts) -> Decision<'a> {
    if facts.cryptogram == Cryptogram::Verified {
        let approved = decision.response_code.is_approved();
        decision.arpc = Some(ArpcInput {
            arc: decision.response_code.0,
            csu: if approved {
                [0x00, 0x80, 0x00, 0x00]
            } else {
                [0; 4]
            },
        });
    }
    decision
}

/// The amount to hold in the account's currency: DE 6 when present (DE 51 must be the
/// account's currency), else DE 4 when DE 49 is. `None`: the currency matches neither (05).
fn amount_in_account_currency(
    request: &Request<'_>,
    account_currency: Currency,
) -> Option<AmountMinor> {
    match request.amount_billing {
        Some(amount) => (request.currency_billing == Some(account_currency)).then_some(amount),
        None => {
            (request.currency_transaction == account_currency).then_some(request.amount_transaction)
        }
    }
}

/// Deterministic event id (UUID text, version 8): SHA-256 of the event's financial content
/// (kind, hold, response codes, amounts, expiry, MTI), laid out in one SHA-256 block. The same
/// decision made twice, by this or another instance, yields the same id; two events that differ
/// in what they do to the state never share one (a shared id would make the second a
/// "duplicate" in every replica's dedup window). Events that share an id have the same effect on
/// every replica, so dropping either as a duplicate loses nothing. A cryptographic hash, because
/// the request fields are chosen by the network: a crafted collision must not make a hold vanish.
fn event_id(event: &AuthorizationEvent<'_>) -> String {
    let kind: u8 = match event.kind {
        AuthorizationKind::HoldPlaced => 1,
        AuthorizationKind::HoldAdjusted => 2,
        AuthorizationKind::HoldReleased => 3,
        AuthorizationKind::Declined => 4,
    };
    let mti: [u8; 4] = event.trace.mti.as_bytes().try_into().unwrap_or([b'?'; 4]);
    let mut input = [0u8; 55];
    input[..6].copy_from_slice(b"event3");
    input[6] = kind;
    input[7..23].copy_from_slice(&event.hold_id.0);
    input[23..25].copy_from_slice(&event.response_code.0);
    input[25..27].copy_from_slice(&event.network_response_code.map_or([0; 2], |c| c.0));
    input[27..35].copy_from_slice(&event.amount_minor.minor().to_be_bytes());
    input[35..43].copy_from_slice(
        &event
            .remaining_minor
            .map_or(-1, AmountMinor::minor)
            .to_be_bytes(),
    );
    input[43..51].copy_from_slice(&event.expires_at.map_or(0, |t| t.0).to_be_bytes());
    input[51..55].copy_from_slice(&mti);
    let digest = Sha256::digest(input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8 (custom)
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    debug_assert_eq!(text.len(), 36);
    text
}

struct EventParts {
    kind: AuthorizationKind,
    response_code: ResponseCode,
    account_id: String,
    hold_id: HoldId,
    hold_identity: NetworkIdentity,
    transmitted_at: UnixSeconds,
    amount_minor: AmountMinor,
    currency: Currency,
}

fn build_event<'a>(
    config: &'a DecideConfig,
    request: &Request<'a>,
    now: UnixSeconds,
    p: EventParts,
) -> AuthorizationEvent<'a> {
    AuthorizationEvent {
        kind: p.kind,
        // Set by `seal` once the event is complete.
        event_id: Cow::Borrowed(""),
        at: now,
        instance: Cow::Borrowed(&config.instance),
        account_id: Cow::Owned(p.account_id),
        hold_id: p.hold_id,
        response_code: p.response_code,
        network_response_code: None,
        approval_code: None,
        amount_minor: p.amount_minor,
        currency: p.currency,
        remaining_minor: None,
        expires_at: None,
        merchant_category: request.merchant_category,
        trace: Trace {
            mti: mti_text(request.mti),
            pan_masked: Cow::Borrowed(request.pan_masked),
            transmission: p.hold_identity.transmission,
            transmitted_at: p.transmitted_at,
            stan: p.hold_identity.stan,
            acquirer: p.hold_identity.acquirer,
            forwarder: p.hold_identity.forwarder,
            retrieval_reference: request.retrieval_reference.map(Cow::Borrowed),
        },
    }
}

/// The MTI as text, without allocating for the ones the authorizer answers.
fn mti_text(mti: [u8; 4]) -> Cow<'static, str> {
    match &mti {
        b"0100" => Cow::Borrowed("0100"),
        b"0101" => Cow::Borrowed("0101"),
        b"0120" => Cow::Borrowed("0120"),
        b"0121" => Cow::Borrowed("0121"),
        b"0400" => Cow::Borrowed("0400"),
        b"0401" => Cow::Borrowed("0401"),
        b"0420" => Cow::Borrowed("0420"),
        b"0421" => Cow::Borrowed("0421"),
        other => Cow::Owned(String::from_utf8_lossy(other).into_owned()),
    }
}

/// Gives a complete event its content-derived id.
fn seal(mut event: AuthorizationEvent<'_>) -> AuthorizationEvent<'_> {
    event.event_id = Cow::Owned(event_id(&event));
    event
}

fn hold_expiry(
    config: &DecideConfig,
    request: &Request<'_>,
    transmitted_at: UnixSeconds,
) -> UnixSeconds {
    UnixSeconds(transmitted_at.0 + config.hold_duration_s(request.merchant_category))
}

fn decide_authorization<'a>(
    state: &State,
    request: &Request<'a>,
    hold_id: HoldId,
    facts: &Facts,
    config: &'a DecideConfig,
    now: UnixSeconds,
) -> Decision<'a> {
    let Some(transmitted_at) = transmission_instant(request.transmission.0, now) else {
        return format_error(7);
    };
    let identity = request.identity();

    // Duplicate: the first answer again, and no state change.
    if let Some(hold) = state.hold(&hold_id) {
        let first = if hold.has(parts::AUTH) {
            Some(Decision {
                approval_code: Some(ApprovalCode::of_hold(hold_id)),
                ..answer(ResponseCode::APPROVED, Some(hold_id))
            })
        } else {
            hold.decline_code().map(|code| answer(code, Some(hold_id)))
        };
        if let Some(mut decision) = first {
            decision.repeat = true;
            return with_arpc(decision, facts);
        }
    }

    // Unknown card: no account to record against, no tag 91.
    let Some(card) = state.card(&request.pan_hash) else {
        return answer(ResponseCode::INVALID_CARD, Some(hold_id));
    };
    let account_index = card.account();
    let account = state.account(account_index);

    let decline = |code: ResponseCode, amount: AmountMinor, currency: Currency| -> Decision<'a> {
        let event = build_event(
            config,
            request,
            now,
            EventParts {
                kind: AuthorizationKind::Declined,
                response_code: code,
                account_id: account.id().to_owned(),
                hold_id,
                hold_identity: identity,
                transmitted_at,
                amount_minor: amount,
                currency,
            },
        );
        let decision = Decision {
            account: Some(account_index),
            event: Some(seal(event)),
            ..answer(code, Some(hold_id))
        };
        if facts.cryptogram == Cryptogram::NotVerified {
            decision
        } else {
            with_arpc(decision, facts)
        }
    };
    let requested = (request.amount_transaction, request.currency_transaction);

    let card_code = match card.status() {
        CardStatus::Active => None,
        CardStatus::Lost => Some(ResponseCode::LOST_CARD),
        CardStatus::Stolen => Some(ResponseCode::STOLEN_CARD),
        CardStatus::Blocked => Some(ResponseCode::RESTRICTED_CARD),
        CardStatus::Closed => Some(ResponseCode::INVALID_CARD),
    };
    if let Some(code) = card_code {
        return decline(code, requested.0, requested.1);
    }

    let (now_year, now_month) = crate::time::year_month(now);
    let now_month_index = u32::try_from(now_year).unwrap_or(0) * 12 + now_month - 1;
    let expired = card.expiry().month_index() < now_month_index
        || request.card_expiry.is_some_and(|e| e != card.expiry());
    if expired {
        return decline(ResponseCode::EXPIRED_CARD, requested.0, requested.1);
    }

    if facts.cryptogram == Cryptogram::NotVerified && config.decline_unverified_arqc {
        return decline(ResponseCode::DO_NOT_HONOR, requested.0, requested.1);
    }

    let account_code = match account.status() {
        AccountStatus::Open => None,
        AccountStatus::Frozen => Some(ResponseCode::RESTRICTED_CARD),
        AccountStatus::Closed => Some(ResponseCode::INVALID_CARD),
        AccountStatus::Unknown => Some(ResponseCode::DO_NOT_HONOR),
    };
    if let Some(code) = account_code {
        return decline(code, requested.0, requested.1);
    }

    let Some(amount) = amount_in_account_currency(request, account.currency()) else {
        return decline(ResponseCode::DO_NOT_HONOR, requested.0, requested.1);
    };
    let currency = account.currency();

    if state.hold_count(account) >= config.holds_per_account_max {
        return decline(ResponseCode::DO_NOT_HONOR, amount, currency);
    }

    if !state.open_to_buy(account_index, now).covers(amount) {
        return decline(ResponseCode::INSUFFICIENT_FUNDS, amount, currency);
    }

    let approval_code = ApprovalCode::of_hold(hold_id);
    let mut event = build_event(
        config,
        request,
        now,
        EventParts {
            kind: AuthorizationKind::HoldPlaced,
            response_code: ResponseCode::APPROVED,
            account_id: account.id().to_owned(),
            hold_id,
            hold_identity: identity,
            transmitted_at,
            amount_minor: amount,
            currency,
        },
    );
    event.approval_code = Some(approval_code);
    event.expires_at = Some(hold_expiry(config, request, transmitted_at));
    let decision = Decision {
        approval_code: Some(approval_code),
        account: Some(account_index),
        event: Some(seal(event)),
        ..answer(ResponseCode::APPROVED, Some(hold_id))
    };
    with_arpc(decision, facts)
}

fn decide_advice<'a>(
    state: &State,
    request: &Request<'a>,
    hold_id: HoldId,
    config: &'a DecideConfig,
    now: UnixSeconds,
) -> Decision<'a> {
    let Some(transmitted_at) = transmission_instant(request.transmission.0, now) else {
        return format_error(7);
    };
    let Some(network_code) = request.network_response_code else {
        return format_error(39);
    };
    let identity = request.identity();
    let acknowledged = answer(ResponseCode::APPROVED, Some(hold_id));
    if state.hold(&hold_id).is_some_and(|h| h.has(parts::ADVICE)) {
        return Decision {
            repeat: true,
            ..acknowledged
        };
    }
    // An advice for a card we do not know holds nothing (there is no account to hold on).
    let Some(card) = state.card(&request.pan_hash) else {
        return acknowledged;
    };
    let account_index = card.account();
    let account = state.account(account_index);
    let amount = if network_code.is_approved() {
        amount_in_account_currency(request, account.currency()).unwrap_or(AmountMinor::ZERO)
    } else {
        AmountMinor::ZERO
    };
    let mut event = build_event(
        config,
        request,
        now,
        EventParts {
            kind: AuthorizationKind::HoldAdjusted,
            response_code: ResponseCode::APPROVED,
            account_id: account.id().to_owned(),
            hold_id,
            hold_identity: identity,
            transmitted_at,
            amount_minor: amount,
            currency: account.currency(),
        },
    );
    event.network_response_code = Some(network_code);
    event.expires_at = Some(hold_expiry(config, request, transmitted_at));
    Decision {
        account: Some(account_index),
        event: Some(seal(event)),
        ..acknowledged
    }
}

fn decide_reversal<'a>(
    state: &State,
    request: &Request<'a>,
    hold_id: HoldId,
    config: &'a DecideConfig,
    now: UnixSeconds,
) -> Decision<'a> {
    let Some(original) = request.original else {
        return format_error(90);
    };
    let Some(identity) = request.hold_identity() else {
        return format_error(90);
    };
    let Some(transmitted_at) = transmission_instant(original.transmission.0, now) else {
        return format_error(90);
    };
    let acknowledged = answer(ResponseCode::APPROVED, Some(hold_id));
    let remaining = match request.replacement {
        None => AmountMinor::ZERO,
        Some(r) if r.billing != AmountMinor::ZERO => r.billing,
        Some(r) => r.transaction,
    };
    let hold = state.hold(&hold_id);
    if let Some(hold) = hold {
        // A repeat (or an older, larger remaining amount) changes nothing.
        if hold.has(parts::RELEASE) && hold.remaining_cap() <= remaining {
            return Decision {
                repeat: true,
                ..acknowledged
            };
        }
        // The original was declined: acknowledge and do nothing.
        if hold.parts() == parts::DECLINE {
            return acknowledged;
        }
    }
    let Some(card) = state.card(&request.pan_hash) else {
        return acknowledged;
    };
    let account_index = card.account();
    let account = state.account(account_index);
    let released = hold.map_or(AmountMinor::ZERO, |h| {
        h.amount()
            .checked_sub(remaining)
            .filter(|a| !a.is_negative())
            .unwrap_or(AmountMinor::ZERO)
    });
    let mut event = build_event(
        config,
        request,
        now,
        EventParts {
            kind: AuthorizationKind::HoldReleased,
            response_code: ResponseCode::APPROVED,
            account_id: account.id().to_owned(),
            hold_id,
            hold_identity: identity,
            transmitted_at,
            amount_minor: released,
            currency: account.currency(),
        },
    );
    event.remaining_minor = Some(remaining);
    Decision {
        account: Some(account_index),
        event: Some(seal(event)),
        ..acknowledged
    }
}
