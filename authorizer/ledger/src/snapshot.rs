//! The snapshot file format: the whole ledger state and the log offsets to resume from.
//!
//! ```text
//! header (plain):
//!   magic            8 bytes  "AUTHSNAP"
//!   format_version   u32 BE   2           ┐ these three fields keep their place in every
//!   header_len       u32 BE   ≤ 1 MiB     ┘ future version, so the checksum is checked first
//!   created_at_ms    i64 BE   log time the snapshotter chose (never read from a clock here)
//!   watermark_s      i64 BE   the ledger's hold watermark
//!   state_hash       32 bytes
//!   counts           4 × u64 BE: accounts, cards, hold records, cleared markers
//!   offsets          u32 BE n ≤ 65,536, then n × (u16 BE topic length ≤ 249, topic UTF-8,
//!                    i32 BE partition, i64 BE next offset to read)
//!   header_crc32c    u32 BE over every byte above
//! body: one zstd frame (with zstd's own content checksum) of records:
//!   u32 BE length ≤ 64 KiB, then the record's bytes, in this order:
//!   * groups, one per upserted account: its 'A' record, then its cards and hold records in
//!     *grouped* form: tag 'c' / 'h' and the canonical 'C' / 'H' record without the account id
//!     (the group gives it; a reader needs no account lookup per card);
//!   * the cards ('C') and the hold records ('H') of placeholder accounts, canonical;
//!   * the cleared markers ('X'), canonical;
//!   and last an end record: tag 'E', u64 BE record count. The canonical bytes (a grouped
//!   record with its group's account id put back) are the bytes the state hash covers.
//! trailer: u32 BE crc32c of the compressed frame's bytes (so that no byte of the file, not even
//!   one zstd would tolerate, can change unnoticed); nothing after it.
//! ```
//!
//! Version 1 (state hash v1, a crc32c in the end record) is no longer read: its files are
//! rejected as [`SnapshotError::UnsupportedVersion`]. The end record lost its crc32c because
//! it covered the very bytes zstd's content checksum covers, and every byte of the file is
//! covered by the header and trailer crc32c.
//!
//! Writing and reading stream: neither ever holds a second copy of the state (the body is
//! encoded and decoded record by record through zstd's streaming API). Reading verifies the
//! header checksum, the format version, the zstd content checksum, the trailer crc32c, the
//! counts, and the state hash: it hashes the canonical bytes of every record read, and every
//! entity it restores must encode back to exactly those bytes, so the sum is the hash of the
//! rebuilt state (the writer computed it from the live state: the same property asserted on
//! two paths). Reading runs on two threads (see [`read_with_config`]). Writing needs a
//! temporary index of 16 bytes per card (to group the cards by account).
//!
//! Must never: return a state that differs from the one written; panic on a corrupt file.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::mpsc;

use crate::state::{
    Hold, LaneSum, PendingCard, RecordCheck, Restore, RestoreCards, RestoreError, RestoredAccount,
    RestoredAccountRef, RestoredCard, grouped_to_canonical,
};
use crate::{
    AccountIndex, AccountStatus, AmountMinor, CardExpiry, CardStatus, Currency, HoldId,
    LedgerConfig, PanHash, PanSequence, ResponseCode, State, StateHash, UnixSeconds, Version,
};

pub const MAGIC: [u8; 8] = *b"AUTHSNAP";
/// Version 2: the state hash is `authorizer.state-hash.v2` (XXH3 per record) and the end record
/// has no crc32c of its own. Version 1 files are rejected ([`SnapshotError::UnsupportedVersion`]).
pub const FORMAT_VERSION: u32 = 2;
const HEADER_LEN_MAX: u32 = 1 << 20;
const RECORD_LEN_MAX: u32 = 1 << 16;
const OFFSETS_MAX: usize = 65_536;
const TOPIC_LEN_MAX: usize = 249;
/// Level 1, not zstd's default 3: on 10 M accounts and cards (a body of 1.31 GiB, mostly
/// incompressible PAN hashes) level 1 compresses in ~60% of the time to a file ~5% smaller
/// (measured with the zstd tool: 359 vs 385 MiB), and decompresses as fast.
const ZSTD_LEVEL: i32 = 1;

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
}

/// The header of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub format_version: u32,
    pub created_at_ms: i64,
    pub watermark: UnixSeconds,
    pub state_hash: StateHash,
    pub counts: RecordCounts,
}

