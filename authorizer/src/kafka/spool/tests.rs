//! Unit tests of the spool: format, recovery, lock, modes, failed groups, group commit.

use super::format::HEADER;
use super::*;

fn appended(dir: &Path, n: u64) -> Spool {
    let mut s = Spool::open(dir, 1 << 30).unwrap();
    for i in 0..n {
        s.append(
            "authorizations",
            format!("acc-{i}").as_bytes(),
            &[i as u8; 40],
        )
        .unwrap();
    }
    s.sync().unwrap();
    s
}

#[test]
fn pending_events_survive_reopen_and_acks_remove_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = appended(dir.path(), 5);
    s.ack(2).unwrap();
    s.ack(4).unwrap();
    s.sync().unwrap();
    drop(s);
    let s = Spool::open(dir.path(), 1 << 30).unwrap();
    let seqs: Vec<u64> = s.pending().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 3, 5]);
    let r = s.pending().next().unwrap();
    assert_eq!(r.key, b"acc-0");
    assert_eq!(r.topic, "authorizations");
    assert_eq!(r.payload, vec![0u8; 40]);
}

#[test]
fn all_acked_truncates_to_magic_and_seq_keeps_growing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = appended(dir.path(), 3);
    for seq in 1..=3 {
        s.ack(seq).unwrap();
    }
    s.sync().unwrap();
    assert_eq!(
        fs::metadata(dir.path().join(SPOOL_FILE)).unwrap().len(),
        SPOOL_MAGIC.len() as u64
    );
    assert_eq!(s.append("t", b"k", b"v").unwrap(), 4);
}

#[test]
fn torn_tail_is_dropped_and_earlier_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    drop(appended(dir.path(), 3));
    let path = dir.path().join(SPOOL_FILE);
    let len = fs::metadata(&path).unwrap().len();
    for cut in [1u64, 7, 20] {
        let copy = tempfile::tempdir().unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(copy.path().join(SPOOL_FILE), &bytes[..(len - cut) as usize]).unwrap();
        let s = Spool::open(copy.path(), 1 << 30).unwrap();
        assert_eq!(s.pending().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
    }
}

#[test]
fn corruption_before_the_end_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(appended(dir.path(), 3));
    let path = dir.path().join(SPOOL_FILE);
    let mut bytes = fs::read(&path).unwrap();
    bytes[SPOOL_MAGIC.len() + 20] ^= 0x40; // inside the first record's body
    fs::write(&path, &bytes).unwrap();
    let err = Spool::open(dir.path(), 1 << 30).err().unwrap();
    assert!(
        matches!(err, SpoolError::Corrupt { offset: 8, next_valid, .. } if next_valid > 8),
        "{err}"
    );
}

#[test]
fn bad_magic_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(SPOOL_FILE), b"NOTASPOOL-------").unwrap();
    assert!(matches!(
        Spool::open(dir.path(), 1 << 30),
        Err(SpoolError::BadMagic { .. })
    ));
}

#[test]
fn full_spool_rejects_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 200).unwrap();
    s.append("t", b"k", &[0; 100]).unwrap();
    assert!(matches!(
        s.append("t", b"k", &[0; 100]),
        Err(SpoolError::Full { .. })
    ));
    assert_eq!(s.depth(), 1);
}

#[tokio::test]
async fn handle_group_commits_concurrent_appends_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let h = SpoolHandle::open(dir.path(), 1 << 30).unwrap();
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.append("t", b"k", &i.to_le_bytes(), false).await.unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
    assert_eq!(h.depth(), 200);
    let first = h.pending_after(0, 3).await.unwrap();
    assert_eq!(
        first.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    for seq in 1..=200 {
        h.ack(seq).await.unwrap();
    }
    h.barrier().await.unwrap();
    assert_eq!(h.depth(), 0);
    let seq = h.append("t", b"k", b"held", true).await.unwrap();
    let after = h.append("t", b"k", b"after", false).await.unwrap();
    assert!(
        h.pending_after(0, 10).await.unwrap().is_empty(),
        "a held head blocks the drain"
    );
    h.release(seq).await.unwrap();
    let order: Vec<u64> = h
        .pending_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(order, vec![seq, after]);
    h.ack(seq).await.unwrap();
    h.ack(after).await.unwrap();
    h.barrier().await.unwrap();
    assert!(h.pending_after(0, 10).await.unwrap().is_empty());
    h.close().await;
    let s = Spool::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(s.depth(), 0);
}

