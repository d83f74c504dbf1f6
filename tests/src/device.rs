//! The card network's interface device over TCP: the server the authorizer dials.
//!
//! [`Device::bind`] listens and keeps every connection the authorizer (or several authorizers)
//! make, each with its own session and its own requests in flight. On each connection the
//! device:
//!
//! * answers the authorizer's 0800s (sign-on 001, echo 301/270, sign-off 002) with 0810, DE 39 =
//!   00 and DE 7, 11, 33, 70 echoed, and records each one as a [`SessionEvent`], so a caller can
//!   see the sign-on of a new connection, the daemon's idle echo, its sign-off on stop;
//! * tracks the session it sees ([`SessionState`]: connected, signed on, signed off);
//! * sends requests with many in flight, either on the newest signed-on connection
//!   ([`Device::send`], the scenarios) or spread round-robin over the signed-on ones
//!   ([`Device::send_any`], the load), and matches each answer to its request, on the connection
//!   it was sent on,
//!   by the MTI class, DE 11, DE 7, DE 37 and DE 41 (the identifiers every answer echoes,
//!   `docs/network.md` §"Messages the authorizer answers"); an answer whose DE 37/41 did not come
//!   back (a format error answers what it could decode) is matched by class, DE 11 and DE 7 alone;
//! * sends its own echoes ([`Device::echo`]) and checks their 0810s;
//! * sends raw frames ([`Device::send_raw`]) for the garbage and oversized cases;
//! * drops every connection at once, abruptly, without a sign-off ([`Device::drop_connections`]),
//!   as a link failure would.
//!
//! The requests in flight on a connection that goes away are dropped with it (their receivers
//! err): the authorizer never answers them on another connection.
//!
//! Must never: log a frame or a field value (PANs, track data, PIN blocks travel here); write
//! from two places on one connection (one writer task per connection); answer anything but
//! network management (answers are the authorizer's job).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use iso8583::framing::LengthPrefixed;
use iso8583::{Dialect, Message, MessageBuilder, Mti, response_to};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::Decoder;

use crate::netsim::de7;

/// The largest frame the device reads (the framing's own bound).
const READ_FRAME_MAX: usize = u16::MAX as usize;

/// What the device saw of the session on one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// No connection yet.
    Idle,
    /// Accepted, no sign-on seen yet.
    Connected,
    /// The authorizer's sign-on (0800, DE 70 = 001) was answered.
    SignedOn,
    /// The authorizer signed off (0800, DE 70 = 002).
    SignedOff,
}

/// One 0800 the authorizer sent, as the device saw it.
#[derive(Clone, Debug)]
pub struct SessionEvent {
    /// Which accepted connection (1 for the first).
    pub connection: u64,
    /// DE 70 (`001` sign-on, `002` sign-off, `301`/`270` echo), empty when absent.
    pub code: String,
    /// DE 33 as the authorizer sent it.
    pub issuer_id: Option<String>,
    pub at: Instant,
}

/// An answer to one of the device's requests.
#[derive(Clone, Debug)]
pub struct Answered {
    pub message: Message,
    /// From the request being queued for writing to its answer being read.
    pub latency: Duration,
    pub connection: u64,
}

/// Counters of what the device could not place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames from the authorizer that do not decode in the dialect.
    pub undecodable: u64,
    /// Answers that match no request in flight.
    pub unmatched: u64,
    /// Messages that are neither an answer nor an 0800.
    pub unexpected: u64,
    /// 0800s of the authorizer answered.
    pub own_0800_answered: u64,
}

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no connection from the authorizer")]
    NotConnected,
    #[error("no connection is signed on")]
    NotSignedOn,
    #[error("the request does not decode in the dialect: {0}")]
    Undecodable(String),
}

type Key = (
    u8,
    Option<Bytes>,
    Option<Bytes>,
    Option<Bytes>,
    Option<Bytes>,
);

struct Waiter {
    sent_at: Instant,
    tx: oneshot::Sender<Answered>,
}

struct Connection {
    id: u64,
    writer: mpsc::UnboundedSender<Bytes>,
    reader: JoinHandle<()>,
    write_task: JoinHandle<()>,
    state: SessionState,
    /// The requests sent on this connection and not answered yet.
    pending: HashMap<Key, VecDeque<Waiter>>,
}

impl Connection {
    fn abort(self) {
        self.reader.abort();
        self.write_task.abort();
    }
}

struct Inner {
    /// The open connections, oldest first.
    live: Vec<Connection>,
    connections: u64,
    /// The session of the last connection that closed (what [`Device::state`] says when none is
    /// open).
    closed_state: SessionState,
    /// Where [`Device::send_any`] starts looking for the next signed-on connection.
    next_rr: usize,
    events: Vec<SessionEvent>,
    stats: DeviceStats,
}

