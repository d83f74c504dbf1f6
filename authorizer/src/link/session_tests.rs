//! Unit tests of the session, without sockets: the test plays the interface device.

use super::*;

const ISSUER: &str = "12345";
/// 2026-12-03 10:20:30 UTC.
const T0_UNIX_S: i64 = 1_796_293_230;

struct Harness {
    session: Session,
    status: Arc<LinkStatus>,
    dialect: Arc<Dialect>,
    start: Instant,
}

impl Harness {
    fn new(dialect: Dialect, tune: impl FnOnce(&mut SessionConfig)) -> Harness {
        let dialect = Arc::new(dialect);
        let mut config = SessionConfig::new(&dialect, ISSUER);
        config.echo_idle = Duration::from_secs(60);
        config.own_answer_timeout = Duration::from_secs(10);
        config.drain_timeout = Duration::from_secs(30);
        config.in_flight_max = 4;
        config.max_frame_bytes = 512;
        tune(&mut config);
        let status = Arc::new(LinkStatus::new("127.0.0.1:18583"));
        let session = Session::new(config, dialect.clone(), status.clone()).unwrap();
        Harness {
            session,
            status,
            dialect,
            start: Instant::now(),
        }
    }

    fn at(&self, s: u64) -> Now {
        Now {
            instant: self.start + Duration::from_secs(s),
            unix_s: T0_UNIX_S + s as i64,
        }
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.session.poll_action()).collect()
    }

    /// The messages sent among `actions`, decoded.
    fn sent(&self, actions: &[Action]) -> Vec<Message> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(b) => Some(Message::decode(&self.dialect, b.clone()).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn answer_own(&self, own: &Message, code: &str) -> Bytes {
        let mut b = response_to(own, Mti::from_u16(810).unwrap(), &[7, 11, 33, 70]);
        b.set(39, code);
        b.encode(&self.dialect).unwrap()
    }

    /// Connects and answers the sign-on 00 at second `s`.
    fn signed_on(&mut self, s: u64) {
        self.session.connected(self.at(s));
        let actions = self.actions();
        let sign_on = self.sent(&actions).pop().unwrap();
        let answer = self.answer_own(&sign_on, "00");
        self.session.frame_received(answer, self.at(s));
        self.actions();
        assert_eq!(self.session.state(), LinkState::SignedOn);
    }

    fn network_request(&self, mti: u16, stan: u32) -> Bytes {
        let mut b = MessageBuilder::new(Mti::from_u16(mti).unwrap());
        b.set(2, "5413330089010434")
            .set(3, "000000")
            .set(4, "000000001000")
            .set(7, "1203102030")
            .set(11, format!("{stan:06}"))
            .set(32, "1234")
            .set(49, "978");
        b.encode(&self.dialect).unwrap()
    }
}

fn closes(actions: &[Action]) -> Vec<CloseReason> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close(r) => Some(*r),
            _ => None,
        })
        .collect()
}

fn delivered(actions: &[Action]) -> Vec<RequestId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Deliver(id, _) => Some(*id),
            _ => None,
        })
        .collect()
}

#[test]
fn transmission_stamp_is_mmddhhmmss_utc() {
    assert_eq!(&transmission_stamp(T0_UNIX_S), b"1203102030");
    assert_eq!(&transmission_stamp(0), b"0101000000");
    assert_eq!(&transmission_stamp(951_782_400), b"0229000000"); // 2000-02-29
}

#[test]
fn sign_on_carries_de7_de11_de33_and_001_and_nothing_is_served_before_its_0810() {
    for dialect in [Dialect::ascii(), Dialect::mastercard()] {
        let mut h = Harness::new(dialect, |_| {});
        h.session.connected(h.at(0));
        let actions = h.actions();
        assert!(matches!(actions[0], Action::State(LinkState::SigningOn)));
        let sent = h.sent(&actions);
        assert_eq!(sent.len(), 1);
        let sign_on = &sent[0];
        assert_eq!(sign_on.mti().as_u16(), 800);
        assert_eq!(sign_on.text(7), Some("1203102030"));
        assert_eq!(sign_on.stan(), Some(1));
        assert_eq!(sign_on.text(33), Some(ISSUER));
        assert_eq!(sign_on.text(70), Some("001"));
        assert_eq!(h.status.state(), LinkState::SigningOn);

        // A request before the sign-on is answered: not delivered, answered 91.
        h.session.frame_received(h.network_request(100, 7), h.at(1));
        let actions = h.actions();
        assert!(delivered(&actions).is_empty());
        let refused = h.sent(&actions);
        assert_eq!(refused[0].mti().as_u16(), 110);
        assert_eq!(refused[0].text(39), Some("91"));
        assert_eq!(refused[0].stan(), Some(7));

        let answer = h.answer_own(sign_on, "00");
        h.session.frame_received(answer, h.at(1));
        assert!(matches!(
            h.actions()[..],
            [Action::State(LinkState::SignedOn)]
        ));
        assert!(h.status.is_up());
        h.session.frame_received(h.network_request(100, 8), h.at(2));
        assert_eq!(delivered(&h.actions()).len(), 1);
    }
}

