//! The tokio task of one interface device: it dials, moves bytes, and nothing else.
//!
//! [`run`] owns one link for the life of the daemon. It dials the interface device (a connect
//! timeout, TCP_NODELAY, TCP keepalive), then serves the connection until the session asks to
//! close it or the network drops it, then waits out the [`Backoff`] and dials again, until
//! shutdown. Every decision (sign-on, echo, what to answer, when to close) is the
//! [`Session`]'s; this file carries out its [`Action`]s:
//!
//! * reading: 2-byte length-prefixed frames ([`LengthPrefixed`], bounded by `max_frame_bytes`)
//!   are handed to the session as they arrive;
//! * writing: ONE writer task owns the socket's write half, fed by a bounded channel, so answers
//!   decided concurrently never interleave their bytes; it batches what is queued into one write;
//! * requests: each delivered request runs the pipeline's [`RequestHandler`] in its own task, so
//!   many are in flight at once and their answers go back in the order they are decided;
//! * time: the session's next deadline is a `sleep_until` in the same `select!`.
//!
//! The backoff is reset only once a sign-on is answered 00: a device that accepts the TCP
//! connection and then refuses the sign-on is retried less and less often, like one that refuses
//! the connection.
//!
//! Must never: decide anything about a message (that is the session's and the pipeline's); write
//! from two places; log a frame's bytes; leave a request's answer on a newer connection than the
//! one it came in on (the session drops those).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use iso8583::framing::{FramingError, LengthPrefixed};
use iso8583::{Dialect, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

use super::backoff::Backoff;
use super::session::{Action, CloseReason, Now, Session, SessionConfig, SessionConfigError};
use super::status::{LinkState, LinkStatus};

/// The request pipeline, as the link sees it: a request in, its answer (an encoded message,
/// without length prefix) out, or `None` for no answer (e.g. past the answer budget: the network
/// treats a late answer as lost anyway).
pub trait RequestHandler: Send + Sync + 'static {
    /// Decides `request` and encodes its answer.
    fn handle(&self, request: Message) -> impl Future<Output = Option<Bytes>> + Send;
}

/// One interface device.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// `host:port` of the interface device.
    pub address: String,
    /// The dialect it speaks.
    pub dialect: Arc<Dialect>,
    /// The session's settings (issuer id, echo, bounds).
    pub session: SessionConfig,
    /// A dial not connected after this long is a failure.
    pub connect_timeout: Duration,
    /// The first wait after a failure.
    pub backoff_base: Duration,
    /// The longest wait between two dials.
    pub backoff_max: Duration,
    /// TCP keepalive: the first probe after this long with nothing on the wire (then every
    /// third of it, on Linux).
    pub keepalive_idle: Duration,
    /// A write to the socket not done after this long means the peer stopped reading: the
    /// connection is dropped (and dialled again).
    pub write_timeout: Duration,
}

