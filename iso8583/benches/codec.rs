//! Decode, encode and roundtrip (decode + re-encode) throughput over the message mix of the issue:
//! chip 0100 (16 EMV tags), contactless 0100, magstripe 0100 with PIN, e-commerce 0100 with DE 48,
//! an 0110, an 0400, its 0410 and an 0800, in both built-in dialects. One iteration handles the
//! whole mix; criterion reports messages per second (`Throughput::Elements`).
//!
//! `roundtrip` re-encodes in the dialect that decoded, which copies the canonical frame;
//! `convert_to_other_dialect` decodes and encodes in the other dialect through the field writer.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iso8583::{Dialect, Message};

#[path = "../tests/common/samples.rs"]
mod samples;

fn bench(c: &mut Criterion) {
    for dialect in [Dialect::ascii(), Dialect::mastercard()] {
        let builders = samples::mix();
        let frames: Vec<Bytes> = builders
            .iter()
            .map(|b| b.encode(&dialect).unwrap())
            .collect();
        let n = frames.len() as u64;
        let mut group = c.benchmark_group(dialect.name().to_string());
        group.throughput(Throughput::Elements(n));
        group.bench_function("decode", |b| {
            b.iter(|| {
                for f in &frames {
                    black_box(Message::decode(&dialect, black_box(f.clone())).unwrap());
                }
            })
        });
        group.bench_function("encode", |b| {
            b.iter(|| {
                for m in &builders {
                    black_box(m.encode(&dialect).unwrap());
                }
            })
        });
        group.bench_function("roundtrip", |b| {
            b.iter(|| {
                for f in &frames {
                    let m = Message::decode(&dialect, black_box(f.clone())).unwrap();
                    black_box(m.encode(&dialect).unwrap());
                }
            })
        });
        // The authorizer's path: encode into the connection's reused write buffer.
        let mut out = BytesMut::with_capacity(8192);
        group.bench_function("roundtrip_into_buffer", |b| {
            b.iter(|| {
                for f in &frames {
                    let m = Message::decode(&dialect, black_box(f.clone())).unwrap();
                    out.clear();
                    m.encode_into(&dialect, &mut out).unwrap();
                    black_box(&out);
                }
            })
        });
        // Decode in this dialect, encode in the other: the field-by-field writer (re-encoding in
        // the same dialect copies the canonical frame instead).
        let other = if dialect.name() == "ascii" {
            Dialect::mastercard()
        } else {
            Dialect::ascii()
        };
        group.bench_function("convert_to_other_dialect", |b| {
            b.iter(|| {
                for f in &frames {
                    let m = Message::decode(&dialect, black_box(f.clone())).unwrap();
                    black_box(m.encode(&other).unwrap());
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
