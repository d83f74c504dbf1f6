//! The serde_json path these events were parsed with before [`json::Reader`](crate::json::Reader):
//! the reference the differential tests (at the end of this file) and the `event_parse` fuzz
//! target compare the reader with (same wire structs, same checks after them).
//!
//! Must never: be built in production (feature `fuzzing` or tests only), nor check a field
//! itself: it only fills the wire structs and calls the same `cloud_event` and
//! `authorization_event`, so that a difference can only come from the reader.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;

use super::authorization::{AuthorizationWire, authorization_event, read_authorization};
use super::cloud::{CloudWire, cloud_event, read_cloud};
use super::*;

/// A JSON string, borrowed from the payload when it has no escapes, owned otherwise (serde
/// borrows a bare `Cow<str>` only when told to, and never inside an `Option` or a `Vec`).
struct TextVisitor;

impl<'de> serde::de::Visitor<'de> for TextVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// One string in a wire struct, borrowed when possible (see [`TextVisitor`]).
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor).map(Text)
    }
}

/// `deserialize_with` for an optional string field (absent: `None` through `default`).
pub(super) fn text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    Option::<Text<'de>>::deserialize(d).map(|t| t.map(|t| t.0))
}

/// `deserialize_with` for an optional list of strings.
pub(super) fn texts<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Cow<'de, str>>>, D::Error> {
    Option::<Vec<Text<'de>>>::deserialize(d)
        .map(|v| v.map(|v| v.into_iter().map(|t| t.0).collect()))
}

/// A struct from a JSON object only (serde's derive also takes an array, fields by position;
/// the contract says objects).
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapOnly<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for MapOnly<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(MapOnly(PhantomData)).map(Object)
    }
}

/// `deserialize_with` for `trace`: an object or `null`.
pub(super) fn object_or_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<Object<T>>::deserialize(d).map(|o| o.map(|o| o.0))
}

fn json_error(error: serde_json::Error) -> EventError {
    EventError::Json {
        message: error.to_string(),
    }
}

fn wire<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, EventError> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let Object(wire) = Object::<T>::deserialize(&mut de).map_err(json_error)?;
    de.end().map_err(json_error)?;
    Ok(wire)
}

/// `Event::parse` through serde_json.
pub fn parse(source: Source, payload: &[u8]) -> Result<Event<'_>, EventError> {
    match source {
        Source::AccountUpdates => cloud_event(wire(payload)?),
        Source::Authorizations => authorization_event(wire(payload)?).map(Event::Authorization),
    }
}

/// The wire structs through serde_json and through [`json::Reader`](crate::json::Reader), for
/// comparison.
pub fn wires_agree(source: Source, payload: &[u8]) -> Result<bool, (EventError, EventError)> {
    Ok(match source {
        Source::AccountUpdates => match (
            wire::<CloudWire<'_>>(payload),
            read_cloud(payload).map_err(|e| *e),
        ) {
            (Ok(a), Ok(b)) => a == b,
            (Err(_), Err(_)) => true,
            (a, b) => {
                return Err((
                    a.err().unwrap_or(EventError::MissingField { field: "-" }),
                    b.err().unwrap_or(EventError::MissingField { field: "-" }),
                ));
            }
        },
        Source::Authorizations => match (
            wire::<AuthorizationWire<'_>>(payload),
            read_authorization(payload).map_err(|e| *e),
        ) {
            (Ok(a), Ok(b)) => a == b,
            (Err(_), Err(_)) => true,
            (a, b) => {
                return Err((
                    a.err().unwrap_or(EventError::MissingField { field: "-" }),
                    b.err().unwrap_or(EventError::MissingField { field: "-" }),
                ));
            }
        },
    })
}

#[cfg(test)]
mod tests {
    //! The hand-written reader against the serde_json reference: the same inputs accepted with
    //! the same events, the same inputs rejected (with the same error when it is not a JSON
    //! syntax or type error, whose message may differ).

    use proptest::prelude::*;

    use super::*;

