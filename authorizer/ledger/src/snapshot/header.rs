//! The snapshot's plain header: magic, format version, header length, creation time,
//! watermark, state hash, record counts and resume offsets, closed by a crc32c.
//!
//! The checksum is checked before any field is believed, and the version before any field
//! after the first three is read. Must never: allocate more than the header's bound (1 MiB) or
//! accept a header whose bytes its checksum does not cover.

use std::io::Read;

use super::body::Cursor;
use super::error::read_exact_or;
use super::{
    FORMAT_VERSION, HEADER_LEN_MAX, Header, MAGIC, OFFSETS_MAX, RecordCounts, ResumeOffsets,
    SnapshotError,
};
use crate::state::{WATERMARK_QUORUM, WatermarkVote, WatermarkVotes};
use crate::{HoldId, StateHash, UnixSeconds};

pub(super) fn encode_header(header: &Header, offsets: &ResumeOffsets) -> Vec<u8> {
    let mut fields = Vec::with_capacity(128 + offsets.len() * 32);
    fields.extend_from_slice(&header.created_at_ms.to_be_bytes());
    fields.extend_from_slice(&header.watermark.0.to_be_bytes());
    fields.extend_from_slice(&header.state_hash.0);
    for count in [
        header.counts.accounts,
        header.counts.cards,
        header.counts.holds,
        header.counts.cleared_markers,
        header.counts.pending_atcs,
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
    let votes = header.watermark_votes.largest();
    fields.push(u8::try_from(votes.len()).expect("at most the quorum"));
    for vote in votes {
        fields.extend_from_slice(&vote.at.0.to_be_bytes());
        fields.extend_from_slice(&vote.hold_id.0);
        fields.push(vote.kind);
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

pub(super) fn decode_header(r: &mut impl Read) -> Result<(Header, ResumeOffsets), SnapshotError> {
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
        pending_atcs: c.u64().map_err(header_invalid)?,
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
    let vote_count = usize::from(c.u8().map_err(header_invalid)?);
    if vote_count > WATERMARK_QUORUM {
        return Err(SnapshotError::HeaderInvalid {
            reason: "more watermark votes than the quorum",
        });
    }
    let mut votes = Vec::with_capacity(vote_count);
    for _ in 0..vote_count {
        votes.push(WatermarkVote {
            at: UnixSeconds(c.i64().map_err(header_invalid)?),
            hold_id: HoldId(c.array::<16>().map_err(header_invalid)?),
            kind: c.u8().map_err(header_invalid)?,
        });
    }
    let watermark_votes =
        WatermarkVotes::from_largest(votes).ok_or(SnapshotError::HeaderInvalid {
            reason: "watermark votes not distinct and largest first",
        })?;
    if watermark_votes.watermark() != watermark {
        return Err(SnapshotError::HeaderInvalid {
            reason: "the watermark does not follow from its votes",
        });
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
            watermark_votes,
            state_hash,
            counts,
        },
        offsets,
    ))
}
