//! Load mode: the traffic generator's requests sent through the [`Device`] for a number of
//! seconds, either as fast as a window of requests in flight allows or at a fixed rate (at most
//! the window in flight), with every answer checked as the generator checks it (tag 91 by the
//! card, repeats against the first answer) and the latency from send to answer recorded in an
//! hdrhistogram.
//!
//! Every second it can print one line (`t=.. req=.. tps=.. p50=.. p99=.. codes[..]`, the
//! percentiles of that second); at the end a [`LoadReport`], which serialises to the JSON that
//! the demo and the system tests read.
//!
//! Must never: print a request's content (the figures only); wait for an answer longer than the
//! answer timeout (an answer not there by then is counted unanswered).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use iso8583::Message;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::device::{Device, SessionState};
use crate::netsim::{Kind, Population, Sent, Traffic};
use crate::now_unix_s;

/// Which requests the run sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mix {
    /// Magnetic stripe with PIN only.
    Magstripe,
    /// Chip with ARQC only.
    Chip,
    /// The generator's mix (chip, contactless, magstripe, e-commerce, repeats, advices,
    /// reversals, echoes and a share of bad requests).
    Realistic,
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub seed: u64,
    /// Requests in flight at most.
    pub in_flight: usize,
    /// Requests per second; `None`: as fast as the window allows.
    pub rate: Option<f64>,
    pub duration: Duration,
    pub mix: Mix,
    /// An answer not there after this long is counted unanswered.
    pub answer_timeout: Duration,
    /// Print one line of figures each second on stdout.
    pub live: bool,
}

