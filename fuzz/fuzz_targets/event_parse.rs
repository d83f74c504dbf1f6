//! Any bytes as a Kafka value of either topic: the ledger's JSON reader must not panic, must
//! accept exactly what the serde_json reference accepts, with the same event (and the same
//! error unless both are JSON syntax or type errors), and an accepted authorizer event must
//! serialize and parse back to itself.
#![no_main]

use ledger::event::reference;
use ledger::{Event, EventError, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for source in [Source::AccountUpdates, Source::Authorizations] {
        let fast = Event::parse(source, data);
        let slow = reference::parse(source, data);
        match (&fast, &slow) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(EventError::Json { .. }), Err(EventError::Json { .. })) => {}
            (Err(a), Err(b)) => assert_eq!(a, b),
            _ => panic!("reader {fast:?} but serde {slow:?}"),
        }
        assert_eq!(reference::wires_agree(source, data), Ok(true));
        if let Ok(Event::Authorization(event)) = fast {
            let json = event.to_json();
            let again = Event::parse(source, &json).expect("a published event parses");
            assert_eq!(again, Event::Authorization(event));
        }
    }
});
