//! The rules of each flow (`docs/network.md`, section "Decision rules", normative): what to answer
//! and which event to publish:
//! * authorization (0100/0101), checks in order, the first that fails decides: DE 7 further
//!   than the skew from `now` 30 (DE 44 = 007), duplicate (the first answer again, byte for
//!   byte in DE 38 and DE 39; the same identity with other content, DE 3, DE 4, DE 49, DE 6 or
//!   DE 51, 94, nothing held), unknown card 14, already reversed 05, card lost 41 / stolen 43 /
//!   blocked 62 / closed 14, expired 54, ARQC present but not verified 05 (configurable), a
//!   verified ARQC's chip data that disagrees with the request 05, its ATC not above the card's
//!   highest 05 (`atc_replay`), account frozen 62 / closed 14 / not yet known 05, currency 05,
//!   too many live holds with money on the account 05, open-to-buy 51, otherwise 00 with a
//!   DE 38 derived from the hold id; a hold expires from `now`, never from DE 7;
//! * advice (0120/0121): never declined, answered 00; DE 39 of the advice 00 holds the amount
//!   (even beyond open-to-buy), any other code holds nothing;
//! * reversal (0400/0401/0420/0421): answered 00; releases the hold found through DE 90 down to
//!   the amount that *remains* (DE 95 billing when non-zero, else transaction; none or zeros:
//!   full release); an unknown original is recorded so that a late original is released.
//!
//! Must never: approve beyond open-to-buy; decline an advice; read a clock (time is `now`);
//! mutate the state (the caller publishes and applies [`Decision::event`]).

use super::event::{EventParts, build_event, seal};
use super::{ArpcInput, ChipData, Cryptogram, DecideConfig, Decision, Facts, Request};
use crate::state::parts;
use crate::time::transmission_instant;
use crate::{
    AccountStatus, AmountMinor, ApprovalCode, AuthorizationKind, CardAtc, CardStatus, Currency,
    DeclineReason, HoldId, ResponseCode, State, Unconverted, UnixSeconds,
};

/// A hold counts from the moment it is decided (`now`), for the merchant category's duration:
/// never from a time the request carries (DE 7 is the network's, and a stale one would give a
/// hold that has already expired).
fn hold_expiry(config: &DecideConfig, request: &Request<'_>, now: UnixSeconds) -> UnixSeconds {
    UnixSeconds(now.0 + config.hold_duration_s(request.merchant_category))
}

