//! Decode, encode and roundtrip (decode + re-encode) throughput over the message mix of the issue:
//! chip 0100 (16 EMV tags), contactless 0100, magstripe 0100 with PIN, e-commerce 0100 with DE 48,
//! an 0110, an 0400, its 0410 and an 0800, in both built-in dialects. One iteration handles the
//! whole mix; criterion reports messages per second (`Throughput::Elements`).
//!
//! `roundtrip` re-encodes in the dialect that decoded, which copies the canonical frame;
//! `roundtrip_field_by_field` decodes, copies every field into a builder and encodes it again
//! through the field writer (validation included): the roundtrip with no shortcut;
//! `convert_to_other_dialect` decodes and encodes in the other dialect through the field writer;
//! `decode_and_answer` is the authorizer's own work per request: decode a request (the 0100s,
//! the 0400 and the 0800 of the mix), build its answer from the echo set plus DE 38/39, encode.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iso8583::{Dialect, Message, Mti, response_to};

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
        group.bench_function("roundtrip_field_by_field", |b| {
            b.iter(|| {
                for f in &frames {
                    let m = Message::decode(&dialect, black_box(f.clone())).unwrap();
                    black_box(m.to_builder().encode(&dialect).unwrap());
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
        let requests: Vec<Bytes> = frames
            .iter()
            .filter(|f| {
                let m = Message::decode(&dialect, (*f).clone()).unwrap();
                m.mti().as_u16().is_multiple_of(100)
            })
            .cloned()
            .collect();
        group.throughput(Throughput::Elements(requests.len() as u64));
        const ECHO_1XX: &[usize] = &[2, 3, 4, 5, 6, 7, 11, 32, 33, 37, 41, 42, 49, 50, 51, 63];
        const ECHO_4XX: &[usize] = &[2, 3, 4, 7, 11, 32, 33, 37, 41, 49, 90];
        const ECHO_8XX: &[usize] = &[7, 11, 33, 70];
        group.bench_function("decode_and_answer", |b| {
            b.iter(|| {
                for f in &requests {
                    let m = Message::decode(&dialect, black_box(f.clone())).unwrap();
                    let mti = m.mti().as_u16();
                    let echo = match mti / 100 {
                        1 => ECHO_1XX,
                        4 => ECHO_4XX,
                        _ => ECHO_8XX,
                    };
                    let mut r = response_to(&m, Mti::from_u16(mti + 10).unwrap(), echo);
                    r.set(39, "00");
                    if mti == 100 {
                        r.set(38, "A1B2C3");
                    }
                    black_box(r.encode(&dialect).unwrap());
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
