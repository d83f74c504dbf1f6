//! A plain loop over the benchmark mix, for `perf stat` / `perf record` on a shared machine where
//! wall-clock benchmarks are noisy: `perf stat -e task-clock,instructions` gives CPU time and
//! instructions per message independent of other load.
//!
//! cargo run --release -p iso8583 --example throughput -- roundtrip ascii 2000000
//! (modes: decode, encode, roundtrip, convert = decode then encode in the other dialect)

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use iso8583::{Dialect, Message};

#[path = "../tests/common/samples.rs"]
mod samples;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("roundtrip");
    let dialect =
        Dialect::builtin(args.get(2).map(String::as_str).unwrap_or("ascii")).expect("dialect");
    let messages: usize = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let other = Dialect::builtin(if dialect.name() == "ascii" {
        "mastercard"
    } else {
        "ascii"
    })
    .expect("dialect");
    let builders = samples::mix();
    let frames: Vec<Bytes> = builders
        .iter()
        .map(|b| b.encode(&dialect).unwrap())
        .collect();
    let rounds = messages / frames.len();
    let start = Instant::now();
    for _ in 0..rounds {
        match mode {
            "decode" => {
                for f in &frames {
                    black_box(Message::decode(&dialect, black_box(f.clone())).unwrap());
                }
            }
            "convert" => {
                // Decode, then encode in the other built-in dialect (the field-by-field writer).
                for f in &frames {
                    let m = Message::decode(&dialect, black_box(f.clone())).unwrap();
                    black_box(m.encode(&other).unwrap());
                }
            }
            "encode" => {
                for b in &builders {
                    black_box(b.encode(&dialect).unwrap());
                }
            }
            _ => {
                for f in &frames {
                    let m = Message::decode(&dialect, black_box(f.clone())).unwrap();
                    black_box(m.encode(&dialect).unwrap());
                }
            }
        }
    }
    let n = rounds * frames.len();
    let s = start.elapsed().as_secs_f64();
    println!(
        "{mode} {}: {n} messages in {s:.3} s wall = {:.0} msg/s (wall clock)",
        dialect.name(),
        n as f64 / s
    );
}