pub(super) fn decide_authorization<'a>(
    state: &State,
    request: &Request<'a>,
    (hold_id, fingerprint): (HoldId, u64),
    facts: &Facts,
    config: &'a DecideConfig,
    now: UnixSeconds,
) -> Decision<'a> {
    let Some(transmitted_at) = transmission_instant(request.transmission.0, now) else {
        return format_error(7);
    };
    // A DE 7 far from the clock is a field in error: a stale one would name a hold that has
    // already stopped counting, and the same money could be approved again with a new STAN.
    if (transmitted_at.0 - now.0).abs() > config.transmission_skew_s {
        return format_error(7);
    }
    let identity = request.identity();

    // Duplicate: the first answer again, and no state change. An identity seen before with
    // other content (DE 3, DE 4, DE 49, DE 6, DE 51: the fingerprint) is not a repeat: 94,
    // nothing held, whether the first was approved or declined.
    let existing = state.hold(&hold_id);
    if let Some(hold) = existing {
        let decided = hold.has(parts::AUTH) || hold.has(parts::DECLINE);
        let same_content = match hold.fingerprint() {
            Some(first) => first == fingerprint,
            // Recorded from an older authorizer's event, which carried no fingerprint: what
            // can still be compared is the amount an approval holds.
            None if hold.has(parts::AUTH) => {
                let currency = state.account(hold.account()).currency();
                amount_in_account_currency(request, currency) == Some(hold.auth_amount())
            }
            None => true,
        };
        if decided && !same_content {
            return answer(ResponseCode::DUPLICATE_TRANSMISSION, Some(hold_id));
        }
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
    // The ATC of a verified ARQC: the card computed it, so every event of this request carries
    // it and every replica raises the card's highest ATC to it. An unverified one proves
    // nothing and is not kept (a forged counter must not lock the real card out).
    let card_atc = match (facts.cryptogram, &request.chip) {
        (Cryptogram::Verified, Some(ChipData { atc: Some(atc), .. })) => Some(CardAtc {
            pan_hash: request.pan_hash,
            atc: *atc,
        }),
        _ => None,
    };

    let decline_why = |code: ResponseCode,
                       amount: AmountMinor,
                       currency: Currency,
                       reason: Option<DeclineReason>|
     -> Decision<'a> {
        let mut event = build_event(
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
        event.content_fingerprint = Some(fingerprint);
        event.card_atc = card_atc;
        event.decline_reason = reason;
        let decision = Decision {
            account: Some(account_index),
            event: Some(seal(event)),
            reason,
            ..answer(code, Some(hold_id))
        };
        if facts.cryptogram == Cryptogram::NotVerified {
            decision
        } else {
            with_arpc(decision, facts)
        }
    };
    let decline = |code: ResponseCode, amount: AmountMinor, currency: Currency| {
        decline_why(code, amount, currency, None)
    };
    let requested = (request.amount_transaction, request.currency_transaction);

    // The network has already reversed this identity (the reversal arrived first): decline it,
    // so that the answer never says "approved" for a hold that the reversal releases at once.
    if existing.is_some_and(|h| h.has(parts::RELEASE)) {
        return decline(ResponseCode::DO_NOT_HONOR, requested.0, requested.1);
    }

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

    // A verified cryptogram binds what it covers: the chip's amount, currency and date must
    // be the request's, or a recorded ARQC could be replayed for another amount.
    if facts.cryptogram == Cryptogram::Verified
        && let Some(chip) = &request.chip
        && !chip_agrees(chip, request, transmitted_at, config)
    {
        return decline(ResponseCode::DO_NOT_HONOR, requested.0, requested.1);
    }

    // A verified ARQC whose ATC the card has already used (on any replica): a replayed
    // cryptogram or a cloned card.
    if let Some(CardAtc { atc, .. }) = card_atc
        && card.atc().is_some_and(|highest| atc <= highest)
    {
        return decline_why(
            ResponseCode::DO_NOT_HONOR,
            requested.0,
            requested.1,
            Some(DeclineReason::AtcReplay),
        );
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

    if state.live_holds_reach(account_index, now, config.holds_per_account_max) {
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
    event.expires_at = Some(hold_expiry(config, request, now));
    event.content_fingerprint = Some(fingerprint);
    event.card_atc = card_atc;
    let decision = Decision {
        approval_code: Some(approval_code),
        account: Some(account_index),
        event: Some(seal(event)),
        ..answer(ResponseCode::APPROVED, Some(hold_id))
    };
    with_arpc(decision, facts)
}

pub(super) fn decide_advice<'a>(
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
    // An approved advice in no currency of the account holds nothing (there is no rate here),
    // and its event says what the network approved, for the cloud to book: never a silent 0.
    let (amount, unconverted) = if network_code.is_approved() {
        match amount_in_account_currency(request, account.currency()) {
            Some(amount) => (amount, None),
            None => (
                AmountMinor::ZERO,
                Some(Unconverted {
                    amount_minor: request.amount_billing.unwrap_or(request.amount_transaction),
                    currency: request
                        .currency_billing
                        .unwrap_or(request.currency_transaction),
                }),
            ),
        }
    } else {
        (AmountMinor::ZERO, None)
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
    event.unconverted = unconverted;
    event.expires_at = Some(hold_expiry(config, request, now));
    Decision {
        account: Some(account_index),
        event: Some(seal(event)),
        ..acknowledged
    }
}

pub(super) fn decide_reversal<'a>(
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
    let hold = state.hold(&hold_id);
    // The currency the hold was taken in: its account's (the hold's, else the card's).
    let currency = match hold {
        Some(hold) => Some(state.account(hold.account()).currency()),
        None => state
            .card(&request.pan_hash)
            .map(|card| state.account(card.account()).currency()),
    };
    let remaining = currency.map_or(AmountMinor::ZERO, |c| remaining_in(request, c));
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

pub(super) fn format_error(field: u8) -> Decision<'static> {
    Decision {
        response_code: ResponseCode::FORMAT_ERROR,
        approval_code: None,
        field_in_error: Some(field),
        hold_id: None,
        account: None,
        event: None,
        arpc: None,
        repeat: false,
        reason: None,
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
        reason: None,
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

/// Whether the chip data a verified ARQC covers agrees with the request: 9F02 with DE 4 (unless
/// the merchant category is configured as one whose amounts may differ), 5F2A with DE 49, and
/// 9A within a day of the transmission date. A tag the chip data lacks is not compared (the
/// cryptogram could not have verified without the ones its profile covers).
fn chip_agrees(
    chip: &ChipData,
    request: &Request<'_>,
    transmitted_at: UnixSeconds,
    config: &DecideConfig,
) -> bool {
    let amount_may_differ = request.merchant_category.is_some_and(|mcc| {
        config
            .chip_amount_may_differ
            .iter()
            .any(|r| (r.from..=r.to).contains(&mcc))
    });
    let amount_agrees =
        amount_may_differ || chip.amount.is_none_or(|a| a == request.amount_transaction);
    let currency_agrees = chip
        .currency
        .is_none_or(|c| c == request.currency_transaction);
    let date_agrees = chip.date.is_none_or(|(yy, mm, dd)| {
        crate::time::from_civil(2000 + i64::from(yy), u32::from(mm), u32::from(dd), 12, 0, 0)
            .is_some_and(|noon| (noon.0 - transmitted_at.0).abs() <= 36 * 3600)
    });
    amount_agrees && currency_agrees && date_agrees
}

/// What DE 95 says remains held, in the currency the hold was taken in (`currency`, the
/// account's): subfield 3 (billing) when it is not zero, else subfield 1 (transaction), each
/// only if it is in that currency (billing: DE 51, or DE 49 when the reversal has no DE 51;
/// transaction: DE 49). A DE 95 amount in another currency is ignored and the hold released in
/// full: it never releases more than was held. No DE 95, or zeros: full release.
fn remaining_in(request: &Request<'_>, currency: Currency) -> AmountMinor {
    let Some(replacement) = request.replacement else {
        return AmountMinor::ZERO;
    };
    let (amount, amount_currency) = if replacement.billing != AmountMinor::ZERO {
        (
            replacement.billing,
            request
                .currency_billing
                .unwrap_or(request.currency_transaction),
        )
    } else {
        (replacement.transaction, request.currency_transaction)
    };
    if amount_currency == currency {
        amount
    } else {
        AmountMinor::ZERO
    }
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
