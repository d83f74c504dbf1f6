//! The local spool: where an authorizer event waits when Kafka cannot acknowledge it in time.
//!
//! An approval that the network was told about must never be lost, even if Kafka is down and the
//! process is then killed. So an event the producer could not get acknowledged within the
//! caller's budget is appended here, fsync'd, and only then is the caller answered. A drainer
//! sends spooled records to Kafka in order once it is back (also after a restart), and a record
//! is removed only after Kafka acknowledged it.
//!
//! # File format (`authorizer.spool` in the spool directory)
//!
//! ```text
//! file    = magic "AUTHSPL1" , record*
//! record  = body_len:u32le , crc32c(body):u32le , body
//! body    = kind:u8 , seq:u64le , (event fields if kind = 1)
//! event   = topic_len:u16le , topic , key_len:u32le , key , payload_len:u32le , payload
//! kind    = 1 (event appended) | 2 (event `seq` acknowledged by Kafka: removed)
//! ```
//!
//! Appends are written in groups and made durable by one `fdatasync` per group (group commit,
//! [`SpoolHandle`]). On open, a record cut short at the end of the file (a crash during an append
//! whose caller was never answered) is truncated away; a bad checksum anywhere before the last
//! record is corruption and the spool refuses to open rather than guess. When every event is
//! acknowledged the file is truncated back to its magic; on open, and when acknowledged records
//! make up most of a large file, it is rewritten with only the pending events (temp file, fsync,
//! rename, fsync of the directory).
//!
//! Never: answer a caller before its record is on disk; drop a record that Kafka did not
//! acknowledge; reorder records.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

/// First bytes of every spool file; bumped if the format changes.
pub const SPOOL_MAGIC: &[u8; 8] = b"AUTHSPL1";
/// File name inside the spool directory.
pub const SPOOL_FILE: &str = "authorizer.spool";
/// Largest record body accepted (a guard against reading a corrupt length as an allocation size).
pub const RECORD_BYTES_MAX: usize = 1 << 20;

const KIND_EVENT: u8 = 1;
const KIND_ACK: u8 = 2;
/// Appends and acks taken from the queue before one fsync.
const GROUP_MAX: usize = 1024;
/// Capacity of the request queue to the spool thread.
const QUEUE_CAPACITY: usize = 4096;

/// One event waiting in the spool for Kafka's acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Position in the spool; increasing in append order.
    pub seq: u64,
    pub topic: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

impl SpoolRecord {
    fn body_len(&self) -> usize {
        1 + 8 + 2 + self.topic.len() + 4 + self.key.len() + 4 + self.payload.len()
    }
}

/// Why the spool could not do what was asked. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {op}: {source} (check the disk and the directory's permissions)")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "spool {path}: not a spool file (bad magic); move it away if it is not needed, never delete an unsent spool"
    )]
    BadMagic { path: PathBuf },
    #[error(
        "spool {path}: corrupt record at byte {offset} ({what}) followed by more data; refusing to guess: copy the file aside and inspect it"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: &'static str,
    },
    #[error(
        "spool {path} is full: {bytes} bytes with the new record, limit {limit_bytes}; Kafka has been unreachable too long, restore it"
    )]
    Full {
        path: PathBuf,
        bytes: u64,
        limit_bytes: u64,
    },
    #[error("spool record too large: {bytes} bytes, limit {RECORD_BYTES_MAX}")]
    RecordTooLarge { bytes: usize },
    #[error("spool thread stopped (an earlier I/O error stopped it; see the log)")]
    Stopped,
}

