//! The snapshot body groups cards and holds under their account (`c` / `h` records without the
//! account id): long and short account ids, placeholder accounts (written in canonical form) and
//! a grouped record outside any group.

#[path = "ledger_support/mod.rs"]
mod support;

use std::io::Write;

use ledger::snapshot::{self, ResumeOffsets, SnapshotError};
use ledger::{LedgerConfig, State};

/// Account ids of 30 (the longest kept inline), 31 and 128 bytes.
fn ids() -> [String; 3] {
    [
        "a".repeat(30),
        format!("acc-1-{}", "x".repeat(25)),
        format!("acc-2-{}", "y".repeat(122)),
    ]
}

fn state_with_long_ids() -> State {
    let specs = [
        support::Spec::Account {
            version: 1,
            limit: 10_000,
            balance: 10,
            status: 0,
            cleared: vec![1, 4],
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
        support::Spec::Card {
            card: 2,
            version: 1,
            status: 0,
            account: 2,
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
        support::Spec::Placed {
            hold: 2,
            amount: 900,
            at_days: 0,
        },
        support::Spec::Declined {
            hold: 5,
            code: 0,
            at_days: 0,
        },
    ];
    let ids = ids();
    let mut state = State::new(LedgerConfig::default());
    let upsert_account = |state: &mut State, account: usize| {
        let e = support::render(&specs[0], account, 0, 100 + account);
        state
            .apply_json(e.source, &rename(&e.payload, &ids))
            .unwrap();
    };
    // Account 1 stays a placeholder (named by a card and a hold, never upserted).
    upsert_account(&mut state, 0);
    upsert_account(&mut state, 2);
    for (i, spec) in specs.iter().enumerate().skip(1) {
        let e = support::render(spec, 0, 0, i);
        state
            .apply_json(e.source, &rename(&e.payload, &ids))
            .unwrap();
    }
    state
}

fn rename(payload: &[u8], ids: &[String; 3]) -> Vec<u8> {
    let mut text = String::from_utf8(payload.to_vec()).unwrap();
    for (i, id) in ids.iter().enumerate() {
        text = text.replace(&format!("\"acc-{i}\""), &format!("\"{id}\""));
    }
    text.into_bytes()
}

#[test]
fn long_short_and_placeholder_accounts_roundtrip() {
    let state = state_with_long_ids();
    state.assert_invariants();
    let counts = state.counts();
    assert_eq!(counts.account_placeholders, 1, "{counts:?}");
    assert!(counts.cards == 3 && counts.holds >= 3, "{counts:?}");
    let mut bytes = Vec::new();
    snapshot::write(&mut bytes, &state, &ResumeOffsets::new(), 7).unwrap();
    let (restored, _, header) = snapshot::read(&bytes[..]).unwrap();
    restored.assert_invariants();
    assert_eq!(restored.state_hash(), state.state_hash());
    assert_eq!(header.state_hash, state.state_hash());
    assert_eq!(restored.counts().cards, counts.cards);
    assert_eq!(restored.counts().holds, counts.holds);
    assert_eq!(restored.counts().cleared_markers, counts.cleared_markers);
    for id in ids() {
        let index = restored
            .account_by_id(&id)
            .expect("every account id is indexed");
        assert_eq!(restored.account(index).id(), id);
        let original = state.account_by_id(&id).unwrap();
        let now = ledger::UnixSeconds(support::T0 + 3600);
        assert_eq!(
            restored.open_to_buy(index, now),
            state.open_to_buy(original, now)
        );
    }
    assert!(restored.account_by_id("acc-3").is_none());
}

/// A snapshot file around `records` (header counts as given, no pending ATCs, state hash
/// zero).
fn forge(records: &[Vec<u8>], [a, c, h, x]: [u64; 4]) -> Vec<u8> {
    forge_counts(records, [a, c, h, x, 0])
}

/// [`forge`] with the five counts of the header (the last: pending ATCs).
fn forge_counts(records: &[Vec<u8>], counts: [u64; 5]) -> Vec<u8> {
    let mut fields = Vec::new();
    fields.extend_from_slice(&0i64.to_be_bytes());
    fields.extend_from_slice(&0i64.to_be_bytes());
    fields.extend_from_slice(&[0u8; 32]);
    for count in counts {
        fields.extend_from_slice(&count.to_be_bytes());
    }
    fields.extend_from_slice(&0u32.to_be_bytes());
    // No watermark votes.
    fields.push(0);
    let mut file = Vec::new();
    file.extend_from_slice(b"AUTHSNAP");
    file.extend_from_slice(&snapshot::FORMAT_VERSION.to_be_bytes());
    file.extend_from_slice(&(fields.len() as u32).to_be_bytes());
    file.extend_from_slice(&fields);
    let crc = crc32c::crc32c(&file);
    file.extend_from_slice(&crc.to_be_bytes());
    let mut body = Vec::new();
    for record in records {
        body.extend_from_slice(&(record.len() as u32).to_be_bytes());
        body.extend_from_slice(record);
    }
    let mut end = vec![b'E'];
    end.extend_from_slice(&(records.len() as u64).to_be_bytes());
    body.extend_from_slice(&(end.len() as u32).to_be_bytes());
    body.extend_from_slice(&end);
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    encoder.include_checksum(true).unwrap();
    encoder.write_all(&body).unwrap();
    let frame = encoder.finish().unwrap();
    file.extend_from_slice(&frame);
    file.extend_from_slice(&crc32c::crc32c(&frame).to_be_bytes());
    file
}

/// A grouped card record (no account id) for a made-up card.
fn grouped_card() -> Vec<u8> {
    let mut r = vec![b'c'];
    r.extend_from_slice(&[7u8; 32]);
    r.extend_from_slice(&6u32.to_be_bytes());
    r.extend_from_slice(b"card-7");
    r.extend_from_slice(&1u64.to_be_bytes());
    r.extend_from_slice(b"2811");
    r.push(1);
    r.push(1);
    r.extend_from_slice(&4u32.to_be_bytes());
    r.extend_from_slice(b"ks-0");
    r.extend_from_slice(b"0010");
    // No ATC seen.
    r.extend_from_slice(&[0, 0, 0]);
    r
}

fn account_record(id: &str) -> Vec<u8> {
    let mut r = vec![b'A'];
    r.extend_from_slice(&(id.len() as u32).to_be_bytes());
    r.extend_from_slice(id.as_bytes());
    r.extend_from_slice(&1u64.to_be_bytes());
    r.push(1);
    r.extend_from_slice(&986u16.to_be_bytes());
    r.extend_from_slice(&1000i64.to_be_bytes());
    r.extend_from_slice(&0i64.to_be_bytes());
    r
}

#[test]
fn a_grouped_record_outside_a_group_is_rejected() {
    let file = forge(&[grouped_card()], [0, 1, 0, 0]);
    match snapshot::read(&file[..]) {
        Err(SnapshotError::RecordInvalid { record: 0, reason }) => {
            assert_eq!(reason, "grouped record outside an account group")
        }
        other => panic!("expected a precise rejection, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_grouped_record_after_the_group_section_is_rejected() {
    let mut canonical_card = grouped_card();
    canonical_card[0] = b'C';
    let mut with_id = canonical_card[..33].to_vec();
    with_id.extend_from_slice(&5u32.to_be_bytes());
    with_id.extend_from_slice(b"acc-9");
    with_id.extend_from_slice(&canonical_card[33..]);
    let file = forge(
        &[account_record("acc-1"), with_id, grouped_card()],
        [1, 2, 0, 0],
    );
    match snapshot::read(&file[..]) {
        Err(SnapshotError::RecordInvalid { record: 2, reason }) => {
            assert_eq!(reason, "records out of kind order")
        }
        other => panic!("expected a precise rejection, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_forged_grouped_body_restores_then_fails_only_on_the_hash() {
    // Well-formed grouping: the reader rebuilds the card under its group's account and gets
    // as far as the state hash (zero in the forged header).
    let file = forge(&[account_record("acc-1"), grouped_card()], [1, 1, 0, 0]);
    match snapshot::read(&file[..]) {
        Err(SnapshotError::StateHashMismatch { .. }) => {}
        other => panic!("expected a hash mismatch, got {:?}", other.map(|_| ())),
    }
    let file = forge(
        &[account_record("acc-1"), account_record("acc-1")],
        [2, 0, 0, 0],
    );
    match snapshot::read(&file[..]) {
        Err(SnapshotError::RecordInvalid { record: 1, reason }) => {
            assert_eq!(reason, "duplicate account record")
        }
        other => panic!("expected a duplicate, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn the_first_error_in_file_order_is_reported() {
    // Record 0 is a bad account (found by the restoring thread); the end record then disagrees
    // with the header's counts (found by the scanning thread). The earlier one wins.
    let mut bad_status = account_record("acc-1");
    bad_status[1 + 4 + 5 + 8] = 9;
    let file = forge(&[bad_status], [2, 0, 0, 0]);
    match snapshot::read(&file[..]) {
        Err(SnapshotError::RecordInvalid { record: 0, reason }) => {
            assert_eq!(reason, "account status")
        }
        other => panic!("expected the record-0 error, got {:?}", other.map(|_| ())),
    }
    let file = forge(&[account_record("acc-1")], [2, 0, 0, 0]);
    assert!(matches!(
        snapshot::read(&file[..]),
        Err(SnapshotError::CountMismatch {
            kind: "records",
            header: 2,
            body: 1
        })
    ));
}

/// A grouped card record whose PAN hash is derived from `n`.
fn grouped_card_n(n: u32) -> Vec<u8> {
    let mut r = grouped_card();
    let mut pan = [0u8; 32];
    for (i, chunk) in pan.chunks_mut(4).enumerate() {
        chunk.copy_from_slice(
            &n.wrapping_mul(0x9E37_79B9)
                .rotate_left(i as u32)
                .to_be_bytes(),
        );
    }
    pan[..4].copy_from_slice(&n.to_le_bytes());
    r[1..33].copy_from_slice(&pan);
    r
}

/// `groups` account groups (an `A` record and one grouped card each): more than the reader
/// inserts one at a time, so that its bucket-ordered batch inserts run.
fn many_groups(groups: u32) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    for g in 0..groups {
        records.push(account_record(&format!("acc-{g:06}")));
        records.push(grouped_card_n(g));
    }
    records
}

#[test]
fn many_groups_restore_up_to_the_hash() {
    let records = many_groups(5000);
    let file = forge(&records, [5000, 5000, 0, 0]);
    match snapshot::read(&file[..]) {
        Err(SnapshotError::StateHashMismatch { .. }) => {}
        other => panic!("expected a hash mismatch, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_duplicate_among_many_records_is_reported_at_its_record() {
    // A duplicate account id far from its first occurrence (record 2 × 2500).
    let mut records = many_groups(5000);
    records[2 * 2500] = account_record("acc-000017");
    let file = forge(&records, [5000, 5000, 0, 0]);
    match snapshot::read(&file[..]) {
        Err(SnapshotError::RecordInvalid {
            record: 5000,
            reason,
        }) => {
            assert_eq!(reason, "duplicate account record")
        }
        other => panic!("expected a duplicate account, got {:?}", other.map(|_| ())),
    }
    // A duplicate card (record 2 × 2900 + 1 repeats record 2 × 40 + 1's PAN hash).
    let mut records = many_groups(5000);
    records[2 * 2900 + 1] = grouped_card_n(40);
    let file = forge(&records, [5000, 5000, 0, 0]);
    match snapshot::read(&file[..]) {
        Err(SnapshotError::RecordInvalid {
            record: 5801,
            reason,
        }) => {
            assert_eq!(reason, "duplicate card record")
        }
        other => panic!("expected a duplicate card, got {:?}", other.map(|_| ())),
    }
    // Both: the earlier in file order wins, though the accounts are indexed in another order.
    let mut records = many_groups(5000);
    records[2 * 2900] = account_record("acc-000017");
    records[2 * 100 + 1] = grouped_card_n(40);
    let file = forge(&records, [5000, 5000, 0, 0]);
    match snapshot::read(&file[..]) {
        Err(SnapshotError::RecordInvalid {
            record: 201,
            reason,
        }) => {
            assert_eq!(reason, "duplicate card record")
        }
        other => panic!("expected the duplicate card, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_duplicate_long_account_id_among_many_records_is_reported_at_its_record() {
    // Ids longer than the reader keeps beside its pending index inserts (27 bytes): it reads
    // them from the accounts.
    let long = |g: u32| format!("account-with-a-long-id-{g:020}");
    let mut records = Vec::new();
    for g in 0..5000 {
        records.push(account_record(&long(g)));
        records.push(grouped_card_n(g));
    }
    let file = forge(&records, [5000, 5000, 0, 0]);
    match snapshot::read(&file[..]) {
        Err(SnapshotError::StateHashMismatch { .. }) => {}
        other => panic!("expected a hash mismatch, got {:?}", other.map(|_| ())),
    }
    records[2 * 4000] = account_record(&long(3999));
    let file = forge(&records, [5000, 5000, 0, 0]);
    match snapshot::read(&file[..]) {
        Err(SnapshotError::RecordInvalid {
            record: 8000,
            reason,
        }) => {
            assert_eq!(reason, "duplicate account record")
        }
        other => panic!("expected a duplicate account, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_pending_atc_of_a_card_the_snapshot_has_is_rejected() {
    let mut pending = vec![b'T'];
    pending.extend_from_slice(&[7u8; 32]);
    pending.extend_from_slice(&41u16.to_be_bytes());
    let file = forge_counts(
        &[account_record("acc-1"), grouped_card(), pending],
        [1, 1, 0, 0, 1],
    );
    match snapshot::read(&file[..]) {
        Err(SnapshotError::RecordInvalid { record: 2, reason }) => {
            assert_eq!(reason, "pending ATC of a card the snapshot has")
        }
        other => panic!("expected a precise rejection, got {:?}", other.map(|_| ())),
    }
}
