//! The link's connection task over real loopback TCP, with the test playing the interface
//! device (a tokio `TcpListener`): sign-on then requests, many in flight answered out of order,
//! reconnection after a drop and after an oversized frame, echoes, bad frames, shutdown.
//!
//! No assertion of speed: timeouts here only fail a test that hangs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authorizer::link::connection::{LinkConfig, RequestHandler, run};
use authorizer::link::session::SessionConfig;
use authorizer::link::status::{BadFrameKind, LinkState, LinkStatus};
use authorizer::link::translate::{echo_fields, response_mti};
use bytes::Bytes;
use iso8583::{Dialect, Message, MessageBuilder, Mti, response_to};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

const HANG: Duration = Duration::from_secs(20);
const ISSUER: &str = "4242";

/// Answers every request 00 once the test opens its STAN's gate (or at once when ungated).
struct Pipeline {
    dialect: Arc<Dialect>,
    gated: bool,
    gates: Mutex<HashMap<u32, Arc<Notify>>>,
}

impl Pipeline {
    fn new(dialect: Arc<Dialect>, gated: bool) -> Arc<Pipeline> {
        Arc::new(Pipeline {
            dialect,
            gated,
            gates: Mutex::new(HashMap::new()),
        })
    }

    fn gate(&self, stan: u32) -> Arc<Notify> {
        self.gates
            .lock()
            .unwrap()
            .entry(stan)
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }
}

impl RequestHandler for Pipeline {
    async fn handle(&self, request: Message) -> Option<Bytes> {
        if self.gated {
            let gate = self.gate(request.stan().unwrap_or(0));
            gate.notified().await;
        }
        let mti = request.mti();
        let mut b = response_to(&request, response_mti(mti), echo_fields(mti));
        b.set(39, "00");
        b.encode(&self.dialect).ok()
    }
}

/// The interface device's side of one connection.
struct Device {
    stream: TcpStream,
    dialect: Arc<Dialect>,
}

impl Device {
    async fn accept(listener: &TcpListener, dialect: &Arc<Dialect>) -> Device {
        let (stream, _) = tokio::time::timeout(HANG, listener.accept())
            .await
            .expect("the authorizer dialled")
            .unwrap();
        Device {
            stream,
            dialect: dialect.clone(),
        }
    }

    /// The next message, `None` when the authorizer closed the connection.
    async fn read(&mut self) -> Option<Message> {
        let read = async {
            let mut len = [0u8; 2];
            self.stream.read_exact(&mut len).await.ok()?;
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
            self.stream.read_exact(&mut body).await.ok()?;
            Some(
                Message::decode(&self.dialect, Bytes::from(body))
                    .expect("the authorizer sends valid messages"),
            )
        };
        tokio::time::timeout(HANG, read)
            .await
            .expect("hung waiting for a frame")
    }

    async fn expect(&mut self) -> Message {
        self.read()
            .await
            .expect("a frame, not the end of the stream")
    }

    async fn write_raw(&mut self, body: &[u8]) {
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        self.stream.write_all(&out).await.unwrap();
    }

    async fn send(&mut self, b: &MessageBuilder) {
        let bytes = b.encode(&self.dialect).unwrap();
        self.write_raw(&bytes).await;
    }

    /// Answers an 0800 of the authorizer with 0810 and `code`.
    async fn answer(&mut self, own: &Message, code: &str) {
        let mut b = response_to(own, Mti::from_u16(810).unwrap(), &[7, 11, 33, 70]);
        b.set(39, code);
        self.send(&b).await;
    }

    /// Reads the sign-on, checks it, answers 00.
    async fn sign_on(&mut self) -> Message {
        let m = self.expect().await;
        assert_eq!(m.mti().as_u16(), 800);
        assert_eq!(m.text(70), Some("001"));
        assert_eq!(m.text(33), Some(ISSUER));
        assert_eq!(m.text(7).map(str::len), Some(10));
        self.answer(&m, "00").await;
        m
    }

    async fn request(&mut self, stan: u32) {
        let mut b = MessageBuilder::new(Mti::from_u16(100).unwrap());
        b.set(2, "5413330089010434")
            .set(3, "000000")
            .set(4, "000000001000")
            .set(7, "1203102030")
            .set(11, format!("{stan:06}"))
            .set(49, "978");
        self.send(&b).await;
    }

    /// Reads until the authorizer closes (what it sends before is returned).
    async fn until_closed(&mut self) -> Vec<Message> {
        let mut seen = Vec::new();
        while let Some(m) = self.read().await {
            seen.push(m);
        }
        seen
    }
}