#[test]
fn a_sign_on_answered_other_than_00_closes_to_retry_after_the_backoff() {
    let mut h = Harness::new(Dialect::ascii(), |_| {});
    h.session.connected(h.at(0));
    let actions = h.actions();
    let sign_on = h.sent(&actions).pop().unwrap();
    h.session
        .frame_received(h.answer_own(&sign_on, "91"), h.at(1));
    let actions = h.actions();
    assert_eq!(closes(&actions), vec![CloseReason::SignOnRefused(*b"91")]);
    assert!(CloseReason::SignOnRefused(*b"91").reconnects());
    h.session.disconnected();
    assert_eq!(h.session.state(), LinkState::Connecting);
    // Next connection: a new sign-on with the next STAN.
    h.session.connected(h.at(5));
    let actions = h.actions();
    assert_eq!(h.sent(&actions)[0].stan(), Some(2));
}

#[test]
fn an_unanswered_sign_on_closes() {
    let mut h = Harness::new(Dialect::ascii(), |_| {});
    h.session.connected(h.at(0));
    h.actions();
    assert_eq!(h.session.next_deadline(), Some(h.at(10).instant));
    h.session.tick(h.at(9));
    assert!(closes(&h.actions()).is_empty());
    h.session.tick(h.at(10));
    assert_eq!(closes(&h.actions()), vec![CloseReason::SignOnUnanswered]);
}

#[test]
fn an_0810_is_ours_only_with_our_de11_and_our_de7() {
    let mut h = Harness::new(Dialect::ascii(), |_| {});
    h.session.connected(h.at(0));
    let actions = h.actions();
    let sign_on = h.sent(&actions).pop().unwrap();
    // Same STAN, another DE 7: not ours.
    let mut wrong = response_to(&sign_on, Mti::from_u16(810).unwrap(), &[11, 33, 70]);
    wrong.set(7, "1203102031").set(39, "00");
    h.session
        .frame_received(wrong.encode(&h.dialect).unwrap(), h.at(1));
    h.actions();
    assert_eq!(h.session.state(), LinkState::SigningOn);
    assert_eq!(h.status.bad_frames(BadFrameKind::Unexpected), 1);
    // Same DE 7, another STAN: not ours either.
    let mut wrong = response_to(&sign_on, Mti::from_u16(810).unwrap(), &[7, 33, 70]);
    wrong.set(11, "000002").set(39, "00");
    h.session
        .frame_received(wrong.encode(&h.dialect).unwrap(), h.at(1));
    h.actions();
    assert_eq!(h.session.state(), LinkState::SigningOn);
    assert_eq!(h.status.bad_frames(BadFrameKind::Unexpected), 2);
    // Both: ours.
    h.session
        .frame_received(h.answer_own(&sign_on, "00"), h.at(1));
    assert_eq!(h.session.state(), LinkState::SignedOn);
}

#[test]
fn an_echo_goes_out_after_idle_per_dialect_and_an_unanswered_one_closes() {
    for (dialect, code) in [(Dialect::ascii(), "301"), (Dialect::mastercard(), "270")] {
        let mut h = Harness::new(dialect, |_| {});
        h.signed_on(0);
        assert_eq!(h.session.next_deadline(), Some(h.at(60).instant));
        // A frame received at 30 pushes the echo back to 90.
        h.session
            .frame_received(h.network_request(100, 9), h.at(30));
        h.actions();
        h.session.tick(h.at(60));
        let actions = h.actions();
        assert!(h.sent(&actions).is_empty());
        h.session.tick(h.at(90));
        let actions = h.actions();
        let echo = h.sent(&actions).pop().expect("an echo");
        assert_eq!(echo.mti().as_u16(), 800);
        assert_eq!(echo.text(70), Some(code));
        assert_eq!(echo.text(33), Some(ISSUER));
        assert_eq!(echo.text(7), Some("1203102200"));
        // Answered: the link lives, the next echo is 60 s after that frame.
        h.session
            .frame_received(h.answer_own(&echo, "00"), h.at(95));
        assert!(closes(&h.actions()).is_empty());
        assert_eq!(h.session.next_deadline(), Some(h.at(155).instant));
        h.session.tick(h.at(155));
        let actions = h.actions();
        assert_eq!(h.sent(&actions).len(), 1, "second echo");
        h.session.tick(h.at(164));
        assert!(closes(&h.actions()).is_empty());
        h.session.tick(h.at(165));
        assert_eq!(closes(&h.actions()), vec![CloseReason::EchoUnanswered]);
        assert_eq!(h.session.state(), LinkState::Connecting);
        assert!(!h.status.is_up());
    }
}

