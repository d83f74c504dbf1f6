//! [`KeyTable`]: the map behind the ledger's cards (by PAN hash) and holds (by hold id), built so
//! that the ledger thread can *prefetch* the records of the requests it will decide next.
//!
//! Why not `hashbrown`: the keys are already uniformly distributed bytes (a keyed hash of the PAN,
//! a SHA-256-derived hold id), so the slot of a key is known from its bytes alone, and
//! `hashbrown` gives no way to ask "where would this key be?" without doing the lookup, which on a
//! table of millions of cards waits for main memory (~100–200 ns, twice with the TLB miss). The
//! ledger thread decides requests one after the other, and each decision waits on three such
//! misses (card, account, hold); knowing the addresses lets it start the loads for the next few
//! requests while it decides this one ([`KeyTable::prefetch_slot`], [`KeyTable::prefetch_entry`]).
//!
//! Layout: the entries `(key, value)` are stored densely in a `Vec` (no empty buckets, 64 bytes per
//! card and per hold); an index of `u64` slots, open addressing with linear probing at a load of at
//! most 5/8, holds 32 bits of the key (its home slot and a tag) and the entry's position.
//! A lookup reads one index cache line (and rarely a second) and then the entry. Removal moves the
//! last entry into the hole (`swap_remove`) and shifts the index back (no tombstones), so the
//! table never degrades.
//!
//! Big tables ask for transparent huge pages (`advise_huge_pages`).
//!
//! Must never: depend on a random seed (iteration order is a pure function of the operations
//! applied, like everything in the ledger); read a key's bytes as anything but its own. Keys chosen
//! to collide (32 equal bits) make probes long, as identical hashes do in any hash map: the cloud
//! and the authorizers, who choose the keys, are trusted producers of the log.

use std::fmt;

/// A key whose bytes are uniformly distributed (a cryptographic hash or derived from one).
pub trait UniformKey: Copy + Eq {
    /// 32 uniformly distributed bits of the key.
    fn bits(&self) -> u32;
}

impl UniformKey for super::types::PanHash {
    fn bits(&self) -> u32 {
        u32::from_le_bytes(self.0[..4].try_into().expect("4 bytes"))
    }
}

impl UniformKey for super::types::HoldId {
    fn bits(&self) -> u32 {
        u32::from_le_bytes(self.0[..4].try_into().expect("4 bytes"))
    }
}

/// An index slot: `bits << 32 | (position + 1)`; `0` is empty.
type Slot = u64;

const EMPTY: Slot = 0;
const SLOTS_MIN: usize = 16;
/// Positions are stored in 32 bits (minus the empty marker); the index has at most 2^32 slots.
const ENTRIES_MAX: usize = (u32::MAX - 1) as usize;

fn slot_bits(slot: Slot) -> u32 {
    (slot >> 32) as u32
}

fn slot_position(slot: Slot) -> usize {
    (slot as u32 - 1) as usize
}

fn make_slot(bits: u32, position: usize) -> Slot {
    debug_assert!(position < ENTRIES_MAX);
    (u64::from(bits) << 32) | (position as u64 + 1)
}

/// A map from [`UniformKey`] to `V`; see the module documentation.
#[derive(Clone)]
pub struct KeyTable<K, V> {
    entries: Vec<(K, V)>,
    /// Power-of-two length (or empty); at most 5/8 full.
    slots: Vec<Slot>,
}

impl<K: UniformKey, V> Default for KeyTable<K, V> {
    fn default() -> Self {
        KeyTable::new()
    }
}

