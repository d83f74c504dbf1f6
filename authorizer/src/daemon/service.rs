//! What the daemon's edges see of it: the [`Handler`] the links hand requests to, the
//! [`DaemonView`] the admin server reads, and [`refresh_metrics`], which copies the links', the
//! log's and the state's figures into the metrics registry every second.
//!
//! Must never: decide anything (the pipeline does), log a PAN (the request line logs the masked
//! PAN only, at `debug`), or put a secret in a view.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iso8583::{Dialect, Message};
use ledger::UnixSeconds;
use tokio::sync::watch;

use crate::admin::metrics::{BadFrameLabels, DeviceLabels, PartitionLabels};
use crate::admin::{AccountView, AdminSource, LinkView, Metrics, StateView};
use crate::kafka::{LogMetrics, Publisher};
use crate::link::connection::RequestHandler;
use crate::link::status::{BadFrameKind, LinkStatus};
use crate::link::translate::MaskedPan;
use crate::pipeline::Pipeline;

/// The link's request handler: the pipeline, and a `debug` line per request.
pub struct Handler {
    pub pipeline: Pipeline,
    pub dialect: Arc<Dialect>,
    /// The interface device's address, for the log line.
    pub device: Arc<str>,
}

impl RequestHandler for Handler {
    fn handle(&self, request: Message) -> impl Future<Output = Option<Bytes>> + Send {
        // The request's identity for the log line, only when it would be written.
        let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            (
                request.mti().as_str().to_owned(),
                request.text(11).map(str::to_owned),
                request.text(2).map(MaskedPan::of),
                Instant::now(),
            )
        });
        let answer = self.pipeline.handle(request);
        let (dialect, device) = (self.dialect.clone(), self.device.clone());
        async move {
            let answer = answer.await;
            if let Some((mti, stan, pan, started)) = logged {
                let code = answer
                    .as_ref()
                    .and_then(|a| Message::decode(&dialect, a.clone()).ok())
                    .and_then(|m| m.text(39).map(str::to_owned));
                tracing::debug!(
                    device = %device,
                    mti = %mti,
                    stan = stan.as_deref().unwrap_or("-"),
                    pan = pan.as_ref().map_or("-", |p| p.as_str()),
                    response_code = code.as_deref().unwrap_or("-"),
                    latency_us = started.elapsed().as_micros() as u64,
                    "request"
                );
            }
            answer
        }
    }
}

/// The admin server's view of the daemon.
pub struct DaemonView {
    pub instance_id: String,
    pub pipeline: Pipeline,
    pub links: Vec<Arc<LinkStatus>>,
    pub publisher: Publisher,
    /// Set on SIGTERM/SIGINT: `/health/ready` answers 503 from then on.
    pub stopping: Arc<AtomicBool>,
    /// The runtime the view's calls wait on (they run on its blocking pool).
    pub runtime: tokio::runtime::Handle,
    pub clock: fn() -> UnixSeconds,
}

impl AdminSource for DaemonView {
    fn ready(&self) -> bool {
        !self.stopping.load(Ordering::Acquire) && self.pipeline.ready()
    }

    fn state(&self) -> StateView {
        let read = self.pipeline.inspect_log(|state, offsets| {
            let c = state.counts();
            (state.state_hash().to_string(), c, offsets)
        });
        let mut view = StateView {
            instance_id: self.instance_id.clone(),
            ready: self.ready(),
            links: self
                .links
                .iter()
                .map(|l| LinkView {
                    address: l.address().to_owned(),
                    state: l.state().name().to_owned(),
                })
                .collect(),
            spool_events: self.publisher.spool_depth(),
            ..StateView::default()
        };
        if let Some((hash, counts, offsets)) = self.runtime.block_on(read) {
            view.set_state(hash, &counts, &offsets);
        }
        view
    }

    fn account(&self, account_id: &str) -> Option<AccountView> {
        let (id, now) = (account_id.to_owned(), (self.clock)());
        let read = self.pipeline.inspect(move |state| {
            let index = state.account_by_id(&id)?;
            let a = state.account(index);
            if a.is_placeholder() {
                return None;
            }
            let limit = a.credit_limit().minor();
            let posted = a.posted_balance().minor();
            let open_to_buy = state.open_to_buy(index, now).0;
            let held = i128::from(limit) - i128::from(posted) - open_to_buy;
            let clamp =
                |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
            Some(AccountView {
                account_id: id,
                status: a.status().as_str().to_owned(),
                currency: format!("{:03}", a.currency().code()),
                credit_limit: limit,
                posted_balance: posted,
                held: clamp(held),
                open_to_buy: clamp(open_to_buy),
                holds: state.live_hold_count(index, now) as u64,
            })
        });
        self.runtime.block_on(read).flatten()
    }
}

/// Copies the links', the log's and the state's figures into `metrics` every second until
/// `shutdown`. Counters are advanced by what their source counted since the last copy.
pub async fn refresh_metrics(
    metrics: Arc<Metrics>,
    links: Vec<Arc<LinkStatus>>,
    log: Arc<LogMetrics>,
    publisher: Publisher,
    pipeline: Pipeline,
    stopping: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut advance = |key: String, now: u64| -> u64 {
        let before = seen.insert(key, now).unwrap_or(0);
        now.saturating_sub(before)
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        for link in &links {
            let s = link.snapshot();
            let device = DeviceLabels {
                device: s.address.clone(),
            };
            metrics.set_link_up(&s.address, link.is_up());
            let n = advance(format!("reconnects {}", s.address), s.reconnects);
            metrics.link_reconnects.get_or_create(&device).inc_by(n);
            for (kind, count) in BadFrameKind::ALL.iter().zip(s.bad_frames) {
                let n = advance(format!("bad {} {}", s.address, kind.name()), count);
                if n > 0 || count == 0 {
                    metrics
                        .bad_frames
                        .get_or_create(&BadFrameLabels {
                            device: s.address.clone(),
                            kind: kind.name().to_owned(),
                        })
                        .inc_by(n);
                }
            }
        }
        let ready = !stopping.load(Ordering::Acquire) && pipeline.ready();
        metrics.ready.set(i64::from(ready));
        let l = log.snapshot();
        for (tp, p) in &l.partitions {
            metrics
                .kafka_lag
                .get_or_create(&PartitionLabels {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                })
                .set(p.lag());
        }
        metrics
            .dead_letters
            .inc_by(advance("dead letters".into(), l.dead_letters_written));
        metrics
            .spool_events
            .set(i64::try_from(publisher.spool_depth()).unwrap_or(i64::MAX));
        if let Some(c) = pipeline.inspect(|s| s.counts()).await {
            metrics.set_state_records("accounts", c.accounts);
            metrics.set_state_records("cards", c.cards);
            metrics.set_state_records("holds", c.holds);
        }
    }
}