#[test]
fn the_networks_0800s_are_answered_0810_00_with_the_echo_set() {
    let mut h = Harness::new(Dialect::mastercard(), |_| {});
    h.signed_on(0);
    for code in ["270", "001", "002"] {
        let mut b = MessageBuilder::new(Mti::from_u16(800).unwrap());
        b.set(7, "1203102030")
            .set(11, "000777")
            .set(33, "999")
            .set(70, code);
        h.session
            .frame_received(b.encode(&h.dialect).unwrap(), h.at(1));
        let actions = h.actions();
        let answer = h.sent(&actions).pop().unwrap();
        assert_eq!(answer.mti().as_u16(), 810);
        assert_eq!(answer.text(39), Some("00"));
        assert_eq!(answer.text(7), Some("1203102030"));
        assert_eq!(answer.stan(), Some(777));
        assert_eq!(answer.text(33), Some("999"));
        assert_eq!(answer.text(70), Some(code));
    }
}

#[test]
fn an_oversized_frame_is_counted_and_closes() {
    let mut h = Harness::new(Dialect::ascii(), |_| {});
    h.signed_on(0);
    h.session
        .frame_received(Bytes::from(vec![b'0'; 513]), h.at(1));
    assert_eq!(closes(&h.actions()), vec![CloseReason::Oversized(513)]);
    assert_eq!(h.status.bad_frames(BadFrameKind::Oversized), 1);
    h.session.disconnected();
    h.signed_on(2);
    h.session.frame_too_large(4000);
    assert_eq!(closes(&h.actions()), vec![CloseReason::Oversized(4000)]);
    assert_eq!(h.status.bad_frames(BadFrameKind::Oversized), 2);
}

#[test]
fn garbage_is_counted_and_dropped_and_a_broken_request_is_answered_30() {
    let mut h = Harness::new(Dialect::ascii(), |_| {});
    h.signed_on(0);
    h.session
        .frame_received(Bytes::from_static(b"\x01\x02garbage"), h.at(1));
    let actions = h.actions();
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(h.status.bad_frames(BadFrameKind::Garbage), 1);

    // DE 49 broken: MTI and DE 11 are readable, so 0110 with 30 and DE 44 = 049.
    let mut frame = h.network_request(100, 31).to_vec();
    let at = frame.len() - 3;
    frame[at] = b'X';
    h.session.frame_received(Bytes::from(frame), h.at(2));
    let actions = h.actions();
    assert!(delivered(&actions).is_empty());
    let answer = h.sent(&actions).pop().expect("answered");
    assert_eq!(answer.mti().as_u16(), 110);
    assert_eq!(answer.text(39), Some("30"));
    assert_eq!(answer.text(44), Some("049"));
    assert_eq!(answer.stan(), Some(31));
    assert_eq!(answer.text(7), Some("1203102030"));
    assert_eq!(h.status.bad_frames(BadFrameKind::Unparsable), 1);
    assert_eq!(
        h.session.state(),
        LinkState::SignedOn,
        "the connection stays up"
    );
}