#[test]
fn a_corrupt_length_in_the_middle_is_refused_never_taken_for_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    drop(appended(dir.path(), 3));
    let path = dir.path().join(SPOOL_FILE);
    let mut bytes = fs::read(&path).unwrap();
    let at = SPOOL_MAGIC.len();
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes[at..at + 4].copy_from_slice(&(len + 4096).to_le_bytes()); // past the end of the file
    fs::write(&path, &bytes).unwrap();
    let err = Spool::open(dir.path(), 1 << 30).err();
    let err = err.expect("three durable events taken for a torn tail");
    let next = (at + HEADER + len as usize) as u64; // the second record
    assert!(
        matches!(err, SpoolError::Corrupt { offset: 8, next_valid, .. } if next_valid == next),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("do not delete"), "{message}");
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "the file is left as it was"
    );
}

#[test]
fn an_old_format_spool_is_refused_and_never_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SPOOL_FILE);
    let mut body = vec![1u8]; // an event
    body.extend_from_slice(&1u64.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(b"t");
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(b"k");
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(b"v");
    let mut bytes = b"AUTHSPL1".to_vec();
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    fs::write(&path, &bytes).unwrap();
    let err = Spool::open(dir.path(), 1 << 30).err();
    let err = err.expect("an AUTHSPL1 file must not be opened by this version");
    assert!(matches!(err, SpoolError::OldFormat { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("previous binary") && err.contains("move it aside"),
        "{err}"
    );
    assert!(err.contains("AUTHSPL1"), "{err}");
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "the old file is left as it was"
    );
}

#[test]
fn a_second_open_of_a_live_spool_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Spool::open(dir.path(), 1 << 30).unwrap();
    let err = Spool::open(dir.path(), 1 << 30).err();
    let err = err.expect("two spools on one file");
    assert!(matches!(err, SpoolError::Locked { .. }), "{err}");
    let err = err.to_string();
    assert!(err.contains("locked"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}

#[test]
fn spool_files_are_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |name: &str| {
        fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    drop(appended(dir.path(), 2));
    assert_eq!(mode(SPOOL_FILE), 0o600);
    drop(Spool::open(dir.path(), 1 << 30).unwrap()); // rewritten on open
    assert_eq!(mode(SPOOL_FILE), 0o600);
    for entry in fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert_eq!(mode(&name), 0o600, "{name}");
    }
}

#[test]
fn a_write_error_mid_group_is_undone_and_the_durable_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = appended(dir.path(), 2);
    let durable = fs::metadata(s.path()).unwrap().len();
    s.inject.write = true;
    for i in 0..3u8 {
        s.append("t", b"k", &[i; 60]).unwrap();
    }
    s.ack(1).unwrap();
    let err = s.sync().expect_err("the injected error");
    assert!(
        matches!(err, SpoolError::GroupFailed { events: 3, .. }),
        "{err}"
    );
    assert_eq!(fs::metadata(s.path()).unwrap().len(), durable, "cut back");
    assert_eq!(s.pending().map(|r| r.seq).collect::<Vec<_>>(), vec![2]);
    // The disk is fine again: the spool goes on.
    s.inject.write = false;
    let seq = s.append("t", b"k", b"after").unwrap();
    s.sync().unwrap();
    drop(s);
    let s = Spool::open(dir.path(), 1 << 30).unwrap();
    // The ack of 1 was in the failed group: 1 comes back (a duplicate at worst, never a loss).
    assert_eq!(
        s.pending().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, seq]
    );
}

#[test]
fn a_failed_group_that_cannot_be_cut_back_breaks_the_spool_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = appended(dir.path(), 1);
    let durable = fs::metadata(s.path()).unwrap().len();
    s.inject.write = true;
    s.inject.truncate = true;
    s.append("t", b"k", &[7; 60]).unwrap();
    let err = s.sync().expect_err("the injected error");
    assert!(matches!(err, SpoolError::Broken { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("truncate -s {durable}")),
        "{message}"
    );
    s.inject = Inject::default();
    assert!(matches!(
        s.append("t", b"k", b"v"),
        Err(SpoolError::Broken { .. })
    ));
    assert!(matches!(s.ack(1), Err(SpoolError::Broken { .. })));
    assert!(matches!(s.sync(), Err(SpoolError::Broken { .. })));
    assert_eq!(s.pending().map(|r| r.seq).collect::<Vec<_>>(), vec![1]);
}