impl LinkConfig {
    /// Defaults: 5 s connect timeout, backoff from 500 ms up to 30 s, keepalive after 30 s idle,
    /// 10 s to write.
    pub fn new(address: impl Into<String>, dialect: Arc<Dialect>, session: SessionConfig) -> Self {
        LinkConfig {
            address: address.into(),
            dialect,
            session,
            connect_timeout: Duration::from_secs(5),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            keepalive_idle: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Frames queued for the writer at most (beyond, the session's loop waits: backpressure on
/// writes only).
const WRITE_QUEUE_MAX: usize = 1024;
/// The writer gathers queued frames into one write of at most this many bytes.
const WRITE_BATCH_BYTES_MAX: usize = 64 * 1024;

/// Runs the link to one interface device until `shutdown` turns true (or its sender is
/// dropped): dial, sign on, serve, reconnect; on shutdown sign off, answer what is in flight,
/// close. `status` is updated all along. Fails only on a configuration the session refuses.
pub async fn run<H: RequestHandler>(
    config: LinkConfig,
    handler: Arc<H>,
    status: Arc<LinkStatus>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SessionConfigError> {
    let mut session = Session::new(
        config.session.clone(),
        config.dialect.clone(),
        status.clone(),
    )?;
    let mut backoff = Backoff::new(
        config.backoff_base,
        config.backoff_max,
        seed(&config.address),
    );
    let mut first = true;
    loop {
        if *shutdown.borrow() {
            session.shutdown(now());
            break;
        }
        if !first {
            status.count_reconnect();
        }
        first = false;
        match dial(&config).await {
            Ok(stream) => {
                let closed = serve(
                    stream,
                    &config,
                    &mut session,
                    &handler,
                    &mut shutdown,
                    &mut backoff,
                )
                .await;
                match closed {
                    Some(CloseReason::Shutdown) => break,
                    Some(reason) => {
                        tracing::warn!(device = %config.address, ?reason, "link closed, reconnecting")
                    }
                    None => tracing::warn!(device = %config.address, "link lost, reconnecting"),
                }
                if session.is_stopping() {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(device = %config.address, error = %e, "link: dial failed");
            }
        }
        let wait = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = shutdown.changed() => if changed.is_err() {
                // The sender is gone: nobody can ask for shutdown any more, so it is now.
                session.shutdown(now());
                break;
            },
        }
    }
    status.set_state(LinkState::Down);
    Ok(())
}

/// Connects with a timeout, keepalive and TCP_NODELAY.
async fn dial(config: &LinkConfig) -> io::Result<TcpStream> {
    let connect = async {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
        for addr in tokio::net::lookup_host(&config.address).await? {
            match connect_one(addr, config.keepalive_idle).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    let stream = tokio::time::timeout(config.connect_timeout, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn connect_one(addr: SocketAddr, keepalive_idle: Duration) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A peer that vanishes without a FIN is found by the session's echo; keepalive also lets the
    // kernel drop the connection on a long-silent network.
    let keepalive = socket2::TcpKeepalive::new().with_time(keepalive_idle);
    #[cfg(target_os = "linux")]
    let keepalive = keepalive.with_interval((keepalive_idle / 3).max(Duration::from_secs(1)));
    socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive)?;
    socket.connect(addr).await
}

/// Serves one connection until the session closes it (`Some(reason)`) or it is lost (`None`).
async fn serve<H: RequestHandler>(
    stream: TcpStream,
    config: &LinkConfig,
    session: &mut Session,
    handler: &Arc<H>,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Option<CloseReason> {
    let (mut read_half, write_half) = stream.into_split();
    let (write_tx, write_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE_MAX);
    let mut writer = tokio::spawn(write_loop(write_half, write_rx, config.write_timeout));
    // Each delivered request answers once: capacity for all of them, so a handler never waits.
    let (answer_tx, mut answer_rx) = mpsc::channel(config.session.in_flight_max);
    let mut codec = LengthPrefixed::new(config.session.max_frame_bytes);
    let mut read_buf = BytesMut::with_capacity(8 * 1024);
    session.connected(now());
    // One timer for the session's next deadline, moved rather than made anew on every turn of
    // the loop (a new timer per frame costs a timer-wheel insert and removal per request).
    let timer = tokio::time::sleep(std::time::Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        while let Some(action) = session.poll_action() {
            match action {
                Action::Send(frame) => {
                    if write_tx.send(frame).await.is_err() {
                        // The writer stopped: the socket failed.
                        writer.abort();
                        session.disconnected();
                        return None;
                    }
                }
                Action::Deliver(id, request) => {
                    let handler = handler.clone();
                    let answers = answer_tx.clone();
                    tokio::spawn(async move {
                        let answer = handler.handle(*request).await;
                        // The connection may be gone: then the answer goes nowhere.
                        let _ = answers.send((id, answer)).await;
                    });
                }
                Action::State(LinkState::SignedOn) => {
                    tracing::info!(device = %config.address, "link signed on");
                    backoff.reset();
                }
                Action::State(_) => {}
                Action::Close(reason) => {
                    drop(write_tx);
                    // Let the writer flush what the session sent before the close (the answers
                    // of a drain), but never wait on a peer that stopped reading.
                    let flush =
                        tokio::time::timeout(config.session.own_answer_timeout, &mut writer);
                    if flush.await.is_err() {
                        writer.abort();
                    }
                    session.disconnected();
                    return Some(reason);
                }
            }
        }
        let deadline = session.next_deadline().map(Instant::from_std);
        if let Some(at) = deadline
            && armed != Some(at)
        {
            timer.as_mut().reset(at);
            armed = Some(at);
        }
        tokio::select! {
            changed = shutdown.changed(), if !session.is_stopping() => {
                if changed.is_err() || *shutdown.borrow() {
                    session.shutdown(now());
                }
            }
            Some((id, answer)) = answer_rx.recv() => session.answer_ready(id, answer, now()),
            frame = read_frame(&mut read_half, &mut read_buf, &mut codec) => match frame {
                Ok(Some(frame)) => session.frame_received(frame, now()),
                Err(FramingError::TooLarge { len, .. }) => session.frame_too_large(len),
                Ok(None) | Err(FramingError::Io(_)) => {
                    writer.abort();
                    session.disconnected();
                    return None;
                }
            },
            () = &mut timer, if deadline.is_some() => {
                // Fired: the next deadline (even the same instant again) re-arms it.
                armed = None;
                session.tick(now());
            }
            written = &mut writer => {
                // The writer only ends early on a failed or stuck write: the connection is gone.
                if let Ok(Err(e)) = written {
                    tracing::warn!(device = %config.address, error = %e, "link: write failed");
                }
                session.disconnected();
                return None;
            }
        }
    }
}

/// The next frame, `None` at a clean end of stream. Cancel-safe: all state is in `buf`.
async fn read_frame(
    read_half: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    codec: &mut LengthPrefixed,
) -> Result<Option<Bytes>, FramingError> {
    loop {
        if let Some(frame) = codec.decode(buf)? {
            return Ok(Some(frame));
        }
        if read_half.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// The one writer of a connection: frames from the channel, length-prefixed, batched.
async fn write_loop(
    mut write_half: OwnedWriteHalf,
    mut frames: mpsc::Receiver<Bytes>,
    write_timeout: Duration,
) -> io::Result<()> {
    let stuck = || io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading");
    let mut codec = LengthPrefixed::new(usize::from(u16::MAX));
    let mut out = BytesMut::with_capacity(WRITE_BATCH_BYTES_MAX);
    while let Some(frame) = frames.recv().await {
        put_frame(&mut codec, &mut out, frame);
        while out.len() < WRITE_BATCH_BYTES_MAX {
            match frames.try_recv() {
                Ok(frame) => put_frame(&mut codec, &mut out, frame),
                Err(_) => break,
            }
        }
        tokio::time::timeout(write_timeout, write_half.write_all(&out))
            .await
            .map_err(|_| stuck())??;
        out.clear();
    }
    tokio::time::timeout(write_timeout, write_half.shutdown())
        .await
        .map_err(|_| stuck())?
}

fn put_frame(codec: &mut LengthPrefixed, out: &mut BytesMut, frame: Bytes) {
    if let Err(e) = codec.encode(&frame, out) {
        // Only an answer over 65,535 bytes, which no dialect field table allows.
        tracing::error!(error = %e, "link: an answer too long to frame, dropped");
    }
}

fn now() -> Now {
    Now {
        instant: Instant::now().into_std(),
        unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    }
}

/// A jitter seed that differs between links and between authorizers.
fn seed(address: &str) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    address
        .bytes()
        .fold(nanos ^ u64::from(std::process::id()), |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}
