//! The local snapshot store, `state.dir/snapshots/`, shared by both daemons: the snapshotter
//! writes and prunes it, the authorizer and the snapshotter restore from it at start.
//!
//! * [`LocalStore::write`]: a snapshot under a temporary name, fsync'd, renamed to a name that
//!   sorts by time (`snapshot-<created_at_ms, 16 digits>.authsnap`), then the directory fsync'd:
//!   a crash leaves either the whole file under its name or nothing under it.
//! * [`LocalStore::prune`]: keeps the newest `keep` files, and never the one named as the newest
//!   valid.
//! * [`restore`]: the newest snapshot that passes every check of `ledger::snapshot` (checksums,
//!   state hash, format version) and whose offsets the log still holds, else the log from its
//!   beginning; each snapshot skipped is logged and reported with its reason. A state whose
//!   start the log no longer holds is refused ([`RestoreError::LogIncomplete`]).
//!
//! Must never: delete the newest valid snapshot, leave a partial file under a snapshot's name,
//! return a state that failed a check or that misses records the log no longer holds, or log a
//! record's content (a snapshot holds account ids and PAN hashes).

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use ledger::snapshot::{self, Header, SnapshotError};
use ledger::{LedgerConfig, State};

use crate::kafka::{LogError, Offsets, StartOffsets, offsets_from_snapshot, snapshot_offsets};

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".authsnap";
const TEMPORARY_PREFIX: &str = ".tmp-";

/// One snapshot file of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The file name (the key it will have in S3).
    pub key: String,
    pub path: PathBuf,
    /// From the name: when the snapshotter wrote it (Unix milliseconds).
    pub created_at_ms: i64,
}

/// A snapshot written by [`LocalStore::write`].
#[derive(Clone, Debug)]
pub struct Written {
    pub entry: Entry,
    pub header: Header,
    pub offsets: Offsets,
    pub bytes: u64,
}

/// The directory of local snapshots.
#[derive(Clone, Debug)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    pub fn new(dir: impl Into<PathBuf>) -> LocalStore {
        LocalStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The snapshots, newest first (a missing directory holds none). Temporary files and other
    /// names are not snapshots.
    pub fn list(&self) -> io::Result<Vec<Entry>> {
        let read = match fs::read_dir(&self.dir) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut entries = Vec::new();
        for item in read {
            let item = item?;
            let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Some(created_at_ms) = parse_name(&name) {
                entries.push(Entry {
                    path: item.path(),
                    key: name,
                    created_at_ms,
                });
            }
        }
        entries.sort_by(|a, b| b.key.cmp(&a.key));
        Ok(entries)
    }

    /// Writes `state` with the `offsets` it stands at, durably (see the module doc). The name
    /// carries `created_at_ms`, moved on by a millisecond while a file of that name exists.
    pub fn write(
        &self,
        state: &State,
        offsets: &Offsets,
        created_at_ms: i64,
    ) -> Result<Written, SnapshotError> {
        fs::create_dir_all(&self.dir)?;
        let resume = snapshot_offsets(offsets)?;
        let mut at = created_at_ms.max(0);
        while self.dir.join(name_of(at)).exists() {
            at += 1;
        }
        let key = name_of(at);
        let temporary = self.dir.join(format!("{TEMPORARY_PREFIX}{key}"));
        let file = File::create_new(&temporary)?;
        let result = (|| {
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let header = snapshot::write(&mut w, state, &resume, at)?;
            let file = w
                .into_inner()
                .map_err(|e| SnapshotError::Io(e.into_error()))?;
            file.sync_all()?;
            let bytes = file.metadata()?.len();
            Ok::<_, SnapshotError>((header, bytes))
        })();
        let (header, bytes) = match result {
            Ok(done) => done,
            Err(e) => {
                let _ = fs::remove_file(&temporary);
                return Err(e);
            }
        };
        let path = self.dir.join(&key);
        fs::rename(&temporary, &path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(Written {
            entry: Entry {
                key,
                path,
                created_at_ms: at,
            },
            header,
            offsets: offsets.clone(),
            bytes,
        })
    }

    /// Deletes all but the newest `keep` snapshots; `newest_valid` (a key) is never deleted.
    /// Returns the keys deleted.
    pub fn prune(&self, keep: usize, newest_valid: &str) -> io::Result<Vec<String>> {
        let mut removed = Vec::new();
        for entry in self.list()?.into_iter().skip(keep.max(1)) {
            if entry.key == newest_valid {
                continue;
            }
            fs::remove_file(&entry.path)?;
            removed.push(entry.key);
        }
        if !removed.is_empty() {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(removed)
    }

    /// Deletes the temporary files a crash left behind (never a snapshot).
    pub fn remove_temporaries(&self) -> io::Result<()> {
        let read = match fs::read_dir(&self.dir) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for item in read {
            let item = item?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name
                .strip_prefix(TEMPORARY_PREFIX)
                .and_then(parse_name)
                .is_some()
            {
                fs::remove_file(item.path())?;
            }
        }
        Ok(())
    }
}

fn name_of(created_at_ms: i64) -> String {
    format!("{PREFIX}{created_at_ms:016}{SUFFIX}")
}

fn parse_name(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads and verifies one snapshot file (every check of `ledger::snapshot`).
pub fn read_file(
    path: &Path,
    config: LedgerConfig,
) -> Result<(State, snapshot::ResumeOffsets, Header), SnapshotError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    snapshot::read_sized(io::BufReader::with_capacity(1 << 20, file), len, config)
}

/// Why a snapshot was skipped, as a metric label: `checksum`, `state_hash`, `future_version`,
/// `old_version`, `truncated`, `invalid`, `io`, or `out_of_range` (the log no longer holds its
/// offsets; see [`restore`]).
pub fn skip_kind(e: &SnapshotError) -> &'static str {
    match e {
        SnapshotError::HeaderChecksum { .. }
        | SnapshotError::BodyChecksum { .. }
        | SnapshotError::BodyCorrupt { .. } => "checksum",
        SnapshotError::StateHashMismatch { .. } => "state_hash",
        SnapshotError::FutureVersion { .. } => "future_version",
        SnapshotError::UnsupportedVersion { .. } => "old_version",
        SnapshotError::Truncated { .. } => "truncated",
        SnapshotError::Io(_) => "io",
        _ => "invalid",
    }
}

