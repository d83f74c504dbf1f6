//! `authorizer run`: the daemon. The start sequence, the loops it keeps running, and the stop.
//!
//! ```text
//! config ─► HSM pool, every key label ─► spool, publisher, dead letters ─► state (the newest
//! valid local snapshot, else empty) + the log from its offsets ─► admin server ─► caught up to the watermarks taken at
//! start ─► producer warmed up ─► READY ─► links (sign on, serve) ─► … ─► SIGTERM/SIGINT ─►
//! STOPPING, sign off, answer what is in flight, spool drained or kept, exit 0
//! ```
//!
//! While it serves, a supervisor rebuilds the state from the log when the replica *diverged* (a
//! decision whose event could not be made durable, see `docs/pipeline.md`) or the log's consumer
//! failed: until the rebuilt state caught up, the pipeline is not ready and every request is
//! answered the unavailable code (the network stands in).
//!
//! Must never: serve before the state is caught up; exit on a lost broker or interface device
//! (both are retried); log a PAN, a key, a PIN or the content of a secret file; leave an event
//! decided but neither in Kafka nor in the spool.

mod feed;
pub mod logging;
pub mod notify;
mod service;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hsm::HsmError;
use hsm::pkcs11::Pkcs11Verifier;
use ledger::{PanKey, ResponseCode, State};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::metrics::KindLabels;
use crate::admin::{self, Metrics};
use crate::config::Config;
use crate::kafka::{self, DeadLetterWriter, KafkaConfig, LogMetrics, Publisher, ensure_topic};
use crate::link::connection::{self, LinkConfig};
use crate::link::session::SessionConfig;
use crate::link::status::LinkStatus;
use crate::pipeline::{LedgerHandle, Pipeline, PipelineConfig, system_clock};
use crate::snapshots::{self, LocalStore, RestoredFrom};
use feed::LogFeed;
pub use notify::Notifier;
use service::{DaemonView, Handler, refresh_metrics};

/// How long the stop waits for the spool to reach Kafka before leaving the rest for the next
/// start (the spool is durable; this only shortens the next start's work).
const SPOOL_DRAIN_ON_STOP: Duration = Duration::from_secs(10);
/// Attempts to open the HSM at start, 500 ms apart, before exit 1.
const HSM_OPEN_ATTEMPTS: u32 = 5;
/// How long the producer may take to set up its connection and id before ready.
const PRODUCER_WARM_UP: Duration = Duration::from_secs(10);
/// How often the supervisor looks for a divergence or a failed feed.
const SUPERVISE_EVERY: Duration = Duration::from_millis(100);

/// Runs the daemon until SIGTERM or SIGINT. `Err` is a failure to start (exit 1), with a
/// message naming the thing and what to do.
pub fn run(config: Config) -> Result<(), String> {
    run_on_runtime("authorizer", |notifier| daemon(config, notifier))
}