/// Why a snapshot was not written or not accepted. Each names what to do: a snapshot that fails
/// is skipped for the previous one.
#[derive(Debug)]
pub enum SnapshotError {
    Io(io::Error),
    NotASnapshot {
        magic: [u8; 8],
    },
    /// The file ends early (in the header, or inside the body).
    Truncated {
        part: &'static str,
    },
    HeaderChecksum {
        stored: u32,
        computed: u32,
    },
    /// Written by a newer authorizer: upgrade this one, or use an older snapshot.
    FutureVersion {
        found: u32,
        supported: u32,
    },
    /// Written by an older authorizer in a format this one no longer reads: rebuild the state
    /// from the log (or with that older authorizer) and take a new snapshot.
    UnsupportedVersion {
        found: u32,
        supported: u32,
    },
    HeaderInvalid {
        reason: &'static str,
    },
    /// zstd refused the body (corrupt frame or content checksum).
    BodyCorrupt {
        message: String,
    },
    BodyChecksum {
        stored: u32,
        computed: u32,
    },
    RecordInvalid {
        record: u64,
        reason: &'static str,
    },
    CountMismatch {
        kind: &'static str,
        header: u64,
        body: u64,
    },
    StateHashMismatch {
        header: StateHash,
        recomputed: StateHash,
    },
    TrailingBytes,
    InvalidOffset {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io(e) => write!(f, "snapshot I/O error: {e}"),
            SnapshotError::NotASnapshot { magic } => {
                write!(
                    f,
                    "not a snapshot: magic {:?} is not {:?}",
                    hex::encode(magic),
                    "AUTHSNAP"
                )
            }
            SnapshotError::Truncated { part } => write!(
                f,
                "snapshot truncated in the {part}; use the previous snapshot"
            ),
            SnapshotError::HeaderChecksum { stored, computed } => {
                write!(
                    f,
                    "snapshot header checksum {stored:08x} != computed {computed:08x}; the file is corrupt"
                )
            }
            SnapshotError::FutureVersion { found, supported } => write!(
                f,
                "snapshot format version {found} is newer than this authorizer reads ({supported}); upgrade, or use an older snapshot"
            ),
            SnapshotError::UnsupportedVersion { found, supported } => write!(
                f,
                "snapshot format version {found} is older than this authorizer reads ({supported}); rebuild from the log and take a new snapshot"
            ),
            SnapshotError::HeaderInvalid { reason } => {
                write!(f, "snapshot header invalid: {reason}")
            }
            SnapshotError::BodyCorrupt { message } => {
                write!(f, "snapshot body corrupt (zstd): {message}")
            }
            SnapshotError::BodyChecksum { stored, computed } => {
                write!(
                    f,
                    "snapshot body checksum {stored:08x} != computed {computed:08x}; the file is corrupt"
                )
            }
            SnapshotError::RecordInvalid { record, reason } => {
                write!(f, "snapshot record {record} invalid: {reason}")
            }
            SnapshotError::CountMismatch { kind, header, body } => {
                write!(
                    f,
                    "snapshot header says {header} {kind}, the body has {body}"
                )
            }
            SnapshotError::StateHashMismatch { header, recomputed } => {
                write!(
                    f,
                    "snapshot state hash {header} != recomputed {recomputed}; the file or the code is wrong"
                )
            }
            SnapshotError::TrailingBytes => {
                write!(f, "snapshot has bytes after its body; the file is corrupt")
            }
            SnapshotError::InvalidOffset {
                topic,
                partition,
                offset,
            } => {
                write!(
                    f,
                    "resume offset {topic:?}/{partition} = {offset} is out of bounds"
                )
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<io::Error> for SnapshotError {
    fn from(e: io::Error) -> Self {
        SnapshotError::Io(e)
    }
}

fn record_counts(state: &State) -> RecordCounts {
    let counts = state.counts();
    RecordCounts {
        accounts: counts.accounts,
        cards: counts.cards,
        holds: counts.holds,
        cleared_markers: counts.cleared_markers,
    }
}

fn encode_header(header: &Header, offsets: &ResumeOffsets) -> Vec<u8> {
    let mut fields = Vec::with_capacity(128 + offsets.len() * 32);
    fields.extend_from_slice(&header.created_at_ms.to_be_bytes());
    fields.extend_from_slice(&header.watermark.0.to_be_bytes());
    fields.extend_from_slice(&header.state_hash.0);
    for count in [
        header.counts.accounts,
        header.counts.cards,
        header.counts.holds,
        header.counts.cleared_markers,
    ] {
        fields.extend_from_slice(&count.to_be_bytes());
    }
    fields.extend_from_slice(&(offsets.len() as u32).to_be_bytes());
    for (topic, partition, offset) in offsets.iter() {
        fields.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        fields.extend_from_slice(topic.as_bytes());
        fields.extend_from_slice(&partition.to_be_bytes());
        fields.extend_from_slice(&offset.to_be_bytes());
    }
    let mut out = Vec::with_capacity(fields.len() + 20);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&header.format_version.to_be_bytes());
    out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
    out.extend_from_slice(&fields);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Writes a snapshot of `state` with the offsets to resume from. Returns the header written.
pub fn write<W: Write>(
    w: W,
    state: &State,
    offsets: &ResumeOffsets,
    created_at_ms: i64,
) -> Result<Header, SnapshotError> {
    let header = Header {
        format_version: FORMAT_VERSION,
        created_at_ms,
        watermark: state.watermark(),
        state_hash: state.state_hash(),
        counts: record_counts(state),
    };
    let mut w = w;
    w.write_all(&encode_header(&header, offsets))?;
    let frame = ChecksummedWrite { inner: w, crc: 0 };
    let mut encoder = zstd::stream::write::Encoder::new(frame, ZSTD_LEVEL)?;
    encoder.include_checksum(true)?;
    // zstd pays a fixed cost per call: hand it 64 KiB at a time, not one small record.
    let mut encoder = io::BufWriter::with_capacity(1 << 16, encoder);
    let mut records = 0u64;
    state.for_each_snapshot_record(|record| -> io::Result<()> {
        let len = u32::try_from(record.len()).expect("records are small");
        assert!(
            len <= RECORD_LEN_MAX,
            "record of {len} bytes exceeds the format's bound"
        );
        encoder.write_all(&len.to_be_bytes())?;
        encoder.write_all(record)?;
        records += 1;
        Ok(())
    })?;
    let total = header.counts.accounts
        + header.counts.cards
        + header.counts.holds
        + header.counts.cleared_markers;
    assert_eq!(
        records, total,
        "the body must hold exactly the records the header counts"
    );
    let mut end = Vec::with_capacity(9);
    end.push(b'E');
    end.extend_from_slice(&records.to_be_bytes());
    encoder.write_all(&(end.len() as u32).to_be_bytes())?;
    encoder.write_all(&end)?;
    let encoder = encoder
        .into_inner()
        .map_err(|e| SnapshotError::Io(e.into_error()))?;
    let frame = encoder.finish()?;
    let mut w = frame.inner;
    w.write_all(&frame.crc.to_be_bytes())?;
    w.flush()?;
    Ok(header)
}

fn read_exact_or(
    r: &mut impl Read,
    buf: &mut [u8],
    part: &'static str,
) -> Result<(), SnapshotError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            SnapshotError::Truncated { part }
        } else {
            body_error(e)
        }
    })
}

