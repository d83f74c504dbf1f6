//! Shared by the ledger, decide and snapshot benchmarks: a counting allocator and generators of
//! large states.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::sync::atomic::{AtomicI64, Ordering};

use ledger::{
    AccountStatus, AccountUpserted, AmountMinor, ApprovalCode, AuthorizationEvent,
    AuthorizationKind, CardExpiry, CardStatus, CardUpserted, Currency, Event, HoldId,
    InstitutionId, PanHash, PanSequence, ResponseCode, Stan, State, Trace, TransmissionStamp,
    UnixSeconds, Version,
};
use sha2::{Digest, Sha256};

/// Counts live heap bytes and allocations (requested sizes; malloc adds ~8–16 bytes each).
pub struct Counting;

pub static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
pub static LIVE_ALLOCATIONS: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        LIVE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        LIVE_ALLOCATIONS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

pub fn live() -> (i64, i64) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_ALLOCATIONS.load(Ordering::Relaxed),
    )
}

/// 2026-11-22T10:15:00Z.
pub const NOW_S: i64 = 1_795_342_500;

pub fn pan_hash(i: u64) -> PanHash {
    PanHash(Sha256::digest(i.to_be_bytes()).into())
}

pub fn account_id(i: u64) -> String {
    format!("acc-{i:08}")
}

pub fn account_event(i: u64, limit_minor: i64) -> Event<'static> {
    Event::AccountUpserted(AccountUpserted {
        event_id: Cow::Owned(format!("a-{i}")),
        at: UnixSeconds(NOW_S - 3600),
        account_id: Cow::Owned(account_id(i)),
        version: Version(1),
        status: AccountStatus::Open,
        currency: Currency::new(986).unwrap(),
        credit_limit: AmountMinor::new(limit_minor).unwrap(),
        posted_balance: AmountMinor::ZERO,
        cleared_holds: Vec::new(),
    })
}

pub fn card_event(i: u64) -> Event<'static> {
    Event::CardUpserted(CardUpserted {
        event_id: Cow::Owned(format!("c-{i}")),
        at: UnixSeconds(NOW_S - 3600),
        account_id: Cow::Owned(account_id(i)),
        card_id: Cow::Owned(format!("card-{i:08}")),
        version: Version(1),
        pan_hash: pan_hash(i),
        pan_last4: *b"0010",
        expiry: CardExpiry {
            year: 2028,
            month: 11,
        },
        psn: PanSequence(1),
        status: CardStatus::Active,
        key_set: Cow::Borrowed("mc-cvn17-1"),
    })
}

pub fn hold_event(i: u64, account: u64) -> Event<'static> {
    let hold_id = HoldId(
        Sha256::digest((i ^ 0x5555_0000_0000).to_be_bytes())[..16]
            .try_into()
            .unwrap(),
    );
    Event::Authorization(AuthorizationEvent {
        kind: AuthorizationKind::HoldPlaced,
        event_id: Cow::Owned(format!("h-{i}")),
        at: UnixSeconds(NOW_S),
        instance: Cow::Borrowed("auth-a"),
        account_id: Cow::Owned(account_id(account)),
        hold_id,
        response_code: ResponseCode::APPROVED,
        network_response_code: None,
        approval_code: Some(ApprovalCode::of_hold(hold_id)),
        amount_minor: AmountMinor::new(1_000).unwrap(),
        currency: Currency::new(986).unwrap(),
        remaining_minor: None,
        expires_at: Some(UnixSeconds(NOW_S + 7 * 86_400)),
        merchant_category: Some(5812),
        unconverted: None,
        content_fingerprint: Some(i | 1),
        card_atc: None,
        decline_reason: None,
        trace: Trace {
            mti: Cow::Borrowed("0100"),
            pan_masked: Cow::Borrowed("541333******0010"),
            transmission: TransmissionStamp(1_122_101_500),
            transmitted_at: UnixSeconds(NOW_S),
            stan: Stan((i % 1_000_000) as u32),
            acquirer: InstitutionId(12345),
            forwarder: InstitutionId(0),
            retrieval_reference: None,
        },
    })
}

/// A state with `n` accounts and `n` cards (one card per account).
pub fn build(state: &mut State, n: u64, limit_minor: i64) {
    for i in 0..n {
        state.apply(&account_event(i, limit_minor)).unwrap();
    }
    for i in 0..n {
        state.apply(&card_event(i)).unwrap();
    }
}

/// CPU time this thread has run, in seconds (`CLOCK_THREAD_CPUTIME_ID`), so that benchmarks on a
/// shared machine can report time on the CPU beside wall-clock time.
pub fn thread_cpu_s() -> Option<f64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the call writes only into it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    (rc == 0).then(|| now.tv_sec as f64 + now.tv_nsec as f64 / 1e9)
}

/// Times `f` in wall-clock and in this thread's CPU time; returns `(wall_s, cpu_s)` (CPU time
/// equals wall time where it cannot be read).
pub fn timed(f: impl FnOnce()) -> (f64, f64) {
    let cpu_before = thread_cpu_s();
    let started = std::time::Instant::now();
    f();
    let wall = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, thread_cpu_s()) {
        (Some(before), Some(after)) => after - before,
        _ => wall,
    };
    (wall, cpu)
}
