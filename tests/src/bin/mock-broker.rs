//! An embedded Kafka-protocol broker for the demo: librdkafka's mock cluster, hosted by this
//! small process so that the daemons (other processes) reach it over loopback TCP.
//!
//! Prints `BROKER=host:port` once listening, creates the topics given with `--topic
//! NAME:PARTITIONS`, and runs until SIGTERM/SIGINT or until the process `--watch-pid` is gone.
//! It keeps everything in memory and forgets it on exit. For the demo and for measuring the
//! daemon's own cost without a real broker's; the system tests use the real broker (tansu).
//! Must never: be presented as durable, or be used by a test that judges Kafka's behaviour.

#![forbid(unsafe_code)]

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

#[derive(Parser)]
#[command(about = "An in-memory Kafka-protocol broker (librdkafka's mock cluster) on loopback")]
struct Args {
    /// Brokers in the cluster.
    #[arg(long, default_value_t = 1)]
    brokers: i32,
    /// A topic to create, `NAME:PARTITIONS` (repeatable).
    #[arg(long = "topic", value_name = "NAME:PARTITIONS")]
    topics: Vec<String>,
    /// Exit when this process is gone.
    #[arg(long)]
    watch_pid: Option<u32>,
}

fn main() {
    let args = Args::parse();
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(args.brokers)
        .unwrap_or_else(|e| {
            eprintln!("mock-broker: cannot start the mock cluster: {e}");
            std::process::exit(1)
        });
    for t in &args.topics {
        let Some((name, partitions)) = t
            .rsplit_once(':')
            .and_then(|(n, p)| Some((n, p.parse::<i32>().ok()?)))
        else {
            eprintln!("mock-broker: --topic {t:?} is not NAME:PARTITIONS");
            std::process::exit(2)
        };
        if let Err(e) = cluster.create_topic(name, partitions, 1) {
            eprintln!("mock-broker: cannot create topic {name}: {e}");
            std::process::exit(1)
        }
    }
    println!("BROKER={}", cluster.bootstrap_servers());
    let _ = std::io::stdout().flush();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT");
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = tick.tick() => {
                    if let Some(pid) = args.watch_pid
                        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                    {
                        break;
                    }
                }
            }
        }
    });
    drop(cluster);
}
