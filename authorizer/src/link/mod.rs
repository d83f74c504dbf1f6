//! The network link: what travels between the card network's interface device and the ledger.
//!
//! One idea per file, outermost first:
//! * [`connection`]: the tokio task of one interface device. It dials (with [`backoff`]), reads
//!   length-prefixed frames, feeds them to the session, writes what the session sends through one
//!   writer, and runs the pipeline's [`connection::RequestHandler`] for each request. It only
//!   moves bytes.
//! * [`session`]: the sans-I/O state machine of the session (sign-on, echo, the network's 0800s,
//!   requests in flight and their bound, sign-off), time passed in as an argument.
//! * [`salvage`]: what can be read of a frame that does not parse, to answer it 30.
//! * [`status`]: each link's state and counters, shared with the admin server.
//! * [`translate`]: the mapping between a parsed ISO 8583 [`Message`] and the ledger's
//!   [`Request`](ledger::decide::Request) / [`Decision`](ledger::decide::Decision): which fields a
//!   request must carry, how they become typed values, which fields the answer echoes and which
//!   it sets (`docs/network.md`, "Messages the authorizer answers").
//!
//! Every rule about content lives in `translate`, every rule about the session in `session`.
//!
//! Must never: log a PAN (only [`translate::MaskedPan`]), track data or a PIN block; panic on
//! anything the network sends (every malformed field is a [`translate::FieldInError`], answered
//! 30; a frame that does not parse is answered 30 or counted).
//!
//! [`Message`]: iso8583::Message

pub mod backoff;
pub mod connection;
pub mod salvage;
pub mod session;
pub mod status;
pub mod translate;
