//! Why a snapshot was not written or not accepted, and the mapping of I/O errors onto it.
//!
//! Every variant says what to do (most often: skip this snapshot for the previous one). Must
//! never: carry record content (a snapshot holds PAN hashes and account ids, not for logs).

use std::fmt;
use std::io::{self, Read};

use crate::StateHash;

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

pub(super) fn read_exact_or(
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

pub(super) fn body_error(e: io::Error) -> SnapshotError {
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
