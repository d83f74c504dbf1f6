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
//! file    = magic "AUTHSPL2" , record*
//! record  = body_len:u32le , crc32c(body_len bytes ++ body):u32le , body
//! body    = kind:u8 , seq:u64le , (event fields if kind = 1)
//! event   = topic_len:u16le , topic , key_len:u32le , key , payload_len:u32le , payload
//! kind    = 1 (event appended) | 2 (event `seq` acknowledged by Kafka: removed)
//! ```
//!
//! The checksum covers the length too, so a damaged length is seen as damage. On open a damaged
//! record is a torn tail (an append cut by a crash, whose caller was never answered) only if no
//! valid record starts anywhere after it; then it is dropped with a warning. Otherwise the spool
//! refuses to open ([`SpoolError::Corrupt`]) rather than drop records that were fsync'd. A file
//! of the first format (`AUTHSPL1`, checksum over the body only) is refused, never rewritten.
//!
//! Appends are buffered and written in groups, each made durable by one `fdatasync` (group
//! commit, [`SpoolHandle`]). If the write or the fsync of a group fails (full disk, I/O error),
//! the file is truncated back to its length before the group and fsync'd, the group's events are
//! forgotten, and every caller in the group is told it failed ([`SpoolError::GroupFailed`]): none
//! of them is ever sent. If even the truncation fails the spool is [`SpoolError::Broken`]: every
//! later call fails, and the error says how long the file must be cut to before a restart.
//!
//! One process at a time: an exclusive lock on `authorizer.spool.lock` is held for the life of a
//! [`Spool`] ([`SpoolError::Locked`]). Files are created 0600 (directories 0700); a new directory
//! is fsync'd in its parent, and every rename is followed by an fsync of the directory. When every
//! event is acknowledged the file is truncated back to its magic; on open, and when acknowledged
//! records make up most of a large file, it is rewritten with only the pending events (temp file,
//! fsync, rename, fsync of the directory).
//!
//! Never: answer a caller before its record is on disk; keep a record whose caller was told it
//! failed; drop a record that Kafka did not acknowledge; reorder records; share the file between
//! two processes.

mod format;
mod handle;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use format::{RECORD_BYTES_MAX, SPOOL_MAGIC, SPOOL_MAGIC_V1};
pub use handle::SpoolHandle;

/// File name inside the spool directory.
pub const SPOOL_FILE: &str = "authorizer.spool";
/// The lock file next to it, held exclusively while a [`Spool`] is open (never renamed).
pub const LOCK_FILE: &str = "authorizer.spool.lock";
/// The temp file of a rewrite.
const TMP_FILE: &str = "authorizer.spool.tmp";
/// A file over this size, mostly acknowledged records, is rewritten with only the pending ones.
const REWRITE_BYTES: u64 = 64 << 20;

/// One event waiting in the spool for Kafka's acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Position in the spool; increasing in append order.
    pub seq: u64,
    pub topic: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
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
        "spool {path} is locked by another open spool (another process, or this one): two authorizers must never share a spool; stop the other one or give each its own spool directory"
    )]
    Locked { path: PathBuf },
    #[error(
        "spool {path}: not a spool file (no AUTHSPL2 header, or shorter than one); move it aside if it is not needed, never delete an unsent spool"
    )]
    BadMagic { path: PathBuf },
    #[error(
        "spool {path} is in the first spool format (AUTHSPL1), which this version does not read; it was left untouched. Drain it with the previous binary (`authorizer publish --brokers HOST:PORT --spool-dir DIR --drain-timeout-s 300 < /dev/null` until it prints spool_depth=0), or move it aside and keep it (it may hold approvals not yet in Kafka); then start again"
    )]
    OldFormat { path: PathBuf },
    #[error(
        "spool {path}: damaged record at byte {offset} ({what}) with a valid record at byte {next_valid} after it: not a torn tail, refusing to open. Copy the file aside (cp -p), inspect it, and do not delete it: the records before byte {offset} and from byte {next_valid} on may be approvals not yet in Kafka"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        next_valid: u64,
        what: &'static str,
    },
    #[error(
        "spool {path}: record at byte {offset} has a valid checksum but cannot be decoded (written by another program?); refusing to open. Copy the file aside (cp -p), inspect it, and do not delete it"
    )]
    Malformed { path: PathBuf, offset: u64 },
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
    #[error(
        "spool {path}: a group of {events} events could not be made durable ({source}); they were removed from the spool and will never be sent. Check the disk (full?)"
    )]
    GroupFailed {
        path: PathBuf,
        events: usize,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("spool {path} is broken and refuses every request: {reason}")]
    Broken { path: PathBuf, reason: Arc<str> },
    #[error("spool thread stopped")]
    Stopped,
}

impl SpoolError {
    /// The same error for another caller of the same group (the errors a group can end with).
    fn again(&self) -> SpoolError {
        match self {
            SpoolError::GroupFailed {
                path,
                events,
                source,
            } => SpoolError::GroupFailed {
                path: path.clone(),
                events: *events,
                source: source.clone(),
            },
            SpoolError::Broken { path, reason } => SpoolError::Broken {
                path: path.clone(),
                reason: reason.clone(),
            },
            _ => SpoolError::Stopped,
        }
    }
}

