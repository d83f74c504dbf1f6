//! `snapshotter run`: restore from the newest valid local snapshot (else the log's beginning),
//! follow both input topics with the authorizer's ledger (`kafka::Follower<State>`), write a
//! snapshot at least every `snapshotter.every_s` while events arrive and a last one on
//! SIGTERM/SIGINT, prune to `snapshotter.keep_local`, and serve the admin endpoints.
//!
//! ```text
//! config ─► topics ─► restore (local snapshots, else the beginning) ─► admin server ─► caught
//! up ─► READY ─► every second: a snapshot if every_s passed and the offsets moved ─► SIGTERM ─►
//! STOPPING, a last snapshot, exit 0
//! ```
//!
//! A snapshot is written on the ledger thread between two batches (`Follower::with_state`): the
//! state and its offsets are one consistent cut. Rejected events are not dead-lettered here:
//! every authorizer writes them. Must never: decide, publish an authorizer event, delete the
//! newest valid snapshot, or log a record's content.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authorizer::admin::metrics::KindLabels;
use authorizer::admin::{self, AccountView, AdminSource, StateCounts, StateView};
use authorizer::config::SnapshotterConfig;
use authorizer::daemon::Notifier;
use authorizer::kafka::{Follower, LogMetrics, Offsets, ReplayOptions, StartOffsets, ensure_topic};
use authorizer::snapshots::{self, LocalStore, RestoredFrom, rfc3339_ms};
use ledger::State;
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How often the loop looks at the clock and the offsets.
const TICK: Duration = Duration::from_millis(250);

/// The last snapshot written (or restored from).
#[derive(Clone, Debug, Serialize)]
struct LastSnapshot {
    key: String,
    /// RFC 3339 UTC.
    at: String,
    offsets: std::collections::BTreeMap<String, i64>,
    #[serde(skip)]
    raw_offsets: Offsets,
}

impl LastSnapshot {
    fn new(key: String, at_ms: i64, offsets: Offsets) -> LastSnapshot {
        LastSnapshot {
            key,
            at: rfc3339_ms(at_ms),
            offsets: offsets.iter().map(|(tp, n)| (tp.to_string(), *n)).collect(),
            raw_offsets: offsets,
        }
    }
}

