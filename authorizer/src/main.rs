//! The `authorizer` binary: the daemon and its operator tools.
//!
//! * `authorizer run --config FILE`: the daemon in the foreground (`authorizer::daemon`): exit 0
//!   after a clean stop (SIGTERM/SIGINT), 2 on a configuration error (one line per problem, each
//!   naming its key), 1 on any other failure to start (one line naming the thing and what to do).
//! * `authorizer replay`: builds the state from the Kafka log (from the beginning, or from given
//!   offsets) up to the high watermarks seen at start, and prints the record counts, the offsets,
//!   the state's counts and its hash. Compare the hash between replicas; time it to measure
//!   replay speed.
//! * `authorizer publish`: publishes authorizer events (JSON lines on stdin) through the producer
//!   and its spool, answering each line with where the event is (acknowledged or spooled). For
//!   re-injecting events by hand, and for the spool's crash tests.
//!
//! * `authorizer check-config --config FILE`: loads the configuration as the daemon will
//!   (every key, every secret file, the dialect; no service reached) and prints one summary line
//!   (exit 0), or one line per problem on stderr, each naming its key (exit 2). Never prints a
//!   secret.
//!
//! * `authorizer snapshot inspect FILE`: verifies a snapshot file (checksums, format version,
//!   counts, the state rebuilt and its hash recomputed) and prints its header, counts, offsets
//!   and state hash (exit 0), or `invalid: REASON` on stderr (exit 1).
//!
//! * `authorizer dlq list`: one line per dead letter (where it is, when, where from, why; the
//!   content only with `--show-content`, masked); `authorizer dlq republish --offsets N,M-K`
//!   sends chosen letters back to their source topic (`authorizer::kafka::dlq_tool`).
//!
//! Output is `key=value` lines on stdout, meant for people and scripts alike; errors go to stderr
//! with a non-zero exit code. Never prints an event's content.

#![forbid(unsafe_code)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authorizer::config::Config;
use authorizer::kafka::{
    self, KafkaConfig, LogMetrics, Offsets, Outbound, Publisher, PublisherConfig, ReplayOptions,
    StartOffsets, TopicPartition,
};
use clap::{Args, Parser, Subcommand};
use ledger::snapshot;
use ledger::{LedgerConfig, State};

#[derive(Parser)]
#[command(
    name = "authorizer",
    version,
    about = "Card authorizer daemon and operator tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground until SIGTERM or SIGINT.
    Run(RunArgs),
    /// Build the state from the log and print counts, offsets and the state hash.
    Replay(ReplayArgs),
    /// Publish authorizer events (one JSON object per stdin line) with the spool behind them.
    Publish(PublishArgs),
    /// Check a configuration file and its secrets (no service is reached); one summary line.
    CheckConfig(CheckConfigArgs),
    /// Snapshot files.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// The dead-letter topic: list letters, send chosen ones back to their source topic.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Subcommand)]
enum DlqCommand {
    /// One line per dead letter: offset, time, source topic/partition/offset, reason.
    List(DlqListArgs),
    /// Send the letters at these dead-letter offsets back to their source topic and partition
    /// (original key and value); exit 1 if any was refused or missing.
    Republish(DlqRepublishArgs),
}

#[derive(Args)]
struct DlqListArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Only this partition of the dead-letter topic.
    #[arg(long)]
    partition: Option<i32>,
    /// Only these dead-letter offsets, `N,M-K`.
    #[arg(long)]
    offsets: Option<String>,
    /// Only letters whose reason contains this text.
    #[arg(long)]
    reason: Option<String>,
    /// Also print the key and the content, PAN/track fields withheld and 13+ digit runs masked.
    #[arg(long)]
    show_content: bool,
}

#[derive(Args)]
struct DlqRepublishArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The dead-letter partition the offsets are in (required when the topic has several).
    #[arg(long)]
    partition: Option<i32>,
    /// Dead-letter offsets, `N,M-K`.
    #[arg(long)]
    offsets: String,
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Verify a snapshot file (checksums, state hash) and print its header, counts and offsets:
    /// exit 0 valid, 1 invalid with the reason.
    Inspect {
        /// The snapshot file.
        file: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// The configuration file (TOML).
    #[arg(long)]
    config: PathBuf,
}

#[derive(Args)]
struct CheckConfigArgs {
    /// The configuration file (TOML).
    #[arg(long)]
    config: PathBuf,
}

