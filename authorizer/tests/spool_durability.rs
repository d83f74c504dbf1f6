//! The spool against a real full disk and a second process, no broker: a group whose write or
//! fsync failed is never in the file afterwards (its callers were told it failed), every group that
//! was acknowledged durable is, and two processes never share one spool.
//!
//! A "full disk" is the file size limit (`ulimit -f`, with SIGXFSZ ignored) of a child process that
//! runs this same test binary; the parent then opens the spool without the limit and compares.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use authorizer::kafka::{Spool, SpoolHandle};

/// Set in a child process: the directory of the spool it works on.
const CHILD_DIR: &str = "AUTHORIZER_SPOOL_CHILD_DIR";
/// Limit of the child's files, in 512-byte blocks (`ulimit -f`): 1024 bytes.
const LIMIT_BLOCKS: u32 = 2;
const PAYLOAD: usize = 100;

/// Runs test `name` of this binary in a child whose files cannot grow past 1024 bytes.
fn run_child(name: &str, dir: &Path, limited: bool) -> String {
    let exe = std::env::current_exe().unwrap();
    let script = if limited {
        format!("trap '' XFSZ; ulimit -f {LIMIT_BLOCKS}; exec \"$0\" \"$@\"")
    } else {
        "exec \"$0\" \"$@\"".to_owned()
    };
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {name} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Seqs the child was told are durable, and how many appends it was told failed.
fn outcomes(stdout: &str) -> (BTreeSet<u64>, usize) {
    let mut durable = BTreeSet::new();
    let mut failed = 0;
    for line in stdout.lines() {
        // `--nocapture` may print the first line after the test's name.
        if let Some((_, seq)) = line.split_once("@durable ") {
            durable.insert(seq.trim().parse().unwrap());
        } else if line.contains("@failed") {
            failed += 1;
        }
    }
    (durable, failed)
}

fn pending_after_reopen(dir: &Path) -> BTreeSet<u64> {
    let spool = Spool::open(dir, 1 << 30).unwrap();
    spool.pending().map(|r| r.seq).collect()
}

#[test]
fn a_failed_group_is_never_in_the_spool_later_and_every_durable_one_is() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        // Child: 3 records (395 bytes with the magic) fit; a group of 5 more (645 bytes) does not,
        // but 4 of them would fit whole before the limit cuts the fifth.
        let mut s = Spool::open(Path::new(&dir), 1 << 30).unwrap();
        let mut group = Vec::new();
        for i in 0..3u8 {
            group.push(s.append("t", b"k", &[i; PAYLOAD]).unwrap());
        }
        report(&group, s.sync().is_ok());
        group.clear();
        for i in 0..5u8 {
            group.push(s.append("t", b"k", &[10 + i; PAYLOAD]).unwrap());
        }
        report(&group, s.sync().is_ok());
        // The disk has room again for a small record: the spool goes on.
        group.clear();
        if let Ok(seq) = s.append("t", b"k", b"small") {
            group.push(seq);
            report(&group, s.sync().is_ok());
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_child(
        "a_failed_group_is_never_in_the_spool_later_and_every_durable_one_is",
        dir.path(),
        true,
    );
    let (durable, failed) = outcomes(&stdout);
    assert_eq!(failed, 5, "the second group must hit the limit: {stdout}");
    assert_eq!(
        pending_after_reopen(dir.path()),
        durable,
        "exactly the records acknowledged durable: {stdout}"
    );
    assert!(
        durable.len() == 4,
        "the spool goes on after the failed group: {stdout}"
    );
}

fn report(group: &[u64], durable: bool) {
    for seq in group {
        if durable {
            println!("@durable {seq}");
        } else {
            println!("@failed {seq}");
        }
    }
}

#[test]
fn appends_through_the_handle_that_were_told_they_failed_never_come_back() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let h = SpoolHandle::open(Path::new(&dir), 1 << 30).unwrap();
            for i in 0..3u8 {
                let seq = h.append("t", b"k", &[i; PAYLOAD], false).await.unwrap();
                println!("@durable {seq}");
            }
            // Many callers at once: they share groups; some groups hit the limit.
            let mut tasks = Vec::new();
            for i in 0..20u8 {
                let h = h.clone();
                tasks.push(tokio::spawn(async move {
                    h.append("t", b"k", &[i; PAYLOAD], false).await
                }));
            }
            for t in tasks {
                match t.await.unwrap() {
                    Ok(seq) => println!("@durable {seq}"),
                    Err(e) => println!("@failed: {e}"),
                }
            }
            match h.append("t", b"k", b"small", false).await {
                Ok(seq) => println!("@durable {seq}"),
                Err(e) => println!("@failed: {e}"),
            }
        });
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_child(
        "appends_through_the_handle_that_were_told_they_failed_never_come_back",
        dir.path(),
        true,
    );
    let (durable, failed) = outcomes(&stdout);
    assert!(failed > 0, "the limit must be hit: {stdout}");
    assert_eq!(
        pending_after_reopen(dir.path()),
        durable,
        "exactly the appends answered durable: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .rfind(|l| l.contains('@'))
            .unwrap()
            .contains("@durable"),
        "a small append after the failures succeeds: {stdout}"
    );
}

#[test]
fn a_spool_open_in_another_process_is_refused() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        match Spool::open(Path::new(&dir), 1 << 30) {
            Ok(_) => println!("@opened"),
            Err(e) => println!("@refused: {e}"),
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let first = Spool::open(dir.path(), 1 << 30).unwrap();
    let stdout = run_child(
        "a_spool_open_in_another_process_is_refused",
        dir.path(),
        false,
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("@opened") || l.contains("@refused"))
        .unwrap_or_default();
    assert!(line.contains("@refused"), "{stdout}");
    assert!(line.contains("locked"), "{line}");
    assert!(line.contains(&dir.path().display().to_string()), "{line}");
    drop(first);
    let stdout = run_child(
        "a_spool_open_in_another_process_is_refused",
        dir.path(),
        false,
    );
    assert!(
        stdout.contains("@opened"),
        "free once the first is closed: {stdout}"
    );
}