/// Runs the snapshotter until SIGTERM or SIGINT. `Err` is a failure (exit 1).
pub fn run(config: SnapshotterConfig) -> Result<(), String> {
    authorizer::daemon::run_on_runtime("snapshotter", |notifier| daemon(config, notifier))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Shared {
    instance_id: String,
    follower: Follower<State>,
    last: Mutex<Option<LastSnapshot>>,
    ready: AtomicBool,
    stopping: AtomicBool,
}

async fn daemon(config: SnapshotterConfig, notifier: Notifier) -> Result<(), String> {
    tracing::info!(
        instance_id = %config.instance_id,
        dir = %config.snapshot_dir().display(),
        every_s = config.snapshotter.every.as_secs(),
        keep_local = config.snapshotter.keep_local,
        version = env!("CARGO_PKG_VERSION"),
        "starting"
    );
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
    let kafka = config.kafka_config();
    if config.kafka.create_topics {
        for topic in [&kafka.account_updates_topic, &kafka.authorizations_topic] {
            ensure_topic(&kafka, topic, config.kafka.partitions)
                .await
                .map_err(|e| format!("kafka: cannot create topic {topic}: {e}"))?;
        }
    }
    let store = LocalStore::new(config.snapshot_dir());
    std::fs::create_dir_all(store.dir())
        .and_then(|()| store.remove_temporaries())
        .map_err(|e| format!("state.dir: cannot use {}: {e}", store.dir().display()))?;
    let metrics = Arc::new(Metrics::new());
    let log_metrics = Arc::new(LogMetrics::default());
    // The authorizers dead-letter rejected events; the snapshotter only follows.
    let (dead_letters, mut discarded) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move { while discarded.recv().await.is_some() {} });

    notifier.status("restoring the state");
    let restored = {
        let (store, kafka, ledger) = (store.clone(), kafka.clone(), config.ledger_config());
        let log_metrics = log_metrics.clone();
        tokio::task::spawn_blocking(move || {
            snapshots::restore(&store, ledger, |state, start: StartOffsets| {
                let mut opts = ReplayOptions::from_beginning(&kafka);
                opts.start = start;
                let follower = Follower::start(
                    &kafka,
                    &opts,
                    state,
                    dead_letters.clone(),
                    log_metrics.clone(),
                )?;
                let started = follower.view().offsets;
                Ok(((follower, started.clone()), started))
            })
        })
        .await
        .map_err(|e| format!("restoring the state: {e}"))?
        .map_err(|e| e.to_string())?
    };
    for skipped in &restored.skipped {
        metrics
            .snapshots_skipped
            .get_or_create(&KindLabels {
                kind: skipped.kind.to_owned(),
            })
            .inc();
    }
    let (follower, started) = restored.opened;
    let last = match restored.from {
        RestoredFrom::Snapshot { key, created_at_ms } => {
            Some(LastSnapshot::new(key, created_at_ms, started))
        }
        RestoredFrom::Beginning => {
            tracing::info!("no usable snapshot: the log from its beginning");
            None
        }
    };
    let shared = Arc::new(Shared {
        instance_id: config.instance_id.clone(),
        follower,
        last: Mutex::new(last),
        ready: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
    });

    let listener = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .map_err(|e| {
            format!(
                "admin.listen: cannot listen on {}: {e}",
                config.admin.listen
            )
        })?;
    let (admin_stop, admin_stop_rx) = watch::channel(false);
    let source: Arc<dyn AdminSource> = Arc::new(View(shared.clone()));
    let admin_task = tokio::spawn(admin::serve(
        listener,
        source,
        metrics.clone(),
        admin_stop_rx,
    ));
    tracing::info!(listen = %config.admin.listen, "admin server listening");
    if let Some(every) = notifier.watchdog_interval() {
        tokio::spawn(watchdog(shared.clone(), notifier.clone(), every / 2));
    }

    // Caught up with the log, then ready.
    let mut last_status = Instant::now();
    loop {
        let view = shared.follower.view();
        if view.progress.ready {
            break;
        }
        if let Some(failed) = view.failed {
            let _ = admin_stop.send(true);
            return Err(format!(
                "kafka: the log's consumer failed during catch-up: {failed}"
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = sigterm.recv() => { let _ = admin_stop.send(true); return Ok(()); }
            _ = sigint.recv() => { let _ = admin_stop.send(true); return Ok(()); }
        }
        if last_status.elapsed() >= Duration::from_secs(1) {
            let lag = log_metrics.snapshot().total_lag();
            notifier.status(&format!("catching up with the log: {lag} records behind"));
            last_status = Instant::now();
        }
    }
    shared.ready.store(true, Ordering::Release);
    tracing::info!("ready: caught up with the log");
    notifier.ready();
    notifier.status("ready");

    // Snapshots while events arrive; stop on a signal.
    let every = config.snapshotter.every;
    let keep = config.snapshotter.keep_local;
    let mut last_written = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    let failure = loop {
        tokio::select! {
            _ = sigterm.recv() => break None,
            _ = sigint.recv() => break None,
            _ = tick.tick() => {}
        }
        if let Some(failed) = shared.follower.view().failed {
            break Some(format!("kafka: the log's consumer failed: {failed}"));
        }
        if last_written.elapsed() >= every && moved(&shared) {
            snapshot(&shared, &store, keep, &metrics).await;
            last_written = Instant::now();
        }
    };

    tracing::info!("stopping: writing a last snapshot");
    notifier.stopping();
    notifier.status("stopping");
    shared.stopping.store(true, Ordering::Release);
    if failure.is_none() && moved(&shared) {
        snapshot(&shared, &store, keep, &metrics).await;
    }
    let _ = admin_stop.send(true);
    let _ = admin_task.await;
    // The follower (its ledger thread and consumer) stops when the last reference goes.
    drop(shared);
    match failure {
        None => {
            tracing::info!("stopped");
            Ok(())
        }
        Some(e) => Err(e),
    }
}

/// Whether the state moved since the last snapshot (or none exists).
fn moved(shared: &Shared) -> bool {
    let offsets = shared.follower.view().offsets;
    let last = shared.last.lock().unwrap_or_else(|e| e.into_inner());
    last.as_ref().is_none_or(|l| l.raw_offsets != offsets)
}

/// Writes one snapshot on the ledger thread, then prunes; failures are logged and counted.
async fn snapshot(shared: &Arc<Shared>, store: &LocalStore, keep: usize, metrics: &Metrics) {
    let started = Instant::now();
    let (shared2, store2) = (shared.clone(), store.clone());
    let written = tokio::task::spawn_blocking(move || {
        shared2
            .follower
            .with_state(move |state, offsets| store2.write(state, offsets, now_ms()))
    })
    .await;
    let written = match written {
        Ok(Some(Ok(written))) => written,
        Ok(Some(Err(e))) => {
            tracing::error!(error = %e, dir = %store.dir().display(), "cannot write a snapshot");
            metrics.failed("write");
            return;
        }
        Ok(None) | Err(_) => {
            tracing::error!("cannot write a snapshot: the ledger thread is gone");
            metrics.failed("write");
            return;
        }
    };
    let elapsed = started.elapsed();
    metrics.snapshot_duration.observe(elapsed.as_secs_f64());
    metrics
        .last_snapshot_timestamp
        .set(written.entry.created_at_ms as f64 / 1000.0);
    metrics.snapshots_written.inc();
    tracing::info!(
        snapshot = %written.entry.key,
        bytes = written.bytes,
        accounts = written.header.counts.accounts,
        cards = written.header.counts.cards,
        holds = written.header.counts.holds,
        state_hash = %written.header.state_hash,
        elapsed_ms = elapsed.as_millis() as u64,
        "snapshot written"
    );
    let key = written.entry.key.clone();
    *shared.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastSnapshot::new(
        written.entry.key,
        written.entry.created_at_ms,
        written.offsets,
    ));
    match store.prune(keep, &key) {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(removed = removed.len(), keep, "older snapshots pruned");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot prune the snapshots");
            metrics.failed("prune");
        }
    }
}

