//! The snapshot format: roundtrip, and precise rejection of corrupt, truncated, foreign and
//! future-version files.

#[path = "ledger_support/mod.rs"]
mod support;

use ledger::snapshot::{self, ResumeOffsets, SnapshotError};
use ledger::{LedgerConfig, State};
use proptest::prelude::*;

fn populated(events: &[support::LogEvent]) -> State {
    let mut state = State::new(LedgerConfig::default());
    for e in events {
        state.apply_json(e.source, &e.payload).unwrap();
    }
    state
}

fn offsets() -> ResumeOffsets {
    let mut offsets = ResumeOffsets::new();
    offsets.set("account-updates", 0, 1234).unwrap();
    offsets.set("account-updates", 1, 99).unwrap();
    offsets.set("authorizations", 0, 5).unwrap();
    offsets
}

fn fixed_state() -> State {
    let specs = [
        support::Spec::Account {
            version: 1,
            limit: 10_000,
            balance: 10,
            status: 0,
            cleared: vec![1],
            at_days: 0,
        },
        support::Spec::Card {
            card: 0,
            version: 1,
            status: 0,
            account: 0,
        },
        support::Spec::Card {
            card: 1,
            version: 2,
            status: 2,
            account: 1,
        },
        support::Spec::Placed {
            hold: 0,
            amount: 500,
            at_days: 0,
        },
        support::Spec::Placed {
            hold: 1,
            amount: 700,
            at_days: 0,
        },
        support::Spec::Released {
            hold: 3,
            remaining: 0,
            at_days: 1,
        },
        support::Spec::Declined {
            hold: 2,
            code: 0,
            at_days: 0,
        },
    ];
    let events: Vec<_> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| support::render(s, 0, 0, i))
        .collect();
    populated(&events)
}

fn encode(state: &State) -> Vec<u8> {
    let mut bytes = Vec::new();
    snapshot::write(&mut bytes, state, &offsets(), 1_795_342_500_000).unwrap();
    bytes
}

#[test]
fn roundtrip_keeps_hash_counts_offsets_and_header() {
    let state = fixed_state();
    let bytes = encode(&state);
    let (restored, offsets_back, header) = snapshot::read(&bytes[..]).unwrap();
    assert_eq!(restored.state_hash(), state.state_hash());
    assert_eq!(header.state_hash, state.state_hash());
    assert_eq!(header.created_at_ms, 1_795_342_500_000);
    assert_eq!(header.format_version, snapshot::FORMAT_VERSION);
    assert_eq!(header.counts.holds, state.counts().holds);
    assert_eq!(offsets_back, offsets());
    assert_eq!(offsets_back.get("account-updates", 0), Some(1234));
    restored.assert_invariants();
    let index = restored.account_by_id("acc-0").unwrap();
    let now = ledger::UnixSeconds(support::T0 + 3600);
    assert_eq!(
        restored.open_to_buy(index, now),
        state.open_to_buy(state.account_by_id("acc-0").unwrap(), now)
    );
}

#[test]
fn empty_state_roundtrips() {
    let state = State::new(LedgerConfig::default());
    let mut bytes = Vec::new();
    snapshot::write(&mut bytes, &state, &ResumeOffsets::new(), 0).unwrap();
    let (restored, offsets, _) = snapshot::read(&bytes[..]).unwrap();
    assert_eq!(restored.state_hash(), state.state_hash());
    assert!(offsets.is_empty());
}

#[test]
fn every_flipped_byte_is_rejected() {
    let bytes = encode(&fixed_state());
    for position in 0..bytes.len() {
        let mut corrupt = bytes.clone();
        corrupt[position] ^= 0x01;
        assert!(
            snapshot::read(&corrupt[..]).is_err(),
            "flip at {position} of {} accepted",
            bytes.len()
        );
    }
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = encode(&fixed_state());
    for len in 0..bytes.len() {
        assert!(
            snapshot::read(&bytes[..len]).is_err(),
            "truncation to {len} accepted"
        );
    }
    assert!(matches!(
        snapshot::read(&bytes[..10]),
        Err(SnapshotError::Truncated { part: "header" })
    ));
    assert!(matches!(
        snapshot::read(&bytes[..bytes.len() - 3]),
        Err(SnapshotError::Truncated { part: "trailer" })
    ));
    assert!(matches!(
        snapshot::read(&bytes[..bytes.len() - 12]),
        Err(SnapshotError::Truncated { part: "body" }) | Err(SnapshotError::BodyCorrupt { .. })
    ));
}

