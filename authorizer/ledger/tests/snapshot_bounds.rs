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