#[tokio::test]
async fn a_broken_spool_answers_every_caller_with_the_error_and_lists_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = appended(dir.path(), 1);
    s.inject.write = true;
    s.inject.truncate = true;
    let h = SpoolHandle::start(s).unwrap();
    let err = h.append("t", b"k", b"v", false).await.err();
    assert!(matches!(err, Some(SpoolError::Broken { .. })), "{err:?}");
    assert!(matches!(
        h.pending_after(0, 10).await,
        Err(SpoolError::Broken { .. })
    ));
    assert!(matches!(h.barrier().await, Err(SpoolError::Broken { .. })));
    assert!(matches!(
        h.append("t", b"k", b"v", false).await,
        Err(SpoolError::Broken { .. })
    ));
}

#[tokio::test]
async fn the_drainer_never_lists_an_event_of_a_failed_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = appended(dir.path(), 1);
    s.inject.write = true;
    let h = SpoolHandle::start(s).unwrap();
    // One group: an append, then a listing behind it; the group fails.
    let (a, l) = tokio::join!(h.append("t", b"k", b"v", false), h.pending_after(0, 10));
    assert!(matches!(a, Err(SpoolError::GroupFailed { .. })), "{a:?}");
    let listed: Vec<u64> = l.unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(listed, vec![1], "only the durable event");
    assert_eq!(h.depth(), 1);
}