#[derive(Args)]
struct KafkaArgs {
    /// Kafka bootstrap servers, host:port[,host:port].
    #[arg(long)]
    brokers: String,
    #[arg(long, default_value = "account-updates")]
    account_updates_topic: String,
    #[arg(long, default_value = "authorizations")]
    authorizations_topic: String,
    #[arg(long, default_value = "account-updates.dlq")]
    dead_letter_topic: String,
    /// client.id sent to the broker.
    #[arg(long, default_value = "authorizer-tool")]
    client_id: String,
    /// Extra librdkafka property, `name=value` (repeatable), e.g.
    /// `max.partition.fetch.bytes=8388608`. Secrets (a name containing `password`, `secret`,
    /// `sasl.jaas` or `ssl.key`) are refused here: use --kafka-properties-file.
    #[arg(long = "kafka-property", value_name = "NAME=VALUE")]
    kafka_properties: Vec<String>,
    /// File of librdkafka properties, `name=value` lines (`#` comments), applied before any
    /// --kafka-property; the place for secrets. Refused if group or others can read it.
    #[arg(long = "kafka-properties-file", value_name = "PATH")]
    kafka_properties_file: Option<PathBuf>,
}

impl KafkaArgs {
    fn config(&self) -> Result<KafkaConfig, String> {
        let mut c = KafkaConfig::new(&self.brokers);
        if let Some(path) = &self.kafka_properties_file {
            c.extra = kafka::properties::read_properties_file(path)
                .map_err(|e| format!("--kafka-properties-file {e}"))?;
        }
        for p in &self.kafka_properties {
            c.extra.push(kafka::properties::parse_argv_property(p)?);
        }
        c.account_updates_topic = self.account_updates_topic.clone();
        c.authorizations_topic = self.authorizations_topic.clone();
        c.dead_letter_topic = self.dead_letter_topic.clone();
        c.client_id = self.client_id.clone();
        Ok(c)
    }
}

#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Start every partition at its first retained record.
    #[arg(long, conflicts_with_all = ["offsets", "from_snapshot"])]
    from_beginning: bool,
    /// Start from a snapshot file: its state, then the log from its offsets.
    #[arg(long, conflicts_with = "offsets")]
    from_snapshot: Option<PathBuf>,
    /// Start at these next offsets, `topic/partition=offset` separated by commas (a snapshot's);
    /// partitions not listed start at the beginning.
    #[arg(long)]
    offsets: Option<String>,
    /// Event ids the ledger remembers for dedup.
    #[arg(long, default_value_t = LedgerConfig::default().dedup_window_events)]
    dedup_window_events: usize,
    /// Print at most this many rejected events (reason and origin, never content).
    #[arg(long, default_value_t = 10)]
    show_rejected: usize,
}

#[derive(Args)]
struct PublishArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Spool directory (kept across restarts).
    #[arg(long)]
    spool_dir: PathBuf,
    /// Time each event may wait for Kafka's acknowledgement before it is spooled, ms.
    #[arg(long, default_value_t = 500)]
    budget_ms: u64,
    /// After the last line, wait at most this long for the spool to drain, s (0: do not wait).
    #[arg(long, default_value_t = 30)]
    drain_timeout_s: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Run(args) = &cli.command {
        return run(args);
    }
    // The tools log warnings and errors only, as text.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let result = match cli.command {
        Command::Run(_) => unreachable!("handled above"),
        Command::Replay(args) => replay(args),
        Command::Publish(args) => publish(args),
        Command::CheckConfig(args) => Ok(check_config(&args)),
        Command::Snapshot(SnapshotCommand::Inspect { file }) => Ok(inspect(&file)),
        Command::Dlq(command) => dlq(command),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("authorizer: {message}");
            ExitCode::from(1)
        }
    }
}

/// The daemon: exit 2 on a configuration problem (one line each, as `check-config`), 1 on any
/// other failure to start, 0 after a clean stop.
fn run(args: &RunArgs) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            for p in &errors.problems {
                let _ = writeln!(err, "authorizer: {p}");
            }
            return ExitCode::from(2);
        }
    };
    authorizer::daemon::logging::init(config.log_format, &config.instance_id);
    match authorizer::daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("authorizer: {message}");
            ExitCode::from(1)
        }
    }
}