/// `WATCHDOG=1` from the ledger thread itself.
async fn watchdog(shared: Arc<Shared>, notifier: Notifier, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        let (s, n) = (shared.clone(), notifier.clone());
        let pinged =
            tokio::task::spawn_blocking(move || s.follower.with_state(move |_, _| n.watchdog()))
                .await;
        if !matches!(pinged, Ok(Some(()))) {
            return;
        }
    }
}

/// The snapshotter's `/state`: the authorizer's fields except `links`, plus `last_snapshot`.
#[derive(Serialize)]
struct SnapshotterState {
    #[serde(flatten)]
    view: StateBody,
    last_snapshot: Option<LastSnapshot>,
}

#[derive(Serialize)]
struct StateBody {
    instance_id: String,
    ready: bool,
    state_hash: String,
    offsets: std::collections::BTreeMap<String, i64>,
    counts: StateCounts,
    spool_events: u64,
}

struct View(Arc<Shared>);

impl AdminSource for View {
    fn ready(&self) -> bool {
        self.0.ready.load(Ordering::Acquire) && !self.0.stopping.load(Ordering::Acquire)
    }

    fn state(&self) -> StateView {
        let mut view = StateView {
            instance_id: self.0.instance_id.clone(),
            ready: self.ready(),
            ..StateView::default()
        };
        let read = self.0.follower.with_state(|state, offsets| {
            let c = state.counts();
            (state.state_hash().to_string(), c, offsets.clone())
        });
        if let Some((hash, c, offsets)) = read {
            view.set_state(hash, &c, &offsets);
        }
        view
    }

    fn account(&self, _account_id: &str) -> Option<AccountView> {
        None
    }

    fn state_body(&self) -> Result<Vec<u8>, serde_json::Error> {
        let v = self.state();
        let last = self
            .0
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        serde_json::to_vec(&SnapshotterState {
            view: StateBody {
                instance_id: v.instance_id,
                ready: v.ready,
                state_hash: v.state_hash,
                offsets: v.offsets,
                counts: v.counts,
                spool_events: 0,
            },
            last_snapshot: last,
        })
    }
}
