//! Allocations per message, counted with a counting global allocator (the only test in this
//! binary, so no other thread allocates while it counts).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use iso8583::{Dialect, Message};

#[path = "common/samples.rs"]
mod samples;

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Ordering::Relaxed);
    f();
    ALLOCS.load(Ordering::Relaxed) - before
}

#[test]
fn allocations_per_message() {
    for (dialect, decode_allocs) in [(Dialect::ascii(), 0), (Dialect::mastercard(), 1)] {
        for b in samples::mix() {
            let frame: Bytes = b.encode(&dialect).unwrap();
            // The first clone of a Vec-backed Bytes allocates its shared header; a frame from
            // the framing codec (BytesMut::split_to) is already shared.
            let _warm = frame.clone();
            let mut msg = None;
            let n = count(|| msg = Some(Message::decode(&dialect, frame.clone()).unwrap()));
            assert_eq!(n, decode_allocs, "decode {} {}", dialect.name(), b.mti());
            let msg = msg.unwrap();
            let n = count(|| drop(msg.encode(&dialect).unwrap()));
            assert_eq!(
                n,
                1,
                "encode {} {}: one output buffer",
                dialect.name(),
                b.mti()
            );
            let mut out = BytesMut::with_capacity(4096);
            let n = count(|| msg.encode_into(&dialect, &mut out).unwrap());
            assert_eq!(n, 0, "encode_into a buffer with room {}", dialect.name());
        }
    }
}
