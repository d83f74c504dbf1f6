//! The state's clock: the watermark, and the votes it is read from.
//!
//! The watermark retires records (a hold record at `transmitted_at + HOLD_RETENTION_S`, a cleared
//! marker at its posting's `at + CLEARED_RETENTION_S`). It must be a function of the *set* of
//! events applied, so that replicas that applied the same events in other orders agree; and no
//! single event may drag it, because a watermark dragged decades ahead would retire every live
//! hold (its money could then be approved again) and drop every later hold as "past retention".
//!
//! The rule: every authorizer event casts one vote, `min(at, trace.transmitted_at + 1 day)` (an
//! authorizer's clock can only push it one day past the network's DE 7), keyed by its hold id
//! and kind. The watermark is the [`WATERMARK_QUORUM`]-th largest distinct vote, or 0 until there
//! are that many. So it takes that many distinct events dated ahead to move it: one forged or
//! corrupt event, or a few, move nothing. The largest votes are kept (and written into
//! snapshots, and covered by the state hash), so the rule stays the same after a restore.
//!
//! Must never: move the watermark back (the k-th largest of a growing set never decreases),
//! depend on the order of the votes, or count one event twice (a vote is a set member).

use crate::types::{HoldId, UnixSeconds};

/// How many distinct authorizer events it takes to move the watermark.
pub const WATERMARK_QUORUM: usize = 3;

/// One authorizer event's vote for the watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WatermarkVote {
    /// `min(at, trace.transmitted_at + 1 day)` of the event.
    pub at: UnixSeconds,
    pub hold_id: HoldId,
    /// The event's kind (1 placed, 2 adjusted, 3 released, 4 declined).
    pub kind: u8,
}

/// The [`WATERMARK_QUORUM`] largest distinct votes, largest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatermarkVotes {
    largest: Vec<WatermarkVote>,
}

impl WatermarkVotes {
    /// From votes read back (a snapshot header): at most [`WATERMARK_QUORUM`], distinct, largest
    /// first. `None` otherwise.
    pub fn from_largest(largest: Vec<WatermarkVote>) -> Option<WatermarkVotes> {
        let ordered = largest.windows(2).all(|w| w[0] > w[1]);
        (largest.len() <= WATERMARK_QUORUM && ordered).then_some(WatermarkVotes { largest })
    }

    /// Counts a vote; `true` if the kept votes changed.
    pub fn add(&mut self, vote: WatermarkVote) -> bool {
        match self.largest.binary_search_by(|kept| vote.cmp(kept)) {
            Ok(_) => false,
            Err(position) if position >= WATERMARK_QUORUM => false,
            Err(position) => {
                self.largest.insert(position, vote);
                self.largest.truncate(WATERMARK_QUORUM);
                true
            }
        }
    }

    /// The watermark these votes give: the smallest kept vote once there are
    /// [`WATERMARK_QUORUM`] of them, else 0.
    pub fn watermark(&self) -> UnixSeconds {
        if self.largest.len() == WATERMARK_QUORUM {
            self.largest[WATERMARK_QUORUM - 1].at
        } else {
            UnixSeconds(0)
        }
    }

    /// The kept votes, largest first.
    pub fn largest(&self) -> &[WatermarkVote] {
        &self.largest
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn vote(at: i64, id: u8) -> WatermarkVote {
        WatermarkVote {
            at: UnixSeconds(at),
            hold_id: HoldId([id; 16]),
            kind: 1,
        }
    }

    #[test]
    fn one_far_vote_moves_nothing_and_the_quorum_does() {
        let mut votes = WatermarkVotes::default();
        assert!(votes.add(vote(100, 1)));
        assert!(votes.add(vote(4_000_000_000, 2)));
        assert_eq!(votes.watermark(), UnixSeconds(0));
        assert!(votes.add(vote(200, 3)));
        assert_eq!(votes.watermark(), UnixSeconds(100));
        assert!(!votes.add(vote(200, 3)), "a vote counts once");
        assert!(!votes.add(vote(50, 4)), "below the kept ones");
        assert!(votes.add(vote(300, 5)));
        assert_eq!(votes.watermark(), UnixSeconds(200));
    }

    proptest! {
        #[test]
        fn the_watermark_is_the_quorum_th_largest_distinct_vote_in_any_order(
            raw in proptest::collection::vec((0i64..50, 0u8..20), 0..40),
            seed in any::<u64>(),
        ) {
            let all: Vec<WatermarkVote> = raw.iter().map(|&(at, id)| vote(at, id)).collect();
            let mut shuffled = all.clone();
            // A deterministic shuffle from the seed.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut a = WatermarkVotes::default();
            let mut b = WatermarkVotes::default();
            let mut last = UnixSeconds(0);
            for v in &all {
                a.add(*v);
                prop_assert!(a.watermark() >= last, "never moves back");
                last = a.watermark();
            }
            for v in &shuffled {
                b.add(*v);
            }
            prop_assert_eq!(&a, &b);
            let mut distinct = all.clone();
            distinct.sort_unstable_by(|x, y| y.cmp(x));
            distinct.dedup();
            let expected = distinct.get(WATERMARK_QUORUM - 1).map_or(UnixSeconds(0), |v| v.at);
            prop_assert_eq!(a.watermark(), expected);
            prop_assert_eq!(
                WatermarkVotes::from_largest(a.largest().to_vec()),
                Some(a.clone())
            );
        }
    }
}
