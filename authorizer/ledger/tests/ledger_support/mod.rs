//! Event generators shared by the ledger, decide and snapshot property tests.
#![allow(dead_code)]

use ledger::{HoldId, Source};
use proptest::prelude::*;

/// 2026-11-01T00:00:00Z.
pub const T0: i64 = 1_793_491_200;
pub const DAY: i64 = 86_400;
pub const ACCOUNTS: usize = 3;
pub const HOLDS: usize = 8;

pub fn rfc3339(at: i64) -> String {
    ledger::UnixSeconds(at).to_string()
}

pub fn pan_hash_hex(card: usize) -> String {
    format!("{:02x}", card + 1).repeat(32)
}

pub fn hold_id(hold: usize) -> String {
    format!("h-{:032x}", 0xabc0 + hold)
}

/// Each hold belongs to one account and has one transmission time (as in real traffic).
pub fn hold_account(hold: usize) -> usize {
    hold % ACCOUNTS
}

pub fn hold_transmitted(hold: usize) -> i64 {
    // Some old enough to be retired by later authorizer events, some recent.
    T0 + [0, 3, 20, 60, 110][hold % 5] * DAY
}

/// One event as the log carries it.
#[derive(Clone)]
pub struct LogEvent {
    pub source: Source,
    pub account: usize,
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for LogEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} acc-{} {}",
            self.source,
            self.account,
            String::from_utf8_lossy(&self.payload)
        )
    }
}

#[derive(Clone, Debug)]
pub enum Spec {
    Account {
        version: u64,
        limit: i64,
        balance: i64,
        status: u8,
        cleared: Vec<usize>,
        at_days: i64,
    },
    Card {
        card: usize,
        version: u64,
        status: u8,
        account: usize,
    },
    Placed {
        hold: usize,
        amount: i64,
        at_days: i64,
    },
    Adjusted {
        hold: usize,
        amount: i64,
        approved: bool,
        at_days: i64,
    },
    Released {
        hold: usize,
        remaining: i64,
        at_days: i64,
    },
    Declined {
        hold: usize,
        code: u8,
        at_days: i64,
    },
}

pub fn spec() -> impl Strategy<Value = (Spec, usize, u8)> {
    let account = (
        1u64..6,
        0i64..20_000,
        -500i64..5_000,
        0u8..3,
        proptest::collection::vec(0usize..HOLDS, 0..3),
        0i64..40,
    )
        .prop_map(
            |(version, limit, balance, status, cleared, at_days)| Spec::Account {
                version,
                limit,
                balance,
                status,
                cleared,
                at_days,
            },
        );
    let card = (0usize..4, 1u64..4, 0u8..5, 0usize..ACCOUNTS).prop_map(
        |(card, version, status, account)| Spec::Card {
            card,
            version,
            status,
            account,
        },
    );
    let placed =
        (0usize..HOLDS, 0i64..5_000, 0i64..80).prop_map(|(hold, amount, at_days)| Spec::Placed {
            hold,
            amount,
            at_days,
        });
    let adjusted = (0usize..HOLDS, 0i64..5_000, any::<bool>(), 0i64..80).prop_map(
        |(hold, amount, approved, at_days)| Spec::Adjusted {
            hold,
            amount,
            approved,
            at_days,
        },
    );
    let released = (0usize..HOLDS, 0i64..3_000, 0i64..80).prop_map(|(hold, remaining, at_days)| {
        Spec::Released {
            hold,
            remaining,
            at_days,
        }
    });
    let declined =
        (0usize..HOLDS, 0u8..3, 0i64..80).prop_map(|(hold, code, at_days)| Spec::Declined {
            hold,
            code,
            at_days,
        });
    // (spec, which account owns an account/card event, a salt for the event id)
    (
        prop_oneof![2 => account, 1 => card, 3 => placed, 1 => adjusted, 2 => released, 1 => declined],
        0usize..ACCOUNTS,
        any::<u8>(),
    )
}