fn body_error(e: io::Error) -> SnapshotError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => SnapshotError::Truncated { part: "body" },
        io::ErrorKind::Other | io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
            SnapshotError::BodyCorrupt {
                message: e.to_string(),
            }
        }
        _ => SnapshotError::Io(e),
    }
}

/// A cursor over one record's bytes; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    record: u64,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.bytes.len() < n {
            return Err(SnapshotError::RecordInvalid {
                record: self.record,
                reason: "record shorter than its fields",
            });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(self.u64()? as i64)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn text(&mut self) -> Result<&'a str, SnapshotError> {
        let len = self.u32()? as usize;
        if len == 0 || len > 255 {
            return Err(self.invalid("text length out of 1..=255"));
        }
        let bytes = self.take(len)?;
        crate::utf8(bytes).map_err(|_| self.invalid("text is not UTF-8"))
    }
    fn amount(&mut self) -> Result<AmountMinor, SnapshotError> {
        let value = self.i64()?;
        AmountMinor::new(value).ok_or_else(|| self.invalid("amount out of bounds"))
    }
    fn invalid(&self, reason: &'static str) -> SnapshotError {
        SnapshotError::RecordInvalid {
            record: self.record,
            reason,
        }
    }
    fn finish(&self) -> Result<(), SnapshotError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.invalid("bytes left over in record"))
        }
    }
}