struct Link {
    status: Arc<LinkStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn start(
    dialect: &Arc<Dialect>,
    pipeline: Arc<Pipeline>,
    tune: impl FnOnce(&mut LinkConfig),
) -> (TcpListener, Link) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let mut session = SessionConfig::new(dialect, ISSUER);
    session.max_frame_bytes = 512;
    session.in_flight_max = 64;
    let mut config = LinkConfig::new(address.clone(), dialect.clone(), session);
    config.backoff_base = Duration::from_millis(5);
    config.backoff_max = Duration::from_millis(50);
    tune(&mut config);
    let status = Arc::new(LinkStatus::new(address));
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn({
        let status = status.clone();
        async move { run(config, pipeline, status, stop_rx).await.unwrap() }
    });
    (listener, Link { status, stop, task })
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(HANG, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("hung waiting for {what}"));
}

#[tokio::test]
async fn signs_on_then_answers_a_request() {
    for dialect in [Dialect::ascii(), Dialect::mastercard()] {
        let dialect = Arc::new(dialect);
        let (listener, link) = start(&dialect, Pipeline::new(dialect.clone(), false), |_| {}).await;
        let mut device = Device::accept(&listener, &dialect).await;
        eventually("signing on", || link.status.state() == LinkState::SigningOn).await;
        device.sign_on().await;
        device.request(17).await;
        let answer = device.expect().await;
        assert_eq!(answer.mti().as_u16(), 110);
        assert_eq!(answer.text(39), Some("00"));
        assert_eq!(answer.stan(), Some(17));
        assert_eq!(link.status.state(), LinkState::SignedOn);
        link.task.abort();
    }
}

#[tokio::test]
async fn many_requests_in_flight_are_answered_out_of_order() {
    let dialect = Arc::new(Dialect::ascii());
    let pipeline = Pipeline::new(dialect.clone(), true);
    let (listener, link) = start(&dialect, pipeline.clone(), |_| {}).await;
    let mut device = Device::accept(&listener, &dialect).await;
    device.sign_on().await;
    for stan in 1..=20 {
        device.request(stan).await;
    }
    eventually("20 requests in flight", || {
        link.status.snapshot().in_flight == 20
    })
    .await;
    // Released last first: each answer comes back before the earlier requests are decided.
    for stan in (1..=20).rev() {
        pipeline.gate(stan).notify_one();
        let answer = device.expect().await;
        assert_eq!(answer.stan(), Some(stan));
        assert_eq!(answer.text(39), Some("00"));
    }
    link.task.abort();
}

#[tokio::test]
async fn a_dropped_connection_is_dialled_again_and_signed_on_again() {
    let dialect = Arc::new(Dialect::ascii());
    let (listener, link) = start(&dialect, Pipeline::new(dialect.clone(), false), |_| {}).await;
    let mut device = Device::accept(&listener, &dialect).await;
    let first = device.sign_on().await;
    drop(device);
    let mut device = Device::accept(&listener, &dialect).await;
    let second = device.sign_on().await;
    assert_ne!(first.stan(), second.stan(), "the STAN counter goes on");
    device.request(5).await;
    assert_eq!(device.expect().await.stan(), Some(5));
    assert_eq!(link.status.reconnects(), 1);
    link.task.abort();
}

#[tokio::test]
async fn a_sign_on_refused_is_retried_on_a_new_connection() {
    let dialect = Arc::new(Dialect::ascii());
    let (listener, link) = start(&dialect, Pipeline::new(dialect.clone(), false), |_| {}).await;
    let mut device = Device::accept(&listener, &dialect).await;
    let sign_on = device.expect().await;
    device.answer(&sign_on, "91").await;
    assert!(device.until_closed().await.is_empty());
    let mut device = Device::accept(&listener, &dialect).await;
    device.sign_on().await;
    eventually("signed on", || link.status.is_up()).await;
    link.task.abort();
}

#[tokio::test]
async fn an_oversized_frame_makes_the_link_reconnect() {
    let dialect = Arc::new(Dialect::ascii());
    let (listener, link) = start(&dialect, Pipeline::new(dialect.clone(), false), |_| {}).await;
    let mut device = Device::accept(&listener, &dialect).await;
    device.sign_on().await;
    device.write_raw(&[b'0'; 600]).await;
    assert!(device.until_closed().await.is_empty());
    let mut device = Device::accept(&listener, &dialect).await;
    device.sign_on().await;
    assert_eq!(link.status.bad_frames(BadFrameKind::Oversized), 1);
    assert_eq!(link.status.reconnects(), 1);
    link.task.abort();
}

#[tokio::test]
async fn bad_frames_keep_the_link_up_and_a_broken_request_is_answered_30() {
    let dialect = Arc::new(Dialect::ascii());
    let (listener, link) = start(&dialect, Pipeline::new(dialect.clone(), false), |_| {}).await;
    let mut device = Device::accept(&listener, &dialect).await;
    device.sign_on().await;
    device.write_raw(b"not an iso 8583 message").await;
    let mut b = MessageBuilder::new(Mti::from_u16(100).unwrap());
    b.set(2, "5413330089010434")
        .set(7, "1203102030")
        .set(11, "000099")
        .set(49, "978");
    let mut broken = b.encode(&dialect).unwrap().to_vec();
    let last = broken.len() - 1;
    broken[last] = b'X';
    device.write_raw(&broken).await;
    let answer = device.expect().await;
    assert_eq!(answer.mti().as_u16(), 110);
    assert_eq!(answer.text(39), Some("30"));
    assert_eq!(answer.text(44), Some("049"));
    assert_eq!(answer.stan(), Some(99));
    device.request(100).await;
    assert_eq!(device.expect().await.stan(), Some(100));
    assert_eq!(link.status.bad_frames(BadFrameKind::Garbage), 1);
    assert_eq!(link.status.bad_frames(BadFrameKind::Unparsable), 1);
    assert_eq!(link.status.reconnects(), 0);
    link.task.abort();
}

