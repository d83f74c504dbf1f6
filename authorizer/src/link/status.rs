//! What each link is doing, readable from other tasks: the shared status handle.
//!
//! One [`LinkStatus`] per interface device, shared as an `Arc` between the connection task that
//! writes it (through its [`Session`](super::session::Session)) and whoever reads it: the admin
//! server's `/state` (`links: [{"address", "state"}]`) and metrics (`authorizer_link_up{device}`,
//! `authorizer_link_reconnects_total{device}`, `authorizer_bad_frames_total{device,kind}`).
//! Plain atomics: a reader never blocks the link, and a value read is at most a moment old.
//!
//! Must never: hold message content (a status is counts and a state, never a field value).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Where a link is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// No connection: dialling, or waiting out the backoff before the next try.
    Connecting,
    /// Connected; our sign-on 0800 is out, its 0810 not yet in. Nothing is served.
    SigningOn,
    /// Signed on: requests are served.
    SignedOn,
    /// Shutting down: sign-off sent, no new request taken, those in flight being answered.
    Stopping,
    /// Stopped for good (after shutdown).
    Down,
}

impl LinkState {
    /// The name `/state` shows.
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::SigningOn => "signing_on",
            LinkState::SignedOn => "signed_on",
            LinkState::Stopping => "stopping",
            LinkState::Down => "down",
        }
    }

    fn from_u8(v: u8) -> LinkState {
        match v {
            1 => LinkState::SigningOn,
            2 => LinkState::SignedOn,
            3 => LinkState::Stopping,
            4 => LinkState::Down,
            _ => LinkState::Connecting,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            LinkState::Connecting => 0,
            LinkState::SigningOn => 1,
            LinkState::SignedOn => 2,
            LinkState::Stopping => 3,
            LinkState::Down => 4,
        }
    }
}

/// Why a frame was bad (the `kind` label of `authorizer_bad_frames_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BadFrameKind {
    /// Longer than `max_frame_bytes`: the stream is corrupt, the link reconnects.
    Oversized,
    /// Did not parse, but its MTI and DE 11 did: answered with DE 39 = 30 and DE 44.
    Unparsable,
    /// Did not parse and nothing to answer it by (no MTI or no DE 11): logged, dropped.
    Garbage,
    /// Parsed, but not something the authorizer answers (a response to nothing of ours, a class
    /// we do not serve): logged, dropped.
    Unexpected,
}

impl BadFrameKind {
    /// Every kind, in the order of [`LinkStatusSnapshot::bad_frames`].
    pub const ALL: [BadFrameKind; 4] = [
        BadFrameKind::Oversized,
        BadFrameKind::Unparsable,
        BadFrameKind::Garbage,
        BadFrameKind::Unexpected,
    ];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            BadFrameKind::Oversized => "oversized",
            BadFrameKind::Unparsable => "unparsable",
            BadFrameKind::Garbage => "garbage",
            BadFrameKind::Unexpected => "unexpected",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The live status of one link. Written by its connection task only.
#[derive(Debug)]
pub struct LinkStatus {
    address: String,
    state: AtomicU8,
    reconnects: AtomicU64,
    bad_frames: [AtomicU64; BadFrameKind::ALL.len()],
    in_flight: AtomicU64,
    /// Requests answered 91 because the link was not serving or the in-flight bound was reached.
    refused: AtomicU64,
}

/// One consistent-enough reading of a [`LinkStatus`] (each counter read once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkStatusSnapshot {
    /// `host:port` of the interface device.
    pub address: String,
    /// Its state.
    pub state: LinkState,
    /// Connections lost or refused after the first try (`authorizer_link_reconnects_total`).
    pub reconnects: u64,
    /// Bad frames by kind, in the order of [`BadFrameKind::ALL`].
    pub bad_frames: [u64; BadFrameKind::ALL.len()],
    /// Requests handed to the pipeline and not answered yet.
    pub in_flight: u64,
    /// Requests answered 91 (not serving, or past the in-flight bound).
    pub refused: u64,
}

impl LinkStatus {
    /// A link to `address`, connecting.
    pub fn new(address: impl Into<String>) -> LinkStatus {
        LinkStatus {
            address: address.into(),
            state: AtomicU8::new(LinkState::Connecting.as_u8()),
            reconnects: AtomicU64::new(0),
            bad_frames: Default::default(),
            in_flight: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// `host:port` of the interface device (the `device` label).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The current state.
    pub fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// 1 while signed on (`authorizer_link_up`).
    pub fn is_up(&self) -> bool {
        self.state() == LinkState::SignedOn
    }

    /// Reconnections so far.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Bad frames of `kind` so far.
    pub fn bad_frames(&self, kind: BadFrameKind) -> u64 {
        self.bad_frames[kind.index()].load(Ordering::Relaxed)
    }

    /// Requests answered 91 so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Everything, read once.
    pub fn snapshot(&self) -> LinkStatusSnapshot {
        LinkStatusSnapshot {
            address: self.address.clone(),
            state: self.state(),
            reconnects: self.reconnects(),
            bad_frames: BadFrameKind::ALL.map(|k| self.bad_frames(k)),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            refused: self.refused(),
        }
    }

    pub(crate) fn set_state(&self, state: LinkState) {
        self.state.store(state.as_u8(), Ordering::Relaxed);
    }

    pub(crate) fn count_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_bad_frame(&self, kind: BadFrameKind) {
        self.bad_frames[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_atomic() {
        let s = LinkStatus::new("127.0.0.1:1");
        for st in [
            LinkState::Connecting,
            LinkState::SigningOn,
            LinkState::SignedOn,
            LinkState::Stopping,
            LinkState::Down,
        ] {
            s.set_state(st);
            assert_eq!(s.state(), st);
            assert_eq!(s.is_up(), st == LinkState::SignedOn);
        }
        s.count_bad_frame(BadFrameKind::Garbage);
        assert_eq!(s.snapshot().bad_frames, [0, 0, 1, 0]);
    }
}
