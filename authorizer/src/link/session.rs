//! The session on the link, as a sans-I/O state machine: sign-on, echo, the network's 0800s,
//! requests in flight, sign-off.
//!
//! A [`Session`] never touches a socket or reads a clock. The connection task feeds it what
//! happened ([`Session::connected`], [`Session::frame_received`], [`Session::answer_ready`],
//! [`Session::tick`], [`Session::shutdown`], [`Session::disconnected`]), each with the time as an
//! argument ([`Now`]), and carries out what it asks ([`Session::poll_action`]): send a frame,
//! deliver a request to the pipeline, close the connection. So every rule of the session is
//! tested without sockets and without waiting (`docs/network.md`, "The session on the link").
//!
//! The rules, in the order a connection lives them:
//! * On connect it sends its sign-on (0800, DE 70 = 001) and serves nothing until the 0810 with
//!   DE 39 = 00 that matches it. An 0810 with another DE 39 closes the connection (the task backs
//!   off and dials again); so does no answer within `own_answer_timeout`.
//! * The authorizer's own 0800s are matched to their 0810s by DE 11 and DE 7 together: an 0810
//!   with our STAN but another DE 7 is not ours (counted as unexpected).
//! * After `echo_idle` with no frame received it sends an echo (DE 70 = 270 in `mastercard`, 301
//!   in `ascii`); one unanswered within `own_answer_timeout` means the link is dead: close, and the
//!   task reconnects and signs on again.
//! * The network's 0800s (echo, sign-on, sign-off) are answered 0810 with DE 39 = 00 and the echo
//!   set (DE 7, 11, 33, 70), in any state.
//! * Requests (0100, 0120, 0400, 0420 and their repeats) are delivered to the pipeline while
//!   signed on, as many at once as `in_flight_max`; answers go back as they are ready, in any
//!   order. A request that cannot be taken (not signed on yet, stopping, or the bound reached) is
//!   answered at once with DE 39 = 91 (issuer unavailable): the network stands in at once rather
//!   than after its timeout, and the socket keeps being read so echoes and our own 0810s are
//!   never stuck behind a full pipeline.
//! * A frame longer than `max_frame_bytes` means the stream is corrupt: counted, close (the task
//!   reconnects). A frame that does not parse is answered with DE 39 = 30 and DE 44 = the field
//!   in error when its MTI (a request's) and DE 11 can be recovered ([`super::salvage`]);
//!   otherwise it is logged and counted, and the connection stays up.
//! * On shutdown it signs off (DE 70 = 002), takes no new request, waits for the answers in
//!   flight (at most `drain_timeout`) and for the sign-off's 0810 (at most `own_answer_timeout`),
//!   then closes.
//!
//! Must never: deliver a request before the sign-on is answered 00 or after shutdown began; send
//! an answer of one connection on another (an answer for a request of a closed connection is
//! dropped); panic on anything the network sends; log a field value (a PAN, track data).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iso8583::{Dialect, EncodeError, Message, MessageBuilder, Mti, response_to};
use ledger::ResponseCode;

use super::salvage::salvage;
use super::status::{BadFrameKind, LinkState, LinkStatus};
use super::translate::{RequestKind, classify, echo_fields, response_mti};

/// DE 39 of a request the link cannot take now (issuer or switch inoperative).
pub const ISSUER_UNAVAILABLE: ResponseCode = ResponseCode(*b"91");

/// The time, given by the caller: a monotonic instant for the session's timers and the UTC
/// wall clock for DE 7.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// For timers (echo, timeouts, drain).
    pub instant: Instant,
    /// Seconds since 1970-01-01 UTC, for DE 7 of our own 0800s.
    pub unix_s: i64,
}

/// A network management code (DE 70) of the authorizer's own 0800s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnRequest {
    /// 001.
    SignOn,
    /// 270 or 301, per dialect.
    Echo,
    /// 002.
    SignOff,
}

/// What the session is configured with.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// DE 33 of our own 0800s: the issuer id, digits.
    pub issuer_id: String,
    /// DE 70 of our echo: `270` in `mastercard`, `301` in `ascii` ([`SessionConfig::echo_code_for`]).
    pub echo_code: &'static str,
    /// Our echo goes out after this long with no frame received (`network.echo_idle_s`).
    pub echo_idle: Duration,
    /// Our own 0800 unanswered after this long: a dead link (sign-on, echo) or done (sign-off).
    pub own_answer_timeout: Duration,
    /// On shutdown, how long answers in flight are waited for before closing anyway.
    pub drain_timeout: Duration,
    /// Requests delivered and not yet answered, at most; past it a request is answered 91.
    pub in_flight_max: usize,
    /// Longest frame accepted (`network.max_frame_bytes`).
    pub max_frame_bytes: usize,
}

