//! The published events match their JSON Schemas in `schemas/` (required fields present, no
//! field outside `properties`, `const`s and JSON types respected), for each kind decide emits.

use ledger::decide::{
    ChipData, Cryptogram, DecideConfig, Facts, MessageClass, OriginalRequest, Request, decide,
};
use ledger::{
    AmountMinor, Currency, Event, InstitutionId, LedgerConfig, PanHash, ResponseCode, Source, Stan,
    State, TransmissionStamp,
};
use serde_json::Value;

const PAN_HASH: &str = "5f0e1c2b3a49586776859a0b1c2d3e4f5f0e1c2b3a49586776859a0b1c2d3e4f";

fn schema(kind: &str) -> Value {
    let path = format!(
        "{}/../../schemas/{kind}.schema.json",
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        )
        .display()
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap()
}

fn check(schema: &Value, value: &Value, at: &str) {
    if let Some(expected) = schema.get("const") {
        assert_eq!(value, expected, "{at}: const");
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        assert!(allowed.contains(value), "{at}: {value} not in its enum");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let object = value
                .as_object()
                .unwrap_or_else(|| panic!("{at}: not an object"));
            let properties = schema["properties"].as_object().unwrap();
            for required in schema["required"].as_array().unwrap() {
                assert!(
                    object.contains_key(required.as_str().unwrap()),
                    "{at}: missing {required}"
                );
            }
            for (key, field) in object {
                let property = properties
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}: {key} is not in the schema"));
                check(property, field, &format!("{at}.{key}"));
            }
        }
        Some("string") => assert!(value.is_string(), "{at}: not a string"),
        Some("integer") => assert!(value.is_i64() || value.is_u64(), "{at}: not an integer"),
        _ => {}
    }
}

fn request(class: MessageClass, mti: &[u8; 4], stan: u32, amount: i64) -> Request<'static> {
    Request {
        class,
        mti: *mti,
        pan_hash: PanHash::parse_hex(PAN_HASH).unwrap(),
        pan_masked: "541333******0010",
        transmission: TransmissionStamp(1_122_101_500),
        stan: Stan(stan),
        processing_code: Some(*b"000000"),
        acquirer: InstitutionId(12345),
        forwarder: InstitutionId(0),
        amount_transaction: AmountMinor::new(amount).unwrap(),
        currency_transaction: Currency::new(986).unwrap(),
        amount_billing: None,
        currency_billing: None,
        card_expiry: None,
        merchant_category: Some(5812),
        network_response_code: None,
        original: None,
        replacement: None,
        retrieval_reference: Some("RRN000000001"),
        chip: None,
    }
}

#[test]
fn every_published_kind_matches_its_schema() {
    let mut state = State::new(LedgerConfig::default());
    let account = r#"{"schema":1,"type":"account.upserted","event_id":"a1","at":"2026-11-22T10:00:00Z","account_id":"acc-1","version":1,"status":"open","currency":"986","credit_limit":1000,"posted_balance":0}"#;
    state
        .apply_json(Source::AccountUpdates, account.as_bytes())
        .unwrap();
    let card = format!(
        r#"{{"schema":1,"type":"card.upserted","event_id":"c1","at":"2026-11-22T10:00:00Z","account_id":"acc-1","card_id":"card-1","version":1,"pan_hash":"{PAN_HASH}","pan_last4":"0010","expiry":"2811","psn":"01","status":"active","key_set":"ks"}}"#
    );
    state
        .apply_json(Source::AccountUpdates, card.as_bytes())
        .unwrap();
    let config = DecideConfig::new("auth-a");
    let no_chip = Facts {
        cryptogram: Cryptogram::Absent,
    };
    let verified = Facts {
        cryptogram: Cryptogram::Verified,
    };
    let chip = |stan: u32| Request {
        chip: Some(ChipData {
            atc: Some(9),
            ..ChipData::default()
        }),
        ..request(MessageClass::Authorization, b"0100", stan, 100)
    };
    let now = ledger::time::parse_rfc3339_utc("2026-11-22T10:15:05Z").unwrap();
    let requests = [
        request(MessageClass::Authorization, b"0100", 1, 500),
        request(MessageClass::Authorization, b"0100", 2, 5_000),
        Request {
            network_response_code: Some(ResponseCode::APPROVED),
            ..request(MessageClass::Advice, b"0120", 3, 200)
        },
        Request {
            original: Some(OriginalRequest {
                mti: *b"0100",
                stan: Stan(1),
                transmission: TransmissionStamp(1_122_101_500),
                acquirer: InstitutionId(12345),
                forwarder: InstitutionId(0),
            }),
            ..request(MessageClass::Reversal, b"0400", 4, 0)
        },
        // A verified ARQC (its ATC in the event), then the same ATC again (declined, with why).
        chip(5),
        chip(6),
    ];
    let mut kinds = Vec::new();
    for r in &requests {
        let facts = if r.chip.is_some() { verified } else { no_chip };
        let decision = decide(&state, r, &facts, &config, now);
        let event = decision.event.expect("each request publishes an event");
        let json: Value = serde_json::from_slice(&event.to_json()).unwrap();
        let kind = json["type"].as_str().unwrap().to_owned();
        check(&schema(&kind), &json, &kind);
        if r.chip.is_some() {
            assert_eq!(json["atc"], 9, "{json}");
            assert_eq!(json["pan_hash"], PAN_HASH, "{json}");
        }
        assert_eq!(
            json["decline_reason"].as_str(),
            (r.stan == Stan(6)).then_some("atc_replay"),
            "{json}"
        );
        if matches!(kind.as_str(), "hold.placed" | "authorization.declined") {
            assert_eq!(json["content_fingerprint"].as_str().map(str::len), Some(16));
        }
        state.apply(&Event::Authorization(event)).unwrap();
        kinds.push(kind);
    }
    assert_eq!(
        kinds,
        [
            "hold.placed",
            "authorization.declined",
            "hold.adjusted",
            "hold.released",
            "hold.placed",
            "authorization.declined"
        ]
    );
}

#[test]
fn schema_files_are_valid_json_with_the_common_envelope() {
    for kind in [
        "hold.placed",
        "hold.adjusted",
        "hold.released",
        "authorization.declined",
    ] {
        let s = schema(kind);
        assert_eq!(s["properties"]["type"]["const"], kind);
        assert_eq!(s["additionalProperties"], false);
        for field in ["schema", "event_id", "at", "account_id", "hold_id", "trace"] {
            assert!(
                s["required"].as_array().unwrap().iter().any(|r| r == field),
                "{kind} requires {field}"
            );
        }
    }
}