fn decode_header(r: &mut impl Read) -> Result<(Header, ResumeOffsets), SnapshotError> {
    let mut fixed = [0u8; 16];
    read_exact_or(r, &mut fixed, "header")?;
    let magic: [u8; 8] = fixed[..8].try_into().expect("8 bytes");
    if magic != MAGIC {
        return Err(SnapshotError::NotASnapshot { magic });
    }
    let format_version = u32::from_be_bytes(fixed[8..12].try_into().expect("4 bytes"));
    let header_len = u32::from_be_bytes(fixed[12..16].try_into().expect("4 bytes"));
    if header_len > HEADER_LEN_MAX {
        return Err(SnapshotError::HeaderInvalid {
            reason: "header length above 1 MiB",
        });
    }
    let mut fields = vec![0u8; header_len as usize];
    read_exact_or(r, &mut fields, "header")?;
    let mut stored = [0u8; 4];
    read_exact_or(r, &mut stored, "header")?;
    let stored = u32::from_be_bytes(stored);
    let computed = crc32c::crc32c_append(crc32c::crc32c(&fixed), &fields);
    if stored != computed {
        return Err(SnapshotError::HeaderChecksum { stored, computed });
    }
    if format_version > FORMAT_VERSION {
        return Err(SnapshotError::FutureVersion {
            found: format_version,
            supported: FORMAT_VERSION,
        });
    }
    if format_version == 0 {
        return Err(SnapshotError::HeaderInvalid {
            reason: "format version 0",
        });
    }
    if format_version < FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            found: format_version,
            supported: FORMAT_VERSION,
        });
    }
    let header_invalid = |_| SnapshotError::HeaderInvalid {
        reason: "header fields shorter than their length",
    };
    let mut c = Cursor {
        bytes: &fields,
        record: 0,
    };
    let created_at_ms = c.i64().map_err(header_invalid)?;
    let watermark = UnixSeconds(c.i64().map_err(header_invalid)?);
    let state_hash = StateHash(c.array::<32>().map_err(header_invalid)?);
    let counts = RecordCounts {
        accounts: c.u64().map_err(header_invalid)?,
        cards: c.u64().map_err(header_invalid)?,
        holds: c.u64().map_err(header_invalid)?,
        cleared_markers: c.u64().map_err(header_invalid)?,
    };
    let n = c.u32().map_err(header_invalid)? as usize;
    if n > OFFSETS_MAX {
        return Err(SnapshotError::HeaderInvalid {
            reason: "more than 65536 resume offsets",
        });
    }
    let mut offsets = ResumeOffsets::new();
    for _ in 0..n {
        let len = usize::from(c.u16().map_err(header_invalid)?);
        let topic = std::str::from_utf8(c.take(len).map_err(header_invalid)?).map_err(|_| {
            SnapshotError::HeaderInvalid {
                reason: "topic name is not UTF-8",
            }
        })?;
        let partition = c.u32().map_err(header_invalid)? as i32;
        let offset = c.i64().map_err(header_invalid)?;
        offsets
            .set(topic, partition, offset)
            .map_err(|_| SnapshotError::HeaderInvalid {
                reason: "resume offset out of bounds",
            })?;
    }
    if !c.bytes.is_empty() {
        return Err(SnapshotError::HeaderInvalid {
            reason: "bytes left over in header",
        });
    }
    if offsets.len() != n {
        return Err(SnapshotError::HeaderInvalid {
            reason: "duplicate topic-partition in resume offsets",
        });
    }
    Ok((
        Header {
            format_version,
            created_at_ms,
            watermark,
            state_hash,
            counts,
        },
        offsets,
    ))
}

/// Reads and verifies a snapshot; the returned state has the header's state hash.
/// `config` is the replica's own ledger configuration (the dedup window starts empty).
pub fn read<R: Read>(r: R) -> Result<(State, ResumeOffsets, Header), SnapshotError> {
    read_with_config(r, LedgerConfig::default())
}

/// [`read`] with a ledger configuration.
///
/// Two threads, in a pipeline: this one reads, decompresses and checks the body's framing,
/// order and checksums and hashes every canonical record (one XXH3-128 each); a second one
/// decodes the records and rebuilds the state (its inserts into the big tables batched, see
/// `Restore`). They hand records over in batches (at most `BATCHES` batches of about
/// `BATCH_BYTES` in flight); each batch comes back with the cards decoded from it, and this
/// thread inserts those into the cards table (`RestoreCards`; the cards table is the biggest
/// single cost, and this split gives both threads about the same work). The first error in
/// file order is the one reported.
pub fn read_with_config<R: Read>(
    r: R,
    config: LedgerConfig,
) -> Result<(State, ResumeOffsets, Header), SnapshotError> {
    let mut r = BufReader::with_capacity(1 << 16, r);
    let (header, offsets) = decode_header(&mut r)?;
    // Reserve at most what a plausible header asks for; the body is checked against it anyway.
    let reserve = (
        usize::try_from(header.counts.accounts.min(1 << 27)).unwrap_or(0),
        usize::try_from(header.counts.cards.min(1 << 27)).unwrap_or(0),
        usize::try_from(header.counts.holds.min(1 << 27)).unwrap_or(0),
    );
    let (to_restorer, batches) = mpsc::sync_channel::<Batch>(BATCHES);
    let (to_scanner, replies) = mpsc::sync_channel::<Batch>(BATCHES);
    let cards = RestoreCards::new(config.clone(), reserve.1);
    let (scanned, restored, cards) = std::thread::scope(|scope| {
        let restorer = scope.spawn(move || restore_batches(batches, to_scanner, config, reserve));
        let mut feed = Feed {
            to_restorer: Some(to_restorer),
            replies,
            in_flight: 0,
            free: Vec::new(),
            batch: Batch::new(),
            cards,
        };
        let mut scanned = scan_body(r, &header, &mut feed);
        if !feed.send() && scanned.is_ok() {
            scanned = Err(None);
        }
        feed.close();
        let restored = match restorer.join() {
            Ok(restored) => restored,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (scanned, restored, feed.cards)
    });
    // The restorer only saw records the scanner passed on before any error of its own, and
    // the cards inserted here only records the restorer decoded: theirs are the earlier
    // errors; of those two, the one of the earlier record. `Err(None)`: the scanner stopped
    // because the restorer did.
    let duplicate_card = cards.error().map(restore_error);
    let (restore, body) = match (restored, duplicate_card) {
        (Err(restorer), Some(card)) => {
            return Err(if record_of(&card) < record_of(&restorer) {
                card
            } else {
                restorer
            });
        }
        (Err(error), None) | (Ok(_), Some(error)) => return Err(error),
        (Ok(restored), None) => restored,
    };
    let sum = match scanned {
        Ok(sum) => sum,
        Err(Some(error)) => return Err(error),
        Err(None) => unreachable!("the restorer stops early only on an error"),
    };
    for (kind, h, b) in [
        ("accounts", header.counts.accounts, body.accounts),
        ("cards", header.counts.cards, body.cards),
        ("holds", header.counts.holds, body.holds),
        (
            "cleared markers",
            header.counts.cleared_markers,
            body.cleared_markers,
        ),
    ] {
        if h != b {
            return Err(SnapshotError::CountMismatch {
                kind,
                header: h,
                body: b,
            });
        }
    }
    let mut state = restore.finish(header.watermark).map_err(restore_error)?;
    cards.finish(&mut state).map_err(restore_error)?;
    // The hash of the records read, each of which the restored state encodes back to exactly:
    // so this is the hash of the restored state, computed in one pass while the data is hot.
    let recomputed = sum.finish(header.watermark);
    if recomputed != header.state_hash {
        return Err(SnapshotError::StateHashMismatch {
            header: header.state_hash,
            recomputed,
        });
    }
    if state.counts().accounts != header.counts.accounts {
        return Err(SnapshotError::CountMismatch {
            kind: "accounts",
            header: header.counts.accounts,
            body: state.counts().accounts,
        });
    }
    Ok((state, offsets, header))
}

/// Records on their way to the restorer: `u8 grouped (0/1), u32 BE length, canonical bytes`.
const BATCH_BYTES: usize = 1 << 18;
/// Batches in flight (bounds the memory of the hand-over to ~2 MiB).
const BATCHES: usize = 128;

/// A batch on its way between the threads: records to the restorer, and back the cards it
/// decoded from them (for the scanner's thread to insert) and the records' buffer to reuse.
struct Batch {
    records: Vec<u8>,
    cards: Vec<PendingCard>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            records: Vec::with_capacity(BATCH_BYTES + RECORD_LEN_MAX as usize + 8),
            cards: Vec::new(),
        }
    }
}