impl<K: UniformKey + fmt::Debug, V: fmt::Debug> fmt::Debug for KeyTable<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: UniformKey, V> KeyTable<K, V> {
    pub fn new() -> KeyTable<K, V> {
        KeyTable {
            entries: Vec::new(),
            slots: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Makes room for `additional` more entries without growing again.
    pub fn reserve(&mut self, additional: usize) {
        let wanted = self.entries.len().saturating_add(additional);
        let capacity = self.entries.capacity();
        self.entries
            .reserve_exact(wanted.saturating_sub(self.entries.len()));
        if self.entries.capacity() != capacity {
            advise_huge_pages(&self.entries);
        }
        if !Self::fits(wanted, self.slots.len()) {
            self.rebuild_index(wanted);
        }
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    fn home(&self, bits: u32) -> usize {
        bits as usize & self.mask()
    }

    /// The index slot holding `key`, and the entry's position.
    fn find(&self, key: &K) -> Option<(usize, usize)> {
        if self.slots.is_empty() {
            return None;
        }
        let bits = key.bits();
        let mask = self.mask();
        let mut i = bits as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                return None;
            }
            if slot_bits(slot) == bits {
                let position = slot_position(slot);
                if self.entries[position].0 == *key {
                    return Some((i, position));
                }
            }
            i = (i + 1) & mask;
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.find(key)
            .map(|(_, position)| &self.entries[position].1)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.find(key)
            .map(|(_, position)| &mut self.entries[position].1)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_some()
    }

    /// Inserts or replaces; returns the value replaced.
    ///
    /// # Panics
    /// With more than 2^32 − 2 entries (the ledger bounds its tables far below that).
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some((_, position)) = self.find(&key) {
            return Some(std::mem::replace(&mut self.entries[position].1, value));
        }
        assert!(self.entries.len() < ENTRIES_MAX, "KeyTable is full");
        if !Self::fits(self.entries.len() + 1, self.slots.len()) {
            // Twice the slots.
            self.resize_index(self.slots.len().saturating_mul(2));
        }
        let position = self.entries.len();
        let capacity = self.entries.capacity();
        self.entries.push((key, value));
        if self.entries.capacity() != capacity {
            advise_huge_pages(&self.entries);
        }
        self.place(key.bits(), position);
        None
    }

    /// Puts `position` in the first empty slot of `bits`'s probe sequence.
    fn place(&mut self, bits: u32, position: usize) {
        let mask = self.mask();
        let mut i = bits as usize & mask;
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = make_slot(bits, position);
    }

    /// Whether an index of `slots` slots holds `entries` entries at a load of at most 5/8
    /// (linear probing stays short: at most about 1.8 slots read on average for a key that is
    /// there, 4 for one that is not, 8 slots to a cache line; 3/4 measured slower on inserts).
    fn fits(entries: usize, slots: usize) -> bool {
        entries.saturating_mul(8) <= slots.saturating_mul(5)
    }

    /// A new index with room for `entries` entries at a load of at most 5/8.
    fn rebuild_index(&mut self, entries: usize) {
        let entries = entries.max(self.entries.len());
        self.resize_index(entries.saturating_mul(8).div_ceil(5));
    }

    /// A new index of at least `slots` slots (a power of two), when that is more than now.
    fn resize_index(&mut self, slots: usize) {
        let wanted = slots.max(SLOTS_MIN).next_power_of_two();
        if wanted <= self.slots.len() {
            return;
        }
        assert!(wanted <= 1 << 32, "KeyTable index over 2^32 slots");
        self.slots = vec![EMPTY; wanted];
        advise_huge_pages(&self.slots);
        for position in 0..self.entries.len() {
            let bits = self.entries[position].0.bits();
            self.place(bits, position);
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (slot_index, position) = self.find(key)?;
        self.vacate(slot_index);
        let last = self.entries.len() - 1;
        if position != last {
            // The last entry moves into the hole: repoint its slot.
            let moved_bits = self.entries[last].0.bits();
            let mask = self.mask();
            let mut i = self.home(moved_bits);
            let wanted = make_slot(moved_bits, last);
            while self.slots[i] != wanted {
                debug_assert!(self.slots[i] != EMPTY, "every entry has its slot");
                i = (i + 1) & mask;
            }
            self.slots[i] = make_slot(moved_bits, position);
        }
        Some(self.entries.swap_remove(position).1)
    }

    /// Empties slot `hole` and shifts back the slots after it that probed past it (no
    /// tombstones: the index stays as if the removed key had never been inserted).
    fn vacate(&mut self, mut hole: usize) {
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let slot = self.slots[j];
            if slot == EMPTY {
                break;
            }
            let home = self.home(slot_bits(slot));
            // The slot may fill the hole when its home is not in the cyclic range (hole, j].
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.slots[hole] = slot;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
    }

    /// Entries in storage order (a pure function of the operations applied).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Starts loading the index cache line where `key` would be. A hint: never changes anything.
    pub fn prefetch_slot(&self, key: &K) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[self.home(key.bits())]);
        }
    }

    /// Starts loading the entry of `key`, found through the index (call
    /// [`KeyTable::prefetch_slot`] some time before, so that this does not wait). A hint.
    pub fn prefetch_entry(&self, key: &K) {
        if self.slots.is_empty() {
            return;
        }
        let bits = key.bits();
        let mask = self.mask();
        let mut i = bits as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                return;
            }
            if slot_bits(slot) == bits {
                prefetch(&self.entries[slot_position(slot)]);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Length of the index: a key's home slot is `key.bits() & (index_slots() - 1)` (a power
    /// of two, or 0 before the first insert or reserve). For inserting many keys in the order of
    /// their home slots, which keeps the writes close together.
    pub fn index_slots(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of heap this table holds (capacity, not length).
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(K, V)>()
            + self.slots.capacity() * std::mem::size_of::<Slot>()
    }
}