/// The spool file, synchronous. [`SpoolHandle`] runs one on its own thread with group commit.
pub struct Spool {
    path: PathBuf,
    file: BufWriter<File>,
    /// Events appended and not yet acknowledged, by seq.
    pending: BTreeMap<u64, SpoolRecord>,
    pending_bytes: u64,
    file_bytes: u64,
    next_seq: u64,
    max_bytes: u64,
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering pending events and dropping a torn tail.
    /// `max_bytes` bounds the file: appends beyond it fail with [`SpoolError::Full`].
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
        let path = dir.join(SPOOL_FILE);
        let mut pending = BTreeMap::new();
        let mut max_seq = 0u64;
        if path.exists() {
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io_err(&path, "read"))?;
            let parsed = parse(&path, &bytes)?;
            max_seq = parsed.max_seq;
            pending = parsed.pending;
            if parsed.torn_at.is_some() {
                tracing::warn!(
                    spool = %path.display(),
                    valid_bytes = parsed.valid_len,
                    file_bytes = bytes.len(),
                    "spool: dropped a torn record at the end (an append interrupted by a crash, never acknowledged to its caller)"
                );
            }
        }
        let (file, file_bytes) = write_pending(&path, &pending)?;
        Ok(Spool {
            pending_bytes: file_bytes - SPOOL_MAGIC.len() as u64,
            path,
            file,
            pending,
            file_bytes,
            next_seq: max_seq + 1,
            max_bytes,
        })
    }

    /// Events not yet acknowledged, in order.
    pub fn pending(&self) -> impl Iterator<Item = &SpoolRecord> {
        self.pending.values()
    }

    /// Number of events not yet acknowledged.
    pub fn depth(&self) -> u64 {
        self.pending.len() as u64
    }

    /// Path of the spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Buffers an event; it is durable only after [`Spool::sync`].
    pub fn append(&mut self, topic: &str, key: &[u8], payload: &[u8]) -> Result<u64, SpoolError> {
        let record = SpoolRecord {
            seq: self.next_seq,
            topic: topic.to_owned(),
            key: key.to_vec(),
            payload: payload.to_vec(),
        };
        let body_len = record.body_len();
        if body_len > RECORD_BYTES_MAX || topic.len() > u16::MAX as usize {
            return Err(SpoolError::RecordTooLarge { bytes: body_len });
        }
        let after = self.file_bytes + 8 + body_len as u64;
        if after > self.max_bytes {
            return Err(SpoolError::Full {
                path: self.path.clone(),
                bytes: after,
                limit_bytes: self.max_bytes,
            });
        }
        write_event(&mut self.file, &record).map_err(io_err(&self.path, "append"))?;
        self.file_bytes = after;
        self.pending_bytes += 8 + body_len as u64;
        self.next_seq += 1;
        let seq = record.seq;
        self.pending.insert(seq, record);
        Ok(seq)
    }

    /// Marks `seq` acknowledged by Kafka. Unknown or already acknowledged seqs are ignored.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        let Some(record) = self.pending.remove(&seq) else {
            return Ok(());
        };
        self.pending_bytes -= 8 + record.body_len() as u64;
        if self.pending.is_empty() {
            // Everything is in Kafka: start the file over (cheap, and keeps it from growing).
            self.file.flush().map_err(io_err(&self.path, "flush"))?;
            let f = self.file.get_mut();
            f.set_len(SPOOL_MAGIC.len() as u64)
                .map_err(io_err(&self.path, "truncate"))?;
            f.seek(SeekFrom::End(0))
                .map_err(io_err(&self.path, "seek"))?;
            self.file_bytes = SPOOL_MAGIC.len() as u64;
            return Ok(());
        }
        let mut body = [0u8; 9];
        body[0] = KIND_ACK;
        body[1..].copy_from_slice(&seq.to_le_bytes());
        write_frame(&mut self.file, &body).map_err(io_err(&self.path, "append ack"))?;
        self.file_bytes += 8 + body.len() as u64;
        // Mostly acknowledged records: rewrite with only the pending ones.
        if self.file_bytes > 64 << 20 && self.pending_bytes * 2 < self.file_bytes {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Makes everything appended so far durable (one `fdatasync`).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.file.flush().map_err(io_err(&self.path, "flush"))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(io_err(&self.path, "fsync"))
    }

    /// Rewrites the file with only the pending events.
    fn rewrite(&mut self) -> Result<(), SpoolError> {
        self.file.flush().map_err(io_err(&self.path, "flush"))?;
        let (file, bytes) = write_pending(&self.path, &self.pending)?;
        self.file = file;
        self.file_bytes = bytes;
        self.pending_bytes = bytes - SPOOL_MAGIC.len() as u64;
        Ok(())
    }
}

