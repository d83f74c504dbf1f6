//! Snapshot benchmark (a bench binary printing figures): write and read time and file size for
//! 10,000,000 accounts and 10,000,000 cards (and 1,000,000 holds).
//!
//! Run: `cargo bench -p ledger --bench snapshot_bench` (needs ~6 GiB of RAM and ~1 GiB in
//! the temp directory; `SNAPSHOT_BENCH_N` changes the size).
//!
//! For profiling the read alone: `SNAPSHOT_BENCH_FILE=PATH` writes the snapshot to PATH and
//! keeps it; when PATH already exists, the run skips building and writing and only reads it
//! (`SNAPSHOT_BENCH_READS` times).

#[path = "ledger_support/mod.rs"]
mod support;

use std::io::{BufReader, BufWriter};
use std::time::Instant;

use ledger::snapshot::{self, ResumeOffsets};
use ledger::{LedgerConfig, State};

#[global_allocator]
static ALLOCATOR: support::Counting = support::Counting;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let reads: u32 = std::env::var("SNAPSHOT_BENCH_READS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let kept = std::env::var_os("SNAPSHOT_BENCH_FILE").map(std::path::PathBuf::from);
    if let Some(path) = kept.as_ref().filter(|p| p.exists()) {
        for _ in 0..reads.max(1) {
            let started = Instant::now();
            let file = std::fs::File::open(path).unwrap();
            let len = file.metadata().unwrap().len();
            let (restored, _, header) = snapshot::read_sized(
                BufReader::with_capacity(1 << 20, file),
                len,
                ledger::LedgerConfig::default(),
            )
            .unwrap();
            println!(
                "read {}: {:.2} s; {:?}",
                path.display(),
                started.elapsed().as_secs_f64(),
                header.counts
            );
            drop(restored);
        }
        return;
    }
    let n: u64 = std::env::var("SNAPSHOT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let holds = n / 10;
    let mut state = State::new(LedgerConfig {
        dedup_window_events: 1,
    });
    let started = Instant::now();
    state.reserve(n as usize, n as usize);
    support::build(&mut state, n, 1_000_000);
    for i in 0..holds {
        state.apply(&support::hold_event(i, i)).unwrap();
    }
    let (live_bytes, _) = support::live();
    println!(
        "built {n} accounts, {n} cards, {holds} holds in {:.1} s; heap {:.0} MiB = {:.0} bytes per (account + card)",
        started.elapsed().as_secs_f64(),
        live_bytes as f64 / 1048576.0,
        live_bytes as f64 / n as f64
    );
    let mut offsets = ResumeOffsets::new();
    for p in 0..12 {
        offsets
            .set("account-updates", p, 1_000_000 + i64::from(p))
            .unwrap();
        offsets
            .set("authorizations", p, 2_000_000 + i64::from(p))
            .unwrap();
    }
    let dir =
        std::env::temp_dir().join(format!("authorizer-snapshot-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = kept.clone().unwrap_or_else(|| dir.join("state.snap"));

    let started = Instant::now();
    let hash = state.state_hash();
    let hash_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let file = std::fs::File::create(&path).unwrap();
    let header = snapshot::write(
        BufWriter::with_capacity(1 << 20, file),
        &state,
        &offsets,
        1_795_342_500_000,
    )
    .unwrap();
    let write_s = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "write: {write_s:.2} s (of which state hash ~{hash_s:.2} s), {:.1} MiB ({:.1} bytes per account + card)",
        size as f64 / 1048576.0,
        size as f64 / n as f64
    );
    assert_eq!(header.state_hash, hash);
    drop(state);

    // `SNAPSHOT_BENCH_READS` repeats the read.
    for _ in 0..reads.max(1) {
        let started = Instant::now();
        let file = std::fs::File::open(&path).unwrap();
        let len = file.metadata().unwrap().len();
        let (restored, offsets_back, header) = snapshot::read_sized(
            BufReader::with_capacity(1 << 20, file),
            len,
            ledger::LedgerConfig::default(),
        )
        .unwrap();
        let read_s = started.elapsed().as_secs_f64();
        println!(
            "read (verify checksums, rebuild, recompute state hash): {read_s:.2} s; {:?}",
            restored.counts()
        );
        assert_eq!(header.state_hash, hash);
        assert_eq!(offsets_back, offsets);
        let started = Instant::now();
        assert_eq!(restored.state_hash(), hash);
        println!(
            "  state_hash() of the restored state: {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let started = Instant::now();
        drop(restored);
        println!("  drop: {:.2} s", started.elapsed().as_secs_f64());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