/// Runs a daemon's main future on a multi-threaded tokio runtime (threads named `name`) with the
/// systemd notifier; on `Err`, `STATUS=failed`. Tasks still running at the end (a dial in its
/// backoff) are dropped with the runtime. The authorizer's and the snapshotter's `run`.
pub fn run_on_runtime<F, Fut>(name: &str, main: F) -> Result<(), String>
where
    F: FnOnce(Notifier) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    let notifier = Notifier::from_env();
    let result = runtime.block_on(main(notifier.clone()));
    if result.is_err() {
        notifier.status("failed");
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The state to start from, with the log's feed opened where it stands: the newest valid
/// snapshot under `state.dir/snapshots/` (one that fails a check, or whose offsets the log no
/// longer holds, is skipped for the previous one, logged and counted in
/// `authorizer_snapshots_skipped_total`), else the log from its beginning; a log that no longer
/// holds what the state needs is refused (`snapshots::restore`). Blocking.
fn initial_state(
    config: &Config,
    kafka: &KafkaConfig,
    dlq_tx: &tokio::sync::mpsc::Sender<kafka::DeadLetter>,
    log_metrics: &Arc<LogMetrics>,
    metrics: &Metrics,
) -> Result<(State, feed::Opened, kafka::Applier), String> {
    let store = LocalStore::new(config.snapshot_dir());
    let restored = snapshots::restore(&store, config.ledger_config(), |state, start| {
        let (opened, applier) = feed::open(kafka, &start, dlq_tx.clone(), log_metrics.clone())?;
        let started = opened.start_offsets();
        Ok(((state, opened, applier), started))
    })
    .map_err(|e| e.to_string())?;
    for skipped in &restored.skipped {
        metrics
            .snapshots_skipped
            .get_or_create(&KindLabels {
                kind: skipped.kind.to_owned(),
            })
            .inc();
    }
    if restored.from == RestoredFrom::Beginning {
        tracing::info!(dir = %store.dir().display(), "no usable snapshot: the log from its beginning");
    }
    Ok(restored.opened)
}

fn pipeline_config(config: &Config, metrics: Arc<Metrics>) -> PipelineConfig {
    let mut p = PipelineConfig::new(
        config.network.dialect.clone(),
        PanKey(*config.pan_key.key.expose()),
        config.decide_config(),
    );
    let code = config.hsm.unavailable_code.as_bytes();
    p.unavailable_code = ResponseCode([code[0], code[1]]);
    p.hsm_workers = config.hsm.pool_size;
    p.hsm_budget = config.hsm.budget;
    p.ack_budget = config.kafka.ack_budget;
    p.answer_budget = config.network.answer_budget;
    p.metrics = Some(metrics);
    p
}

fn link_config(config: &Config, address: &str) -> LinkConfig {
    let n = &config.network;
    let dialect = Arc::new(n.dialect.clone());
    let mut session = SessionConfig::new(&dialect, &config.issuer_id);
    session.echo_idle = n.echo_idle;
    session.own_answer_timeout = n.sign_on_timeout;
    // Every answer in flight is given up by the pipeline at the answer budget.
    session.drain_timeout = n.answer_budget + Duration::from_secs(1);
    session.in_flight_max = n.max_in_flight;
    session.max_frame_bytes = n.max_frame_bytes;
    let mut link = LinkConfig::new(address, dialect, session);
    link.connect_timeout = n.connect_timeout;
    link.backoff_base = n.reconnect_backoff_min;
    link.backoff_max = n.reconnect_backoff_max;
    link
}

fn hsm_problem(config: &Config, e: HsmError) -> String {
    match e {
        HsmError::KeyNotFound { label } => format!(
            "hsm: key label {label:?} (hsm.key_sets) is not on token {:?}: import it (hsm-keys import) or correct hsm.key_sets",
            config.hsm.token_label
        ),
        other => format!(
            "hsm: cannot open token {:?} with module {}: {other}",
            config.hsm.token_label,
            config.hsm.module.display()
        ),
    }
}

/// What runs while the daemon serves.
struct Running {
    pipeline: Pipeline,
    ledger: LedgerHandle,
    feed: Option<LogFeed>,
    publisher: Publisher,
    dead_letters: DeadLetterWriter,
}

async fn daemon(config: Config, notifier: Notifier) -> Result<(), String> {
    tracing::info!(
        instance_id = %config.instance_id,
        dialect = %config.network.dialect_name,
        interface_devices = config.network.interface_devices.len(),
        version = env!("CARGO_PKG_VERSION"),
        "starting"
    );
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;

    // 1. The HSM: the session pool opens and every key label is found.
    notifier.status("opening the HSM");
    // A missing key label is final; any other failure (a token still being written, an HSM
    // busy at boot) is tried again a few times before giving up.
    let mut attempt = 1;
    let verifier = loop {
        let pkcs11 = config.pkcs11_config();
        let opened = tokio::task::spawn_blocking(move || Pkcs11Verifier::new(pkcs11))
            .await
            .map_err(|e| format!("hsm: {e}"))?;
        match opened {
            Ok(v) => break v,
            Err(e @ HsmError::KeyNotFound { .. }) => return Err(hsm_problem(&config, e)),
            Err(e) if attempt >= HSM_OPEN_ATTEMPTS => return Err(hsm_problem(&config, e)),
            Err(e) => {
                tracing::warn!(attempt, error = %e, "cannot open the HSM yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                attempt += 1;
            }
        }
    };
    tracing::info!(
        token = %config.hsm.token_label,
        key_sets = config.hsm.key_sets.len(),
        "HSM ready: every key label found"
    );

    // 2. The log: topics, the spool and its publisher, the dead-letter writer, the consumer.
    let kafka = config.kafka_config();
    if config.kafka.create_topics {
        for topic in [
            &kafka.account_updates_topic,
            &kafka.authorizations_topic,
            &kafka.dead_letter_topic,
        ] {
            ensure_topic(&kafka, topic, config.kafka.partitions)
                .await
                .map_err(|e| format!("kafka: cannot create topic {topic}: {e}"))?;
        }
    }
    let log_metrics = Arc::new(LogMetrics::default());
    std::fs::create_dir_all(config.spool_dir()).map_err(|e| {
        format!(
            "state.dir: cannot create {}: {e}",
            config.spool_dir().display()
        )
    })?;
    let publisher = Publisher::open(&kafka, config.publisher_config(), log_metrics.clone())
        .map_err(|e| {
            format!(
                "spool under state.dir ({}): {e}",
                config.state.dir.display()
            )
        })?;
    // Decisions a previous run left in the spool are not in Kafka yet: the state rebuilt from
    // the log would lack their holds. They go to Kafka first, and the watermarks of the catch-up
    // are taken after, so that the state holds them.
    if publisher.spool_depth() > 0 {
        tracing::info!(
            events = publisher.spool_depth(),
            "the spool holds events of a previous run; sending them to Kafka before the catch-up"
        );
        loop {
            notifier.status(&format!(
                "sending {} spooled events to Kafka before the catch-up",
                publisher.spool_depth()
            ));
            tokio::select! {
                drained = publisher.wait_drained(Duration::from_secs(1)) => if drained { break },
                _ = sigterm.recv() => { publisher.close().await; return Ok(()); }
                _ = sigint.recv() => { publisher.close().await; return Ok(()); }
            }
        }
        tracing::info!("the spool is empty: every event of the previous run is in Kafka");
    }
    let (dead_letters, dlq_tx) = DeadLetterWriter::spawn(&kafka, log_metrics.clone())
        .map_err(|e| format!("kafka: dead-letter writer: {e}"))?;
    notifier.status("rebuilding the state from the log");
    let metrics = Arc::new(Metrics::new());
    let (state, opened, applier) = {
        let (config, kafka, dlq_tx) = (config.clone(), kafka.clone(), dlq_tx.clone());
        let (log_metrics, metrics) = (log_metrics.clone(), metrics.clone());
        tokio::task::spawn_blocking(move || {
            initial_state(&config, &kafka, &dlq_tx, &log_metrics, &metrics)
        })
        .await
        .map_err(|e| format!("restoring the state: {e}"))??
    };
    let (pipeline, ledger) = Pipeline::start_with_applier(
        state,
        applier,
        pipeline_config(&config, metrics.clone()),
        Arc::new(verifier),
        Arc::new(publisher.clone()),
    );
    let feed = opened
        .forward(pipeline.clone())
        .map_err(|e| format!("cannot start the log's feed: {e}"))?;
    let mut running = Running {
        pipeline,
        ledger,
        feed: Some(feed),
        publisher,
        dead_letters,
    };

    // 3. The admin server, before catch-up: live 200, ready 503 until ready.
    let links: Vec<Arc<LinkStatus>> = config
        .network
        .interface_devices
        .iter()
        .map(|a| Arc::new(LinkStatus::new(a.clone())))
        .collect();
    let stopping = Arc::new(AtomicBool::new(false));
    let view = Arc::new(DaemonView {
        instance_id: config.instance_id.clone(),
        pipeline: running.pipeline.clone(),
        links: links.clone(),
        publisher: running.publisher.clone(),
        stopping: stopping.clone(),
        runtime: tokio::runtime::Handle::current(),
        clock: system_clock,
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
    let admin_task = tokio::spawn(admin::serve(listener, view, metrics.clone(), admin_stop_rx));
    tracing::info!(listen = %config.admin.listen, "admin server listening");
    let (links_stop, links_stop_rx) = watch::channel(false);
    tokio::spawn(refresh_metrics(
        metrics.clone(),
        links.clone(),
        log_metrics.clone(),
        running.publisher.clone(),
        running.pipeline.clone(),
        stopping.clone(),
        links_stop_rx.clone(),
    ));
    if let Some(every) = notifier.watchdog_interval() {
        tokio::spawn(watchdog(
            running.pipeline.clone(),
            notifier.clone(),
            every / 2,
            links_stop_rx.clone(),
        ));
    }

    // 4. Caught up with the log (to the watermarks taken at start), then ready.
    let mut last_status = tokio::time::Instant::now();
    loop {
        if running.pipeline.ready() {
            break;
        }
        if running.feed.as_ref().is_some_and(LogFeed::failed) {
            stop(running, &admin_stop, admin_task).await;
            return Err(
                "kafka: the log's consumer failed during catch-up (see the log above)".into(),
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = sigterm.recv() => { stop(running, &admin_stop, admin_task).await; return Ok(()); }
            _ = sigint.recv() => { stop(running, &admin_stop, admin_task).await; return Ok(()); }
        }
        if last_status.elapsed() >= Duration::from_secs(1) {
            let lag = log_metrics.snapshot().total_lag();
            notifier.status(&format!("catching up with the log: {lag} records behind"));
            last_status = tokio::time::Instant::now();
        }
    }
    // The producer's connection and id, before the first event needs them (else the first
    // burst misses its budget and goes to the spool). Not fatal: the spool covers a slow broker.
    notifier.status("connecting the producer");
    if let Err(e) = running.publisher.warm_up(PRODUCER_WARM_UP).await {
        tracing::warn!(error = %e, "the producer is not set up yet; events go to the spool until Kafka answers");
    }
    let counts = running
        .pipeline
        .inspect(|s| s.counts())
        .await
        .unwrap_or_default();
    tracing::info!(
        accounts = counts.accounts,
        cards = counts.cards,
        holds = counts.holds,
        "ready: caught up with the log"
    );
    notifier.ready();
    notifier.status("ready; connecting to the interface devices");

    // 5. The links.
    let mut link_tasks: Vec<JoinHandle<()>> = Vec::new();
    for status in &links {
        let cfg = link_config(&config, status.address());
        let handler = Arc::new(Handler {
            pipeline: running.pipeline.clone(),
            dialect: cfg.dialect.clone(),
            device: Arc::from(status.address()),
        });
        let (status, rx) = (status.clone(), links_stop_rx.clone());
        link_tasks.push(tokio::spawn(async move {
            let address = status.address().to_owned();
            if let Err(e) = connection::run(cfg, handler, status, rx).await {
                tracing::error!(device = %address, error = %e, "link refused its configuration");
            }
        }));
    }

    // 6. Serve; rebuild on divergence; stop on a signal.
    let mut tick = tokio::time::interval(SUPERVISE_EVERY);
    let mut rebuilding = false;
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = tick.tick() => {}
        }
        let feed_failed = running.feed.as_ref().is_none_or(LogFeed::failed);
        if running.pipeline.diverged() || feed_failed {
            rebuilding = true;
            notifier.status("rebuilding the state from the log");
            match rebuild(
                &mut running,
                &config,
                &kafka,
                &dlq_tx,
                &log_metrics,
                &metrics,
            )
            .await
            {
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot rebuild the state yet; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        } else if rebuilding && running.pipeline.ready() {
            rebuilding = false;
            tracing::info!("the rebuilt state caught up with the log: serving again");
            notifier.status("ready");
        }
    }

    // 7. Stop: not ready, sign off, answer what is in flight, then the log.
    tracing::info!("stopping: signing off, answering the requests in flight");
    notifier.stopping();
    notifier.status("stopping");
    stopping.store(true, Ordering::Release);
    let _ = links_stop.send(true);
    for task in link_tasks {
        let _ = task.await;
    }
    drop(dlq_tx);
    stop(running, &admin_stop, admin_task).await;
    tracing::info!("stopped");
    Ok(())
}

/// Replaces a diverged (or no longer fed) state with one rebuilt from the log: a new consumer
/// from the snapshot seam's offsets and a new applier; the pipeline is ready again once that
/// applier caught up.
async fn rebuild(
    running: &mut Running,
    config: &Config,
    kafka: &KafkaConfig,
    dlq_tx: &tokio::sync::mpsc::Sender<kafka::DeadLetter>,
    log_metrics: &Arc<LogMetrics>,
    metrics: &Arc<Metrics>,
) -> Result<(), String> {
    tracing::warn!(
        diverged = running.pipeline.diverged(),
        "rebuilding the state from the log; requests are answered the unavailable code until it caught up"
    );
    if let Some(old) = running.feed.take() {
        tokio::task::spawn_blocking(move || old.stop())
            .await
            .map_err(|e| e.to_string())?;
    }
    let (config, kafka, dlq_tx) = (config.clone(), kafka.clone(), dlq_tx.clone());
    let (log_metrics, metrics) = (log_metrics.clone(), metrics.clone());
    let (state, opened, applier) = tokio::task::spawn_blocking(move || {
        initial_state(&config, &kafka, &dlq_tx, &log_metrics, &metrics)
    })
    .await
    .map_err(|e| e.to_string())??;
    let old = running.pipeline.replace_state(state, Some(applier)).await;
    // A large state is freed off the runtime's workers.
    tokio::task::spawn_blocking(move || drop(old));
    running.feed = Some(
        opened
            .forward(running.pipeline.clone())
            .map_err(|e| e.to_string())?,
    );
    Ok(())
}

/// `WATCHDOG=1` from the ledger thread itself, every `every`: a stalled ledger thread stops the
/// pings and systemd restarts the daemon.
async fn watchdog(
    pipeline: Pipeline,
    notifier: Notifier,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let n = notifier.clone();
        if pipeline.inspect(move |_| n.watchdog()).await.is_none() {
            return;
        }
    }
}

/// Stops the log side after the links: the feed, the ledger thread, the dead letters, the spool
/// (drained to Kafka if it can be within [`SPOOL_DRAIN_ON_STOP`]), then the admin server.
async fn stop(
    running: Running,
    admin_stop: &watch::Sender<bool>,
    admin_task: JoinHandle<std::io::Result<()>>,
) {
    let Running {
        pipeline,
        ledger,
        feed,
        publisher,
        dead_letters,
    } = running;
    if let Some(feed) = feed {
        let _ = tokio::task::spawn_blocking(move || feed.stop()).await;
    }
    let decisions = pipeline.decisions();
    drop(pipeline);
    // The ledger thread returns the state; its applier (and its dead-letter sender) goes with it.
    let _ = tokio::task::spawn_blocking(move || drop(ledger.stop())).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), dead_letters.finish()).await;
    let drained = publisher.wait_drained(SPOOL_DRAIN_ON_STOP).await;
    let left = publisher.spool_depth();
    publisher.close().await;
    if drained {
        tracing::info!(decisions, "every event is in Kafka");
    } else {
        tracing::warn!(
            decisions,
            spooled = left,
            "events stay in the spool; the next start sends them to Kafka"
        );
    }
    let _ = admin_stop.send(true);
    let _ = admin_task.await;
}
