//! Load mode: the traffic generator's requests sent through the [`Device`] for a number of
//! seconds, either as fast as a window of requests in flight allows or at a fixed rate (at most
//! the window in flight), with every answer checked as the generator checks it (tag 91 by the
//! card, repeats against the first answer) and the latency from send to answer recorded in an
//! hdrhistogram.
//!
//! Requests are spread round-robin over every signed-on connection of the device (several
//! daemons, or several links of one), a repeat or a reversal going to the connection its
//! original was answered on while that one is open, and the figures are also kept per connection. Optionally
//! the run drops every connection once, abruptly, after a number of seconds (a link failure) and
//! counts what was sent and answered after the daemon reconnected; and it writes one JSON line
//! per answer (an [`AnswerRecord`]) for a test to compute what each account must hold.
//!
//! Every second it can print one line (`t=.. req=.. tps=.. p50=.. p99=.. conns=.. codes[..]
//! per_conn[..]`, the percentiles of that second); at the end a [`LoadReport`], which serialises
//! to the JSON that the demo and the system tests read.
//!
//! Must never: print or record a request's PAN, track data or PIN block (the answer records hold
//! the account id and the message's identifiers only); wait for an answer longer than the answer
//! timeout (an answer not there by then is counted unanswered).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use iso8583::Message;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::device::Device;
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

/// How a run goes (see [`LoadOptions::new`] for the defaults).
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
    /// Drop every connection once, abruptly, this long after the start.
    pub drop_after: Option<Duration>,
    /// Write one [`AnswerRecord`] per answer here, one JSON object a line.
    pub approvals: Option<Box<dyn Write + Send>>,
    /// Set (e.g. on SIGTERM): stop sending now, wait for what is in flight, report.
    pub stop: Arc<AtomicBool>,
}

impl LoadOptions {
    /// The defaults of the `netsim load` command line for `seed` and `duration`.
    pub fn new(seed: u64, duration: Duration) -> LoadOptions {
        LoadOptions {
            seed,
            in_flight: 64,
            rate: None,
            duration,
            mix: Mix::Realistic,
            answer_timeout: Duration::from_secs(10),
            live: false,
            drop_after: None,
            approvals: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// One answer the device received, as written to the approvals file: enough to compute what an
/// account holds (approved 0100/0120 hold their amount; a 0400 releases its original; a partial
/// one keeps `replacement_amount_minor` held).
#[derive(Clone, Debug, Serialize)]
pub struct AnswerRecord {
    /// The connection it was sent and answered on.
    pub connection: u64,
    /// The generator's kind (`magstripe+PIN`, `reversal`, ...).
    pub kind: &'static str,
    /// The request's MTI (`0100`, `0120`, `0400`, `0800`, ...).
    pub mti: String,
    /// DE 39 of the answer.
    pub response_code: String,
    /// DE 38 of the answer, when present.
    pub approval_code: Option<String>,
    /// The account of the card in DE 2; `None` for a card the population does not have.
    pub account_id: Option<String>,
    /// DE 4.
    pub amount_minor: Option<u64>,
    /// DE 95's first amount (what stays held after a partial reversal).
    pub replacement_amount_minor: Option<u64>,
    /// DE 49.
    pub currency: Option<String>,
    /// DE 11, DE 7, DE 37.
    pub stan: Option<String>,
    pub de7: Option<String>,
    pub rrn: Option<String>,
    /// For a reversal: the original's identity from DE 90.
    pub original: Option<OriginalId>,
}

/// The original of a reversal, as DE 90 names it.
#[derive(Clone, Debug, Serialize)]
pub struct OriginalId {
    pub mti: String,
    pub stan: String,
    pub de7: String,
}

impl AnswerRecord {
    fn of(
        connection: u64,
        kind: &'static str,
        request: &Message,
        answer: &Message,
        accounts: &HashMap<String, String>,
    ) -> AnswerRecord {
        let text = |m: &Message, n: usize| m.text(n).map(str::to_owned);
        let number = |m: &Message, n: usize| m.text(n).and_then(|t| t.trim().parse::<u64>().ok());
        let original = request
            .text(90)
            .filter(|t| t.len() >= 20)
            .map(|t| OriginalId {
                mti: t[0..4].to_owned(),
                stan: t[4..10].to_owned(),
                de7: t[10..20].to_owned(),
            });
        AnswerRecord {
            connection,
            kind,
            mti: request.mti().as_str().to_owned(),
            response_code: text(answer, 39).unwrap_or_default(),
            approval_code: text(answer, 38),
            account_id: request.text(2).and_then(|pan| accounts.get(pan).cloned()),
            amount_minor: number(request, 4),
            replacement_amount_minor: request
                .text(95)
                .and_then(|t| t.get(0..12))
                .and_then(|t| t.parse().ok()),
            currency: text(request, 49),
            stan: text(request, 11),
            de7: text(request, 7),
            rrn: text(request, 37),
            original,
        }
    }
}

/// The figures of one connection.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConnectionFigures {
    pub connection: u64,
    pub requests: u64,
    pub answered: u64,
    pub unanswered: u64,
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
    /// Requests sent, answered and unanswered on each connection, by connection.
    pub per_connection: Vec<ConnectionFigures>,
    /// Connections the device dropped with `drop_after` (0: no drop).
    pub dropped_connections: u64,
    /// Requests in flight on the dropped connections (unanswered by design).
    pub lost_in_drop: u64,
    /// Requests sent on connections accepted after the drop, and of those answered.
    pub after_reconnect_sent: u64,
    pub after_reconnect_answered: u64,
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
             load: arpc ok={} refused={}; repeats same={} different={}; connections={}\n\
             load: per connection [{}]; dropped {} connections, {} in flight lost; \
             after reconnect sent={} answered={}",
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
            per_connection(&self.per_connection),
            self.dropped_connections,
            self.lost_in_drop,
            self.after_reconnect_sent,
            self.after_reconnect_answered,
        )
    }
}