/// Renders a spec as the JSON of its topic. `account_for` is the account of account events.
pub fn render(spec: &Spec, account_for: usize, salt: u8, index: usize) -> LogEvent {
    let event_id = format!("ev-{index}-{salt}");
    match spec {
        Spec::Account {
            version,
            limit,
            balance,
            status,
            cleared,
            at_days,
        } => {
            // Postings come after the holds they clear (the documented assumption).
            let at = T0 + (59 + at_days) * DAY;
            let cleared: Vec<String> = cleared
                .iter()
                .filter(|h| hold_transmitted(**h) <= at + DAY)
                .map(|h| format!("\"{}\"", hold_id(*h)))
                .collect();
            let status = ["open", "frozen", "closed"][*status as usize];
            LogEvent {
                source: Source::AccountUpdates,
                account: account_for,
                payload: format!(
                    r#"{{"schema":1,"type":"account.upserted","event_id":"{event_id}","at":"{}","account_id":"acc-{account_for}","version":{version},"status":"{status}","currency":"986","credit_limit":{limit},"posted_balance":{balance},"cleared_holds":[{}]}}"#,
                    rfc3339(at),
                    cleared.join(",")
                )
                .into_bytes(),
            }
        }
        Spec::Card {
            card,
            version,
            status,
            account,
        } => {
            let status = ["active", "blocked", "lost", "stolen", "closed"][*status as usize];
            LogEvent {
                source: Source::AccountUpdates,
                account: *account,
                payload: format!(
                    r#"{{"schema":1,"type":"card.upserted","event_id":"{event_id}","at":"{}","account_id":"acc-{account}","card_id":"card-{card}","version":{version},"pan_hash":"{}","pan_last4":"0010","expiry":"2811","psn":"01","status":"{status}","key_set":"ks-{}"}}"#,
                    rfc3339(T0),
                    pan_hash_hex(*card),
                    version % 2
                )
                .into_bytes(),
            }
        }
        Spec::Placed {
            hold,
            amount,
            at_days,
        } => hold_event(
            // A hold expires from its decision (`at`), never from its DE 7.
            *hold,
            "hold.placed",
            *at_days,
            &event_id,
            *amount,
            &format!(
                r#","approval_code":"ABC123","expires_at":"{}""#,
                rfc3339(hold_transmitted(*hold) + (*at_days + 7) * DAY)
            ),
        ),
        Spec::Adjusted {
            hold,
            amount,
            approved,
            at_days,
        } => hold_event(
            *hold,
            "hold.adjusted",
            *at_days,
            &event_id,
            if *approved { *amount } else { 0 },
            &format!(
                r#","network_response_code":"{}","expires_at":"{}""#,
                if *approved { "00" } else { "05" },
                rfc3339(hold_transmitted(*hold) + (*at_days + 31) * DAY)
            ),
        ),
        Spec::Released {
            hold,
            remaining,
            at_days,
        } => hold_event(
            *hold,
            "hold.released",
            *at_days,
            &event_id,
            0,
            &format!(r#","remaining_minor":{remaining}"#),
        ),
        Spec::Declined {
            hold,
            code,
            at_days,
        } => {
            let code = ["51", "05", "14"][*code as usize];
            let text = String::from_utf8(
                hold_event(*hold, "authorization.declined", *at_days, &event_id, 10, "").payload,
            )
            .unwrap();
            LogEvent {
                source: Source::Authorizations,
                account: hold_account(*hold),
                payload: text
                    .replace(
                        r#""response_code":"00""#,
                        &format!(r#""response_code":"{code}""#),
                    )
                    .into_bytes(),
            }
        }
    }
}

fn hold_event(
    hold: usize,
    kind: &str,
    at_days: i64,
    event_id: &str,
    amount: i64,
    extra: &str,
) -> LogEvent {
    let transmitted = hold_transmitted(hold);
    let at = transmitted + at_days * DAY;
    let account = hold_account(hold);
    LogEvent {
        source: Source::Authorizations,
        account,
        payload: format!(
            r#"{{"schema":1,"type":"{kind}","event_id":"{event_id}","at":"{}","instance":"auth-a","account_id":"acc-{account}","hold_id":"{}","response_code":"00","amount_minor":{amount},"currency":"986"{extra},"trace":{{"mti":"0100","pan_masked":"541333******0010","transmission_date_time":"1101000000","transmitted_at":"{}","stan":"{:06}","acquirer_id":"12345","forwarder_id":"0"}}}}"#,
            rfc3339(at),
            hold_id(hold),
            rfc3339(transmitted),
            hold
        )
        .into_bytes(),
    }
}

pub fn events() -> impl Strategy<Value = Vec<LogEvent>> {
    proptest::collection::vec(spec(), 1..60).prop_map(|specs| {
        specs
            .iter()
            .enumerate()
            .map(|(i, (spec, account, salt))| render(spec, *account, *salt, i))
            .collect()
    })
}

/// Interleaves `events` differently, keeping the order of each (topic, account) queue, as two
/// replicas reading the same partitions at different speeds would.
pub fn interleave(events: &[LogEvent], choices: &[u16]) -> Vec<LogEvent> {
    let mut queues: Vec<std::collections::VecDeque<LogEvent>> = Vec::new();
    let mut keys: Vec<(Source, usize)> = Vec::new();
    for e in events {
        let key = (e.source, e.account);
        match keys.iter().position(|k| *k == key) {
            Some(i) => queues[i].push_back(e.clone()),
            None => {
                keys.push(key);
                queues.push(std::collections::VecDeque::from([e.clone()]));
            }
        }
    }
    let mut out = Vec::with_capacity(events.len());
    let mut step = 0usize;
    while out.len() < events.len() {
        let live: Vec<usize> = (0..queues.len())
            .filter(|i| !queues[*i].is_empty())
            .collect();
        let pick = live[usize::from(choices.get(step).copied().unwrap_or(0)) % live.len()];
        out.push(queues[pick].pop_front().unwrap());
        step += 1;
    }
    out
}

pub fn parse_hold(text: &str) -> HoldId {
    HoldId::parse(text).unwrap()
}
