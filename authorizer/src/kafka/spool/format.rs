//! The spool file's bytes: encoding records and reading a whole file image back.
//!
//! Pure (no I/O): [`parse`] takes the bytes, [`frame_event`] and [`frame_ack`] append to a buffer.
//! Must never: accept a record whose checksum (over its length and body) does not verify, take
//! damage followed by a valid record for a torn tail, or open a file of another format version.

use std::collections::BTreeMap;
use std::path::Path;

use super::{SpoolError, SpoolRecord};

/// First bytes of every spool file; bumped if the format changes.
pub const SPOOL_MAGIC: &[u8; 8] = b"AUTHSPL2";
/// Magic of the first format (checksum over the body only), refused by this version.
pub const SPOOL_MAGIC_V1: &[u8; 8] = b"AUTHSPL1";
/// Largest record body accepted (a guard against reading a corrupt length as an allocation size).
pub const RECORD_BYTES_MAX: usize = 1 << 20;
/// Bytes before a record's body: length and checksum.
pub(super) const HEADER: usize = 8;

const KIND_EVENT: u8 = 1;
const KIND_ACK: u8 = 2;

impl SpoolRecord {
    pub(super) fn body_len(&self) -> usize {
        1 + 8 + 2 + self.topic.len() + 4 + self.key.len() + 4 + self.payload.len()
    }

    /// Bytes of this event's record in the file.
    pub(super) fn frame_len(&self) -> u64 {
        (HEADER + self.body_len()) as u64
    }
}

/// crc32c of the length field followed by the body.
fn checksum(len: [u8; 4], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), body)
}

fn frame(out: &mut [u8], body_start: usize) {
    let len = ((out.len() - body_start) as u32).to_le_bytes();
    let crc = checksum(len, &out[body_start..]).to_le_bytes();
    out[body_start - HEADER..body_start - 4].copy_from_slice(&len);
    out[body_start - 4..body_start].copy_from_slice(&crc);
}

/// Appends the record of event `r` to `out`.
pub(super) fn frame_event(out: &mut Vec<u8>, r: &SpoolRecord) {
    out.extend_from_slice(&[0; HEADER]);
    let start = out.len();
    out.push(KIND_EVENT);
    out.extend_from_slice(&r.seq.to_le_bytes());
    out.extend_from_slice(&(r.topic.len() as u16).to_le_bytes());
    out.extend_from_slice(r.topic.as_bytes());
    out.extend_from_slice(&(r.key.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.key);
    out.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.payload);
    frame(out, start);
}

/// Appends the record "event `seq` acknowledged by Kafka" to `out`.
pub(super) fn frame_ack(out: &mut Vec<u8>, seq: u64) {
    out.extend_from_slice(&[0; HEADER]);
    let start = out.len();
    out.push(KIND_ACK);
    out.extend_from_slice(&seq.to_le_bytes());
    frame(out, start);
}

/// What a file image holds.
pub(super) struct Parsed {
    pub pending: BTreeMap<u64, SpoolRecord>,
    pub max_seq: u64,
    /// Bytes up to the end of the last valid record; less than the file if its tail was torn.
    pub valid_len: usize,
}

pub(super) enum Decoded {
    Event(SpoolRecord),
    Ack(u64),
}

enum At {
    Valid {
        end: usize,
        record: Decoded,
    },
    /// The checksum verifies but the body does not decode: written wrong, never torn.
    Malformed,
    Bad(&'static str),
}

fn record_at(bytes: &[u8], at: usize) -> At {
    let Some(head) = bytes.get(at..at + HEADER) else {
        return At::Bad("header cut short");
    };
    let len = [head[0], head[1], head[2], head[3]];
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let body_len = u32::from_le_bytes(len) as usize;
    if body_len > RECORD_BYTES_MAX {
        return At::Bad("record length over the limit");
    }
    let end = at + HEADER + body_len;
    let Some(body) = bytes.get(at + HEADER..end) else {
        return At::Bad("record cut short");
    };
    if checksum(len, body) != crc {
        return At::Bad("checksum mismatch");
    }
    match decode_body(body) {
        Some(record) => At::Valid { end, record },
        None => At::Malformed,
    }
}

/// Reads a spool file image. A damaged record is a torn tail (an append interrupted by a crash,
/// never acknowledged to its caller) only if no valid record starts anywhere after it.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed, SpoolError> {
    let magic = bytes.get(..SPOOL_MAGIC.len());
    if magic == Some(SPOOL_MAGIC_V1) {
        return Err(SpoolError::OldFormat {
            path: path.to_path_buf(),
        });
    }
    if magic != Some(SPOOL_MAGIC) {
        // Also a file shorter than the magic: the spool file only ever appears whole (rename).
        return Err(SpoolError::BadMagic {
            path: path.to_path_buf(),
        });
    }
    let mut out = Parsed {
        pending: BTreeMap::new(),
        max_seq: 0,
        valid_len: SPOOL_MAGIC.len(),
    };
    let mut at = SPOOL_MAGIC.len();
    while at < bytes.len() {
        match record_at(bytes, at) {
            At::Valid { end, record } => {
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
            At::Malformed => {
                return Err(SpoolError::Malformed {
                    path: path.to_path_buf(),
                    offset: at as u64,
                });
            }
            At::Bad(what) => {
                let next_valid = (at + 1..bytes.len())
                    .find(|&y| matches!(record_at(bytes, y), At::Valid { .. }));
                if let Some(next_valid) = next_valid {
                    return Err(SpoolError::Corrupt {
                        path: path.to_path_buf(),
                        offset: at as u64,
                        next_valid: next_valid as u64,
                        what,
                    });
                }
                break; // torn tail: out.valid_len stays at its start
            }
        }
    }
    Ok(out)
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