/// The scanner's side of the hand-over. At most [`BATCHES`] batches are in flight (sent and not
/// yet back), so that neither thread ever waits on a full channel while the other waits on it.
struct Feed {
    to_restorer: Option<mpsc::SyncSender<Batch>>,
    replies: mpsc::Receiver<Batch>,
    in_flight: usize,
    free: Vec<Batch>,
    batch: Batch,
    /// The cards table, filled on this thread.
    cards: RestoreCards,
}

impl Feed {
    /// `false` if the restorer is gone (it stops early only on an error).
    fn push(&mut self, grouped: bool, canonical: &[u8]) -> bool {
        let len = u32::try_from(canonical.len()).expect("records are at most 64 KiB");
        let records = &mut self.batch.records;
        records.push(u8::from(grouped));
        records.extend_from_slice(&len.to_be_bytes());
        records.extend_from_slice(canonical);
        records.len() < BATCH_BYTES || self.send()
    }

    /// Hands the batch over (first taking back what came back); `false` if the restorer is gone.
    fn send(&mut self) -> bool {
        if self.batch.records.is_empty() {
            return true;
        }
        while self.in_flight >= BATCHES {
            match self.replies.recv() {
                Ok(reply) => self.take_back(reply),
                Err(mpsc::RecvError) => return false,
            }
        }
        while let Ok(reply) = self.replies.try_recv() {
            self.take_back(reply);
        }
        let next = self.free.pop().unwrap_or_else(Batch::new);
        let full = std::mem::replace(&mut self.batch, next);
        let Some(to_restorer) = &self.to_restorer else {
            return false;
        };
        // Never blocks: fewer than `BATCHES` are in the channel.
        if to_restorer.send(full).is_err() {
            return false;
        }
        self.in_flight += 1;
        true
    }

    fn take_back(&mut self, mut reply: Batch) {
        self.in_flight -= 1;
        self.cards.add(&mut reply.cards);
        reply.records.clear();
        self.free.push(reply);
    }

    /// No more records: takes back every batch until the restorer is done (so that the cards
    /// of every record it decoded are inserted, and their duplicates found), then inserts the
    /// cards still pending.
    fn close(&mut self) {
        self.to_restorer = None;
        while let Ok(reply) = self.replies.recv() {
            self.take_back(reply);
        }
        self.cards.flush();
    }
}