impl SessionConfig {
    /// Defaults for `dialect`: echo after 60 s idle, 10 s for our 0800s to be answered, 30 s to
    /// drain, 1,024 requests in flight, frames up to 4,096 bytes.
    pub fn new(dialect: &Dialect, issuer_id: impl Into<String>) -> SessionConfig {
        SessionConfig {
            issuer_id: issuer_id.into(),
            echo_code: SessionConfig::echo_code_for(dialect),
            echo_idle: Duration::from_secs(60),
            own_answer_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            in_flight_max: 1024,
            max_frame_bytes: 4096,
        }
    }

    /// The echo's DE 70 for a dialect: `270` for `mastercard`, `301` (the ISO 8583:1987 echo
    /// test) for every other.
    pub fn echo_code_for(dialect: &Dialect) -> &'static str {
        if dialect.name() == "mastercard" {
            "270"
        } else {
            "301"
        }
    }

    fn code(&self, own: OwnRequest) -> &'static str {
        match own {
            OwnRequest::SignOn => "001",
            OwnRequest::Echo => self.echo_code,
            OwnRequest::SignOff => "002",
        }
    }
}

/// A configuration the session cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum SessionConfigError {
    /// Our own 0800 does not encode in the dialect (an issuer id that is not 1 to 11 digits).
    #[error(
        "the issuer id {issuer_id:?} cannot be DE 33 of a sign-on in dialect {dialect}: {source}; \
         give 1 to 11 digits"
    )]
    IssuerId {
        /// As configured (an id, not a secret).
        issuer_id: String,
        /// The dialect's name.
        dialect: String,
        /// What the codec said.
        source: EncodeError,
    },
    /// A bound of zero would stop the link from ever serving or ever reading.
    #[error("{what} must be above zero")]
    Zero {
        /// The setting.
        what: &'static str,
    },
}

/// Identifies one delivered request until its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

/// Why the session asks for the connection to be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Our sign-on was answered with this DE 39 (not 00).
    SignOnRefused([u8; 2]),
    /// Our sign-on was not answered in time.
    SignOnUnanswered,
    /// Our echo was not answered in time: the link is dead.
    EchoUnanswered,
    /// A frame of this many bytes, over the maximum: the stream is corrupt.
    Oversized(usize),
    /// Shutdown: signed off and drained (or the drain timed out).
    Shutdown,
}

impl CloseReason {
    /// Whether the connection task should dial again (everything but shutdown).
    pub fn reconnects(self) -> bool {
        self != CloseReason::Shutdown
    }
}

/// What the session asks of the connection task, in order.
#[derive(Debug)]
pub enum Action {
    /// Write this message (without its length prefix) to the socket.
    Send(Bytes),
    /// Hand this request to the pipeline; give its answer to [`Session::answer_ready`].
    /// (Boxed: a [`Message`] holds the spans of all 128 fields.)
    Deliver(RequestId, Box<Message>),
    /// The link's state changed (also written to the [`LinkStatus`]).
    State(LinkState),
    /// Flush what was sent and close the connection.
    Close(CloseReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not connected.
    Idle,
    SigningOn,
    SignedOn,
    Stopping {
        since: Instant,
    },
    /// Close asked; waiting for [`Session::disconnected`].
    Closed,
}

/// One of our own 0800s waiting for its 0810.
#[derive(Clone, Copy, Debug)]
struct Pending {
    own: OwnRequest,
    stan: u32,
    de7: [u8; 10],
    sent_at: Instant,
}

/// The session of one link. See the module documentation.
pub struct Session {
    config: SessionConfig,
    dialect: Arc<Dialect>,
    status: Arc<LinkStatus>,
    phase: Phase,
    /// Our STAN counter (DE 11 of our own 0800s), 1 to 999,999, kept across connections.
    stan: u32,
    last_frame_at: Option<Instant>,
    /// At most one of each [`OwnRequest`].
    pending: Vec<Pending>,
    in_flight: HashSet<RequestId>,
    next_request: u64,
    stopping: bool,
    actions: VecDeque<Action>,
}

impl Session {
    /// A session for `dialect`, reporting to `status`.
    pub fn new(
        config: SessionConfig,
        dialect: Arc<Dialect>,
        status: Arc<LinkStatus>,
    ) -> Result<Session, SessionConfigError> {
        for (what, zero) in [
            ("in_flight_max", config.in_flight_max == 0),
            ("max_frame_bytes", config.max_frame_bytes == 0),
            ("echo_idle", config.echo_idle.is_zero()),
            ("own_answer_timeout", config.own_answer_timeout.is_zero()),
        ] {
            if zero {
                return Err(SessionConfigError::Zero { what });
            }
        }
        let session = Session {
            config,
            dialect,
            status,
            phase: Phase::Idle,
            stan: 0,
            last_frame_at: None,
            pending: Vec::with_capacity(3),
            in_flight: HashSet::new(),
            next_request: 0,
            stopping: false,
            actions: VecDeque::new(),
        };
        // Our own 0800s are built from the configuration only: try one now, so that sending one
        // later cannot fail.
        session
            .own_message(OwnRequest::SignOn, 1, b"0101000000")
            .map_err(|source| SessionConfigError::IssuerId {
                issuer_id: session.config.issuer_id.clone(),
                dialect: session.dialect.name().to_owned(),
                source,
            })?;
        Ok(session)
    }