/// Failures injected by the unit tests (a seam for I/O errors no real disk gives on demand).
#[cfg(test)]
#[derive(Default)]
pub(super) struct Inject {
    pub write: bool,
    pub truncate: bool,
}

/// The spool file, synchronous. [`SpoolHandle`] runs one on its own thread with group commit.
pub struct Spool {
    path: PathBuf,
    /// Opened for appending.
    file: File,
    /// Holds the exclusive lock while open.
    _lock: File,
    /// Events appended and not yet acknowledged, by seq (including the group not yet durable).
    pending: BTreeMap<u64, SpoolRecord>,
    /// Bytes of the records of `pending`.
    pending_bytes: u64,
    /// Length of the file, all of it fsync'd.
    durable_len: u64,
    /// Records appended since the last sync, not yet written.
    group: Vec<u8>,
    /// Seqs of the events in `group`.
    group_seqs: Vec<u64>,
    next_seq: u64,
    max_bytes: u64,
    /// Set when the file may hold records of a failed group: nothing more is accepted.
    broken: Option<Arc<str>>,
    #[cfg(test)]
    inject: Inject,
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
        create_dir_durable(dir)?;
        let path = dir.join(SPOOL_FILE);
        let lock = lock(dir, &path)?;
        let mut pending = BTreeMap::new();
        let mut max_seq = 0u64;
        if path.exists() {
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io_err(&path, "read"))?;
            let parsed = format::parse(&path, &bytes)?;
            if parsed.valid_len < bytes.len() {
                tracing::warn!(
                    spool = %path.display(),
                    valid_bytes = parsed.valid_len,
                    file_bytes = bytes.len(),
                    "spool: dropped a torn tail (an append interrupted by a crash, never acknowledged to its caller; nothing valid after it)"
                );
            }
            max_seq = parsed.max_seq;
            pending = parsed.pending;
        }
        let (file, durable_len) = write_pending(&path, &pending).map_err(|(e, _)| e)?;
        Ok(Spool {
            pending_bytes: durable_len - SPOOL_MAGIC.len() as u64,
            path,
            file,
            _lock: lock,
            pending,
            durable_len,
            group: Vec::new(),
            group_seqs: Vec::new(),
            next_seq: max_seq + 1,
            max_bytes,
            broken: None,
            #[cfg(test)]
            inject: Inject::default(),
        })
    }

    /// Events not yet acknowledged, in order (including appends not yet synced).
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

    /// Fails if the spool is broken.
    fn usable(&self) -> Result<(), SpoolError> {
        match &self.broken {
            None => Ok(()),
            Some(reason) => Err(SpoolError::Broken {
                path: self.path.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// Buffers an event; it is durable only after [`Spool::sync`] succeeds, and forgotten if it
    /// fails.
    pub fn append(&mut self, topic: &str, key: &[u8], payload: &[u8]) -> Result<u64, SpoolError> {
        self.usable()?;
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
        let after = self.durable_len + self.group.len() as u64 + record.frame_len();
        if after > self.max_bytes {
            return Err(SpoolError::Full {
                path: self.path.clone(),
                bytes: after,
                limit_bytes: self.max_bytes,
            });
        }
        format::frame_event(&mut self.group, &record);
        self.pending_bytes += record.frame_len();
        self.next_seq += 1;
        let seq = record.seq;
        self.group_seqs.push(seq);
        self.pending.insert(seq, record);
        Ok(seq)
    }

    /// Marks `seq` acknowledged by Kafka (durable with the next sync; if that fails, the event
    /// may be sent once more after a restart, which consumers absorb by `event_id`). Unknown or
    /// already acknowledged seqs are ignored.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        self.usable()?;
        let Some(record) = self.pending.remove(&seq) else {
            return Ok(());
        };
        self.pending_bytes -= record.frame_len();
        format::frame_ack(&mut self.group, seq);
        Ok(())
    }

    /// Writes the group appended since the last sync and makes it durable (one `fdatasync`).
    /// On failure the group is undone: see [`SpoolError::GroupFailed`] and
    /// [`SpoolError::Broken`].
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.usable()?;
        if self.group.is_empty() {
            return Ok(());
        }
        match self.write_group() {
            Ok(()) => {
                self.durable_len += self.group.len() as u64;
                self.group.clear();
                self.group_seqs.clear();
                self.compact();
                Ok(())
            }
            Err(source) => Err(self.roll_back(source)),
        }
    }

    fn write_group(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if self.inject.write {
            // As a full disk would: part of the group reaches the file, then an error.
            (&self.file).write_all(&self.group[..self.group.len() / 2])?;
            return Err(io::Error::other("injected write error"));
        }
        (&self.file).write_all(&self.group)?;
        self.file.sync_data()
    }

    /// Forgets the failed group and cuts the file back to its durable length.
    fn roll_back(&mut self, source: io::Error) -> SpoolError {
        let events = self.group_seqs.len();
        for seq in std::mem::take(&mut self.group_seqs) {
            if let Some(r) = self.pending.remove(&seq) {
                self.pending_bytes -= r.frame_len();
            }
        }
        self.group.clear();
        let truncated = self.truncate_to(self.durable_len);
        match truncated {
            Ok(()) => {
                tracing::error!(
                    spool = %self.path.display(),
                    events,
                    error = %source,
                    "spool: a group could not be made durable; its callers are told, its events removed"
                );
                SpoolError::GroupFailed {
                    path: self.path.clone(),
                    events,
                    source: Arc::new(source),
                }
            }
            Err(e) => {
                let reason: Arc<str> = format!(
                    "a group of {events} events failed ({source}) and cutting the file back failed too ({e}). Stop this process; before restarting, cut the file to {len} bytes if it is longer (`truncate -s {len} {path}`): the bytes after are events whose callers were told they failed",
                    len = self.durable_len,
                    path = self.path.display(),
                )
                .into();
                tracing::error!(spool = %self.path.display(), reason = %reason, "spool: broken");
                self.broken = Some(reason);
                self.usable().err().unwrap_or(SpoolError::Stopped)
            }
        }
    }

    fn truncate_to(&mut self, len: u64) -> io::Result<()> {
        #[cfg(test)]
        if self.inject.truncate {
            return Err(io::Error::other("injected truncate error"));
        }
        self.file.set_len(len)?;
        self.file.sync_all()
    }

    /// After a durable group: start the file over when everything is acknowledged, rewrite it
    /// when acknowledged records make up most of a large file.
    fn compact(&mut self) {
        let magic = SPOOL_MAGIC.len() as u64;
        if self.pending.is_empty() {
            if self.durable_len > magic {
                // Either outcome of a failure here leaves a valid file with nothing pending.
                match self.truncate_to(magic) {
                    Ok(()) => self.durable_len = magic,
                    Err(e) => tracing::warn!(
                        spool = %self.path.display(), error = %e,
                        "spool: could not truncate an all-acknowledged file; will retry"
                    ),
                }
            }
        } else if self.durable_len > REWRITE_BYTES && self.pending_bytes * 2 < self.durable_len {
            match write_pending(&self.path, &self.pending) {
                Ok((file, len)) => {
                    self.file = file;
                    self.durable_len = len;
                    self.pending_bytes = len - magic;
                }
                Err((e, false)) => tracing::warn!(
                    spool = %self.path.display(), error = %e,
                    "spool: rewrite failed, the old file is kept; will retry"
                ),
                Err((e, true)) => {
                    let reason: Arc<str> = format!(
                        "a rewrite replaced the file but could not be made durable ({e}). Stop this process and restart it: it reopens what is on disk"
                    )
                    .into();
                    tracing::error!(spool = %self.path.display(), reason = %reason, "spool: broken");
                    self.broken = Some(reason);
                }
            }
        }
    }
}

/// Creates `dir` (0700) if needed and fsyncs the parent of each directory created.
fn create_dir_durable(dir: &Path) -> Result<(), SpoolError> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir, "create directory"))?;
    for d in missing.iter().rev() {
        let parent = d
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fsync_dir(parent)?;
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))
}