impl Inner {
    /// The newest signed-on connection, else the newest open one.
    fn primary(&self) -> Option<&Connection> {
        self.live
            .iter()
            .rev()
            .find(|c| c.state == SessionState::SignedOn)
            .or_else(|| self.live.last())
    }

    fn by_id(&mut self, id: u64) -> Option<&mut Connection> {
        self.live.iter_mut().find(|c| c.id == id)
    }
}

/// The interface device. Cheap to share (`Arc`).
pub struct Device {
    dialect: Arc<Dialect>,
    addr: SocketAddr,
    inner: Mutex<Inner>,
    changed: Notify,
    stan: AtomicU32,
    accept: Mutex<Option<JoinHandle<()>>>,
}

fn key_of(m: &Message) -> Key {
    let f = |n| m.field(n).map(Bytes::copy_from_slice);
    (m.mti().class(), f(11), f(7), f(37), f(41))
}

impl Device {
    /// Listens on `listen` (`127.0.0.1:0` for any port) and accepts the authorizer's
    /// connections from now on.
    pub async fn bind(listen: &str, dialect: Arc<Dialect>) -> io::Result<Arc<Device>> {
        let listener = TcpListener::bind(listen).await?;
        let device = Arc::new(Device {
            dialect,
            addr: listener.local_addr()?,
            inner: Mutex::new(Inner {
                live: Vec::new(),
                connections: 0,
                closed_state: SessionState::Idle,
                next_rr: 0,
                events: Vec::new(),
                stats: DeviceStats::default(),
            }),
            changed: Notify::new(),
            stan: AtomicU32::new(900_000),
            accept: Mutex::new(None),
        });
        let task = tokio::spawn(accept_loop(Arc::downgrade(&device), listener));
        *device.accept.lock().expect("lock") = Some(task);
        Ok(device)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn dialect(&self) -> &Arc<Dialect> {
        &self.dialect
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.lock().connections
    }

    /// The session on the newest signed-on connection, else on the newest open one; with none
    /// open, the session of the last one as it closed.
    pub fn state(&self) -> SessionState {
        let inner = self.lock();
        inner.primary().map_or(inner.closed_state, |c| c.state)
    }

    /// Open connections.
    pub fn open_connections(&self) -> usize {
        self.lock().live.len()
    }

    /// Open connections that are signed on.
    pub fn signed_on(&self) -> usize {
        self.lock()
            .live
            .iter()
            .filter(|c| c.state == SessionState::SignedOn)
            .count()
    }

    pub fn stats(&self) -> DeviceStats {
        self.lock().stats
    }

    /// Every 0800 the authorizer sent, oldest first.
    pub fn events(&self) -> Vec<SessionEvent> {
        self.lock().events.clone()
    }

    /// Requests sent and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.lock()
            .live
            .iter()
            .flat_map(|c| c.pending.values())
            .map(VecDeque::len)
            .sum()
    }

    /// Stops accepting and drops every connection.
    pub fn close(&self) {
        if let Some(task) = self.accept.lock().expect("lock").take() {
            task.abort();
        }
        self.drop_connections();
    }

    /// Closes every open connection at once, without a sign-off (a link failure); their requests
    /// in flight are dropped. The device goes on accepting. Returns how many were closed.
    pub fn drop_connections(&self) -> usize {
        let mut inner = self.lock();
        let dropped: Vec<Connection> = inner.live.drain(..).collect();
        if let Some(last) = dropped.last() {
            inner.closed_state = last.state;
        }
        drop(inner);
        let n = dropped.len();
        for c in dropped {
            c.abort();
        }
        self.changed.notify_waiters();
        n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next STAN of the device's own 0800s (a range apart from the traffic's).
    pub fn next_stan(&self) -> u32 {
        self.stan.fetch_add(1, Ordering::Relaxed) % 999_999 + 1
    }

    /// Sends `request` on the newest signed-on connection (else the newest open one); the
    /// receiver gets its answer. A dropped connection drops the sender (the receiver then errs),
    /// as does [`Device::close`].
    pub fn send(&self, request: &Message) -> Result<oneshot::Receiver<Answered>, SendError> {
        let mut inner = self.lock();
        let id = inner.primary().ok_or(SendError::NotConnected)?.id;
        send_on(&mut inner, id, request)
    }

    /// Sends `request` on connection `id` when it is open and signed on, otherwise as
    /// [`Device::send_any`] does.
    pub fn send_preferring(
        &self,
        id: u64,
        request: &Message,
    ) -> Result<(u64, oneshot::Receiver<Answered>), SendError> {
        let mut inner = self.lock();
        if inner
            .by_id(id)
            .is_some_and(|c| c.state == SessionState::SignedOn)
        {
            return send_on(&mut inner, id, request).map(|rx| (id, rx));
        }
        drop(inner);
        self.send_any(request)
    }

