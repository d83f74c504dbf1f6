//! Secrets in parsed events and in rejection reasons (the dead-letter `reason`): a rejected
//! `pan_hash`, `pan_last4` or `trace.pan_masked` is never echoed, any other offending text at
//! most [`REASON_VALUE_MAX`] characters, and `trace.pan_masked` must really be masked.

use ledger::{Event, EventError, Source};

/// The longest offending text a reason may quote (characters, before the `…`).
const REASON_VALUE_MAX: usize = 64;

const PAN_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn card(pan_hash: &str, last4: &str) -> String {
    format!(
        r#"{{"schema":1,"type":"card.upserted","event_id":"c1","at":"2026-11-22T10:00:00Z","account_id":"acc-1","card_id":"card-1","version":1,"pan_hash":"{pan_hash}","pan_last4":"{last4}","expiry":"2811","psn":"01","status":"active","key_set":"ks"}}"#
    )
}

fn placed(pan_masked: &str, event_id: &str) -> String {
    format!(
        r#"{{"schema":1,"type":"hold.placed","event_id":"{event_id}","at":"2026-11-22T10:15:00Z","instance":"auth-a","account_id":"acc-1","hold_id":"h-00112233445566778899aabbccddeeff","response_code":"00","approval_code":"A1B2C3","amount_minor":2500,"currency":"986","expires_at":"2026-11-29T10:15:00Z","trace":{{"mti":"0100","pan_masked":"{pan_masked}","transmission_date_time":"1122101500","transmitted_at":"2026-11-22T10:15:00Z","stan":"000123","acquirer_id":"12345","forwarder_id":"0"}}}}"#
    )
}

fn reason(source: Source, json: &str) -> (EventError, String) {
    let err = Event::parse(source, json.as_bytes()).expect_err("must be rejected");
    let text = err.to_string();
    (err, text)
}

#[test]
fn a_bad_pan_hash_is_not_echoed_in_the_reason() {
    let bad = &PAN_HASH[..63];
    let (err, text) = reason(Source::AccountUpdates, &card(bad, "0010"));
    assert!(
        matches!(
            err,
            EventError::InvalidField {
                field: "pan_hash",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!text.contains(bad), "{text}");
    assert!(!format!("{err:?}").contains(bad), "{err:?}");
    // Nor a recognisable part of it.
    assert!(!text.contains(&bad[..16]), "{text}");
}

#[test]
fn a_bad_pan_last4_is_not_echoed_in_the_reason() {
    let (err, text) = reason(Source::AccountUpdates, &card(PAN_HASH, "00107"));
    assert!(
        matches!(
            err,
            EventError::InvalidField {
                field: "pan_last4",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!text.contains("0010"), "{text}");
}

#[test]
fn a_huge_bad_field_gives_a_bounded_reason() {
    let huge = "x".repeat(100_000);
    let (err, text) = reason(Source::Authorizations, &placed("541333******0010", &huge));
    let EventError::InvalidField { value, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        value.chars().count() <= REASON_VALUE_MAX + 1,
        "{} characters",
        value.len()
    );
    assert!(value.ends_with('…'), "{value}");
    assert!(
        text.chars().count() <= REASON_VALUE_MAX + 200,
        "{} characters",
        text.len()
    );
}

#[test]
fn pan_masked_must_be_masked() {
    for ok in [
        "541333******0010",
        "476173*********0123",
        "541333***0010",
        "****************",
        "************0010",
        "**********",
    ] {
        let json = placed(ok, "p-1");
        let event = Event::parse(Source::Authorizations, json.as_bytes())
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        let Event::Authorization(a) = event else {
            panic!()
        };
        assert_eq!(a.trace.pan_masked, ok);
    }
    for bad in [
        // a clear PAN
        "5413330089010010",
        "4761739001010010123",
        // more than 10 digits shown
        "5413330*89010010",
        "541333**89010010",
        // more than len - 3 digits shown (12 digits, 10 shown)
        "541333**0010",
        "5413330**010",
        // a 10-digit PAN in clear
        "5413330010",
    ] {
        let (err, text) = reason(Source::Authorizations, &placed(bad, "p-1"));
        assert!(
            matches!(
                err,
                EventError::InvalidField {
                    field: "trace.pan_masked",
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
        assert!(!text.contains(bad), "{text}");
        assert!(!text.contains(&bad[bad.len() - 4..]), "{text}");
    }
}

#[test]
fn a_malformed_pan_masked_is_not_echoed() {
    let bad = "541333******0010x";
    let (err, text) = reason(Source::Authorizations, &placed(bad, "p-1"));
    assert!(
        matches!(
            err,
            EventError::InvalidField {
                field: "trace.pan_masked",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!text.contains("541333"), "{text}");
}

#[test]
fn a_secret_field_of_the_wrong_type_is_not_echoed() {
    let cases = [
        (
            Source::AccountUpdates,
            card(PAN_HASH, "0010").replace(r#""pan_last4":"0010""#, r#""pan_last4":7310"#),
            "7310",
        ),
        (
            Source::AccountUpdates,
            card(PAN_HASH, "0010").replace(
                &format!(r#""pan_hash":"{PAN_HASH}""#),
                r#""pan_hash":98860818847659234"#,
            ),
            "98860818847659234",
        ),
        (
            Source::Authorizations,
            placed("541333******0010", "p-1").replace(
                r#""pan_masked":"541333******0010""#,
                r#""pan_masked":5413330089010434"#,
            ),
            "5413330089010434",
        ),
        (
            Source::Authorizations,
            placed("541333******0010", "p-1").replace(
                r#""pan_masked":"541333******0010""#,
                r#""pan_masked":5413330089010434.0"#,
            ),
            "5413330089010434",
        ),
    ];
    for (source, json, secret) in cases {
        let (err, text) = reason(source, &json);
        assert!(matches!(err, EventError::Json { .. }), "{err:?}");
        assert!(text.contains("expected a string"), "{text}");
        assert!(!text.contains(secret), "{text}");
    }
}

#[test]
fn a_huge_type_or_number_gives_a_bounded_reason() {
    let huge_type = "t".repeat(100_000);
    let json = card(PAN_HASH, "0010").replace("card.upserted", &huge_type);
    let (_, text) = reason(Source::AccountUpdates, &json);
    assert!(
        text.chars().count() <= REASON_VALUE_MAX + 200,
        "{} characters",
        text.len()
    );
    let huge_number = format!("1.{}", "7".repeat(100_000));
    let json = card(PAN_HASH, "0010").replace(
        r#""card_id":"card-1""#,
        &format!(r#""card_id":{huge_number}"#),
    );
    let (_, text) = reason(Source::AccountUpdates, &json);
    assert!(
        text.chars().count() <= REASON_VALUE_MAX + 200,
        "{} characters",
        text.len()
    );
    let json =
        card(PAN_HASH, "0010").replace(r#""version":1"#, &format!(r#""version":{huge_number}"#));
    let (_, text) = reason(Source::AccountUpdates, &json);
    assert!(
        text.chars().count() <= REASON_VALUE_MAX + 200,
        "{} characters",
        text.len()
    );
}
