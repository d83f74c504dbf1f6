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
    drop(h);
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