/// `1:req/ans 2:req/ans` (requests/answers per connection).
fn per_connection(figures: &[ConnectionFigures]) -> String {
    figures
        .iter()
        .map(|f| format!("{}:{}/{}", f.connection, f.requests, f.answered))
        .collect::<Vec<_>>()
        .join(" ")
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

struct Done {
    sent: Sent,
    request: Message,
    connection: u64,
    answer: Option<(Message, Duration)>,
}

/// Runs the load; returns the report and the latency histogram (for the plot).
pub async fn run(
    device: &Arc<Device>,
    pop: &mut Population,
    options: &mut LoadOptions,
) -> (LoadReport, Histogram<u64>) {
    let accounts: HashMap<String, String> = pop
        .cards
        .iter()
        .map(|c| (c.pan.clone(), pop.accounts[c.account].id.clone()))
        .collect();
    let mut approvals = options.approvals.take();
    let mut figures: BTreeMap<u64, ConnectionFigures> = BTreeMap::new();
    // Connections with an id up to this one were dropped (after the drop).
    let mut dropped_up_to: Option<u64> = None;
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
                      second: &mut Histogram<u64>,
                      figures: &mut BTreeMap<u64, ConnectionFigures>,
                      dropped_up_to: Option<u64>,
                      approvals: &mut Option<Box<dyn Write + Send>>| {
        *report
            .kinds
            .entry(d.sent.kind.name().to_owned())
            .or_default() += 1;
        let f = figures.entry(d.connection).or_insert(ConnectionFigures {
            connection: d.connection,
            ..ConnectionFigures::default()
        });
        let after_reconnect = dropped_up_to.is_some_and(|up_to| d.connection > up_to);
        let Some((answer, latency)) = d.answer else {
            report.unanswered += 1;
            f.unanswered += 1;
            if dropped_up_to.is_some_and(|up_to| d.connection <= up_to) {
                report.lost_in_drop += 1;
            }
            return;
        };
        report.answered += 1;
        f.answered += 1;
        if after_reconnect {
            report.after_reconnect_answered += 1;
        }
        if let Some(out) = approvals.as_mut() {
            let record = AnswerRecord::of(
                d.connection,
                d.sent.kind.name(),
                &d.request,
                &answer,
                &accounts,
            );
            let line = serde_json::to_string(&record).expect("a record serialises");
            let _ = writeln!(out, "{line}");
        }
        let us = latency.as_micros().max(1) as u64;
        all.saturating_record(us);
        second.saturating_record(us);
        let checked = traffic.observe_on(pop, d.sent, &answer, Some(d.connection));
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
            finish(
                d,
                &mut traffic,
                pop,
                &mut report,
                &mut second,
                &mut figures,
                dropped_up_to,
                &mut approvals,
            );
        }
        let now = Instant::now();
        if now >= next_print {
            if options.live {
                let codes: Vec<String> = report
                    .codes
                    .iter()
                    .map(|(c, n)| format!("{c}:{n}"))
                    .collect();
                let per: Vec<ConnectionFigures> = figures.values().cloned().collect();
                let line = format!(
                    "t={} req={} tps={} p50={}us p99={}us in_flight={} unanswered={} conns={} \
                     codes[{}] per_conn[{}]",
                    started.elapsed().as_secs(),
                    report.requests,
                    report.answered - last_answered,
                    second.value_at_quantile(0.5),
                    second.value_at_quantile(0.99),
                    in_flight,
                    report.unanswered,
                    device.signed_on(),
                    codes.join(" "),
                    per_connection(&per),
                );
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            if let Some(out) = approvals.as_mut() {
                let _ = out.flush();
            }
            last_answered = report.answered;
            second.reset();
            next_print += Duration::from_secs(1);
        }
        if now >= end || options.stop.load(Ordering::Relaxed) {
            break;
        }
        if dropped_up_to.is_none()
            && let Some(after) = options.drop_after
            && now >= started + after
        {
            let n = device.drop_connections();
            dropped_up_to = Some(device.connections());
            report.dropped_connections = n as u64;
            if options.live {
                println!(
                    "netsim: dropped {n} connections at t={:.1}s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        let may_send = in_flight < window && interval.is_none_or(|_| now >= next_send);
        if may_send && device.signed_on() == 0 {
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
            let sending = match sent.via {
                Some(id) => device.send_preferring(id, &message),
                None => device.send_any(&message),
            };
            match sending {
                Ok((connection, rx)) => {
                    in_flight += 1;
                    figures
                        .entry(connection)
                        .or_insert(ConnectionFigures {
                            connection,
                            ..ConnectionFigures::default()
                        })
                        .requests += 1;
                    if dropped_up_to.is_some_and(|up_to| connection > up_to) {
                        report.after_reconnect_sent += 1;
                    }
                    let tx = done_tx.clone();
                    let timeout = options.answer_timeout;
                    tokio::spawn(async move {
                        let answer = tokio::time::timeout(timeout, rx)
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .map(|a| (a.message, a.latency));
                        let _ = tx.send(Done {
                            sent,
                            request: message,
                            connection,
                            answer,
                        });
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
                finish(
                d,
                &mut traffic,
                pop,
                &mut report,
                &mut second,
                &mut figures,
                dropped_up_to,
                &mut approvals,
            );
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    let sending = started.elapsed();
    while in_flight > 0 {
        let Some(d) = done_rx.recv().await else { break };
        in_flight -= 1;
        finish(
            d,
            &mut traffic,
            pop,
            &mut report,
            &mut second,
            &mut figures,
            dropped_up_to,
            &mut approvals,
        );
    }
    report.seconds = sending.as_secs_f64();
    report.tps = report.answered as f64 / report.seconds.max(1e-9);
    report.latency_us = LatencyUs::of(&all);
    report.connections = device.connections();
    report.per_connection = figures.into_values().collect();
    if let Some(mut out) = approvals {
        let _ = out.flush();
    }
    (report, all)
}