/// Verifies the whole file (every check of the reader, the state rebuilt and its hash
/// recomputed) and prints `key=value` lines; exit 1 with `invalid: REASON` on stderr.
fn inspect(file: &std::path::Path) -> ExitCode {
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let (state, resume, header) =
        match authorizer::snapshots::read_file(file, LedgerConfig::default()) {
            Ok(read) => read,
            Err(e) => {
                eprintln!("authorizer: snapshot {}: invalid: {e}", file.display());
                return ExitCode::from(1);
            }
        };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "file={}", file.display());
    let _ = writeln!(out, "bytes={bytes}");
    let _ = writeln!(out, "format_version={}", header.format_version);
    let _ = writeln!(out, "created_at_ms={}", header.created_at_ms);
    let _ = writeln!(
        out,
        "created_at={}",
        authorizer::snapshots::rfc3339_ms(header.created_at_ms)
    );
    let _ = writeln!(out, "watermark_s={}", header.watermark.0);
    let c = header.counts;
    let _ = writeln!(
        out,
        "counts accounts={} cards={} holds={} cleared_markers={} pending_atcs={}",
        c.accounts, c.cards, c.holds, c.cleared_markers, c.pending_atcs
    );
    for (topic, partition, next) in resume.iter() {
        let _ = writeln!(out, "offset {topic}/{partition}={next}");
    }
    let _ = writeln!(out, "state_hash={}", header.state_hash);
    let _ = writeln!(out, "recomputed_state_hash={}", state.state_hash());
    let _ = writeln!(out, "valid=yes");
    ExitCode::SUCCESS
}

/// Exit 2 on any problem, one line each (`kafka.bootstrap: missing`).
fn check_config(args: &CheckConfigArgs) -> ExitCode {
    match Config::load(&args.config) {
        Ok(config) => {
            println!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            for p in &errors.problems {
                let _ = writeln!(err, "{p}");
            }
            ExitCode::from(2)
        }
    }
}

fn parse_offsets(text: &str) -> Result<Offsets, String> {
    let mut out = Offsets::new();
    for item in text.split(',').filter(|s| !s.trim().is_empty()) {
        let bad = || {
            format!(
                "--offsets: {item:?} is not topic/partition=offset (example: account-updates/3=1200)"
            )
        };
        let (tp, offset) = item.trim().split_once('=').ok_or_else(bad)?;
        let (topic, partition) = tp.rsplit_once('/').ok_or_else(bad)?;
        let partition: i32 = partition.parse().map_err(|_| bad())?;
        let offset: i64 = offset.parse().map_err(|_| bad())?;
        if topic.is_empty() || partition < 0 || offset < 0 {
            return Err(bad());
        }
        out.insert(TopicPartition::new(topic, partition), offset);
    }
    Ok(out)
}

fn replay(args: ReplayArgs) -> Result<ExitCode, String> {
    let kafka = args.kafka.config()?;
    let mut opts = ReplayOptions::from_beginning(&kafka);
    opts.dead_letters_keep_max = args.show_rejected;
    let dedup = args.dedup_window_events;
    if dedup == 0 || dedup > LedgerConfig::DEDUP_WINDOW_MAX {
        return Err(format!(
            "--dedup-window-events {dedup} is out of range 1..={}",
            LedgerConfig::DEDUP_WINDOW_MAX
        ));
    }
    let config = LedgerConfig {
        dedup_window_events: dedup,
    };
    let state = match (&args.offsets, &args.from_snapshot, args.from_beginning) {
        (Some(text), _, _) => {
            opts.start = StartOffsets::At(parse_offsets(text)?);
            State::new(config)
        }
        (None, Some(path), _) => {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("snapshot {}: {e}", path.display()))?;
            let len = file
                .metadata()
                .map_err(|e| format!("snapshot {}: {e}", path.display()))?
                .len();
            let (state, resume, header) = snapshot::read_sized(file, len, config)
                .map_err(|e| format!("snapshot {}: {e}", path.display()))?;
            println!(
                "snapshot={} state_hash={} created_at_ms={}",
                path.display(),
                header.state_hash,
                header.created_at_ms
            );
            opts.start = StartOffsets::At(kafka::offsets_from_snapshot(&resume));
            state
        }
        (None, None, true) => State::new(config),
        (None, None, false) => {
            return Err(
                "say where to start: --from-beginning, --from-snapshot FILE or --offsets topic/partition=offset,..."
                    .into(),
            );
        }
    };
    let metrics = Arc::new(LogMetrics::default());
    let report = kafka::replay(&kafka, &opts, state, metrics).map_err(|e| e.to_string())?;
    let p = report.progress;
    let mut out = std::io::stdout().lock();
    let counts = report.state.counts();
    let _ = writeln!(out, "records={}", p.applied + p.rejected);
    let _ = writeln!(out, "applied={}", p.applied);
    let _ = writeln!(out, "rejected={}", p.rejected);
    let _ = writeln!(out, "duplicates_skipped={}", p.duplicates);
    let _ = writeln!(
        out,
        "replay_elapsed_s={:.3}",
        report.replay_elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "total_elapsed_s={:.3}",
        report.total_elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "records_per_s={:.0}", report.records_per_s());
    for (tp, next) in &report.offsets {
        let _ = writeln!(out, "offset {tp}={next}");
    }
    let _ = writeln!(
        out,
        "counts accounts={} account_placeholders={} cards={} holds={} cleared_markers={} key_sets={}",
        counts.accounts,
        counts.account_placeholders,
        counts.cards,
        counts.holds,
        counts.cleared_markers,
        counts.key_sets
    );
    for d in &report.dead_letters {
        let _ = writeln!(
            out,
            "rejected {}/{}@{}: {}",
            d.source_topic, d.partition, d.offset, d.reason
        );
    }
    let _ = writeln!(out, "state_hash={}", report.state.state_hash());
    Ok(ExitCode::SUCCESS)
}

