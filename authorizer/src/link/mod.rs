//! The network link: what travels between the card network's interface device and the ledger.
//!
//! Today this holds [`translate`], the sans-I/O mapping between a parsed ISO 8583 [`Message`]
//! and the ledger's [`Request`](ledger::decide::Request) / [`Decision`](ledger::decide::Decision):
//! which fields a request must carry, how they become typed values, which fields the answer
//! echoes and which it sets (`docs/network.md`, "Messages the authorizer answers").
//! The TCP connection, the session (sign-on, echo, sign-off) and the dispatcher come next, and
//! move bytes only: every rule about content lives here.
//!
//! Must never: log a PAN (only [`translate::MaskedPan`]), track data or a PIN block; panic on
//! a field's content (every malformed field is a [`translate::FieldInError`], answered 30).
//!
//! [`Message`]: iso8583::Message

pub mod translate;