/// Takes the exclusive lock of the spool in `dir` (released when the file is closed).
fn lock(dir: &Path, spool: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path, "open lock file"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(SpoolError::Locked {
            path: spool.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(io_err(&path, "lock")(e)),
    }
}

/// Writes `pending` as a fresh spool file at `path`: temp file (0600), fsync, rename, fsync of the
/// directory. Returns the file open for appending and its length; on failure, the error and
/// whether the rename was done (the file at `path` is then the new one).
fn write_pending(
    path: &Path,
    pending: &BTreeMap<u64, SpoolRecord>,
) -> Result<(File, u64), (SpoolError, bool)> {
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let tmp = dir.join(TMP_FILE);
    let write_tmp = || -> io::Result<u64> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // A temp file left by an older version keeps its mode when reopened: set it.
        f.set_permissions(Permissions::from_mode(0o600))?;
        let mut buf = Vec::with_capacity(256 << 10);
        buf.extend_from_slice(SPOOL_MAGIC);
        let mut len = 0u64;
        for record in pending.values() {
            format::frame_event(&mut buf, record);
            if buf.len() >= 256 << 10 {
                f.write_all(&buf)?;
                len += buf.len() as u64;
                buf.clear();
            }
        }
        f.write_all(&buf)?;
        len += buf.len() as u64;
        f.sync_all()?;
        Ok(len)
    };
    let len = write_tmp().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        (io_err(&tmp, "write temp file")(e), false)
    })?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        (io_err(path, "rename")(e), false)
    })?;
    fsync_dir(&dir).map_err(|e| (e, true))?;
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| (io_err(path, "open")(e), true))?;
    Ok((file, len))
}
