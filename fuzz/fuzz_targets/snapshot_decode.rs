//! Any bytes as a snapshot file, read the way the authorizer restores one (`read_sized` with the
//! input's length): the reader must return an error or a state, never panic, and never allocate
//! past its documented bounds (run with `-malloc_limit_mb` and `-rss_limit_mb`, see
//! `docs/ledger.md`). What it accepts must hold the header's hash and counts, and write back to
//! a snapshot that reads again to the same state.
//!
//! The dedup window is replica-local (never read from the file), so it is kept small here: the
//! default one is a 32 MiB allocation per input, which would cost most of each run.
#![no_main]

use ledger::LedgerConfig;
use ledger::snapshot;
use libfuzzer_sys::fuzz_target;

fn config() -> LedgerConfig {
    LedgerConfig {
        dedup_window_events: 1 << 10,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok((state, offsets, header)) = snapshot::read_sized(data, data.len() as u64, config())
    else {
        return;
    };
    assert_eq!(state.state_hash(), header.state_hash);
    state.assert_invariants();
    let mut again = Vec::new();
    snapshot::write(&mut again, &state, &offsets, header.created_at_ms)
        .expect("an accepted state writes");
    let (back, offsets_back, header_back) =
        snapshot::read_sized(&again[..], again.len() as u64, config())
            .expect("a written snapshot reads");
    assert_eq!(back.state_hash(), state.state_hash());
    assert_eq!(offsets_back, offsets);
    assert_eq!(header_back, header);
});