/// The restorer thread: rebuilds the state from the scanner's canonical records, and sends
/// every batch back with the cards decoded from it. Returns the state without its watermark
/// and its cards (the caller adds them once the header is trusted).
fn restore_batches(
    batches: mpsc::Receiver<Batch>,
    replies: mpsc::SyncSender<Batch>,
    config: LedgerConfig,
    (accounts, cards, holds): (usize, usize, usize),
) -> Result<(Restore, RecordCounts), SnapshotError> {
    let mut restore = Restore::new(config, accounts, cards, holds);
    let mut counts = RecordCounts::default();
    let mut group: Option<AccountIndex> = None;
    let mut index = 0u64;
    let mut scratch = Vec::with_capacity(512);
    for mut batch in batches {
        let restored = restore_batch(
            &mut restore,
            &batch.records,
            &mut group,
            &mut index,
            &mut counts,
            &mut scratch,
        );
        batch.cards = restore.take_cards(std::mem::take(&mut batch.cards));
        // Sent back even after an error: a duplicate among those cards may be an earlier one.
        // The scanner takes back every batch until this thread is done: a send fails only if
        // it panicked.
        let sent = replies.send(batch);
        restored?;
        if sent.is_err() {
            break;
        }
    }
    restore.flush().map_err(restore_error)?;
    Ok((restore, counts))
}

/// Restores the records of one batch.
fn restore_batch(
    restore: &mut Restore,
    mut records: &[u8],
    group: &mut Option<AccountIndex>,
    index: &mut u64,
    counts: &mut RecordCounts,
    scratch: &mut Vec<u8>,
) -> Result<(), SnapshotError> {
    while let Some((&grouped, tail)) = records.split_first() {
        let (len, tail) = tail
            .split_first_chunk::<4>()
            .expect("the scanner frames every record");
        let (record, tail) = tail.split_at(u32::from_be_bytes(*len) as usize);
        records = tail;
        let in_group = group.filter(|_| grouped != 0);
        match restore_record(restore, record, *index, in_group, counts, scratch) {
            Ok(Some(account)) => *group = Some(account),
            Ok(None) => {}
            Err(error) => {
                // A deferred insert of an earlier record may fail too: that error comes first.
                restore.flush().map_err(restore_error)?;
                return Err(error);
            }
        }
        restore.push().map_err(restore_error)?;
        *index += 1;
    }
    Ok(())
}

/// The record an error is about (errors of the restorer and of the card inserts are all about
/// one record).
fn record_of(error: &SnapshotError) -> u64 {
    match error {
        SnapshotError::RecordInvalid { record, .. } => *record,
        _ => u64::MAX,
    }
}

fn restore_error((record, reason): RestoreError) -> SnapshotError {
    SnapshotError::RecordInvalid { record, reason }
}

/// Restores one canonical record; `Some(account)` when it opens a group.
fn restore_record(
    restore: &mut Restore,
    record: &[u8],
    index: u64,
    in_group: Option<AccountIndex>,
    counts: &mut RecordCounts,
    scratch: &mut Vec<u8>,
) -> Result<Option<AccountIndex>, SnapshotError> {
    let mut c = Cursor {
        bytes: &record[1..],
        record: index,
    };
    let mut check = RecordCheck { record, scratch };
    let mut opened = None;
    match record[0] {
        b'A' => {
            counts.accounts += 1;
            opened = Some(restore_account(restore, &mut c, &mut check)?);
        }
        b'C' => {
            counts.cards += 1;
            restore_card(restore, &mut c, in_group, &mut check)?;
        }
        b'H' => {
            counts.holds += 1;
            restore_hold(restore, &mut c, in_group, &mut check)?;
        }
        b'X' => {
            counts.cleared_markers += 1;
            restore_cleared(restore, &mut c, &mut check)?;
        }
        _ => unreachable!("the scanner passes on only known canonical tags"),
    }
    c.finish()?;
    Ok(opened)
}

/// The scanner: reads the body and the trailer, checks framing, kind order, counts and
/// checksums, hashes the canonical records and passes them on. `Err(None)`: the restorer
/// stopped (its error is the one to report).
fn scan_body<B: BufRead>(
    r: B,
    header: &Header,
    feed: &mut Feed,
) -> Result<LaneSum, Option<SnapshotError>> {
    let total = header.counts.accounts as u128
        + header.counts.cards as u128
        + header.counts.holds as u128
        + header.counts.cleared_markers as u128;
    let frame = ChecksummedBufRead { inner: r, crc: 0 };
    let decoder = zstd::stream::read::Decoder::with_buffer(frame).map_err(body_error)?;
    let mut decoder = BufReader::with_capacity(1 << 17, decoder.single_frame());
    let mut scan = Scanner {
        feed,
        sum: LaneSum::default(),
        index: 0,
        kind_rank: 0,
        in_group: false,
        group_id: Vec::with_capacity(256),
        canonical: Vec::with_capacity(512),
        total,
    };
    let mut record = Vec::with_capacity(512);
    loop {
        // Fast path: the whole record is in the reader's buffer; scan it in place.
        let buffered = decoder.fill_buf().map_err(body_error)?;
        if let Some((len, rest)) = buffered.split_first_chunk::<4>() {
            let len = u32::from_be_bytes(*len);
            check_record_len(len, scan.index)?;
            if rest.len() >= len as usize {
                let done = scan.record(&rest[..len as usize])?;
                decoder.consume(4 + len as usize);
                if done {
                    break;
                }
                continue;
            }
        }
        let mut len = [0u8; 4];
        read_exact_or(&mut decoder, &mut len, "body")?;
        let len = u32::from_be_bytes(len);
        check_record_len(len, scan.index)?;
        record.resize(len as usize, 0);
        read_exact_or(&mut decoder, &mut record, "body")?;
        if scan.record(&record)? {
            break;
        }
    }
    let index = scan.index;
    let sum = scan.sum;
    // The frame must end right after the end record: reading to its end makes zstd verify its
    // content checksum. Then nothing may follow the frame.
    let mut probe = [0u8; 1];
    match decoder.read(&mut probe) {
        Ok(0) => {}
        Ok(_) => {
            return Err(Some(SnapshotError::RecordInvalid {
                record: index,
                reason: "data after the end record",
            }));
        }
        Err(e) => return Err(Some(body_error(e))),
    }
    let frame = decoder.into_inner().finish();
    let computed = frame.crc;
    let mut rest = frame.inner;
    let mut stored = [0u8; 4];
    read_exact_or(&mut rest, &mut stored, "trailer")?;
    let stored = u32::from_be_bytes(stored);
    if stored != computed {
        return Err(Some(SnapshotError::BodyChecksum { stored, computed }));
    }
    if !rest.fill_buf().map_err(SnapshotError::Io)?.is_empty() {
        return Err(Some(SnapshotError::TrailingBytes));
    }
    Ok(sum)
}