fn dlq(command: DlqCommand) -> Result<ExitCode, String> {
    use kafka::dlq_tool::{self, Selection};
    let mut out = std::io::stdout().lock();
    match command {
        DlqCommand::List(args) => {
            let selection = Selection {
                partition: args.partition,
                offsets: match &args.offsets {
                    Some(text) => dlq_tool::parse_offset_ranges(text)?,
                    None => Vec::new(),
                },
                reason_contains: args.reason,
            };
            dlq_tool::list(
                &args.kafka.config()?,
                &selection,
                args.show_content,
                &mut out,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Republish(args) => {
            let kafka = args.kafka.config()?;
            let selection = Selection {
                partition: Some(dlq_tool::republish_partition(&kafka, args.partition)?),
                offsets: dlq_tool::parse_offset_ranges(&args.offsets)?,
                reason_contains: None,
            };
            let all_sent = dlq_tool::republish(&kafka, &selection, &mut out)?;
            Ok(if all_sent {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Key and event id of an authorizer event line.
fn outbound(line: &str) -> Result<Outbound, String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let field = |name: &str| {
        v.get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("field `{name}` is missing or not a string"))
    };
    Ok(Outbound {
        key: field("account_id")?,
        event_id: field("event_id")?,
        payload: line.as_bytes().to_vec(),
    })
}

fn publish(args: PublishArgs) -> Result<ExitCode, String> {
    let kafka = args.kafka.config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async move {
        let metrics = Arc::new(LogMetrics::default());
        let publisher = Publisher::open(&kafka, PublisherConfig::new(&args.spool_dir), metrics)
            .map_err(|e| e.to_string())?;
        let budget = Duration::from_millis(args.budget_ms);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, String>>(64);
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                if tx.blocking_send(line.map_err(|e| e.to_string())).is_err() {
                    return;
                }
            }
        });
        let mut line_no = 0u64;
        while let Some(line) = rx.recv().await {
            line_no += 1;
            let line = line.map_err(|e| format!("stdin: {e}"))?;
            if line.trim().is_empty() {
                continue;
            }
            let event = outbound(&line).map_err(|e| format!("line {line_no}: {e}"))?;
            let started = Instant::now();
            let delivery = publisher
                .publish(&event, budget)
                .await
                .map_err(|e| format!("line {line_no}: {e}"))?;
            let elapsed_us = started.elapsed().as_micros();
            let mut out = std::io::stdout().lock();
            let _ = match delivery {
                kafka::Delivery::Acked { partition, offset } => writeln!(
                    out,
                    "acked event_id={} partition={partition} offset={offset} elapsed_us={elapsed_us}",
                    event.event_id
                ),
                kafka::Delivery::Spooled { seq } => writeln!(
                    out,
                    "spooled event_id={} seq={seq} elapsed_us={elapsed_us}",
                    event.event_id
                ),
            };
            let _ = out.flush();
        }
        let drained = args.drain_timeout_s == 0
            || publisher
                .wait_drained(Duration::from_secs(args.drain_timeout_s))
                .await;
        let depth = publisher.spool_depth();
        publisher.close().await;
        if !drained && depth > 0 {
            eprintln!(
                "authorizer: {depth} events remain in the spool in {}; the next start sends them",
                args.spool_dir.display()
            );
            return Ok(ExitCode::from(3));
        }
        println!("spool_depth={depth}");
        Ok(ExitCode::SUCCESS)
    })
}
