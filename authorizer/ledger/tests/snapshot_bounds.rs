//! Memory bounds of the snapshot reader: a header is protected only by a CRC, so whatever it
//! claims, the reader must not reserve more than the file can hold. A counting allocator records
//! the largest single request made while reading.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ledger::snapshot::{self, ResumeOffsets, SnapshotError};
use ledger::{LedgerConfig, State};

struct Largest;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records the largest request.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

/// An empty state's snapshot whose header claims `count` records of every kind (its CRC made
/// right again, so only the body can tell).
fn lying_header(count: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    snapshot::write(
        &mut bytes,
        &State::new(LedgerConfig::default()),
        &ResumeOffsets::new(),
        0,
    )
    .unwrap();
    // magic 8, version 4, length 4, created_at 8, watermark 8, state hash 32, then 4 counts.
    for i in 0..4 {
        let at = 16 + 48 + 8 * i;
        bytes[at..at + 8].copy_from_slice(&count.to_be_bytes());
    }
    let header_len = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let crc = crc32c::crc32c(&bytes[..16 + header_len]);
    bytes[16 + header_len..20 + header_len].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[test]
fn a_header_that_claims_billions_of_records_reserves_no_more_than_the_file_can_hold() {
    let file = lying_header(1 << 33);
    for sized in [false, true] {
        LARGEST.store(0, Ordering::Relaxed);
        let result = if sized {
            snapshot::read_sized(&file[..], file.len() as u64, LedgerConfig::default())
        } else {
            snapshot::read(&file[..])
        };
        assert!(
            matches!(result, Err(SnapshotError::CountMismatch { .. })),
            "the body has no records: {:?}",
            result.map(|(_, _, header)| header)
        );
        let largest = LARGEST.load(Ordering::Relaxed);
        // The reader's own buffers (channels of batches, the dedup window) are a few MiB; a
        // reservation from the header's counts would be gigabytes.
        assert!(
            largest < 64 << 20,
            "largest single allocation {largest} bytes for a {}-byte file (sized: {sized})",
            file.len()
        );
    }
}

/// An empty state's snapshot whose body is re-compressed declaring a zstd window of
/// 2^`window_log` (its trailer made right again: only the window differs from the writer's).
fn with_window(window_log: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    snapshot::write(
        &mut bytes,
        &State::new(LedgerConfig::default()),
        &ResumeOffsets::new(),
        0,
    )
    .unwrap();
    let header_len = 20 + u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let body = zstd::decode_all(&bytes[header_len..bytes.len() - 4]).unwrap();
    let mut frame = Vec::new();
    {
        use std::io::Write;
        let mut encoder = zstd::stream::write::Encoder::new(&mut frame, 1).unwrap();
        encoder.include_checksum(true).unwrap();
        encoder.window_log(window_log).unwrap();
        encoder.write_all(&body).unwrap();
        encoder.finish().unwrap();
    }
    bytes.truncate(header_len);
    bytes.extend_from_slice(&frame);
    bytes.extend_from_slice(&crc32c::crc32c(&frame).to_be_bytes());
    bytes
}

#[test]
fn a_body_that_declares_a_window_above_the_bound_is_rejected_before_zstd_allocates_it() {
    let within = with_window(snapshot::WINDOW_LOG_MAX);
    snapshot::read_sized(&within[..], within.len() as u64, LedgerConfig::default())
        .expect("a window at the bound is read");
    // zstd's own default limit is 2^27: without the bound this 128 MiB window is allocated for
    // a file of a few hundred bytes.
    let beyond = with_window(27);
    let result = snapshot::read_sized(&beyond[..], beyond.len() as u64, LedgerConfig::default());
    assert!(
        matches!(result, Err(SnapshotError::BodyCorrupt { .. })),
        "{:?}",
        result.map(|(_, _, header)| header)
    );
}

/// The input the `snapshot_decode` fuzz target found (its frame declared a window of about
/// 28 MiB, allocated before any record was read): it is rejected as a corrupt body.
#[test]
fn fuzz_regression_oversized_zstd_window() {
    let input = include_bytes!(
        "../../../fuzz/regressions/snapshot_decode/oom-610658287ff8a07b352ce95c9127921953e751f2"
    );
    let result = snapshot::read_sized(&input[..], input.len() as u64, LedgerConfig::default());
    assert!(
        matches!(result, Err(SnapshotError::BodyCorrupt { .. })),
        "{:?}",
        result.map(|(_, _, header)| header)
    );
}