    /// The next thing to do, if any. Call until `None` after every input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The link's state.
    pub fn state(&self) -> LinkState {
        match self.phase {
            Phase::Idle | Phase::Closed if self.stopping => LinkState::Down,
            Phase::Idle | Phase::Closed => LinkState::Connecting,
            Phase::SigningOn => LinkState::SigningOn,
            Phase::SignedOn => LinkState::SignedOn,
            Phase::Stopping { .. } => LinkState::Stopping,
        }
    }

    /// Requests delivered and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether shutdown was asked: the task must not dial again.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// When [`Session::tick`] has something to do next, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        match self.phase {
            Phase::Idle | Phase::Closed => return None,
            Phase::SignedOn if !self.has_pending(OwnRequest::Echo) => {
                if let Some(last) = self.last_frame_at {
                    earliest(last + self.config.echo_idle);
                }
            }
            Phase::Stopping { since } => earliest(since + self.config.drain_timeout),
            _ => {}
        }
        for p in &self.pending {
            earliest(p.sent_at + self.config.own_answer_timeout);
        }
        at
    }

    /// The connection is up: sign on.
    pub fn connected(&mut self, now: Now) {
        debug_assert!(matches!(self.phase, Phase::Idle), "connected twice");
        self.reset_connection();
        self.last_frame_at = Some(now.instant);
        if self.stopping {
            self.close(CloseReason::Shutdown);
            return;
        }
        self.set_phase(Phase::SigningOn);
        self.send_own(OwnRequest::SignOn, now);
    }

    /// The connection is gone (closed by us after [`Action::Close`], or lost). Answers still in
    /// flight on it will be dropped.
    pub fn disconnected(&mut self) {
        self.reset_connection();
        self.phase = Phase::Idle;
        self.publish_state();
    }

    /// A frame (the message, without its length prefix) came in.
    pub fn frame_received(&mut self, frame: Bytes, now: Now) {
        if matches!(self.phase, Phase::Idle | Phase::Closed) {
            return;
        }
        if frame.len() > self.config.max_frame_bytes {
            self.frame_too_large(frame.len());
            return;
        }
        self.last_frame_at = Some(now.instant);
        let message = match Message::decode(&self.dialect, frame.clone()) {
            Ok(m) => m,
            Err(error) => return self.unparsable(&frame, &error),
        };
        let mti = message.mti();
        match (mti.as_u16(), classify(mti)) {
            (810, _) => self.own_answered(&message),
            (_, Some(RequestKind::NetworkManagement)) => self.answer_network_management(&message),
            (_, Some(RequestKind::Decide(_))) => self.request(message),
            (_, None) => {
                tracing::warn!(mti = %mti, "link: a message the authorizer does not answer, dropped");
                self.status.count_bad_frame(BadFrameKind::Unexpected);
            }
        }
    }

    /// A length prefix announced `len` bytes, over the maximum: the stream is corrupt.
    pub fn frame_too_large(&mut self, len: usize) {
        if matches!(self.phase, Phase::Idle | Phase::Closed) {
            return;
        }
        tracing::warn!(
            len,
            max = self.config.max_frame_bytes,
            "link: frame over the maximum, the stream is corrupt: reconnecting"
        );
        self.status.count_bad_frame(BadFrameKind::Oversized);
        self.close(CloseReason::Oversized(len));
    }

    /// The pipeline is done with request `id`: `Some` answer to send, or `None` (no answer, e.g.
    /// past the answer budget). Answers of a connection that is gone are dropped.
    pub fn answer_ready(&mut self, id: RequestId, answer: Option<Bytes>, _now: Now) {
        if !self.in_flight.remove(&id) {
            return;
        }
        self.status.set_in_flight(self.in_flight.len());
        if let Some(frame) = answer {
            self.actions.push_back(Action::Send(frame));
        }
        self.finish_stopping_if_done();
    }

    /// Time passed: echo, timeouts, drain.
    pub fn tick(&mut self, now: Now) {
        let timeout = self.config.own_answer_timeout;
        let expired: Vec<Pending> = self
            .pending
            .iter()
            .filter(|p| now.instant >= p.sent_at + timeout)
            .copied()
            .collect();
        for p in expired {
            self.pending.retain(|q| q.own != p.own);
            match p.own {
                OwnRequest::SignOn => {
                    tracing::warn!("link: sign-on unanswered, reconnecting");
                    return self.close(CloseReason::SignOnUnanswered);
                }
                OwnRequest::Echo => {
                    tracing::warn!("link: echo unanswered, the link is dead: reconnecting");
                    return self.close(CloseReason::EchoUnanswered);
                }
                OwnRequest::SignOff => {
                    tracing::warn!("link: sign-off unanswered, closing when drained");
                }
            }
        }
        match self.phase {
            Phase::SignedOn => {
                let idle_since = self.last_frame_at.unwrap_or(now.instant);
                if !self.has_pending(OwnRequest::Echo)
                    && now.instant >= idle_since + self.config.echo_idle
                {
                    self.send_own(OwnRequest::Echo, now);
                }
            }
            Phase::Stopping { since } if now.instant >= since + self.config.drain_timeout => {
                tracing::warn!(
                    in_flight = self.in_flight.len(),
                    "link: drain timed out, closing with answers still in flight"
                );
                self.close(CloseReason::Shutdown);
            }
            _ => self.finish_stopping_if_done(),
        }
    }

    /// Stop: sign off, take no new request, answer those in flight, then close.
    pub fn shutdown(&mut self, now: Now) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        match self.phase {
            Phase::Idle | Phase::Closed => self.publish_state(),
            Phase::SigningOn => self.close(CloseReason::Shutdown),
            Phase::SignedOn => {
                self.set_phase(Phase::Stopping { since: now.instant });
                self.pending.retain(|p| p.own != OwnRequest::Echo);
                self.send_own(OwnRequest::SignOff, now);
            }
            Phase::Stopping { .. } => {}
        }
    }

    fn has_pending(&self, own: OwnRequest) -> bool {
        self.pending.iter().any(|p| p.own == own)
    }

    fn reset_connection(&mut self) {
        self.pending.clear();
        self.in_flight.clear();
        self.status.set_in_flight(0);
    }

    fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.publish_state();
    }

    fn publish_state(&mut self) {
        let state = self.state();
        if self.status.state() != state {
            self.status.set_state(state);
            self.actions.push_back(Action::State(state));
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.publish_state();
        self.actions.push_back(Action::Close(reason));
    }

    fn finish_stopping_if_done(&mut self) {
        if matches!(self.phase, Phase::Stopping { .. })
            && self.in_flight.is_empty()
            && !self.has_pending(OwnRequest::SignOff)
        {
            self.close(CloseReason::Shutdown);
        }
    }

    fn next_stan(&mut self) -> u32 {
        self.stan = if self.stan >= 999_999 {
            1
        } else {
            self.stan + 1
        };
        self.stan
    }

    fn own_message(
        &self,
        own: OwnRequest,
        stan: u32,
        de7: &[u8; 10],
    ) -> Result<Bytes, EncodeError> {
        let mut b = MessageBuilder::new(Mti::from_u16(800).expect("0800 is an MTI"));
        b.set(7, de7)
            .set(11, format!("{stan:06}"))
            .set(33, &self.config.issuer_id)
            .set(70, self.config.code(own));
        b.encode(&self.dialect)
    }

    fn send_own(&mut self, own: OwnRequest, now: Now) {
        let stan = self.next_stan();
        let de7 = transmission_stamp(now.unix_s);
        match self.own_message(own, stan, &de7) {
            Ok(frame) => {
                self.pending.retain(|p| p.own != own);
                self.pending.push(Pending {
                    own,
                    stan,
                    de7,
                    sent_at: now.instant,
                });
                self.actions.push_back(Action::Send(frame));
            }
            // Checked in `new` with the same fields; DE 7 and DE 11 are digits of the right length.
            Err(e) => unreachable!("our own 0800 was checked at start-up: {e}"),
        }
    }

    /// An 0810: ours if DE 11 and DE 7 both match an 0800 of ours still waiting.
    fn own_answered(&mut self, message: &Message) {
        let stan = message.stan();
        let de7 = message.field(7);
        let Some(i) = self
            .pending
            .iter()
            .position(|p| Some(p.stan) == stan && Some(&p.de7[..]) == de7)
        else {
            tracing::warn!(stan = ?stan, "link: an 0810 that answers no 0800 of ours, dropped");
            self.status.count_bad_frame(BadFrameKind::Unexpected);
            return;
        };
        let own = self.pending.swap_remove(i).own;
        let code = message.field(39).unwrap_or(b"");
        match own {
            OwnRequest::SignOn if self.phase == Phase::SigningOn => {
                if code == ResponseCode::APPROVED.0 {
                    tracing::info!("link: signed on");
                    self.set_phase(Phase::SignedOn);
                } else {
                    let refused = <[u8; 2]>::try_from(code).unwrap_or(*b"  ");
                    tracing::warn!(
                        code = %String::from_utf8_lossy(code),
                        "link: sign-on refused, reconnecting after the backoff"
                    );
                    self.close(CloseReason::SignOnRefused(refused));
                }
            }
            OwnRequest::SignOff => self.finish_stopping_if_done(),
            OwnRequest::SignOn | OwnRequest::Echo => {}
        }
    }

    fn answer_network_management(&mut self, message: &Message) {
        let mti = message.mti();
        let mut b = response_to(message, response_mti(mti), echo_fields(mti));
        b.set(39, ResponseCode::APPROVED.0);
        self.send_built(&b);
    }

    fn request(&mut self, message: Message) {
        let serving = self.phase == Phase::SignedOn;
        if !serving || self.in_flight.len() >= self.config.in_flight_max {
            tracing::warn!(
                mti = %message.mti(),
                state = self.state().name(),
                in_flight = self.in_flight.len(),
                "link: request not taken (not serving or in-flight bound), answered 91"
            );
            self.status.count_refused();
            let mti = message.mti();
            let mut b = response_to(&message, response_mti(mti), echo_fields(mti));
            b.set(39, ISSUER_UNAVAILABLE.0);
            self.send_built(&b);
            return;
        }
        self.next_request += 1;
        let id = RequestId(self.next_request);
        self.in_flight.insert(id);
        self.status.set_in_flight(self.in_flight.len());
        self.actions
            .push_back(Action::Deliver(id, Box::new(message)));
    }

    fn unparsable(&mut self, frame: &Bytes, error: &iso8583::DecodeError) {
        let answerable = salvage(&self.dialect, frame, error).filter(|(m, _)| {
            m.stan().is_some() && m.mti().as_u16() != 810 && classify(m.mti()).is_some()
        });
        let Some((message, field)) = answerable else {
            tracing::warn!(len = frame.len(), %error, "link: frame does not parse, dropped");
            self.status.count_bad_frame(BadFrameKind::Garbage);
            return;
        };
        tracing::warn!(mti = %message.mti(), %error, "link: frame does not parse, answered 30");
        self.status.count_bad_frame(BadFrameKind::Unparsable);
        let mti = message.mti();
        let mut b = response_to(&message, response_mti(mti), echo_fields(mti));
        b.set(39, ResponseCode::FORMAT_ERROR.0);
        b.set(44, format!("{field:03}"));
        self.send_built(&b);
    }

    fn send_built(&mut self, b: &MessageBuilder) {
        match b.encode(&self.dialect) {
            Ok(frame) => self.actions.push_back(Action::Send(frame)),
            // The echoed values decoded in this dialect, so this is not expected; never fatal.
            Err(e) => {
                tracing::warn!(error = %e, "link: answer does not encode, dropped");
                self.status.count_bad_frame(BadFrameKind::Unexpected);
            }
        }
    }
}

/// DE 7, MMDDhhmmss in UTC, of a moment.
pub fn transmission_stamp(unix_s: i64) -> [u8; 10] {
    let days = unix_s.div_euclid(86_400);
    let secs = unix_s.rem_euclid(86_400);
    let (_, month, day) = ledger::time::civil_from_days(days);
    let parts = [
        i64::from(month),
        i64::from(day),
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
    ];
    let mut out = [b'0'; 10];
    for (i, v) in parts.into_iter().enumerate() {
        out[2 * i] = b'0' + (v / 10) as u8;
        out[2 * i + 1] = b'0' + (v % 10) as u8;
    }
    out
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