/// Latency figures in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LatencyUs {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl LatencyUs {
    fn of(h: &Histogram<u64>) -> LatencyUs {
        LatencyUs {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// The figures of one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadReport {
    pub dialect: String,
    pub mix: String,
    pub in_flight: usize,
    pub rate: Option<f64>,
    pub seconds: f64,
    /// Requests sent.
    pub requests: u64,
    pub answered: u64,
    /// No answer within the answer timeout (or the connection went away first).
    pub unanswered: u64,
    /// Not sent: the connection went away as it was being sent.
    pub not_sent: u64,
    /// Time spent waiting for the authorizer to sign on again (no request sent meanwhile).
    pub paused_ms: u64,
    /// Answered requests per second over the run.
    pub tps: f64,
    /// Answers by DE 39.
    pub codes: BTreeMap<String, u64>,
    /// Requests by kind.
    pub kinds: BTreeMap<String, u64>,
    pub latency_us: LatencyUs,
    /// Tag 91 checked by the card: accepted, refused.
    pub arpc_ok: u64,
    pub arpc_refused: u64,
    /// Repeats answered with the first answer's DE 39 and DE 38, and not.
    pub repeats_same: u64,
    pub repeats_different: u64,
    /// Connections the device accepted by the end.
    pub connections: u64,
}

impl LoadReport {
    /// The text summary (several lines).
    pub fn text(&self) -> String {
        let codes: Vec<String> = self.codes.iter().map(|(c, n)| format!("{c}:{n}")).collect();
        let l = &self.latency_us;
        format!(
            "load: {:.1} s, {} requests, {} answered, {} unanswered, {} not sent, paused {} ms\n\
             load: tps={:.0} codes[{}]\n\
             load: latency p50={}us p99={}us p99.9={}us max={}us mean={:.0}us\n\
             load: arpc ok={} refused={}; repeats same={} different={}; connections={}",
            self.seconds,
            self.requests,
            self.answered,
            self.unanswered,
            self.not_sent,
            self.paused_ms,
            self.tps,
            codes.join(" "),
            l.p50,
            l.p99,
            l.p999,
            l.max,
            l.mean,
            self.arpc_ok,
            self.arpc_refused,
            self.repeats_same,
            self.repeats_different,
            self.connections,
        )
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

struct Done {
    sent: Sent,
    answer: Option<(Message, Duration)>,
}

/// Runs the load; returns the report and the latency histogram (for the plot).
pub async fn run(
    device: &Arc<Device>,
    pop: &mut Population,
    options: &LoadOptions,
) -> (LoadReport, Histogram<u64>) {
    let dialect = device.dialect().clone();
    let mut traffic = Traffic::new(options.seed);
    let mut report = LoadReport {
        dialect: dialect.name().to_owned(),
        mix: format!("{:?}", options.mix).to_lowercase(),
        in_flight: options.in_flight,
        rate: options.rate,
        ..LoadReport::default()
    };
    let mut all = histogram();
    let mut second = histogram();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let started = Instant::now();
    let end = started + options.duration;
    let interval = options
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / r.max(0.001)));
    let mut next_send = started;
    let mut next_print = started + Duration::from_secs(1);
    let mut last_answered = 0u64;
    let mut in_flight = 0usize;
    let window = options.in_flight.max(1);

    let mut finish = |d: Done,
                      traffic: &mut Traffic,
                      pop: &Population,
                      report: &mut LoadReport,
                      second: &mut Histogram<u64>| {
        *report
            .kinds
            .entry(d.sent.kind.name().to_owned())
            .or_default() += 1;
        let Some((answer, latency)) = d.answer else {
            report.unanswered += 1;
            return;
        };
        report.answered += 1;
        let us = latency.as_micros().max(1) as u64;
        all.saturating_record(us);
        second.saturating_record(us);
        let checked = traffic.observe(pop, d.sent, &answer);
        *report
            .codes
            .entry(String::from_utf8_lossy(&checked.response_code).into_owned())
            .or_default() += 1;
        match checked.arpc_ok {
            Some(true) => report.arpc_ok += 1,
            Some(false) => report.arpc_refused += 1,
            None => {}
        }
        match checked.repeat_consistent {
            Some(true) => report.repeats_same += 1,
            Some(false) => report.repeats_different += 1,
            None => {}
        }
    };

    loop {
        while let Ok(d) = done_rx.try_recv() {
            in_flight -= 1;
            finish(d, &mut traffic, pop, &mut report, &mut second);
        }
        let now = Instant::now();
        if now >= next_print {
            if options.live {
                let codes: Vec<String> = report
                    .codes
                    .iter()
                    .map(|(c, n)| format!("{c}:{n}"))
                    .collect();
                let line = format!(
                    "t={} req={} tps={} p50={}us p99={}us in_flight={} unanswered={} codes[{}]",
                    started.elapsed().as_secs(),
                    report.requests,
                    report.answered - last_answered,
                    second.value_at_quantile(0.5),
                    second.value_at_quantile(0.99),
                    in_flight,
                    report.unanswered,
                    codes.join(" ")
                );
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            last_answered = report.answered;
            second.reset();
            next_print += Duration::from_secs(1);
        }
        if now >= end {
            break;
        }
        let may_send = in_flight < window && interval.is_none_or(|_| now >= next_send);
        if may_send && device.state() != SessionState::SignedOn {
            // Reconnecting: the daemon would answer 91 before its sign-on; wait for it.
            report.paused_ms += 10;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        if may_send {
            let kind = match options.mix {
                Mix::Magstripe => Some(Kind::Magstripe),
                Mix::Chip => Some(Kind::Chip),
                Mix::Realistic => None,
            };
            let unix = now_unix_s();
            let sent = match kind {
                Some(k) => traffic.next_of(k, pop, &dialect, unix),
                None => traffic.next(pop, &dialect, unix),
            };
            if let Some(i) = interval {
                next_send += i;
            }
            let message = match Message::decode(&dialect, sent.frame.clone()) {
                Ok(m) => m,
                Err(e) => panic!("the generator built an undecodable frame: {e}"),
            };
            report.requests += 1;
            match device.send(&message) {
                Ok(rx) => {
                    in_flight += 1;
                    let tx = done_tx.clone();
                    let timeout = options.answer_timeout;
                    tokio::spawn(async move {
                        let answer = tokio::time::timeout(timeout, rx)
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .map(|a| (a.message, a.latency));
                        let _ = tx.send(Done { sent, answer });
                    });
                }
                Err(_) => {
                    report.not_sent += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            continue;
        }
        let mut wake = next_print.min(end);
        if in_flight < window
            && let Some(_) = interval
        {
            wake = wake.min(next_send);
        }
        tokio::select! {
            d = done_rx.recv() => if let Some(d) = d {
                in_flight -= 1;
                finish(d, &mut traffic, pop, &mut report, &mut second);
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    let sending = started.elapsed();
    while in_flight > 0 {
        let Some(d) = done_rx.recv().await else { break };
        in_flight -= 1;
        finish(d, &mut traffic, pop, &mut report, &mut second);
    }
    report.seconds = sending.as_secs_f64();
    report.tps = report.answered as f64 / report.seconds.max(1e-9);
    report.latency_us = LatencyUs::of(&all);
    report.connections = device.connections();
    (report, all)
}