fn check_record_len(len: u32, index: u64) -> Result<(), SnapshotError> {
    if len == 0 || len > RECORD_LEN_MAX {
        return Err(SnapshotError::RecordInvalid {
            record: index,
            reason: "record length out of 1..=65536",
        });
    }
    Ok(())
}

/// The scanner's state over the body records.
struct Scanner<'f> {
    feed: &'f mut Feed,
    sum: LaneSum,
    index: u64,
    kind_rank: u8,
    /// Whether a group is open: after an `A` record long enough to carry its id (a shorter one
    /// is rejected by the restorer).
    in_group: bool,
    /// The id of the current group's account (reused from group to group).
    group_id: Vec<u8>,
    canonical: Vec<u8>,
    total: u128,
}

impl Scanner<'_> {
    /// Scans one record; `Ok(true)` after the end record.
    fn record(&mut self, record: &[u8]) -> Result<bool, Option<SnapshotError>> {
        let index = self.index;
        let invalid = |reason| {
            Some(SnapshotError::RecordInvalid {
                record: index,
                reason,
            })
        };
        let tag = record[0];
        if tag == b'E' {
            let mut c = Cursor {
                bytes: &record[1..],
                record: index,
            };
            let count = c.u64()?;
            c.finish()?;
            if u128::from(count) != u128::from(index) || u128::from(index) != self.total {
                return Err(Some(SnapshotError::CountMismatch {
                    kind: "records",
                    header: self.total as u64,
                    body: index,
                }));
            }
            return Ok(true);
        }
        if u128::from(index) >= self.total {
            return Err(Some(SnapshotError::CountMismatch {
                kind: "records",
                header: self.total as u64,
                body: index + 1,
            }));
        }
        let rank = match tag {
            b'A' | b'c' | b'h' => 1,
            b'C' => 2,
            b'H' => 3,
            b'X' => 4,
            _ => return Err(invalid("unknown record tag")),
        };
        if rank < self.kind_rank {
            return Err(invalid("records out of kind order"));
        }
        self.kind_rank = rank;
        let grouped = matches!(tag, b'c' | b'h');
        let canonical: &[u8] = if grouped {
            if !self.in_group {
                return Err(invalid("grouped record outside an account group"));
            }
            grouped_to_canonical(record, &self.group_id, &mut self.canonical)
                .ok_or_else(|| invalid("record shorter than its fields"))?;
            &self.canonical
        } else {
            if tag == b'A' {
                self.group_id.clear();
                match account_record_id(record) {
                    Some(id) => {
                        self.group_id.extend_from_slice(id);
                        self.in_group = true;
                    }
                    None => self.in_group = false,
                }
            }
            record
        };
        self.sum.add(canonical);
        if !self.feed.push(grouped, canonical) {
            return Err(None);
        }
        self.index += 1;
        Ok(false)
    }
}

/// The account id of an `A` record (`None` if the record is too short to hold it).
fn account_record_id(record: &[u8]) -> Option<&[u8]> {
    let (len, rest) = record.get(1..)?.split_first_chunk::<4>()?;
    rest.get(..u32::from_be_bytes(*len) as usize)
}

fn restore_account(
    restore: &mut Restore,
    c: &mut Cursor<'_>,
    check: &mut RecordCheck<'_>,
) -> Result<AccountIndex, SnapshotError> {
    let id = c.text()?;
    let version = Version(c.u64()?);
    let status = AccountStatus::from_u8(c.u8()?).ok_or_else(|| c.invalid("account status"))?;
    let currency = Currency::new(c.u16()?).ok_or_else(|| c.invalid("currency"))?;
    let credit_limit = c.amount()?;
    let posted_balance = c.amount()?;
    restore
        .account(
            c.record,
            RestoredAccount {
                id,
                version,
                status,
                currency,
                credit_limit,
                posted_balance,
            },
            check,
        )
        .map_err(|reason| c.invalid(reason))
}

