//! The small value types of the authorizers' events: the approval code (DE 38) a decision
//! derives from its hold, the ATC a verified ARQC gives its card, and the reasons of a decline
//! that its response code does not tell.
//!
//! Must never: hold a PAN (a card is named by its PAN hash), nor give two values one text or
//! one code (event ids and the wire depend on them).

use std::fmt;

use crate::types::{HoldId, PanHash};

/// The application transaction counter of a verified ARQC, and its card (see
/// [`AuthorizationEvent::card_atc`](super::AuthorizationEvent::card_atc)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardAtc {
    pub pan_hash: PanHash,
    pub atc: u16,
}

/// Why an authorization was declined, where the code is shared by several checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeclineReason {
    /// `atc_replay`: a verified ARQC whose ATC is not above the highest one the card has used
    /// (a replayed cryptogram or a cloned card); code 05.
    AtcReplay,
}

impl DeclineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineReason::AtcReplay => "atc_replay",
        }
    }

    /// One byte for the event id: 1 `atc_replay` (0 is "no reason").
    pub fn code(self) -> u8 {
        match self {
            DeclineReason::AtcReplay => 1,
        }
    }

    pub fn parse(text: &str) -> Option<DeclineReason> {
        match text {
            "atc_replay" => Some(DeclineReason::AtcReplay),
            _ => None,
        }
    }
}

/// DE 38, the approval code: 6 characters `0-9A-Z`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApprovalCode(pub [u8; 6]);

impl ApprovalCode {
    pub fn parse(text: &str) -> Option<ApprovalCode> {
        let b = text.as_bytes();
        if b.len() != 6
            || !b
                .iter()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        {
            return None;
        }
        let mut code = [0u8; 6];
        code.copy_from_slice(b);
        Some(ApprovalCode(code))
    }

    /// Derived from the hold id, so that a repeat (or another replica) gives the same code.
    pub fn of_hold(hold_id: HoldId) -> ApprovalCode {
        const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut value = u64::from_be_bytes(hold_id.0[8..16].try_into().expect("8 bytes"));
        let mut code = [0u8; 6];
        for c in code.iter_mut() {
            *c = ALPHABET[(value % 36) as usize];
            value /= 36;
        }
        ApprovalCode(code)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("approval codes are ASCII by construction")
    }
}

impl fmt::Debug for ApprovalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApprovalCode({})", self.as_str())
    }
}