/// Writes `pending` as a fresh spool file at `path`: temp file, fsync, rename, fsync directory.
/// Returns the file open for appending and its length.
fn write_pending(
    path: &Path,
    pending: &BTreeMap<u64, SpoolRecord>,
) -> Result<(BufWriter<File>, u64), SpoolError> {
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let tmp = dir.join(format!("{SPOOL_FILE}.tmp"));
    let mut w = BufWriter::new(File::create(&tmp).map_err(io_err(&tmp, "create"))?);
    w.write_all(SPOOL_MAGIC).map_err(io_err(&tmp, "write"))?;
    let mut bytes = SPOOL_MAGIC.len() as u64;
    for record in pending.values() {
        write_event(&mut w, record).map_err(io_err(&tmp, "write"))?;
        bytes += 8 + record.body_len() as u64;
    }
    w.flush().map_err(io_err(&tmp, "flush"))?;
    w.get_ref().sync_all().map_err(io_err(&tmp, "fsync"))?;
    drop(w);
    fs::rename(&tmp, path).map_err(io_err(path, "rename"))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&dir, "fsync directory"))?;
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path, "open"))?;
    file.seek(SeekFrom::End(0)).map_err(io_err(path, "seek"))?;
    Ok((BufWriter::with_capacity(256 << 10, file), bytes))
}

fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    w.write_all(&(body.len() as u32).to_le_bytes())?;
    w.write_all(&crc32c::crc32c(body).to_le_bytes())?;
    w.write_all(body)
}

fn write_event(w: &mut impl Write, r: &SpoolRecord) -> io::Result<()> {
    let mut body = Vec::with_capacity(r.body_len());
    body.push(KIND_EVENT);
    body.extend_from_slice(&r.seq.to_le_bytes());
    body.extend_from_slice(&(r.topic.len() as u16).to_le_bytes());
    body.extend_from_slice(r.topic.as_bytes());
    body.extend_from_slice(&(r.key.len() as u32).to_le_bytes());
    body.extend_from_slice(&r.key);
    body.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
    body.extend_from_slice(&r.payload);
    write_frame(w, &body)
}

struct Parsed {
    pending: BTreeMap<u64, SpoolRecord>,
    max_seq: u64,
    valid_len: usize,
    torn_at: Option<usize>,
}

/// Reads a spool file image. Pure: the caller does the I/O.
fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed, SpoolError> {
    let mut out = Parsed {
        pending: BTreeMap::new(),
        max_seq: 0,
        valid_len: 0,
        torn_at: None,
    };
    if bytes.len() < SPOOL_MAGIC.len() {
        // A crash while creating the file: nothing was ever acknowledged to a caller.
        out.torn_at = (!bytes.is_empty()).then_some(0);
        return Ok(out);
    }
    if &bytes[..SPOOL_MAGIC.len()] != SPOOL_MAGIC {
        return Err(SpoolError::BadMagic {
            path: path.to_path_buf(),
        });
    }
    let mut at = SPOOL_MAGIC.len();
    let corrupt = |offset: usize, what| SpoolError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        what,
    };
    while at < bytes.len() {
        let start = at;
        let Some(head) = bytes.get(at..at + 8) else {
            out.torn_at = Some(start);
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > RECORD_BYTES_MAX {
            return Err(corrupt(start, "record length over the limit"));
        }
        let Some(body) = bytes.get(at + 8..at + 8 + len) else {
            out.torn_at = Some(start);
            break;
        };
        let end = at + 8 + len;
        if crc32c::crc32c(body) != crc {
            if end == bytes.len() {
                out.torn_at = Some(start);
                break;
            }
            return Err(corrupt(start, "checksum mismatch"));
        }
        let record = decode_body(body).ok_or_else(|| corrupt(start, "malformed body"))?;
        match record {
            Decoded::Event(r) => {
                out.max_seq = out.max_seq.max(r.seq);
                out.pending.insert(r.seq, r);
            }
            Decoded::Ack(seq) => {
                out.max_seq = out.max_seq.max(seq);
                out.pending.remove(&seq);
            }
        }
        at = end;
        out.valid_len = at;
    }
    Ok(out)
}

