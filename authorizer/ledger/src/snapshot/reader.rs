//! Reading a snapshot: the header, then a two-thread pipeline over the body (a scanner that
//! checks framing, order, counts and checksums and hashes every canonical record; a restorer
//! that rebuilds the state), then the counts and the state hash compared with the header.
//!
//! Must never: return a state whose hash differs from the header's, report any error but the
//! first in file order, block both threads on each other, or panic on a corrupt file.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc;

use super::body::{Cursor, account_record_id, check_record_len, restore_error, restore_record};
use super::error::{body_error, read_exact_or};
use super::header::decode_header;
use super::{Header, RECORD_LEN_MAX, RecordCounts, ResumeOffsets, SnapshotError};
use crate::state::{LaneSum, PendingCard, Restore, RestoreCards, grouped_to_canonical};
use crate::{AccountIndex, LedgerConfig, State};

/// Reads and verifies a snapshot; the returned state has the header's state hash.
/// `config` is the replica's own ledger configuration (the dedup window starts empty).
pub fn read<R: Read>(r: R) -> Result<(State, ResumeOffsets, Header), SnapshotError> {
    read_with_config(r, LedgerConfig::default())
}

/// [`read`] with a ledger configuration. The size of the input is not known: the tables are
/// reserved for at most [`RESERVE_UNSIZED`] entries each and grow as records come. A caller that
/// reads a file should use [`read_sized`], which reserves once, up to what the file can hold.
pub fn read_with_config<R: Read>(
    r: R,
    config: LedgerConfig,
) -> Result<(State, ResumeOffsets, Header), SnapshotError> {
    read_reserving(r, Reserve::size_unknown(), config)
}

/// [`read_with_config`] of an input of `len` bytes (a file's length): the tables are reserved
/// for the header's counts, but never for more entries than `len` bytes of compressed records
/// can hold (see [`Reserve::for_len`]), so a header that lies costs no memory.
pub fn read_sized<R: Read>(
    r: R,
    len: u64,
    config: LedgerConfig,
) -> Result<(State, ResumeOffsets, Header), SnapshotError> {
    read_reserving(r, Reserve::for_len(len), config)
}

/// Entries reserved per table when the input's size is unknown.
pub const RESERVE_UNSIZED: u64 = 1 << 16;

/// The most entries the reader reserves in each table before the records arrive. A header is
/// protected only by its CRC: its counts are believed for the reservation only up to these
/// bounds (the body is checked against the counts anyway, and the tables grow if they were
/// right and larger).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserve {
    pub accounts: u64,
    pub cards: u64,
    pub holds: u64,
}

impl Reserve {
    /// Bounds for an input of unknown size.
    pub fn size_unknown() -> Reserve {
        Reserve {
            accounts: RESERVE_UNSIZED,
            cards: RESERVE_UNSIZED,
            holds: RESERVE_UNSIZED,
        }
    }

    /// Bounds for `len` bytes of file. Each card record carries a 32-byte PAN hash and each
    /// hold record a 16-byte hold id, both incompressible, so an honest file holds at most
    /// `len / 32` cards and `len / 16` holds; account records compress best (sequential ids,
    /// equal amounts) and are bounded at `len / 4`. A file that compresses better than that is
    /// read correctly, only with its tables grown as records come.
    pub fn for_len(len: u64) -> Reserve {
        Reserve {
            accounts: len / 4,
            cards: len / 32,
            holds: len / 16,
        }
    }
}

/// The reader. Two threads, in a pipeline: this one reads, decompresses and checks the body's
/// framing, order and checksums and hashes every canonical record (one XXH3-128 each); a second
/// one decodes the records and rebuilds the state (its inserts into the big tables batched, see
/// `Restore`). They hand records over in batches (at most `BATCHES` batches of about
/// `BATCH_BYTES` in flight); each batch comes back with the cards decoded from it, and this
/// thread inserts those into the cards table (`RestoreCards`; the cards table is the biggest
/// single cost, and this split gives both threads about the same work). The first error in
/// file order is the one reported.
fn read_reserving<R: Read>(
    r: R,
    bounds: Reserve,
    config: LedgerConfig,
) -> Result<(State, ResumeOffsets, Header), SnapshotError> {
    let mut r = BufReader::with_capacity(1 << 16, r);
    let (header, offsets) = decode_header(&mut r)?;
    // Reserve what the header asks for, within the bounds; the body is checked against it.
    let entries = |count: u64, bound: u64| usize::try_from(count.min(bound)).unwrap_or(0);
    let reserve = (
        entries(header.counts.accounts, bounds.accounts),
        entries(header.counts.cards, bounds.cards),
        entries(header.counts.holds, bounds.holds),
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
    let (mut restore, body) = match (restored, duplicate_card) {
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
        (
            "pending ATCs",
            header.counts.pending_atcs,
            body.pending_atcs,
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
    let pending_atcs = restore.take_pending_atcs();
    let mut state = restore
        .finish(header.watermark_votes.clone())
        .map_err(restore_error)?;
    cards
        .finish(&mut state, &pending_atcs)
        .map_err(restore_error)?;
    // The hash of the records read, each of which the restored state encodes back to exactly:
    // so this is the hash of the restored state, computed in one pass while the data is hot.
    let recomputed = sum.finish(&header.watermark_votes);
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

/// The largest zstd window a body may declare: 2^23 (8 MiB). The writer's level 1 uses 2^19 for
/// a stream of unknown size, zstd's default level 3 2^21 (a body compressed by other tools
/// stays readable); a frame that asks for more is rejected as corrupt
/// ([`SnapshotError::BodyCorrupt`]) before zstd allocates its window.
pub const WINDOW_LOG_MAX: u32 = 23;

/// Records on their way to the restorer: `u8 grouped (0/1), u32 BE length, canonical bytes`.
const BATCH_BYTES: usize = 1 << 18;
/// Batches in flight (bounds the memory of the hand-over to 128 × 320 KiB = 40 MiB).
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
        + header.counts.cleared_markers as u128
        + header.counts.pending_atcs as u128;
    let frame = ChecksummedBufRead { inner: r, crc: 0 };
    let mut decoder = zstd::stream::read::Decoder::with_buffer(frame).map_err(body_error)?;
    // zstd allocates the window the frame's header declares (up to 128 MiB by default) before
    // any byte of content: bound it to what the writer uses, so a small corrupt file cannot.
    decoder.window_log_max(WINDOW_LOG_MAX).map_err(body_error)?;
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
            b'T' => 5,
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