impl<K: UniformKey, V> std::ops::Index<&K> for KeyTable<K, V> {
    type Output = V;

    fn index(&self, key: &K) -> &V {
        self.get(key).expect("key present in KeyTable")
    }
}

impl<'t, K: UniformKey, V> IntoIterator for &'t KeyTable<K, V> {
    type Item = (&'t K, &'t V);
    type IntoIter = std::iter::Map<std::slice::Iter<'t, (K, V)>, fn(&'t (K, V)) -> (&'t K, &'t V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

/// Asks the kernel to back the big allocation of `v` with transparent huge pages (2 MiB), once
/// its capacity changed. A table of millions of records read at random misses the TLB on almost
/// every access, and in a virtual machine each miss walks two levels of page tables; huge pages
/// make those walks rare (measured: decide ~15 % faster). A hint like a prefetch: it changes no
/// content and its failure is ignored. Only allocations of 4 MiB and more, and only the 2 MiB
/// aligned part inside the allocation (so no other allocation is affected).
pub(crate) fn advise_huge_pages<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes < 2 * HUGE {
            return;
        }
        let start = v.as_ptr() as usize;
        let aligned_start = start.next_multiple_of(HUGE);
        let aligned_end = (start + bytes) / HUGE * HUGE;
        if aligned_end > aligned_start {
            // SAFETY: the range lies inside `v`'s live allocation; MADV_HUGEPAGE only sets a
            // flag on the mapping (it never changes or frees memory), so no Rust reference is
            // affected. The result is ignored: the hint is optional.
            unsafe {
                libc::madvise(
                    aligned_start as *mut libc::c_void,
                    aligned_end - aligned_start,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// Asks the CPU to start loading the cache lines of `value` (every line it touches: a 64-byte
/// entry that is not 64-byte aligned spans two). No effect on other targets.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64;
        let start = value as *const T as usize;
        let last = start + std::mem::size_of::<T>().max(1) - 1;
        let mut line = start & !(LINE - 1);
        while line <= last {
            // SAFETY: a prefetch never faults and changes no state, whatever the address; the
            // lines are those of a live value anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
            line += LINE;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
    struct Key(u64);

    impl UniformKey for Key {
        fn bits(&self) -> u32 {
            self.0 as u32
        }
    }

    fn check_index<V>(table: &KeyTable<Key, V>) {
        assert!(
            KeyTable::<Key, V>::fits(table.entries.len(), table.slots.len())
                || table.slots.is_empty()
        );
        let used = table.slots.iter().filter(|s| **s != EMPTY).count();
        assert_eq!(used, table.entries.len(), "one slot per entry");
        for (position, (key, _)) in table.entries.iter().enumerate() {
            assert_eq!(table.find(key).map(|(_, p)| p), Some(position));
        }
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut table = KeyTable::new();
        assert_eq!(table.get(&Key(1)), None);
        assert_eq!(table.insert(Key(1), "one"), None);
        assert_eq!(table.insert(Key(2), "two"), None);
        assert_eq!(table.insert(Key(1), "uno"), Some("one"));
        assert_eq!(table.len(), 2);
        assert_eq!(table[&Key(1)], "uno");
        assert_eq!(table.remove(&Key(1)), Some("uno"));
        assert_eq!(table.remove(&Key(1)), None);
        assert_eq!(table.get(&Key(2)), Some(&"two"));
        check_index(&table);
    }

    #[test]
    fn colliding_keys_probe_and_shift_back() {
        // Equal low bits: every key has the same home slot; differ above bit 32 (equal tags too).
        let mut table = KeyTable::new();
        for i in 0..40u64 {
            table.insert(Key(7 | (i << 40)), i);
        }
        check_index(&table);
        for i in (0..40u64).step_by(3) {
            assert_eq!(table.remove(&Key(7 | (i << 40))), Some(i));
            check_index(&table);
        }
        for i in 0..40u64 {
            assert_eq!(table.get(&Key(7 | (i << 40))).is_some(), i % 3 != 0);
        }
    }

    #[test]
    fn the_index_doubles_as_it_fills() {
        let mut table = KeyTable::new();
        for i in 0..100_000u64 {
            table.insert(Key(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)), ());
            assert!(KeyTable::<Key, ()>::fits(table.len(), table.index_slots()));
        }
        // 100,000 entries at most 5/8 full: 2^18 slots, not more.
        assert_eq!(table.index_slots(), 1 << 18);
        let mut reserved: KeyTable<Key, ()> = KeyTable::new();
        reserved.reserve(100_000);
        assert_eq!(reserved.index_slots(), 1 << 18);
    }

    #[test]
    fn prefetch_is_only_a_hint() {
        let mut table: KeyTable<Key, u8> = KeyTable::new();
        table.prefetch_slot(&Key(3));
        table.prefetch_entry(&Key(3));
        table.insert(Key(3), 1);
        table.prefetch_slot(&Key(3));
        table.prefetch_entry(&Key(3));
        table.prefetch_entry(&Key(4));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn big_tables_ask_for_huge_pages_and_keep_their_content() {
        // Over 4 MiB of entries and of index: `advise_huge_pages` runs on both, through growth
        // and through `reserve`.
        let mut table: KeyTable<Key, [u64; 7]> = KeyTable::new();
        for i in 0..150_000u64 {
            table.insert(Key(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)), [i; 7]);
        }
        table.reserve(600_000);
        assert!(table.heap_bytes() > 8 << 20);
        for i in (0..150_000u64).step_by(7) {
            let key = Key(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            assert_eq!(table.get(&key), Some(&[i; 7]));
        }
        let mut accounts = vec![0u8; 0];
        accounts.reserve_exact(5 << 20);
        advise_huge_pages(&accounts);
        accounts.extend(std::iter::repeat_n(7u8, 5 << 20));
        assert!(accounts.iter().all(|b| *b == 7));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16, u8),
        Remove(u16),
        Reserve(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys from a small space, mapped so that many share their home slot.
        prop_oneof![
            4 => (any::<u16>(), any::<u8>()).prop_map(|(k, v)| Op::Insert(k % 512, v)),
            2 => any::<u16>().prop_map(|k| Op::Remove(k % 512)),
            1 => any::<u8>().prop_map(Op::Reserve),
        ]
    }

    fn key(k: u16) -> Key {
        // Eight home slots at the end of the index: long probe runs that wrap around it.
        Key(u64::from(u32::MAX - u32::from(k % 8)) | (u64::from(k) << 33))
    }

    proptest! {
        /// The table behaves as a `HashMap` under any sequence of operations.
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 0..600)) {
            let mut table = KeyTable::new();
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(table.insert(key(k), v), model.insert(key(k), v)),
                    Op::Remove(k) => prop_assert_eq!(table.remove(&key(k)), model.remove(&key(k))),
                    Op::Reserve(n) => table.reserve(usize::from(n)),
                }
                prop_assert_eq!(table.len(), model.len());
            }
            check_index(&table);
            for (k, v) in &model {
                prop_assert_eq!(table.get(k), Some(v));
            }
            let mut seen: Vec<_> = table.iter().map(|(k, v)| (k.0, *v)).collect();
            let mut expected: Vec<_> = model.iter().map(|(k, v)| (k.0, *v)).collect();
            seen.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(seen, expected);
        }
    }
}
