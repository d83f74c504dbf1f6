//! `authorizer dlq list` and `authorizer dlq republish` against a real tansu broker (started by
//! `scripts/broker` once for this binary), on letters written by the real path: events published
//! to the input topic, consumed by a `Follower` whose dead letters go through the
//! `DeadLetterWriter`. The tool is run as the binary, as an operator would.
//!
//! These tests must never print or assert on an unmasked PAN outside the inputs they produce.

mod kafka_support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use authorizer::kafka::{
    Apply, DeadLetterWriter, Follower, KafkaConfig, LogMetrics, LogRecord, ReplayOptions, replay,
};
use kafka_support::*;
use ledger::{Applied, Event, EventError, LedgerConfig, State};

const WAIT: Duration = Duration::from_secs(120);
const PAN: &str = "5413330089010434";
const PAN_MASKED: &str = "541333******0434";

fn new_state() -> State {
    State::new(LedgerConfig::default())
}

/// Runs `records` through a follower built on `state` with the real dead-letter writer, until
/// every record is applied or rejected and every letter is acknowledged.
fn follow<A: Apply + Send + 'static>(
    rt: &tokio::runtime::Runtime,
    k: &KafkaConfig,
    records: usize,
    state: A,
) -> A {
    let metrics = Arc::new(LogMetrics::default());
    let _guard = rt.enter();
    let (writer, dlq_tx) = DeadLetterWriter::spawn(k, metrics.clone()).unwrap();
    let follower = Follower::start(
        k,
        &ReplayOptions::from_beginning(k),
        state,
        dlq_tx,
        metrics.clone(),
    )
    .unwrap();
    let (view, ok) = follower.wait_until(WAIT, |v| {
        v.progress.applied + v.progress.rejected == records as u64
    });
    assert!(ok, "not all records consumed: {view:?}");
    let state = follower.stop();
    rt.block_on(writer.finish());
    state
}