#[test]
fn a_new_spool_directory_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("a/b/spool");
    drop(Spool::open(&dir, 1 << 30).unwrap());
    for d in [base.path().join("a"), dir.clone()] {
        let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Append(Vec<u8>),
        /// Acknowledges the pending event at this index (modulo).
        Ack(usize),
        Sync,
        /// A group whose write fails (a full disk).
        FailedSync,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..30).prop_map(Op::Append),
            2 => any::<usize>().prop_map(Op::Ack),
            2 => Just(Op::Sync),
            1 => Just(Op::FailedSync),
            1 => Just(Op::Reopen),
        ]
    }

    #[derive(Clone, Debug)]
    enum Damage {
        Flip { at: usize, xor: u8 },
        Truncate { at: usize },
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Damage::Flip { at, xor }),
            any::<usize>().prop_map(|at| Damage::Truncate { at }),
        ]
    }

    type Model = BTreeMap<u64, Vec<u8>>;

    fn seen(s: &Spool) -> Model {
        s.pending().map(|r| (r.seq, r.payload.clone())).collect()
    }

    /// Record boundaries of an intact file, by walking the length fields (not the parser).
    fn boundaries(bytes: &[u8]) -> Vec<usize> {
        let mut at = SPOOL_MAGIC.len();
        let mut out = vec![at];
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            at += HEADER + len;
            out.push(at);
        }
        assert_eq!(at, bytes.len());
        out
    }

    fn pending_of(bytes: &[u8]) -> Model {
        let parsed = format::parse(Path::new("x"), bytes).unwrap();
        assert_eq!(parsed.valid_len, bytes.len());
        parsed
            .pending
            .into_values()
            .map(|r| (r.seq, r.payload))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// After any history (with failed groups), a reopen yields exactly what was durable; after
        /// one damaged byte or a cut, open either refuses or yields exactly the records before the
        /// damage, and only when the damage is in the last record (a torn tail): never fewer.
        #[test]
        fn open_returns_exactly_the_durable_records_or_refuses(
            ops in proptest::collection::vec(op(), 1..40),
            damage in damage(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
            // What the file holds, and the ops of the group not yet synced.
            let mut durable = Model::new();
            let mut group: Vec<(u64, Option<Vec<u8>>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Append(payload) => {
                        let seq = s.append("t", b"k", &payload).unwrap();
                        group.push((seq, Some(payload)));
                    }
                    Op::Ack(i) => {
                        let seqs: Vec<u64> = s.pending().map(|r| r.seq).collect();
                        if !seqs.is_empty() {
                            let seq = seqs[i % seqs.len()];
                            s.ack(seq).unwrap();
                            group.push((seq, None));
                        }
                    }
                    Op::Sync => {
                        let wrote = !group.is_empty();
                        s.sync().unwrap();
                        for (seq, payload) in group.drain(..) {
                            match payload {
                                Some(p) => durable.insert(seq, p),
                                None => durable.remove(&seq),
                            };
                        }
                        if wrote && s.depth() == 0 {
                            durable.clear(); // truncated back to the magic
                        }
                    }
                    Op::FailedSync => {
                        s.inject.write = true;
                        let failed = s.sync();
                        s.inject.write = false;
                        prop_assert!(group.is_empty() || failed.is_err());
                        let appended: Vec<u64> =
                            group.drain(..).filter(|(_, p)| p.is_some()).map(|(s, _)| s).collect();
                        for seq in appended {
                            prop_assert!(s.pending().all(|r| r.seq != seq), "failed {seq} kept");
                        }
                    }
                    Op::Reopen => {
                        group.clear();
                        drop(s);
                        s = Spool::open(dir.path(), 1 << 30).unwrap();
                        prop_assert_eq!(seen(&s), durable.clone());
                    }
                }
            }
            drop(s);
            let path = dir.path().join(SPOOL_FILE);
            let bytes = fs::read(&path).unwrap();
            let ends = boundaries(&bytes);
            prop_assert_eq!(pending_of(&bytes), durable.clone());
            let damaged = match damage {
                Damage::Flip { at, xor } => {
                    let at = at % bytes.len();
                    let mut b = bytes.clone();
                    b[at] ^= xor;
                    b
                }
                Damage::Truncate { at } => bytes[..at % bytes.len()].to_vec(),
            };
            fs::write(&path, &damaged).unwrap();
            let opened = Spool::open(dir.path(), 1 << 30);
            match damage {
                Damage::Truncate { .. } if damaged.len() < SPOOL_MAGIC.len() => {
                    let refused = matches!(opened, Err(SpoolError::BadMagic { .. }));
                    prop_assert!(refused);
                }
                Damage::Truncate { .. } => {
                    // A cut is what a crash leaves: the whole records before it, nothing else.
                    let end = *ends.iter().rfind(|&&e| e <= damaged.len()).unwrap();
                    let s = opened.unwrap();
                    prop_assert_eq!(seen(&s), pending_of(&bytes[..end]));
                }
                Damage::Flip { at, .. } => {
                    let at = at % bytes.len();
                    if at < SPOOL_MAGIC.len() {
                        prop_assert!(opened.is_err());
                    } else {
                        let j = ends.iter().rposition(|&e| e <= at).unwrap();
                        let last = j + 2 == ends.len();
                        match opened {
                            Ok(s) => {
                                prop_assert!(last, "damage at {} in record {} taken for a torn tail", at, j);
                                prop_assert_eq!(seen(&s), pending_of(&bytes[..ends[j]]));
                            }
                            Err(SpoolError::Corrupt { offset, next_valid, .. }) => {
                                prop_assert_eq!(offset, ends[j] as u64);
                                prop_assert!(next_valid > offset);
                                prop_assert_eq!(fs::read(&path).unwrap(), damaged, "left as it was");
                            }
                            Err(e) => prop_assert!(false, "unexpected {}", e),
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn cutting_out_the_damage_that_corrupt_names_opens_with_every_other_record() {
    // The recovery of docs/kafka.md: keep the bytes before `offset` and from `next_valid` on.
    let dir = tempfile::tempdir().unwrap();
    drop(appended(dir.path(), 3));
    let path = dir.path().join(SPOOL_FILE);
    let mut bytes = fs::read(&path).unwrap();
    bytes[SPOOL_MAGIC.len() + HEADER + 12] ^= 0x01; // inside the first record
    fs::write(&path, &bytes).unwrap();
    let Err(SpoolError::Corrupt {
        offset, next_valid, ..
    }) = Spool::open(dir.path(), 1 << 30)
    else {
        panic!("refused as corrupt")
    };
    let mut salvaged = bytes[..offset as usize].to_vec();
    salvaged.extend_from_slice(&bytes[next_valid as usize..]);
    fs::write(&path, &salvaged).unwrap();
    let s = Spool::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(s.pending().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);
}