#[test]
fn precise_errors() {
    let bytes = encode(&fixed_state());
    assert!(matches!(
        snapshot::read(&b"PK\x03\x04 not a snapshot at all"[..]),
        Err(SnapshotError::NotASnapshot { .. })
    ));
    let mut header_flip = bytes.clone();
    header_flip[20] ^= 0xff;
    assert!(matches!(
        snapshot::read(&header_flip[..]),
        Err(SnapshotError::HeaderChecksum { .. })
    ));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        snapshot::read(&trailing[..]),
        Err(SnapshotError::TrailingBytes)
    ));
    // A future version with a valid header checksum.
    let future = with_version(&bytes, snapshot::FORMAT_VERSION + 1);
    match snapshot::read(&future[..]) {
        Err(SnapshotError::FutureVersion { found, supported })
            if found == snapshot::FORMAT_VERSION + 1 && supported == snapshot::FORMAT_VERSION => {}
        other => panic!("expected FutureVersion, got {other:?}"),
    }
    let text = SnapshotError::FutureVersion {
        found: 3,
        supported: 2,
    }
    .to_string();
    assert!(text.contains("upgrade"), "{text}");
}

/// `bytes` with another format version and a valid header checksum.
fn with_version(bytes: &[u8], version: u32) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[8..12].copy_from_slice(&version.to_be_bytes());
    let header_len = u32::from_be_bytes(out[12..16].try_into().unwrap()) as usize;
    let crc = crc32c::crc32c(&out[..16 + header_len]);
    out[16 + header_len..20 + header_len].copy_from_slice(&crc.to_be_bytes());
    out
}

#[test]
fn versions_1_to_3_are_rejected_as_unsupported() {
    assert_eq!(snapshot::FORMAT_VERSION, 4);
    for version in [1, 2, 3] {
        let old = with_version(&encode(&fixed_state()), version);
        match snapshot::read(&old[..]) {
            Err(SnapshotError::UnsupportedVersion {
                found,
                supported: 4,
            }) if found == version => {}
            other => panic!("expected UnsupportedVersion, got {other:?}"),
        }
    }
    let text = SnapshotError::UnsupportedVersion {
        found: 3,
        supported: 4,
    }
    .to_string();
    assert!(text.contains("older") && text.contains("rebuild"), "{text}");
    assert!(matches!(
        snapshot::read(&with_version(&encode(&fixed_state()), 0)[..]),
        Err(SnapshotError::HeaderInvalid {
            reason: "format version 0"
        })
    ));
}

#[test]
fn a_header_that_lies_about_the_hash_is_rejected() {
    let state = fixed_state();
    let mut bytes = encode(&state);
    // Header: magic 8, version 4, len 4, created 8, watermark 8, then the hash.
    bytes[32] ^= 0x01;
    let header_len = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let crc = crc32c::crc32c(&bytes[..16 + header_len]);
    bytes[16 + header_len..20 + header_len].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        snapshot::read(&bytes[..]),
        Err(SnapshotError::StateHashMismatch { .. })
    ));
}