enum Decoded {
    Event(SpoolRecord),
    Ack(u64),
}

fn decode_body(body: &[u8]) -> Option<Decoded> {
    let (&kind, rest) = body.split_first()?;
    let seq = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let rest = &rest[8..];
    match kind {
        KIND_ACK if rest.is_empty() => Some(Decoded::Ack(seq)),
        KIND_EVENT => {
            let topic_len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
            let rest = &rest[2..];
            let topic = std::str::from_utf8(rest.get(..topic_len)?).ok()?.to_owned();
            let rest = &rest[topic_len..];
            let key_len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let rest = &rest[4..];
            let key = rest.get(..key_len)?.to_vec();
            let rest = &rest[key_len..];
            let payload_len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let rest = &rest[4..];
            let payload = rest.get(..payload_len)?.to_vec();
            if rest.len() != payload_len {
                return None;
            }
            Some(Decoded::Event(SpoolRecord {
                seq,
                topic,
                key,
                payload,
            }))
        }
        _ => None,
    }
}

enum Request {
    Append {
        topic: String,
        key: Vec<u8>,
        payload: Vec<u8>,
        held: bool,
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
    Ack {
        seq: u64,
    },
    Release {
        seq: u64,
    },
    Pending {
        after_seq: u64,
        max: usize,
        reply: oneshot::Sender<Vec<SpoolRecord>>,
    },
    Barrier {
        reply: oneshot::Sender<()>,
    },
}

/// A [`Spool`] on its own thread: appends from many callers share one fsync (group commit).
/// Cheap to clone; the thread stops when the last handle is dropped.
#[derive(Clone)]
pub struct SpoolHandle {
    tx: mpsc::Sender<Request>,
    depth: Arc<AtomicU64>,
    path: PathBuf,
}

impl SpoolHandle {
    /// Opens the spool in `dir` and starts its thread.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<SpoolHandle, SpoolError> {
        let mut spool = Spool::open(dir, max_bytes)?;
        let depth = Arc::new(AtomicU64::new(spool.depth()));
        let (tx, mut rx) = mpsc::channel::<Request>(QUEUE_CAPACITY);
        let path = spool.path().to_path_buf();
        let thread_depth = depth.clone();
        std::thread::Builder::new()
            .name("log-spool".into())
            .spawn(move || {
                let mut group = Vec::with_capacity(GROUP_MAX);
                let mut held = std::collections::BTreeSet::new();
                while let Some(first) = rx.blocking_recv() {
                    group.push(first);
                    while group.len() < GROUP_MAX {
                        match rx.try_recv() {
                            Ok(r) => group.push(r),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = run_group(&mut spool, &mut held, &mut group, &thread_depth) {
                        tracing::error!(error = %e, "spool: stopping after an I/O error");
                        return;
                    }
                }
            })
            .map_err(io_err(dir, "spawn spool thread"))?;
        Ok(SpoolHandle { tx, depth, path })
    }

    /// Appends an event and returns its seq once it is on disk.
    ///
    /// `held`: a first send of this event may still be delivered by the producer, so
    /// [`SpoolHandle::pending_after`] stops before it until [`SpoolHandle::release`] (that send
    /// failed) or [`SpoolHandle::ack`] (it succeeded). Held is a memory-only mark: after a restart
    /// no first send is alive.
    pub async fn append(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        held: bool,
    ) -> Result<u64, SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Append {
                topic: topic.to_owned(),
                key: key.to_vec(),
                payload: payload.to_vec(),
                held,
                reply,
            })
            .await
            .map_err(|_| SpoolError::Stopped)?;
        rx.await.map_err(|_| SpoolError::Stopped)?
    }