    const CARD: &str = r#"{"schema":1,"type":"card.upserted","event_id":"0b0c0d0e-1111-4222-8333-000000000001","at":"2026-11-22T10:15:00Z","account_id":"acc-1","card_id":"card-1","version":2,"pan_hash":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","pan_last4":"0010","expiry":"2811","psn":"01","status":"active","key_set":"mc-cvn17-1"}"#;
    const ACCOUNT: &str = r#"{"schema":1,"type":"account.upserted","event_id":"e-1","at":"2026-11-22T10:15:00Z","account_id":"acc-1","version":7,"status":"open","currency":"986","credit_limit":500000,"posted_balance":-12,"cleared_holds":["h-00112233445566778899aabbccddeeff"]}"#;
    const PLACED: &str = r#"{"schema":1,"type":"hold.placed","event_id":"p-1","at":"2026-11-22T10:15:00Z","instance":"auth-a","account_id":"acc-1","hold_id":"h-00112233445566778899aabbccddeeff","response_code":"00","approval_code":"A1B2C3","amount_minor":2500,"currency":"986","expires_at":"2026-11-29T10:15:00Z","merchant_category":"5812","trace":{"mti":"0100","pan_masked":"541333******0010","transmission_date_time":"1122101500","transmitted_at":"2026-11-22T10:15:00Z","stan":"000123","acquirer_id":"12345","forwarder_id":"0","retrieval_reference":"RRN000000001"}}"#;
    const RELEASED: &str = r#"{"schema":1,"type":"hold.released","event_id":"r-1","at":"2026-11-22T10:15:00Z","instance":"auth-a","account_id":"acc-1","hold_id":"h-00112233445566778899aabbccddeeff","response_code":"00","amount_minor":2500,"currency":"986","remaining_minor":0,"trace":{"mti":"0400","pan_masked":"541333******0010","transmission_date_time":"1122101500","transmitted_at":"2026-11-22T10:15:00Z","stan":"000124","acquirer_id":"12345","forwarder_id":"0"}}"#;

    const DECLINED: &str = r#"{"schema":1,"type":"authorization.declined","event_id":"d-1","at":"2026-11-22T10:15:00Z","instance":"auth-a","account_id":"acc-1","hold_id":"h-00112233445566778899aabbccddeeff","response_code":"05","amount_minor":100,"currency":"986","content_fingerprint":"0f1e2d3c4b5a6978","pan_hash":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","atc":7,"decline_reason":"atc_replay","trace":{"mti":"0100","pan_masked":"541333******0010","transmission_date_time":"1122101500","transmitted_at":"2026-11-22T10:15:00Z","stan":"000125","acquirer_id":"12345","forwarder_id":"0"}}"#;

