//! The structural invariants of a [`State`], checked (for tests, and after a snapshot restore).
//!
//! Must never: change the state (it takes `&self`), or run on the path of a decision or an
//! apply (it reads every record).

use crate::types::AccountIndex;

use super::{HeldCache, State, parts};

impl State {
    /// Checks every structural invariant; panics (loudly) on a broken one. For tests, and after
    /// a snapshot restore.
    pub fn assert_invariants(&self) {
        assert_eq!(self.accounts.len(), self.account_index.len());
        assert_eq!(
            self.placeholders,
            self.accounts.iter().filter(|a| a.is_placeholder()).count(),
            "placeholder count"
        );
        for (i, account) in self.accounts.iter().enumerate() {
            assert_eq!(
                self.find_account(account.id()),
                Some(AccountIndex(i as u32)),
                "every account is indexed by its id, once"
            );
        }
        for account in &self.accounts {
            if account.held.is_valid() {
                let exact = HeldCache::of(
                    account.held.as_of(),
                    self.hold_lists
                        .of(&account.holds)
                        .iter()
                        .map(|hold_id| &self.holds[hold_id]),
                );
                assert_eq!(
                    account.held.sum_minor,
                    exact.sum_minor,
                    "held cache sum of {}",
                    account.id()
                );
                assert!(
                    account.held.next_expiry <= exact.next_expiry,
                    "held cache of {} expires too late",
                    account.id()
                );
            }
        }
        let mut linked = 0usize;
        for (i, account) in self.accounts.iter().enumerate() {
            for hold_id in self.hold_lists.of(&account.holds) {
                let hold = self
                    .holds
                    .get(hold_id)
                    .expect("an account lists only existing holds");
                assert_eq!(hold.account.0 as usize, i);
            }
            linked += self.hold_lists.of(&account.holds).len();
            assert_eq!(
                self.hold_lists.count(&account.holds),
                self.hold_lists.of(&account.holds).len()
            );
        }
        assert_eq!(
            linked,
            self.holds.len(),
            "every hold is listed by exactly one account"
        );
        for (hold_id, hold) in &self.holds {
            assert!(
                hold.retain_until() > self.watermark,
                "a retired hold {hold_id} is still present"
            );
            assert_eq!(
                hold.cleared,
                self.cleared.contains_key(hold_id) || hold.cleared
            );
            assert!(hold.parts != 0 && hold.parts & !parts::ALL == 0);
        }
        for marker in self.cleared.values() {
            assert!(marker.retain_until > self.watermark);
        }
        for card in self.cards.values() {
            assert!((card.account.0 as usize) < self.accounts.len());
            assert!(usize::from(card.key_set) < self.key_sets.len());
        }
        for pan_hash in self.pending_atcs.keys() {
            assert!(
                self.cards.get(pan_hash).is_none(),
                "a pending ATC names an unknown card only"
            );
        }
    }
}