/// `authorizer <args> --brokers ... --*-topic ...`: (success, stdout, stderr).
fn tool(k: &KafkaConfig, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_authorizer"))
        .args(args)
        .args(["--brokers", &k.bootstrap])
        .args(["--account-updates-topic", &k.account_updates_topic])
        .args(["--authorizations-topic", &k.authorizations_topic])
        .args(["--dead-letter-topic", &k.dead_letter_topic])
        .output()
        .expect("run authorizer");
    // Shown with --nocapture: what an operator sees (masked by the tool).
    println!(
        "$ authorizer {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The `letter ...` lines of a `dlq list` output, as field maps.
fn letters(stdout: &str) -> Vec<HashMap<String, String>> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("letter "))
        .map(|l| {
            // Values before `reason=` have no spaces; reason is the last field without content.
            let (head, reason) = l.split_once(" reason=").expect("reason field");
            let mut m: HashMap<String, String> = head
                .split(' ')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            m.insert("reason".into(), reason.to_owned());
            m
        })
        .collect()
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

#[test]
fn list_shows_where_and_why_without_content_and_show_content_masks_pans() {
    let rt = runtime();
    let k = kafka_with_topics(&rt, "dlqlist", 1);
    let good = cloud_events("g", 3);
    // A card whose pan_hash is wrong, carrying a clear PAN in fields the contract does not
    // have: the ledger rejects it on `pan_hash` and the letter keeps the bytes.
    let bad_card = String::from_utf8(card_json("bad-card", 1, 5, "active"))
        .unwrap()
        .replace(PAN_HASH_PREFIX, "zz")
        .replace(
            r#""psn":"01""#,
            &format!(r#""psn":"01","pan":"{PAN}","trace":{{"track2":";{PAN}=2811101?"}}"#),
        );
    let bad: Vec<(String, Option<Vec<u8>>)> = vec![
        (
            "acc-000001".into(),
            Some(account_json("bad-limit", 1, 5, -1, 0)),
        ),
        ("acc-000001".into(), Some(bad_card.clone().into_bytes())),
        (
            "acc-000002".into(),
            Some(format!("not json, card {PAN} 123456").into_bytes()),
        ),
    ];
    let records: Vec<_> = good.iter().chain(&bad).cloned().collect();
    produce(&rt, &k, &k.account_updates_topic, &records);
    let state = follow(&rt, &k, records.len(), new_state());
    assert_eq!(state.counts().cards, 3, "the good cards are applied");

    let (code, out, err) = tool(&k, &["dlq", "list"]);
    assert_eq!(code, Some(0), "{err}");
    let listed = letters(&out);
    assert_eq!(listed.len(), 3, "{out}");
    assert!(out.contains("letters=3"), "{out}");
    for (i, (l, (_, value))) in listed.iter().zip(&bad).enumerate() {
        assert_eq!(l["dlq_offset"], i.to_string());
        assert_eq!(l["dlq_partition"], "0");
        assert_eq!(l["source_topic"], k.account_updates_topic);
        assert_eq!(l["source_partition"], "0");
        assert_eq!(l["source_offset"], (good.len() + i).to_string());
        assert!(
            l["time"].starts_with("20") && l["time"].ends_with('Z'),
            "{l:?}"
        );
        let reason = new_state()
            .apply_json(ledger::Source::AccountUpdates, value.as_deref().unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(
            l["reason"],
            format!("{reason:?}"),
            "the ledger's own reason"
        );
    }
    // Without --show-content: nothing of the content.
    for secret in [PAN, "bad-card", "bad-limit", "not json", "content="] {
        assert!(!out.contains(secret), "{secret} shown: {out}");
    }

    let (code, out, err) = tool(&k, &["dlq", "list", "--show-content"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains(PAN), "a clear PAN was printed: {out}");
    assert_eq!(out.matches(PAN_MASKED).count(), 1, "{out}");
    let card_line = out.lines().find(|l| l.contains("bad-card")).expect("card");
    assert!(card_line.contains(r#""pan":"<withheld>""#), "{card_line}");
    assert!(
        card_line.contains(r#""track2":"<withheld>""#),
        "{card_line}"
    );
    assert!(
        card_line.contains(r#""pan_last4":"<withheld>""#),
        "{card_line}"
    );
    assert!(card_line.contains(r#"key="acc-000001""#), "{card_line}");
    let garbage = out
        .lines()
        .find(|l| l.contains("not json"))
        .expect("garbage");
    assert!(
        garbage.contains(&format!("card {PAN_MASKED} 123456")),
        "{garbage}"
    );

    // Filters: by reason, by offset range.
    let (_, out, _) = tool(&k, &["dlq", "list", "--reason", "credit_limit"]);
    let by_reason = letters(&out);
    assert_eq!(by_reason.len(), 1, "{out}");
    assert_eq!(by_reason[0]["dlq_offset"], "0");
    let (_, out, _) = tool(&k, &["dlq", "list", "--offsets", "1-2"]);
    let by_offset: Vec<_> = letters(&out)
        .iter()
        .map(|l| l["dlq_offset"].clone())
        .collect();
    assert_eq!(by_offset, ["1", "2"], "{out}");
}

/// A replica of an older release that does not know the `visa-` key sets: it rejects those
/// cards, which the real dead-letter path then writes as letters. The current release accepts
/// them, so sending the letters back is how the replicas get those cards.
struct OlderRelease(State);

impl Apply for OlderRelease {
    type Rejection = EventError;

    fn apply(
        &mut self,
        record: &LogRecord,
        event: &Result<Event<'_>, EventError>,
    ) -> Result<(), EventError> {
        if let Ok(Event::CardUpserted(card)) = event
            && card.key_set.starts_with("visa-")
        {
            return Err(EventError::InvalidField {
                field: "key_set",
                value: card.key_set.to_string(),
                expected: "a key set this release knows",
            });
        }
        Apply::apply(&mut self.0, record, event)
    }
}

/// The real state, counting per event id how often an event changed it and how often it was a
/// no-op.
#[derive(Default)]
struct Counting {
    state: Option<State>,
    changed: HashMap<String, u32>,
    unchanged: HashMap<String, u32>,
}

impl Apply for Counting {
    type Rejection = EventError;

    fn apply(
        &mut self,
        _record: &LogRecord,
        event: &Result<Event<'_>, EventError>,
    ) -> Result<(), EventError> {
        let event = event.as_ref().map_err(Clone::clone)?;
        let state = self.state.get_or_insert_with(new_state);
        let counter = match state.apply(event)? {
            Applied::Changed => &mut self.changed,
            Applied::Unchanged => &mut self.unchanged,
        };
        *counter.entry(event.event_id().to_owned()).or_default() += 1;
        Ok(())
    }
}

#[test]
fn republish_twice_applies_once_and_refuses_what_is_not_an_input() {
    let rt = runtime();
    let k = kafka_with_topics(&rt, "dlqrepub", 1);
    let good = cloud_events("g", 2);
    let visa = |id: &str, account: u32| {
        String::from_utf8(card_json(id, account, 1, "active"))
            .unwrap()
            .replace("mc-cvn17-1", "visa-cvn10-1")
            .replace(&format!("card-{account:06}"), &format!("visa-{account:06}"))
            .replace(
                &format!("{PAN_HASH_PREFIX}{account:04x}"),
                &format!("{PAN_HASH_PREFIX}{:04x}", 0xff00 + account),
            )
            .into_bytes()
    };
    let mut records = good.clone();
    records.push(("acc-000000".into(), Some(visa("visa-0", 0))));
    records.push(("acc-000001".into(), Some(visa("visa-1", 1))));
    records.push(("acc-000001".into(), None)); // a tombstone: refused by republish
    produce(&rt, &k, &k.account_updates_topic, &records);
    let older = follow(&rt, &k, records.len(), OlderRelease(new_state()));
    assert_eq!(
        older.0.counts().cards,
        2,
        "the older release lacks the visa cards"
    );

    let (code, out, err) = tool(&k, &["dlq", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(letters(&out).len(), 3, "{out}");

    // Send both visa letters back, twice.
    for round in 0..2 {
        let (code, out, err) = tool(&k, &["dlq", "republish", "--offsets", "0-1"]);
        assert_eq!(code, Some(0), "round {round}: {out}{err}");
        let sent: Vec<&str> = out.lines().filter(|l| l.starts_with("sent ")).collect();
        assert_eq!(sent.len(), 2, "{out}");
        for (i, line) in sent.iter().enumerate() {
            assert_eq!(field(line, "dlq_offset"), i.to_string());
            assert_eq!(field(line, "topic"), k.account_updates_topic);
            assert_eq!(field(line, "partition"), "0");
            assert_eq!(field(line, "source_offset"), (good.len() + i).to_string());
            let offset: usize = field(line, "offset").parse().unwrap();
            assert_eq!(offset, records.len() + 2 * round + i, "appended in order");
            assert_eq!(field(line, "event_id"), format!("\"visa-{i}\""));
        }
        assert!(out.contains("sent=2 refused=0 missing=0"), "{out}");
    }

    // The topic now holds each visa card three times, byte for byte the same.
    let log = read_all(&k, &k.account_updates_topic);
    assert_eq!(log.len(), records.len() + 4);
    for (copy, original) in log[records.len()..]
        .iter()
        .zip([0, 1, 0, 1].map(|i| good.len() + i))
    {
        assert_eq!(copy.value, log[original].value);
        assert_eq!(copy.key, log[original].key);
    }

    // Replayed by the current release: each card applied once, its copies no-ops (event_id).
    let report = replay(
        &k,
        &ReplayOptions::from_beginning(&k),
        Counting::default(),
        Arc::new(LogMetrics::default()),
    )
    .unwrap();
    let counting = report.state;
    for id in ["visa-0", "visa-1"] {
        assert_eq!(counting.changed.get(id), Some(&1), "{id} applied once");
        assert_eq!(counting.unchanged.get(id), Some(&2), "{id} twice a no-op");
    }
    assert_eq!(report.progress.rejected, 1, "only the tombstone");
    let state = counting.state.unwrap();
    assert_eq!(state.counts().cards, 4, "two mc and two visa cards");
    let mut once = new_state();
    for (_, v) in &records[..records.len() - 1] {
        once.apply_json(ledger::Source::AccountUpdates, v.as_deref().unwrap())
            .unwrap();
    }
    assert_eq!(
        state.state_hash(),
        once.state_hash(),
        "as if each event came once"
    );

    // The tombstone and an offset with no letter: refused, missing, exit 1, nothing sent.
    let (code, out, _) = tool(&k, &["dlq", "republish", "--offsets", "2,9"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("refused dlq_partition=0 dlq_offset=2"),
        "{out}"
    );
    assert!(out.contains("missing dlq_offset=9"), "{out}");
    assert!(out.contains("sent=0 refused=1 missing=1"), "{out}");

    // A letter whose source topic is not an input topic of this run: refused, nothing sent.
    let mut other = k.clone();
    other.account_updates_topic = unique("dlqrepub-elsewhere");
    let (code, out, _) = tool(&other, &["dlq", "republish", "--offsets", "0"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("is not an input topic"), "{out}");
    assert!(out.contains("sent=0 refused=1 missing=0"), "{out}");
    assert_eq!(
        read_all(&k, &k.account_updates_topic).len(),
        records.len() + 4,
        "nothing was sent"
    );
}

#[test]
fn an_empty_topic_lists_nothing_and_several_partitions_need_partition() {
    let rt = runtime();
    let k = kafka_with_topics(&rt, "dlqparts", 2);
    let (code, out, err) = tool(&k, &["dlq", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "letters=0");
    let (code, out, err) = tool(&k, &["dlq", "republish", "--offsets", "0"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        err.contains("has 2 partitions") && err.contains("--partition"),
        "{err}"
    );
    let (code, out, err) = tool(
        &k,
        &["dlq", "republish", "--offsets", "0", "--partition", "1"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(out.contains("missing dlq_offset=0"), "{out}");
}
