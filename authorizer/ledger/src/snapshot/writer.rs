//! Writing a snapshot: the header, then the state's records streamed through one zstd frame,
//! then the frame's crc32c.
//!
//! Must never: hold a second copy of the state (records go to zstd one at a time), read a
//! clock (the creation time is the caller's), or write a body its header does not count.

use std::io::{self, Write};

use super::header::encode_header;
use super::{FORMAT_VERSION, Header, RECORD_LEN_MAX, RecordCounts, ResumeOffsets, SnapshotError};
use crate::State;

/// Level 1, not zstd's default 3: on 10 M accounts and cards (a body of 1.31 GiB, mostly
/// incompressible PAN hashes) level 1 compresses in ~60% of the time to a file ~5% smaller
/// (measured with the zstd tool: 359 vs 385 MiB), and decompresses as fast.
const ZSTD_LEVEL: i32 = 1;

fn record_counts(state: &State) -> RecordCounts {
    let counts = state.counts();
    RecordCounts {
        accounts: counts.accounts,
        cards: counts.cards,
        holds: counts.holds,
        cleared_markers: counts.cleared_markers,
        pending_atcs: counts.pending_atcs,
    }
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
        watermark_votes: state.watermark_votes().clone(),
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
        + header.counts.cleared_markers
        + header.counts.pending_atcs;
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
