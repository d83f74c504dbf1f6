//! The snapshot file format: the whole ledger state and the log offsets to resume from.
//!
//! ```text
//! header (plain):
//!   magic            8 bytes  "AUTHSNAP"
//!   format_version   u32 BE   4           ┐ these three fields keep their place in every
//!   header_len       u32 BE   ≤ 1 MiB     ┘ future version, so the checksum is checked first
//!   created_at_ms    i64 BE   log time the snapshotter chose (never read from a clock here)
//!   watermark_s      i64 BE   the ledger's hold watermark
//!   state_hash       32 bytes
//!   counts           5 × u64 BE: accounts, cards, hold records, cleared markers, pending ATCs
//!   offsets          u32 BE n ≤ 65,536, then n × (u16 BE topic length ≤ 249, topic UTF-8,
//!                    i32 BE partition, i64 BE next offset to read)
//!   watermark votes  u8 n ≤ 3 (the quorum), then n × (i64 BE vote, 16-byte hold id, u8 kind),
//!                    largest first; `watermark_s` must be the n-th when n is the quorum, else 0
//!   header_crc32c    u32 BE over every byte above
//! body: one zstd frame (with zstd's own content checksum) of records:
//!   u32 BE length ≤ 64 KiB, then the record's bytes, in this order:
//!   * groups, one per upserted account: its 'A' record, then its cards and hold records in
//!     *grouped* form: tag 'c' / 'h' and the canonical 'C' / 'H' record without the account id
//!     (the group gives it; a reader needs no account lookup per card);
//!   * the cards ('C') and the hold records ('H') of placeholder accounts, canonical;
//!   * the cleared markers ('X'), canonical;
//!   * the pending ATCs ('T': PAN hash, u16 BE ATC): the highest ATC of a card the state does
//!     not know yet, canonical;
//!   and last an end record: tag 'E', u64 BE record count. The canonical bytes (a grouped
//!   record with its group's account id put back) are the bytes the state hash covers.
//!   Canonical records (integers big-endian, texts as u32 BE length + UTF-8):
//!   'A' id, version u64, status u8, currency u16, credit limit i64, posted balance i64;
//!   'C' PAN hash(32), account id, card id, version u64, expiry YYMM(4), PSN u8, status u8,
//!       key set, last 4 digits(4), ATC seen u8 (0/1), highest ATC u16 (0 when not seen);
//!   'H' hold id(16), account id, parts u8, cleared u8, decline code(2), approved amount i64,
//!       advice amount i64, remaining cap i64, expires_at i64, transmitted_at i64, content
//!       fingerprint u64 (0: not known);
//!   'X' hold id(16), account id, retain_until i64.
//! trailer: u32 BE crc32c of the compressed frame's bytes (so that no byte of the file, not even
//!   one zstd would tolerate, can change unnoticed); nothing after it.
//! ```
//!
//! Versions 1 to 3 are no longer read: their files are rejected as
//! [`SnapshotError::UnsupportedVersion`]. Version 3 had no card ATCs, no hold content
//! fingerprints, no pending ATC records and four header counts (state hash v3). Version 2 had
//! no watermark votes (its watermark was the largest vote, which one event could drag) and
//! state hash v2. Version 1 had state hash v1 and a crc32c in the end record. The end record
//! lost its crc32c because it covered the very bytes zstd's content checksum covers, and every
//! byte of the file is covered by the header and trailer crc32c.
//!
//! Writing and reading stream: neither ever holds a second copy of the state (the body is
//! encoded and decoded record by record through zstd's streaming API). Reading verifies the
//! header checksum, the format version, the zstd content checksum, the trailer crc32c, the
//! counts, and the state hash: it hashes the canonical bytes of every record read, and every
//! entity it restores must encode back to exactly those bytes, so the sum is the hash of the
//! rebuilt state (the writer computed it from the live state: the same property asserted on
//! two paths). Reading runs on two threads, and reserves memory for the header's counts only up
//! to what the file can hold ([`read_sized`]). Writing needs a temporary index of 16 bytes per
//! card (to group the cards by account).
//!
//! Must never: return a state that differs from the one written; panic on a corrupt file.
//!
//! The files of this module, one idea each:
//! * `header`: the plain header (magic, version, counts, state hash, resume offsets), encoded
//!   and decoded with its crc32c;
//! * `writer`: [`write()`], streaming the state's records through zstd;
//! * `reader`: [`read`] and [`read_with_config`], the two-thread pipeline that verifies and
//!   rebuilds;
//! * `body`: decoding one body record back into the state being restored;
//! * `error`: [`SnapshotError`], what went wrong and what to do about it.

use std::collections::BTreeMap;

use crate::state::WatermarkVotes;
use crate::{StateHash, UnixSeconds};

mod body;
mod error;
mod header;
mod reader;
mod writer;

pub use error::SnapshotError;
pub use reader::{RESERVE_UNSIZED, Reserve, WINDOW_LOG_MAX, read, read_sized, read_with_config};
pub use writer::write;

pub const MAGIC: [u8; 8] = *b"AUTHSNAP";
/// Version 4: card records carry the card's highest ATC, hold records their content
/// fingerprint, pending ATCs (`T`) are records, the header counts five kinds, and the state
/// hash is `authorizer.state-hash.v4`. Version 3 brought the watermark's votes in the header.
/// Older files are rejected ([`SnapshotError::UnsupportedVersion`]).
pub const FORMAT_VERSION: u32 = 4;
const HEADER_LEN_MAX: u32 = 1 << 20;
const RECORD_LEN_MAX: u32 = 1 << 16;
const OFFSETS_MAX: usize = 65_536;
const TOPIC_LEN_MAX: usize = 249;

/// Where to resume: (topic, partition) → the next offset to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResumeOffsets {
    offsets: BTreeMap<(String, i32), i64>,
}

impl ResumeOffsets {
    pub fn new() -> ResumeOffsets {
        ResumeOffsets::default()
    }

    /// Records the next offset to read. Errors on a bound (topic name 1..=249 bytes, partition
    /// and offset non-negative, at most 65,536 partitions).
    pub fn set(
        &mut self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), SnapshotError> {
        if topic.is_empty() || topic.len() > TOPIC_LEN_MAX || partition < 0 || next_offset < 0 {
            return Err(SnapshotError::InvalidOffset {
                topic: topic.to_owned(),
                partition,
                offset: next_offset,
            });
        }
        if self.offsets.len() >= OFFSETS_MAX
            && !self.offsets.contains_key(&(topic.to_owned(), partition))
        {
            return Err(SnapshotError::InvalidOffset {
                topic: topic.to_owned(),
                partition,
                offset: next_offset,
            });
        }
        self.offsets
            .insert((topic.to_owned(), partition), next_offset);
        Ok(())
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(&(topic.to_owned(), partition)).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.offsets.iter().map(|((t, p), o)| (t.as_str(), *p, *o))
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// Record counts of a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub accounts: u64,
    pub cards: u64,
    pub holds: u64,
    pub cleared_markers: u64,
    /// Highest ATCs of cards the state does not know yet (`T` records).
    pub pending_atcs: u64,
}

/// The header of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub format_version: u32,
    pub created_at_ms: i64,
    pub watermark: UnixSeconds,
    /// The votes the watermark follows from (see `State::watermark_votes`).
    pub watermark_votes: WatermarkVotes,
    pub state_hash: StateHash,
    pub counts: RecordCounts,
}