/// A card record; `group`: the account of the group a grouped record is in.
fn restore_card(
    restore: &mut Restore,
    c: &mut Cursor<'_>,
    group: Option<AccountIndex>,
    check: &mut RecordCheck<'_>,
) -> Result<(), SnapshotError> {
    let pan_hash = PanHash(c.array::<32>()?);
    let account_id = c.text()?;
    let account = group.map_or(
        RestoredAccountRef::Id(account_id),
        RestoredAccountRef::Group,
    );
    let card_id = c.text()?;
    let version = Version(c.u64()?);
    let expiry =
        CardExpiry::parse_yymm(&c.array::<4>()?).ok_or_else(|| c.invalid("card expiry"))?;
    let psn = c.u8()?;
    if psn > 99 {
        return Err(c.invalid("psn above 99"));
    }
    let status = CardStatus::from_u8(c.u8()?).ok_or_else(|| c.invalid("card status"))?;
    let key_set = c.text()?;
    let last4 = c.array::<4>()?;
    if !last4.iter().all(u8::is_ascii_digit) {
        return Err(c.invalid("pan_last4 not digits"));
    }
    restore
        .card(
            c.record,
            RestoredCard {
                pan_hash,
                account,
                card_id,
                version,
                expiry,
                psn: PanSequence(psn),
                status,
                key_set,
                last4,
            },
            check,
        )
        .map_err(|reason| c.invalid(reason))
}

/// A hold record; `group`: the account of the group a grouped record is in.
fn restore_hold(
    restore: &mut Restore,
    c: &mut Cursor<'_>,
    group: Option<AccountIndex>,
    check: &mut RecordCheck<'_>,
) -> Result<(), SnapshotError> {
    let hold_id = HoldId(c.array::<16>()?);
    let account_id = c.text()?;
    let account = group.map_or(
        RestoredAccountRef::Id(account_id),
        RestoredAccountRef::Group,
    );
    let parts = c.u8()?;
    let cleared = match c.u8()? {
        0 => false,
        1 => true,
        _ => return Err(c.invalid("cleared flag not 0 or 1")),
    };
    let decline_code = ResponseCode(c.array::<2>()?);
    if !decline_code.0.iter().all(u8::is_ascii_alphanumeric) {
        return Err(c.invalid("decline code not alphanumeric"));
    }
    let auth_amount = c.amount()?;
    let advice_amount = c.amount()?;
    let remaining_cap = c.amount()?;
    if auth_amount.is_negative() || advice_amount.is_negative() || remaining_cap.is_negative() {
        return Err(c.invalid("negative hold amount"));
    }
    let expires_at = UnixSeconds(c.i64()?);
    let transmitted_at = UnixSeconds(c.i64()?);
    if !(UnixSeconds::MIN..=UnixSeconds::MAX).contains(&transmitted_at) {
        return Err(c.invalid("transmitted_at out of bounds"));
    }
    let hold = Hold {
        account: AccountIndex(0),
        parts,
        cleared,
        decline_code,
        auth_amount,
        advice_amount,
        remaining_cap,
        expires_at,
        transmitted_at,
    };
    restore
        .hold(c.record, hold_id, account, hold, check)
        .map_err(|reason| c.invalid(reason))
}

fn restore_cleared(
    restore: &mut Restore,
    c: &mut Cursor<'_>,
    check: &mut RecordCheck<'_>,
) -> Result<(), SnapshotError> {
    let hold_id = HoldId(c.array::<16>()?);
    let account_id = c.text()?;
    let retain_until = UnixSeconds(c.i64()?);
    restore
        .cleared(hold_id, account_id, retain_until, check)
        .map_err(|reason| c.invalid(reason))
}

/// Passes writes through and keeps the crc32c of every byte written.
struct ChecksummedWrite<W: Write> {
    inner: W,
    crc: u32,
}

impl<W: Write> Write for ChecksummedWrite<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A `BufRead` that keeps the crc32c of every byte its reader *consumes* (zstd consumes exactly
/// its frame, so the trailer after it is not counted).
struct ChecksummedBufRead<B: BufRead> {
    inner: B,
    crc: u32,
}

impl<B: BufRead> Read for ChecksummedBufRead<B> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<B: BufRead> BufRead for ChecksummedBufRead<B> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        if n > 0 {
            // The buffer is still filled (nothing consumed since fill_buf): no I/O happens here.
            match self.inner.fill_buf() {
                Ok(buffer) => {
                    self.crc = crc32c::crc32c_append(self.crc, &buffer[..n.min(buffer.len())])
                }
                Err(_) => self.crc = !self.crc,
            }
        }
        self.inner.consume(n);
    }
}