/// Unix milliseconds as RFC 3339 UTC text, `2026-12-04T02:39:16.123Z`.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    let (secs, ms) = (unix_ms.div_euclid(1000), unix_ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to the civil date (proleptic Gregorian), H. Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Where a restored state came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoredFrom {
    /// A snapshot of the store, then the log from its offsets.
    Snapshot { key: String, created_at_ms: i64 },
    /// No usable snapshot: the log from its beginning.
    Beginning,
}

/// A snapshot [`restore`] did not use, and why.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub key: String,
    /// [`skip_kind`]'s label.
    pub kind: &'static str,
    pub reason: String,
}

/// What [`restore`] opened.
pub struct Restored<T> {
    pub opened: T,
    pub from: RestoredFrom,
    pub skipped: Vec<Skipped>,
}

/// Why no state could be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("kafka: cannot read the log: {0}")]
    Log(LogError),
    #[error(
        "the log no longer holds its beginning ({tp} starts at offset {low}) and no snapshot under {dir} can be used ({skipped} skipped): the state cannot be rebuilt; restore a snapshot of this log into {dir} (or from S3) and start again"
    )]
    LogIncomplete {
        tp: String,
        low: i64,
        dir: String,
        skipped: usize,
    },
    #[error("cannot list the snapshots under {dir}: {error}")]
    List { dir: String, error: io::Error },
}

/// Restores a state: the newest valid snapshot of `store` whose offsets the log still holds,
/// else the empty state from the log's beginning. `open` starts reading the log for a state
/// from the given offsets, and returns what it opened with the offset every partition starts
/// at; an [`LogError::OffsetOutOfRange`] from it skips the snapshot for the previous one, any
/// other error is returned. A partition that starts above 0 without a snapshot's offset for it
/// misses records: refused.
pub fn restore<T>(
    store: &LocalStore,
    config: LedgerConfig,
    mut open: impl FnMut(State, StartOffsets) -> Result<(T, Offsets), LogError>,
) -> Result<Restored<T>, RestoreError> {
    let entries = store.list().map_err(|error| RestoreError::List {
        dir: store.dir().display().to_string(),
        error,
    })?;
    let mut skipped = Vec::new();
    fn skip(skipped: &mut Vec<Skipped>, key: &str, kind: &'static str, reason: String) {
        tracing::warn!(snapshot = %key, kind, reason = %reason, "skipping this snapshot for the previous one");
        skipped.push(Skipped {
            key: key.to_owned(),
            kind,
            reason,
        });
    }
    for entry in entries {
        let (state, resume, header) = match read_file(&entry.path, config.clone()) {
            Ok(read) => read,
            Err(e) => {
                skip(&mut skipped, &entry.key, skip_kind(&e), e.to_string());
                continue;
            }
        };
        let at = offsets_from_snapshot(&resume);
        match open(state, StartOffsets::At(at.clone())) {
            Ok((opened, started)) => {
                if let Some((tp, low)) = missing_start(&started, &at) {
                    return Err(RestoreError::LogIncomplete {
                        tp,
                        low,
                        dir: store.dir().display().to_string(),
                        skipped: skipped.len(),
                    });
                }
                tracing::info!(
                    snapshot = %entry.key,
                    state_hash = %header.state_hash,
                    accounts = header.counts.accounts,
                    cards = header.counts.cards,
                    holds = header.counts.holds,
                    "restored from a snapshot; the log follows from its offsets"
                );
                return Ok(Restored {
                    opened,
                    from: RestoredFrom::Snapshot {
                        key: entry.key,
                        created_at_ms: header.created_at_ms,
                    },
                    skipped,
                });
            }
            Err(e @ LogError::OffsetOutOfRange { .. }) => {
                skip(&mut skipped, &entry.key, "out_of_range", e.to_string());
            }
            Err(e) => return Err(RestoreError::Log(e)),
        }
    }
    let (opened, started) =
        open(State::new(config), StartOffsets::Beginning).map_err(RestoreError::Log)?;
    if let Some((tp, low)) = missing_start(&started, &Offsets::new()) {
        return Err(RestoreError::LogIncomplete {
            tp,
            low,
            dir: store.dir().display().to_string(),
            skipped: skipped.len(),
        });
    }
    Ok(Restored {
        opened,
        from: RestoredFrom::Beginning,
        skipped,
    })
}