    /// Removes `seq` (Kafka acknowledged it). Durable with the next group.
    pub async fn ack(&self, seq: u64) -> Result<(), SpoolError> {
        self.tx
            .send(Request::Ack { seq })
            .await
            .map_err(|_| SpoolError::Stopped)
    }

    /// Clears the held mark of `seq`: its first send failed, the drainer may send it.
    pub async fn release(&self, seq: u64) -> Result<(), SpoolError> {
        self.tx
            .send(Request::Release { seq })
            .await
            .map_err(|_| SpoolError::Stopped)
    }

    /// Up to `max` pending events with seq greater than `after_seq`, in order, stopping before
    /// the first held one.
    pub async fn pending_after(
        &self,
        after_seq: u64,
        max: usize,
    ) -> Result<Vec<SpoolRecord>, SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Pending {
                after_seq,
                max,
                reply,
            })
            .await
            .map_err(|_| SpoolError::Stopped)?;
        rx.await.map_err(|_| SpoolError::Stopped)
    }

    /// Returns once every request sent before it is processed and durable.
    pub async fn barrier(&self) -> Result<(), SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Barrier { reply })
            .await
            .map_err(|_| SpoolError::Stopped)?;
        rx.await.map_err(|_| SpoolError::Stopped)
    }

    /// Events not yet acknowledged by Kafka.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Acquire)
    }

    /// Path of the spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn run_group(
    spool: &mut Spool,
    held: &mut std::collections::BTreeSet<u64>,
    group: &mut Vec<Request>,
    depth: &AtomicU64,
) -> Result<(), SpoolError> {
    let mut replies = Vec::new();
    let mut barriers = Vec::new();
    let mut listings = Vec::new();
    let mut dirty = false;
    for request in group.drain(..) {
        match request {
            Request::Append {
                topic,
                key,
                payload,
                held: is_held,
                reply,
            } => {
                let result = spool.append(&topic, &key, &payload);
                if let (Ok(seq), true) = (&result, is_held) {
                    held.insert(*seq);
                }
                dirty |= result.is_ok();
                replies.push((reply, result));
            }
            Request::Ack { seq } => {
                held.remove(&seq);
                spool.ack(seq)?;
                dirty = true;
            }
            Request::Release { seq } => {
                held.remove(&seq);
            }
            Request::Pending {
                after_seq,
                max,
                reply,
            } => {
                let records = spool
                    .pending
                    .range(after_seq.saturating_add(1)..)
                    .take(max)
                    .take_while(|(seq, _)| !held.contains(seq))
                    .map(|(_, r)| r.clone())
                    .collect();
                listings.push((reply, records));
            }
            Request::Barrier { reply } => barriers.push(reply),
        }
    }
    if dirty && let Err(e) = spool.sync() {
        for (reply, _) in replies {
            let _ = reply.send(Err(SpoolError::Stopped));
        }
        return Err(e);
    }
    depth.store(spool.depth(), Ordering::Release);
    for (reply, result) in replies {
        let _ = reply.send(result);
    }
    for (reply, records) in listings {
        let _ = reply.send(records);
    }
    for reply in barriers {
        let _ = reply.send(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn appended(dir: &Path, n: u64) -> Spool {
        let mut s = Spool::open(dir, 1 << 30).unwrap();
        for i in 0..n {
            s.append(
                "authorizations",
                format!("acc-{i}").as_bytes(),
                &[i as u8; 40],
            )
            .unwrap();
        }
        s.sync().unwrap();
        s
    }

    #[test]
    fn pending_events_survive_reopen_and_acks_remove_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = appended(dir.path(), 5);
        s.ack(2).unwrap();
        s.ack(4).unwrap();
        s.sync().unwrap();
        drop(s);
        let s = Spool::open(dir.path(), 1 << 30).unwrap();
        let seqs: Vec<u64> = s.pending().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1, 3, 5]);
        let r = s.pending().next().unwrap();
        assert_eq!(r.key, b"acc-0");
        assert_eq!(r.topic, "authorizations");
        assert_eq!(r.payload, vec![0u8; 40]);
    }

    #[test]
    fn all_acked_truncates_to_magic_and_seq_keeps_growing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = appended(dir.path(), 3);
        for seq in 1..=3 {
            s.ack(seq).unwrap();
        }
        s.sync().unwrap();
        assert_eq!(
            fs::metadata(dir.path().join(SPOOL_FILE)).unwrap().len(),
            SPOOL_MAGIC.len() as u64
        );
        assert_eq!(s.append("t", b"k", b"v").unwrap(), 4);
    }

    #[test]
    fn torn_tail_is_dropped_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        drop(appended(dir.path(), 3));
        let path = dir.path().join(SPOOL_FILE);
        let len = fs::metadata(&path).unwrap().len();
        for cut in [1u64, 7, 20] {
            let copy = tempfile::tempdir().unwrap();
            let bytes = fs::read(&path).unwrap();
            fs::write(copy.path().join(SPOOL_FILE), &bytes[..(len - cut) as usize]).unwrap();
            let s = Spool::open(copy.path(), 1 << 30).unwrap();
            assert_eq!(s.pending().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
        }
    }

    #[test]
    fn corruption_before_the_end_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(appended(dir.path(), 3));
        let path = dir.path().join(SPOOL_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[SPOOL_MAGIC.len() + 20] ^= 0x40; // inside the first record's body
        fs::write(&path, &bytes).unwrap();
        let err = Spool::open(dir.path(), 1 << 30).err().unwrap();
        assert!(
            matches!(err, SpoolError::Corrupt { offset: 8, .. }),
            "{err}"
        );
    }

    #[test]
    fn bad_magic_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SPOOL_FILE), b"NOTASPOOL-------").unwrap();
        assert!(matches!(
            Spool::open(dir.path(), 1 << 30),
            Err(SpoolError::BadMagic { .. })
        ));
    }

    #[test]
    fn full_spool_rejects_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 200).unwrap();
        s.append("t", b"k", &[0; 100]).unwrap();
        assert!(matches!(
            s.append("t", b"k", &[0; 100]),
            Err(SpoolError::Full { .. })
        ));
        assert_eq!(s.depth(), 1);
    }

    #[tokio::test]
    async fn handle_group_commits_concurrent_appends_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let h = SpoolHandle::open(dir.path(), 1 << 30).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                h.append("t", b"k", &i.to_le_bytes(), false).await.unwrap()
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
        assert_eq!(h.depth(), 200);
        let first = h.pending_after(0, 3).await.unwrap();
        assert_eq!(
            first.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        for seq in 1..=200 {
            h.ack(seq).await.unwrap();
        }
        h.barrier().await.unwrap();
        assert_eq!(h.depth(), 0);
        let seq = h.append("t", b"k", b"held", true).await.unwrap();
        let after = h.append("t", b"k", b"after", false).await.unwrap();
        assert!(
            h.pending_after(0, 10).await.unwrap().is_empty(),
            "a held head blocks the drain"
        );
        h.release(seq).await.unwrap();
        let order: Vec<u64> = h
            .pending_after(0, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(order, vec![seq, after]);
        h.ack(seq).await.unwrap();
        h.ack(after).await.unwrap();
        h.barrier().await.unwrap();
        assert!(h.pending_after(0, 10).await.unwrap().is_empty());
        drop(h);
        let s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(s.depth(), 0);
    }
}