#[tokio::test]
async fn an_idle_link_echoes_and_an_unanswered_echo_reconnects() {
    let dialect = Arc::new(Dialect::ascii());
    let (listener, link) = start(&dialect, Pipeline::new(dialect.clone(), false), |c| {
        c.session.echo_idle = Duration::from_millis(50);
        c.session.own_answer_timeout = Duration::from_secs(2);
    })
    .await;
    let mut device = Device::accept(&listener, &dialect).await;
    device.sign_on().await;
    let echo = device.expect().await;
    assert_eq!(echo.mti().as_u16(), 800);
    assert_eq!(echo.text(70), Some("301"));
    device.answer(&echo, "00").await;
    // The next echo is left unanswered: the authorizer closes and dials again.
    let echo = device.expect().await;
    assert_eq!(echo.text(70), Some("301"));
    assert!(device.until_closed().await.is_empty());
    let mut device = Device::accept(&listener, &dialect).await;
    device.sign_on().await;
    assert_eq!(link.status.reconnects(), 1);
    link.task.abort();
}

#[tokio::test]
async fn the_networks_echo_is_answered() {
    let dialect = Arc::new(Dialect::mastercard());
    let (listener, link) = start(&dialect, Pipeline::new(dialect.clone(), false), |_| {}).await;
    let mut device = Device::accept(&listener, &dialect).await;
    device.sign_on().await;
    let mut b = MessageBuilder::new(Mti::from_u16(800).unwrap());
    b.set(7, "1203102030").set(11, "000321").set(70, "270");
    device.send(&b).await;
    let answer = device.expect().await;
    assert_eq!(answer.mti().as_u16(), 810);
    assert_eq!(answer.text(39), Some("00"));
    assert_eq!(answer.stan(), Some(321));
    assert_eq!(answer.text(70), Some("270"));
    link.task.abort();
}

#[tokio::test]
async fn shutdown_signs_off_answers_what_is_in_flight_then_closes() {
    let dialect = Arc::new(Dialect::ascii());
    let pipeline = Pipeline::new(dialect.clone(), true);
    let (listener, link) = start(&dialect, pipeline.clone(), |_| {}).await;
    let mut device = Device::accept(&listener, &dialect).await;
    device.sign_on().await;
    device.request(1).await;
    eventually("one request in flight", || {
        link.status.snapshot().in_flight == 1
    })
    .await;

    link.stop.send(true).unwrap();
    let sign_off = device.expect().await;
    assert_eq!(sign_off.mti().as_u16(), 800);
    assert_eq!(sign_off.text(70), Some("002"));
    assert_eq!(link.status.state(), LinkState::Stopping);
    device.answer(&sign_off, "00").await;
    // A new request is not taken.
    device.request(2).await;
    let refused = device.expect().await;
    assert_eq!((refused.stan(), refused.text(39)), (Some(2), Some("91")));
    // The one in flight is answered, then the connection closes.
    pipeline.gate(1).notify_one();
    let rest = device.until_closed().await;
    assert_eq!(rest.len(), 1);
    assert_eq!((rest[0].stan(), rest[0].text(39)), (Some(1), Some("00")));
    tokio::time::timeout(HANG, link.task)
        .await
        .expect("run returns after shutdown")
        .unwrap();
    assert_eq!(link.status.state(), LinkState::Down);
}

#[tokio::test]
async fn several_devices_at_once_each_with_its_status() {
    let dialect = Arc::new(Dialect::ascii());
    let (l1, link1) = start(&dialect, Pipeline::new(dialect.clone(), false), |_| {}).await;
    let (l2, link2) = start(&dialect, Pipeline::new(dialect.clone(), false), |_| {}).await;
    let mut d1 = Device::accept(&l1, &dialect).await;
    let mut d2 = Device::accept(&l2, &dialect).await;
    d1.sign_on().await;
    eventually("first signed on", || link1.status.is_up()).await;
    eventually("second signing on", || {
        link2.status.state() == LinkState::SigningOn
    })
    .await;
    d2.sign_on().await;
    d2.request(2).await;
    d1.request(1).await;
    assert_eq!(d1.expect().await.stan(), Some(1));
    assert_eq!(d2.expect().await.stan(), Some(2));
    assert_ne!(link1.status.address(), link2.status.address());
    link1.task.abort();
    link2.task.abort();
}