/// A partition that starts above 0 although the state has no offset for it: records below its
/// start are gone from the log and not in the state.
fn missing_start(started: &Offsets, known: &Offsets) -> Option<(String, i64)> {
    started
        .iter()
        .find(|(tp, start)| **start > 0 && !known.contains_key(*tp))
        .map(|(tp, start)| (tp.to_string(), *start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::TopicPartition;

    #[test]
    fn names_sort_by_time_and_other_files_are_not_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("snapshots"));
        assert!(store.list().unwrap().is_empty(), "a missing dir holds none");
        let state = State::new(LedgerConfig::default());
        let mut offsets = Offsets::new();
        offsets.insert(TopicPartition::new("account-updates", 0), 7);
        let a = store.write(&state, &offsets, 999).unwrap();
        let b = store.write(&state, &offsets, 1_000).unwrap();
        let c = store.write(&state, &offsets, 1_000).unwrap();
        assert_eq!(
            c.entry.created_at_ms, 1_001,
            "a taken name moves on by 1 ms"
        );
        fs::write(store.dir().join("notes.txt"), "x").unwrap();
        fs::write(
            store.dir().join(".tmp-snapshot-0000000000002000.authsnap"),
            "x",
        )
        .unwrap();
        let keys: Vec<String> = store.list().unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, [c.entry.key, b.entry.key, a.entry.key.clone()]);
        store.remove_temporaries().unwrap();
        assert!(store.dir().join("notes.txt").exists());
        assert!(
            !store
                .dir()
                .join(".tmp-snapshot-0000000000002000.authsnap")
                .exists()
        );
        let (_, resume, header) = read_file(&a.entry.path, LedgerConfig::default()).unwrap();
        assert_eq!(offsets_from_snapshot(&resume), offsets);
        assert_eq!(header.created_at_ms, 999);
    }

    #[test]
    fn prune_keeps_the_newest_and_never_the_newest_valid() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let state = State::new(LedgerConfig::default());
        let written: Vec<Written> = (0..5)
            .map(|i| store.write(&state, &Offsets::new(), 10 * i).unwrap())
            .collect();
        let removed = store.prune(2, &written[1].entry.key).unwrap();
        assert_eq!(
            removed,
            [written[2].entry.key.clone(), written[0].entry.key.clone()]
        );
        let keys: Vec<String> = store.list().unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(
            keys,
            [
                written[4].entry.key.clone(),
                written[3].entry.key.clone(),
                written[1].entry.key.clone()
            ]
        );
    }

    #[test]
    fn restore_skips_a_corrupt_newest_snapshot_and_refuses_a_log_without_its_beginning() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let state = State::new(LedgerConfig::default());
        let tp = TopicPartition::new("account-updates", 0);
        let mut offsets = Offsets::new();
        offsets.insert(tp.clone(), 5);
        let old = store.write(&state, &offsets, 1).unwrap();
        offsets.insert(tp.clone(), 9);
        let new = store.write(&state, &offsets, 2).unwrap();
        let mut bytes = fs::read(&new.entry.path).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0x40;
        fs::write(&new.entry.path, bytes).unwrap();
        let restored = restore(&store, LedgerConfig::default(), |_, start| match start {
            StartOffsets::At(at) => Ok((at.clone(), at)),
            StartOffsets::Beginning => unreachable!("a valid snapshot remains"),
        })
        .unwrap();
        assert_eq!(restored.opened.get(&tp), Some(&5));
        assert_eq!(
            restored.from,
            RestoredFrom::Snapshot {
                key: old.entry.key.clone(),
                created_at_ms: 1
            }
        );
        assert_eq!(restored.skipped.len(), 1);
        assert_eq!(restored.skipped[0].key, new.entry.key);

        // Offsets the log no longer holds: the beginning, which the log no longer holds either.
        let refused = restore(&store, LedgerConfig::default(), |_, start| match start {
            StartOffsets::At(_) => Err(LogError::OffsetOutOfRange {
                tp: tp.clone(),
                offset: 5,
                low: 100,
                high: 200,
            }),
            StartOffsets::Beginning => Ok(((), [(tp.clone(), 100)].into_iter().collect())),
        });
        match refused {
            Err(RestoreError::LogIncomplete { low, skipped, .. }) => {
                assert_eq!((low, skipped), (100, 2));
            }
            other => panic!("expected LogIncomplete, got {:?}", other.map(|r| r.from)),
        }
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_709_164_800_123), "2024-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
