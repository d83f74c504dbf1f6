//! Parsing borrows every string field from the payload when it has no escapes (no allocation
//! per field), and still decodes escaped strings correctly (owned then).

use std::borrow::Cow;

use ledger::{Event, EventError, Source};

const CARD: &str = r#"{"schema":1,"type":"card.upserted","event_id":"0b0c0d0e-1111-4222-8333-000000000001","at":"2026-11-22T10:15:00Z","account_id":"acc-1","card_id":"card-1","version":2,"pan_hash":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","pan_last4":"0010","expiry":"2811","psn":"01","status":"active","key_set":"mc-cvn17-1","unknown_field":{"nested":[1,2,"x"]}}"#;

#[test]
fn plain_strings_are_borrowed_from_the_payload() {
    let Event::CardUpserted(card) = Event::parse(Source::AccountUpdates, CARD.as_bytes()).unwrap()
    else {
        panic!("a card.upserted");
    };
    for text in [
        &card.event_id,
        &card.account_id,
        &card.card_id,
        &card.key_set,
    ] {
        assert!(matches!(text, Cow::Borrowed(_)), "{text:?} was copied");
    }
    assert_eq!(card.account_id, "acc-1");
    assert_eq!(card.key_set, "mc-cvn17-1");
}

#[test]
fn escaped_strings_are_decoded() {
    let payload = CARD.replace(r#""account_id":"acc-1""#, r#""account_id":"acc-\u0041\"1""#);
    let Event::CardUpserted(card) =
        Event::parse(Source::AccountUpdates, payload.as_bytes()).unwrap()
    else {
        panic!("a card.upserted");
    };
    assert_eq!(card.account_id, "acc-A\"1");
    assert!(matches!(card.account_id, Cow::Owned(_)));
}

#[test]
fn a_string_field_of_the_wrong_type_is_a_json_error_naming_the_type() {
    let payload = CARD.replace(r#""card_id":"card-1""#, r#""card_id":17"#);
    let error = Event::parse(Source::AccountUpdates, payload.as_bytes()).unwrap_err();
    match &error {
        EventError::Json { message } => {
            assert!(
                message.contains("invalid type: integer `17`, expected a string"),
                "{message}"
            )
        }
        other => panic!("expected a JSON error, got {other:?}"),
    }
    let payload = CARD.replace(r#""card_id":"card-1""#, r#""card_id":null"#);
    assert_eq!(
        Event::parse(Source::AccountUpdates, payload.as_bytes()).unwrap_err(),
        EventError::MissingField { field: "card_id" }
    );
}
