//! The dedup window: the last [`LedgerConfig::dedup_window_events`] event ids (default
//! 1,048,576, 32 MiB measured) are remembered; an event seen in the window is reported
//! [`Applied::Unchanged`] without work.
//!
//! The window is an optimisation and a report, not the guarantee: every rule of `apply` is
//! idempotent, so an event replayed after it left the window still changes nothing
//! (property-tested). The window is not part of the state hash nor of snapshots.
//!
//! Must never: forget a key among the last `capacity` ones, nor report a key it was not given;
//! be what makes a replay harmless; enter the state hash or a snapshot.
//!
//! [`Applied::Unchanged`]: super::Applied::Unchanged

use crate::types::EventKey;

use super::LedgerConfig;

/// The last `capacity` event keys, exactly: a ring of the keys in arrival order and an
/// open-addressing index over it (linear probing, backward-shift deletion, at most 3/4 full).
/// An index entry is 8 bytes: 39 bits of the key's hash (its home slot and a filter that spares
/// reading the ring on a mismatch) and the key's ring position + 1 (0: empty slot).
///
/// Memory: 16 bytes per key in the ring plus 8 bytes per index slot, the index growing by
/// doubling to at most the power of two at or above 4/3 of the capacity: 32 MiB for the
/// default 2^20 (measured by the ledger bench), 768 MiB for the maximum 2^24.
/// A lookup reads one index cache line (and the ring only for a probable match); an insert
/// also removes the oldest key when the ring is full (one more index probe).
#[derive(Debug)]
pub(super) struct DedupWindow {
    capacity: usize,
    ring: Vec<EventKey>,
    /// The ring position the next key goes to once the ring is full (the oldest key).
    oldest: usize,
    index: Vec<u64>,
}

impl DedupWindow {
    const POSITION_BITS: u32 = 25;
    const POSITION_MASK: u64 = (1 << Self::POSITION_BITS) - 1;

    pub(super) fn new(capacity: usize) -> DedupWindow {
        assert!(
            (1..=LedgerConfig::DEDUP_WINDOW_MAX).contains(&capacity),
            "dedup window {capacity} out of 1..=2^24"
        );
        const { assert!(LedgerConfig::DEDUP_WINDOW_MAX < 1 << DedupWindow::POSITION_BITS) };
        DedupWindow {
            capacity,
            ring: Vec::new(),
            oldest: 0,
            index: vec![0; 16],
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ring.len()
    }

    /// Starts loading the index slot where `key` would be found. A hint.
    pub(super) fn prefetch(&self, key: EventKey) {
        crate::table::prefetch(&self.index[Self::tag(key) as usize & self.mask()]);
    }

    /// The top 39 bits of the key's hash; its low bits give the home slot.
    fn tag(key: EventKey) -> u64 {
        key.hash64() >> Self::POSITION_BITS
    }

    fn mask(&self) -> usize {
        self.index.len() - 1
    }

    /// The slot holding `key`, or `Err` with the empty slot where the probe ended.
    pub(super) fn find(&self, key: EventKey) -> Result<usize, usize> {
        let tag = Self::tag(key);
        let mask = self.mask();
        let mut slot = tag as usize & mask;
        loop {
            let entry = self.index[slot];
            if entry == 0 {
                return Err(slot);
            }
            if entry >> Self::POSITION_BITS == tag {
                let position = (entry & Self::POSITION_MASK) as usize - 1;
                if self.ring[position] == key {
                    return Ok(slot);
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    #[cfg(test)]
    fn contains(&self, key: EventKey) -> bool {
        self.find(key).is_ok()
    }

    #[cfg(test)]
    fn insert(&mut self, key: EventKey) {
        if let Err(vacant) = self.find(key) {
            self.insert_absent(key, vacant);
        }
    }

    /// Adds a key that [`DedupWindow::find`] just reported absent, with the empty slot it gave
    /// (found again only when the index changes first: a removal or a growth).
    pub(super) fn insert_absent(&mut self, key: EventKey, vacant: usize) {
        debug_assert_eq!(self.find(key), Err(vacant));
        let mut moved = false;
        let position = if self.ring.len() < self.capacity {
            if (self.ring.len() + 1) * 4 > self.index.len() * 3 {
                self.grow();
                moved = true;
            }
            self.ring.push(key);
            self.ring.len() - 1
        } else {
            let position = self.oldest;
            self.remove(position);
            moved = true;
            self.ring[position] = key;
            self.oldest = (position + 1) % self.capacity;
            position
        };
        let slot = if moved {
            let Err(slot) = self.find(key) else {
                unreachable!("the key was absent and nothing else was added")
            };
            slot
        } else {
            vacant
        };
        assert!(self.index[slot] == 0);
        self.index[slot] = Self::tag(key) << Self::POSITION_BITS | (position as u64 + 1);
        assert!(self.ring.len() <= self.capacity);
    }

    /// Removes the index entry of ring position `position` (backward-shift deletion).
    fn remove(&mut self, position: usize) {
        let mask = self.mask();
        let target = position as u64 + 1;
        let mut hole = Self::tag(self.ring[position]) as usize & mask;
        while self.index[hole] & Self::POSITION_MASK != target {
            assert!(self.index[hole] != 0, "every ring key is indexed");
            hole = (hole + 1) & mask;
        }
        let mut next = (hole + 1) & mask;
        loop {
            let entry = self.index[next];
            if entry == 0 {
                break;
            }
            let home = (entry >> Self::POSITION_BITS) as usize & mask;
            // The entry may move back into the hole unless its home lies after the hole.
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.index[hole] = entry;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.index[hole] = 0;
    }

    /// Doubles the index and re-inserts every ring key (the ring is never full here).
    fn grow(&mut self) {
        self.index = vec![0; self.index.len() * 2];
        let mask = self.mask();
        for (position, key) in self.ring.iter().enumerate() {
            let tag = Self::tag(*key);
            let mut slot = tag as usize & mask;
            while self.index[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            self.index[slot] = tag << Self::POSITION_BITS | (position as u64 + 1);
        }
    }
}

#[cfg(test)]
mod dedup_window_tests {
    use std::collections::{HashSet, VecDeque};

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The window holds exactly the last `capacity` distinct keys, as a queue and a set would.
        #[test]
        fn the_window_is_the_last_capacity_keys(
            capacity in 1usize..40,
            keys in proptest::collection::vec(0u128..64, 0..400),
            wide in any::<bool>(),
        ) {
            // Wide keys: random high bits (UUID-like); narrow ones: short-id-like low values.
            let key = |k: u128| EventKey(if wide { k.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) } else { k });
            let mut window = DedupWindow::new(capacity);
            let mut order = VecDeque::new();
            let mut seen = HashSet::new();
            for k in keys {
                let k = key(k);
                prop_assert_eq!(window.contains(k), seen.contains(&k));
                window.insert(k);
                if seen.insert(k) {
                    order.push_back(k);
                    if order.len() > capacity {
                        let oldest = order.pop_front().unwrap();
                        seen.remove(&oldest);
                    }
                }
                prop_assert_eq!(window.len(), order.len());
                for probe in 0..64 {
                    prop_assert_eq!(window.contains(key(probe)), seen.contains(&key(probe)));
                }
            }
            prop_assert!(window.index.len() * 3 >= window.len() * 4);
        }
    }
}