#[test]
fn requests_in_flight_are_bounded_and_answered_in_any_order() {
    let mut h = Harness::new(Dialect::ascii(), |_| {});
    h.signed_on(0);
    let mut ids = Vec::new();
    for stan in 1..=4 {
        h.session
            .frame_received(h.network_request(100, stan), h.at(1));
        ids.extend(delivered(&h.actions()));
    }
    assert_eq!(ids.len(), 4);
    assert_eq!(h.session.in_flight(), 4);
    // The fifth is past the bound: answered 91 at once, not delivered.
    h.session.frame_received(h.network_request(100, 5), h.at(1));
    let actions = h.actions();
    assert!(delivered(&actions).is_empty());
    assert_eq!(h.sent(&actions)[0].text(39), Some("91"));
    assert_eq!(h.status.refused(), 1);
    // Answers in reverse order all go out; a second answer for the same id is dropped.
    for id in ids.iter().rev() {
        h.session
            .answer_ready(*id, Some(Bytes::from_static(b"answer")), h.at(2));
        assert!(matches!(h.actions()[..], [Action::Send(_)]));
    }
    h.session
        .answer_ready(ids[0], Some(Bytes::from_static(b"again")), h.at(2));
    assert!(h.actions().is_empty());
    assert_eq!(h.session.in_flight(), 0);
    // Room again.
    h.session.frame_received(h.network_request(100, 6), h.at(3));
    assert_eq!(delivered(&h.actions()).len(), 1);
}

#[test]
fn answers_of_a_lost_connection_are_not_sent_on_the_next() {
    let mut h = Harness::new(Dialect::ascii(), |_| {});
    h.signed_on(0);
    h.session.frame_received(h.network_request(100, 1), h.at(1));
    let id = delivered(&h.actions())[0];
    h.session.disconnected();
    h.signed_on(2);
    h.session
        .answer_ready(id, Some(Bytes::from_static(b"late")), h.at(3));
    assert!(h.actions().is_empty());
}

#[test]
fn shutdown_signs_off_refuses_new_requests_waits_for_in_flight_then_closes() {
    let mut h = Harness::new(Dialect::ascii(), |_| {});
    h.signed_on(0);
    h.session.frame_received(h.network_request(100, 1), h.at(1));
    let id = delivered(&h.actions())[0];

    h.session.shutdown(h.at(2));
    let actions = h.actions();
    assert!(matches!(actions[0], Action::State(LinkState::Stopping)));
    let sign_off = h.sent(&actions).pop().unwrap();
    assert_eq!(sign_off.text(70), Some("002"));
    assert_eq!(sign_off.text(33), Some(ISSUER));
    assert!(closes(&actions).is_empty());

    // New requests are not taken.
    h.session.frame_received(h.network_request(100, 2), h.at(3));
    let actions = h.actions();
    assert!(delivered(&actions).is_empty());
    assert_eq!(h.sent(&actions)[0].text(39), Some("91"));

    // Sign-off answered, one request still in flight: not closed yet.
    h.session
        .frame_received(h.answer_own(&sign_off, "00"), h.at(3));
    assert!(closes(&h.actions()).is_empty());
    // Its answer goes out, then the close.
    h.session
        .answer_ready(id, Some(Bytes::from_static(b"answer")), h.at(4));
    let actions = h.actions();
    assert!(matches!(actions[0], Action::Send(_)));
    assert_eq!(closes(&actions), vec![CloseReason::Shutdown]);
    assert!(!CloseReason::Shutdown.reconnects());
    h.session.disconnected();
    assert_eq!(h.session.state(), LinkState::Down);
    assert_eq!(h.status.state(), LinkState::Down);
}

#[test]
fn shutdown_closes_anyway_after_the_drain_timeout_and_an_unanswered_sign_off() {
    let mut h = Harness::new(Dialect::ascii(), |_| {});
    h.signed_on(0);
    h.session.frame_received(h.network_request(100, 1), h.at(1));
    h.actions();
    h.session.shutdown(h.at(2));
    h.actions();
    // The sign-off times out at 12: still waiting for the request in flight.
    h.session.tick(h.at(12));
    assert!(closes(&h.actions()).is_empty());
    h.session.tick(h.at(32));
    assert_eq!(closes(&h.actions()), vec![CloseReason::Shutdown]);

    // Without anything in flight, an unanswered sign-off closes at its timeout.
    let mut h = Harness::new(Dialect::ascii(), |_| {});
    h.signed_on(0);
    h.session.shutdown(h.at(1));
    h.actions();
    h.session.tick(h.at(11));
    assert_eq!(closes(&h.actions()), vec![CloseReason::Shutdown]);
}

#[test]
fn a_bad_issuer_id_is_refused_at_start() {
    let dialect = Arc::new(Dialect::ascii());
    let config = SessionConfig::new(&dialect, "12ab");
    let status = Arc::new(LinkStatus::new("x"));
    let err = Session::new(config, dialect, status)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("12ab"), "{err}");
}