    /// Sends `request` on the next signed-on connection, round-robin; returns which connection
    /// and the receiver of its answer.
    pub fn send_any(
        &self,
        request: &Message,
    ) -> Result<(u64, oneshot::Receiver<Answered>), SendError> {
        let mut inner = self.lock();
        let n = inner.live.len();
        let start = inner.next_rr;
        let index = (0..n)
            .map(|i| (start + i) % n.max(1))
            .find(|&i| inner.live[i].state == SessionState::SignedOn)
            .ok_or(if n == 0 {
                SendError::NotConnected
            } else {
                SendError::NotSignedOn
            })?;
        inner.next_rr = index + 1;
        let id = inner.live[index].id;
        send_on(&mut inner, id, request).map(|rx| (id, rx))
    }

    /// Encodes, sends and waits at most `timeout` for the answer (`None`: none came).
    pub async fn request(
        &self,
        b: &MessageBuilder,
        timeout: Duration,
    ) -> Result<(Message, Option<Answered>), SendError> {
        let frame = b
            .encode(&self.dialect)
            .map_err(|e| SendError::Undecodable(e.to_string()))?;
        let request = Message::decode(&self.dialect, frame)
            .map_err(|e| SendError::Undecodable(e.to_string()))?;
        let rx = self.send(&request)?;
        let answer = tokio::time::timeout(timeout, rx)
            .await
            .ok()
            .and_then(Result::ok);
        Ok((request, answer))
    }