#[test]
fn offsets_are_bounded() {
    let mut offsets = ResumeOffsets::new();
    assert!(offsets.set("", 0, 0).is_err());
    assert!(offsets.set("t", -1, 0).is_err());
    assert!(offsets.set("t", 0, -5).is_err());
    assert!(offsets.set(&"x".repeat(250), 0, 0).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// decode(encode(state)) has the same hash; any flipped byte or truncation is rejected.
    #[test]
    fn snapshot_roundtrip_and_corruption(events in support::events(), flip in any::<prop::sample::Index>(), mask in 1u8..=255, cut in any::<prop::sample::Index>()) {
        let state = populated(&events);
        let bytes = encode(&state);
        let (restored, _, header) = snapshot::read(&bytes[..]).unwrap();
        prop_assert_eq!(restored.state_hash(), state.state_hash());
        prop_assert_eq!(header.state_hash, state.state_hash());
        restored.assert_invariants();
        let mut corrupt = bytes.clone();
        corrupt[flip.index(bytes.len())] ^= mask;
        prop_assert!(snapshot::read(&corrupt[..]).is_err());
        let len = cut.index(bytes.len());
        prop_assert!(snapshot::read(&bytes[..len]).is_err());
    }
}

#[path = "../benches/ledger_support/mod.rs"]
mod bench_support;

/// A state big enough that the reader's batched, bucket-ordered inserts run (thousands of
/// accounts, cards and holds): it roundtrips, every account and card is found again.
#[test]
fn a_large_state_roundtrips() {
    let n = 6000u64;
    let mut state = State::new(LedgerConfig::default());
    bench_support::build(&mut state, n, 1_000_000);
    for i in 0..n / 3 {
        state.apply(&bench_support::hold_event(i, i * 2)).unwrap();
    }
    let bytes = encode(&state);
    let (restored, _, header) = snapshot::read(&bytes[..]).unwrap();
    restored.assert_invariants();
    assert_eq!(restored.state_hash(), state.state_hash());
    assert_eq!(header.state_hash, state.state_hash());
    assert_eq!(restored.counts(), {
        let mut counts = state.counts();
        counts.dedup_window = 0;
        counts
    });
    let now = ledger::UnixSeconds(bench_support::NOW_S);
    for i in 0..n {
        let id = bench_support::account_id(i);
        let index = restored
            .account_by_id(&id)
            .expect("every account is indexed");
        assert_eq!(restored.account(index).id(), id);
        assert_eq!(
            restored.open_to_buy(index, now),
            state.open_to_buy(state.account_by_id(&id).unwrap(), now)
        );
        let pan_hash = bench_support::pan_hash(i);
        assert_eq!(
            restored
                .card(&pan_hash)
                .map(|c| restored.account(c.account()).id()),
            Some(id.as_str())
        );
    }
}

/// The seeds of the `snapshot_decode` fuzz target: small snapshots written by the writer (an
/// empty state; the fixed state with resume offsets; holds and a card of accounts never
/// upserted, whose records are canonical rather than grouped).
fn fuzz_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut empty = Vec::new();
    snapshot::write(
        &mut empty,
        &State::new(LedgerConfig::default()),
        &ResumeOffsets::new(),
        0,
    )
    .unwrap();
    let placeholders = [
        support::Spec::Card {
            card: 2,
            version: 3,
            status: 1,
            account: 2,
        },
        support::Spec::Placed {
            hold: 2,
            amount: 900,
            at_days: 0,
        },
    ];
    let events: Vec<_> = placeholders
        .iter()
        .enumerate()
        .map(|(i, s)| support::render(s, 2, 1, i))
        .collect();
    vec![
        ("empty", empty),
        ("fixed", encode(&fixed_state())),
        ("placeholders", encode(&populated(&events))),
    ]
}

/// The committed seeds are what the writer writes today and read back; `WRITE_FUZZ_SEEDS=1`
/// rewrites them (after a format change).
#[test]
fn fuzz_seeds_are_current_snapshots() {
    // The package directory of this run (not the one compiled in), then the committed seeds
    // (`fuzz/corpus/` is the fuzzer's own, not committed).
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../fuzz/seeds/snapshot_decode");
    for (name, bytes) in fuzz_seeds() {
        snapshot::read_sized(&bytes[..], bytes.len() as u64, LedgerConfig::default()).unwrap();
        let path = dir.join(format!("seed-{name}"));
        if std::env::var_os("WRITE_FUZZ_SEEDS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{} is not what the writer writes (WRITE_FUZZ_SEEDS=1 rewrites it)",
            path.display()
        );
    }
}
