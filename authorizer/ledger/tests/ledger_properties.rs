//! Property tests of the ledger: convergence and idempotency.

#[path = "ledger_support/mod.rs"]
mod support;

use ledger::{LedgerConfig, State};
use proptest::prelude::*;
use support::{LogEvent, events, interleave};

fn apply_all(state: &mut State, events: &[LogEvent]) {
    for e in events {
        state
            .apply_json(e.source, &e.payload)
            .expect("generated events are valid");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The same events in any interleaving consistent with per-account order within each topic
    /// give the same state hash (and the same open-to-buy everywhere).
    #[test]
    fn convergence(events in events(), a in proptest::collection::vec(any::<u16>(), 60), b in proptest::collection::vec(any::<u16>(), 60)) {
        let mut one = State::new(LedgerConfig::default());
        apply_all(&mut one, &interleave(&events, &a));
        let mut two = State::new(LedgerConfig::default());
        apply_all(&mut two, &interleave(&events, &b));
        one.assert_invariants();
        two.assert_invariants();
        prop_assert_eq!(one.state_hash(), two.state_hash());
        // Accounts, cards, holds and cleared markers converge; placeholders, key-set names and
        // the dedup window are replica-local (documented on `Counts`).
        let (x, y) = (one.counts(), two.counts());
        prop_assert_eq!((x.accounts, x.cards, x.holds, x.cleared_markers), (y.accounts, y.cards, y.holds, y.cleared_markers));
        for account in 0..support::ACCOUNTS {
            let id = format!("acc-{account}");
            if let (Some(x), Some(y)) = (one.account_by_id(&id), two.account_by_id(&id)) {
                for day in [0, 5, 15, 40, 90] {
                    let now = ledger::UnixSeconds(support::T0 + day * support::DAY);
                    prop_assert_eq!(one.open_to_buy(x, now), two.open_to_buy(y, now));
                }
            }
        }
    }

    /// Each account's held cache (the sum of its holds that open-to-buy reads instead of the
    /// holds) agrees with the holds after every event: `assert_invariants` recomputes it, and
    /// `open_to_buy` compares it with the holds (debug builds) at times before, inside and after
    /// the holds' lives.
    #[test]
    fn held_cache_follows_every_event(events in events()) {
        let mut state = State::new(LedgerConfig::default());
        for e in &events {
            state.apply_json(e.source, &e.payload).expect("generated events are valid");
            state.assert_invariants();
            for account in 0..support::ACCOUNTS {
                if let Some(index) = state.account_by_id(&format!("acc-{account}")) {
                    for day in [-1, 0, 1, 5, 8, 15, 32, 40, 90] {
                        let now = ledger::UnixSeconds(support::T0 + day * support::DAY);
                        let _ = state.open_to_buy(index, now);
                    }
                }
            }
        }
    }

    /// Applying any event twice, even after it left the dedup window, changes nothing the second
    /// time.
    #[test]
    fn idempotency(events in events(), repeats in proptest::collection::vec(any::<prop::sample::Index>(), 1..20)) {
        let mut reference = State::new(LedgerConfig::default());
        apply_all(&mut reference, &events);
        let hash = reference.state_hash();
        // Repeats through the dedup window.
        for index in &repeats {
            let e = index.get(&events);
            prop_assert_eq!(reference.apply_json(e.source, &e.payload), Ok(ledger::Applied::Unchanged));
        }
        prop_assert_eq!(reference.state_hash(), hash);
        // With a window of one event, repeats are applied again and must still change nothing.
        let mut tiny = State::new(LedgerConfig { dedup_window_events: 1 });
        apply_all(&mut tiny, &events);
        prop_assert_eq!(tiny.state_hash(), hash);
        for index in &repeats {
            let e = index.get(&events);
            tiny.apply_json(e.source, &e.payload).unwrap();
            tiny.apply_json(support::LogEvent::clone(e).source, &e.payload).unwrap();
        }
        prop_assert_eq!(tiny.state_hash(), hash);
        // The same content under another event id (a second replica's copy) changes nothing.
        let mut copies = State::new(LedgerConfig::default());
        apply_all(&mut copies, &events);
        for e in &events {
            let text = String::from_utf8(e.payload.clone()).unwrap().replacen("\"ev-", "\"copy-", 1);
            copies.apply_json(e.source, text.as_bytes()).unwrap();
        }
        prop_assert_eq!(copies.state_hash(), hash);
    }
}