    /// Writes `body` as one frame with its 2-byte length, whatever it is (garbage, oversized:
    /// the length is `body.len()` modulo 65,536 when `declared` is `None`).
    pub fn send_raw(&self, body: &[u8], declared: Option<u16>) -> Result<(), SendError> {
        let len = declared.unwrap_or(body.len() as u16);
        let mut out = BytesMut::with_capacity(body.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(body);
        let inner = self.lock();
        let conn = inner.primary().ok_or(SendError::NotConnected)?;
        conn.writer
            .send(out.freeze())
            .map_err(|_| SendError::NotConnected)
    }

    /// The network's echo (0800, DE 70 = 301), answered within `timeout`: `Ok` when the 0810
    /// has DE 39 = 00 and echoes DE 7, 11 and 70; otherwise what was wrong.
    pub async fn echo(&self, timeout: Duration) -> Result<Answered, String> {
        let mut b = MessageBuilder::new(Mti::from_u16(800).expect("mti"));
        b.set(7, de7(crate::now_unix_s()))
            .set_number(11, u64::from(self.next_stan()))
            .set(70, "301");
        let (request, answer) = self.request(&b, timeout).await.map_err(|e| e.to_string())?;
        let answer = answer.ok_or_else(|| "no 0810 to the network's echo".to_owned())?;
        let m = &answer.message;
        if m.mti().as_u16() != 810 {
            return Err(format!("field MTI expected 0810 got {}", m.mti().as_str()));
        }
        if m.text(39) != Some("00") {
            return Err(format!("field 39 expected 00 got {:?}", m.text(39)));
        }
        for n in [7, 11, 70] {
            if m.field(n) != request.field(n) {
                return Err(format!(
                    "field {n} expected {:?} got {:?}",
                    request.text(n),
                    m.text(n)
                ));
            }
        }
        Ok(answer)
    }

    /// Waits at most `timeout` for an 0800 of the authorizer that `pred` accepts, among those
    /// seen from index `from` of [`Device::events`] on.
    pub async fn wait_event(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&SessionEvent) -> bool,
    ) -> Option<SessionEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.lock().events.iter().skip(from).find(|e| pred(e)) {
                return Some(e.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Waits at most `timeout` until a connection is signed on.
    pub async fn wait_signed_on(&self, timeout: Duration) -> bool {
        self.wait_signed_on_count(1, timeout).await
    }

    /// Waits at most `timeout` until `n` open connections are signed on.
    pub async fn wait_signed_on_count(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.signed_on() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    fn accepted(self: &Arc<Device>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (read_half, write_half) = stream.into_split();
        let (writer, frames) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        inner.connections += 1;
        let id = inner.connections;
        let reader = tokio::spawn(read_loop(
            Arc::downgrade(self),
            id,
            read_half,
            writer.clone(),
        ));
        let write_task = tokio::spawn(write_loop(write_half, frames));
        inner.live.push(Connection {
            id,
            writer,
            reader,
            write_task,
            state: SessionState::Connected,
            pending: HashMap::new(),
        });
        drop(inner);
        self.changed.notify_waiters();
    }

    fn frame(&self, connection: u64, frame: Bytes, writer: &mpsc::UnboundedSender<Bytes>) {
        let at = Instant::now();
        let Ok(m) = Message::decode(&self.dialect, frame) else {
            self.lock().stats.undecodable += 1;
            return;
        };
        let mti = m.mti();
        match (mti.class(), mti.function()) {
            (8, 0) => {
                let mut b = response_to(&m, Mti::from_u16(810).expect("mti"), &[7, 11, 33, 70]);
                b.set(39, "00");
                if let Ok(answer) = b.encode(&self.dialect) {
                    let _ = writer.send(framed(&answer));
                }
                let code = m.text(70).unwrap_or("").to_owned();
                let mut inner = self.lock();
                inner.stats.own_0800_answered += 1;
                if let Some(c) = inner.by_id(connection) {
                    match code.as_str() {
                        "001" => c.state = SessionState::SignedOn,
                        "002" => c.state = SessionState::SignedOff,
                        _ => {}
                    }
                }
                inner.events.push(SessionEvent {
                    connection,
                    code,
                    issuer_id: m.text(33).map(str::to_owned),
                    at,
                });
                drop(inner);
                self.changed.notify_waiters();
            }
            (_, 1) | (_, 3) => {
                let key = key_of(&m);
                let mut inner = self.lock();
                let waiter = inner
                    .by_id(connection)
                    .and_then(|c| take_waiter(&mut c.pending, &key));
                match waiter {
                    Some(w) => {
                        drop(inner);
                        let _ = w.tx.send(Answered {
                            latency: at.saturating_duration_since(w.sent_at),
                            message: m,
                            connection,
                        });
                    }
                    None => inner.stats.unmatched += 1,
                }
            }
            _ => self.lock().stats.unexpected += 1,
        }
    }
}

/// Queues a waiter for `request` on connection `id` and writes the request there.
fn send_on(
    inner: &mut Inner,
    id: u64,
    request: &Message,
) -> Result<oneshot::Receiver<Answered>, SendError> {
    let (tx, rx) = oneshot::channel();
    let conn = inner.by_id(id).ok_or(SendError::NotConnected)?;
    conn.pending
        .entry(key_of(request))
        .or_default()
        .push_back(Waiter {
            sent_at: Instant::now(),
            tx,
        });
    conn.writer
        .send(framed(request.frame()))
        .map_err(|_| SendError::NotConnected)?;
    Ok(rx)
}

/// The waiter for `key`, else the only one with the same class, DE 11 and DE 7.
fn take_waiter(pending: &mut HashMap<Key, VecDeque<Waiter>>, key: &Key) -> Option<Waiter> {
    let found = if pending.contains_key(key) {
        Some(key.clone())
    } else {
        let mut same = pending
            .keys()
            .filter(|k| k.0 == key.0 && k.1 == key.1 && k.2 == key.2);
        match (same.next(), same.next()) {
            (Some(k), None) => Some(k.clone()),
            _ => None,
        }
    }?;
    let queue = pending.get_mut(&found)?;
    let w = queue.pop_front();
    if queue.is_empty() {
        pending.remove(&found);
    }
    w
}

async fn accept_loop(device: std::sync::Weak<Device>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        match device.upgrade() {
            Some(d) => d.accepted(stream),
            None => return,
        }
    }
}

async fn read_loop(
    device: std::sync::Weak<Device>,
    connection: u64,
    mut read_half: OwnedReadHalf,
    writer: mpsc::UnboundedSender<Bytes>,
) {
    let mut codec = LengthPrefixed::new(READ_FRAME_MAX);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => match device.upgrade() {
                    Some(d) => d.frame(connection, frame, &writer),
                    None => return,
                },
                Ok(None) => break,
                Err(_) => return,
            }
        }
        match read_half.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if let Some(d) = device.upgrade() {
        let mut inner = d.lock();
        if let Some(i) = inner.live.iter().position(|c| c.id == connection) {
            let gone = inner.live.remove(i);
            inner.closed_state = gone.state;
            // Its requests in flight are dropped here: their receivers err.
            drop(gone);
        }
        drop(inner);
        d.changed.notify_waiters();
    }
}

/// `body` with its 2-byte big-endian length in front.
fn framed(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 2);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out.freeze()
}

/// The one writer of a connection: frames arrive already length-prefixed.
async fn write_loop(
    mut write_half: tokio::net::tcp::OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
) {
    let mut out = BytesMut::with_capacity(64 * 1024);
    while let Some(frame) = frames.recv().await {
        out.extend_from_slice(&frame);
        while out.len() < 64 * 1024 {
            match frames.try_recv() {
                Ok(f) => out.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        if write_half.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}