    fn same(source: Source, payload: &[u8]) -> Result<(), TestCaseError> {
        let fast = Event::parse(source, payload);
        let slow = reference::parse(source, payload);
        match (&fast, &slow) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(EventError::Json { .. }), Err(EventError::Json { .. })) => {}
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(
                false,
                "reader {fast:?} but serde {slow:?} for {:?}",
                String::from_utf8_lossy(payload)
            ),
        }
        let wires = reference::wires_agree(source, payload);
        prop_assert!(
            wires == Ok(true),
            "wire structs differ ({wires:?}) for {:?}",
            String::from_utf8_lossy(payload)
        );
        Ok(())
    }

    /// Bytes that matter to JSON and to the checks after it.
    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            prop::sample::select(b"{}[]:,\"\\ \t\n\r-+.eE0123456789abcdefnulltrsu/xAFDC".to_vec()),
            any::<u8>(),
        ]
    }

    /// A valid event edited in place: bytes replaced, inserted, removed, or fragments spliced in.
    fn mutated() -> impl Strategy<Value = (Source, Vec<u8>)> {
        let base = prop::sample::select(vec![
            (Source::AccountUpdates, CARD),
            (Source::AccountUpdates, ACCOUNT),
            (Source::Authorizations, PLACED),
            (Source::Authorizations, RELEASED),
            (Source::Authorizations, DECLINED),
        ]);
        let fragment = prop::sample::select(vec![
            "null",
            "true",
            "false",
            "-0",
            "0",
            "-1",
            "1.5",
            "1e3",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "01",
            "[]",
            "{}",
            "[1,[2,{\"a\":[]}]]",
            "{\"x\":{\"y\":null}}",
            "\"\\u0041\"",
            "\"\\ud83d\\ude00\"",
            "\"\\ud83d\"",
            "\"\\ude00\"",
            "\"\\uZZZZ\"",
            "\"\\q\"",
            "\"\u{e9}\"",
            ",",
            ":",
            "\"schema\":1,",
            "\"type\":",
            "\"trace\":null,",
            "\"event_id\":\"x\",",
            "\"version\":",
            " \t\r\n",
            "\"sch\\u0065ma\"",
            "\"cleared_holds\":[\"h-00112233445566778899aabbccddeeff\",]",
            "\"cleared_holds\":null,",
            "\"unknown\":[\"\\ud800\",\"\u{1}\"],",
            "\"atc\":65536,",
            "\"atc\":",
            "\"content_fingerprint\":\"0000000000000000\",",
            "\"decline_reason\":\"other\",",
            "\"pan_hash\":null,",
        ]);
        let edit = prop_oneof![
            (any::<prop::sample::Index>(), interesting_byte()).prop_map(|(i, b)| (0u8, i, vec![b])),
            (any::<prop::sample::Index>(), interesting_byte()).prop_map(|(i, b)| (1u8, i, vec![b])),
            any::<prop::sample::Index>().prop_map(|i| (2u8, i, Vec::new())),
            (any::<prop::sample::Index>(), fragment).prop_map(|(i, f)| (
                1u8,
                i,
                f.as_bytes().to_vec()
            )),
        ];
        (base, prop::collection::vec(edit, 1..4)).prop_map(|((source, text), edits)| {
            let mut bytes = text.as_bytes().to_vec();
            for (kind, index, insert) in edits {
                let at = index.index(bytes.len() + 1);
                match kind {
                    0 if at < bytes.len() => bytes[at] = insert[0],
                    2 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {
                        bytes.splice(at..at, insert);
                    }
                }
            }
            (source, bytes)
        })
    }

    /// Valid events with their fields reordered, spaced, escaped, duplicated, nulled or retyped,
    /// and unknown fields added.
    fn rewritten() -> impl Strategy<Value = (Source, Vec<u8>)> {
        let base = prop::sample::select(vec![
            (Source::AccountUpdates, CARD),
            (Source::AccountUpdates, ACCOUNT),
            (Source::Authorizations, PLACED),
            (Source::Authorizations, RELEASED),
        ]);
        let value_edit = prop_oneof![
            12 => Just("keep"),
            1 => prop::sample::select(vec![
            "keep",
            "keep",
            "keep",
            "keep",
            "keep",
            "keep",
            "keep",
            "keep",
            "null",
            "17",
            "\"x\"",
            "[]",
            "{}",
            "escape",
            "duplicate",
            "drop",
            "-0",
            "0",
            "-1",
            "1.5",
            "1e3",
            "01",
            "true",
            "nul",
            "\"\"",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "\"\\ud83d\\ude00\"",
            "\"\\ud83d\"",
            "\"\\ude00\"",
            "\"\\ud83dx\"",
            "\"\u{e9}\"",
            "\"\\u00e9\"",
            "\"a\\tb\"",
            "[\"h-00112233445566778899aabbccddeeff\",]",
            "[\"h-00112233445566778899aabbccddeeff\",null]",
            "[[]]",
            "{\"mti\":\"0100\"}",
        ]),
        ];
        (
            base,
            prop::collection::vec(value_edit, 24),
            any::<u64>(),
            prop::sample::select(vec!["", " ", "\n\t", "\r"]),
        )
            .prop_map(|((source, text), edits, seed, space)| {
                let value: serde_json::Value = serde_json::from_str(text).expect("valid base");
                let object = value.as_object().expect("an object");
                let mut fields: Vec<String> = Vec::new();
                for (i, (key, field)) in object.iter().enumerate() {
                    let key_text = if edits[i % edits.len()] == "escape" {
                        // Escape the first character of the key.
                        let mut chars = key.chars();
                        let first = chars.next().unwrap_or('x');
                        format!("\"\\u{:04x}{}\"", first as u32, chars.as_str())
                    } else {
                        format!("{key:?}")
                    };
                    let value_text = match edits[i % edits.len()] {
                        "keep" | "escape" => {
                            let text = field.to_string();
                            if let Some(s) = field.as_str() {
                                if seed >> (i % 64) & 1 == 1 && !s.is_empty() {
                                    let mut chars = s.chars();
                                    let first = chars.next().unwrap_or('x');
                                    format!("\"\\u{:04X}{}\"", first as u32, chars.as_str())
                                } else {
                                    text
                                }
                            } else {
                                text
                            }
                        }
                        "duplicate" => {
                            fields.push(format!("{key_text}{space}:{space}{field}"));
                            field.to_string()
                        }
                        "drop" => continue,
                        other => other.to_owned(),
                    };
                    fields.push(format!("{key_text}{space}:{space}{value_text}"));
                    if seed >> ((i + 7) % 64) & 3 == 0 {
                        fields.push(format!(
                            "\"ext{i}\":{{\"a\":[1,-2.5e-3,\"\\n\",true,null]}}"
                        ));
                    }
                }
                let rotate = (seed % (fields.len() as u64 + 1)) as usize;
                let rotate = rotate.min(fields.len());
                fields.rotate_left(rotate);
                let joined = fields.join(&format!(",{space}"));
                (
                    source,
                    format!("{space}{{{space}{joined}{space}}}{space}").into_bytes(),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        #[test]
        fn reader_matches_serde_on_edited_events((source, payload) in mutated()) {
            same(source, &payload)?;
            let other = match source {
                Source::AccountUpdates => Source::Authorizations,
                Source::Authorizations => Source::AccountUpdates,
            };
            same(other, &payload)?;
        }

        #[test]
        fn reader_matches_serde_on_rewritten_events((source, payload) in rewritten()) {
            same(source, &payload)?;
        }

        #[test]
        fn reader_matches_serde_on_any_bytes(payload in prop::collection::vec(interesting_byte(), 0..64)) {
            same(Source::AccountUpdates, &payload)?;
            same(Source::Authorizations, &payload)?;
        }
    }

    #[test]
    fn the_reference_events_parse() {
        for (source, text) in [
            (Source::AccountUpdates, CARD),
            (Source::AccountUpdates, ACCOUNT),
            (Source::Authorizations, PLACED),
            (Source::Authorizations, RELEASED),
        ] {
            let event = Event::parse(source, text.as_bytes()).expect(text);
            assert_eq!(Ok(event), reference::parse(source, text.as_bytes()));
        }
    }

    #[test]
    fn edge_cases_agree_with_serde() {
        let cases: Vec<String> = vec![
            // Arrays are not objects (serde's derive took them positionally; the contract does not).
            "[1,\"card.upserted\"]".into(),
            PLACED
                .replace("\"trace\":{", "\"trace\":[")
                .replace("}}", "]}"),
            // Duplicates, also after a null.
            CARD.replace("\"psn\":\"01\"", "\"psn\":null,\"psn\":\"01\""),
            CARD.replace("\"psn\":\"01\"", "\"psn\":\"01\",\"p\\u0073n\":\"01\""),
            // Unknown duplicates are fine.
            CARD.replace("\"psn\":\"01\"", "\"psn\":\"01\",\"x\":1,\"x\":[]"),
            // Deep nesting in an ignored value (serde has no limit there).
            CARD.replace(
                "\"psn\":\"01\"",
                &format!(
                    "\"psn\":\"01\",\"deep\":{}{}",
                    "[".repeat(5000),
                    "]".repeat(5000)
                ),
            ),
            // Invalid UTF-8 in an ignored string is accepted by serde; in a field it is not.
            format!("{},\"x\":\"\u{e9}\"}}", &CARD[..CARD.len() - 1]),
            // Numbers at the edges of the field types.
            ACCOUNT.replace("\"posted_balance\":-12", "\"posted_balance\":-0"),
            ACCOUNT.replace(
                "\"posted_balance\":-12",
                "\"posted_balance\":-9223372036854775808",
            ),
            ACCOUNT.replace(
                "\"posted_balance\":-12",
                "\"posted_balance\":9223372036854775808",
            ),
            ACCOUNT.replace("\"version\":7", "\"version\":18446744073709551615"),
            ACCOUNT.replace("\"version\":7", "\"version\":18446744073709551616"),
            ACCOUNT.replace("\"version\":7", "\"version\":7.0"),
            ACCOUNT.replace("\"version\":7", "\"version\":-7"),
            ACCOUNT.replace("\"version\":7", "\"version\":07"),
            // Trailing characters, trailing commas.
            format!("{CARD} x"),
            format!("{CARD}\n\t "),
            CARD.replace("}", ",}"),
            ACCOUNT.replace("\"]", "\",]"),
        ];
        for case in &cases {
            let source = if case.contains("hold.") {
                Source::Authorizations
            } else {
                Source::AccountUpdates
            };
            same(source, case.as_bytes()).unwrap();
        }
        let mut bytes = CARD.as_bytes().to_vec();
        let at = CARD.find("x\"").unwrap_or(10);
        bytes.splice(
            at..at,
            [
                b'"', b',', b'"', b'z', b'"', b':', b'"', 0xff, b'"', b',', b'"',
            ],
        );
        same(Source::AccountUpdates, &bytes).unwrap();
        // A bad key is an error even when its field is unknown.
        let bad_key = [&CARD.as_bytes()[..CARD.len() - 1], b",\"\xff\":1}"].concat();
        same(Source::AccountUpdates, &bad_key).unwrap();
        assert!(Event::parse(Source::AccountUpdates, &bad_key).is_err());
    }
}
