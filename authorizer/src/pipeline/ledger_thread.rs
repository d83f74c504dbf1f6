//! The ledger thread: the one writer of the [`State`].
//!
//! It takes [`Command`]s from a bounded queue. Each turn it blocks for one command, then drains
//! what else is queued (up to `ledger_batch_max`) and runs them in queue order. Consecutive
//! `Decide` commands are decided as one batch with [`for_each_prefetched`], each decision's event
//! applied with [`State::apply_decided`] before the next decision, so a repeat finds the first
//! answer and the next approval sees the hold just placed. The other commands: a card lookup for
//! the HSM (read only), a batch of the log's records (through the [`Applier`], which keeps the
//! offsets), a replacement of the whole state (rebuilt from the durable log after a divergence),
//! a read of the state (admin, tests), stop.
//!
//! Durability of decisions in flight: when a decision has an event, the thread hands the caller
//! a [`watch`] sender to report whether the event became durable, and keeps the receiver by hold
//! id while it is pending, so that a repeat decided meanwhile (answered from the first decision
//! already in the state) waits for the first event's fate before its answer goes out.
//!
//! Must never: do I/O or wait on anything but its queue; decide without applying the previous
//! decision's event; be bypassed (nothing else holds the state while it runs).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

use ledger::decide::{Decision, Facts, Prepared, decide_prepared, for_each_prefetched};
use ledger::{HoldId, PanHash, State, UnixSeconds};
use tokio::sync::{oneshot, watch};

use super::Flags;
use super::request::OwnedRequest;
use crate::kafka::{Applier, RecordBatch};

/// What became of a decision's event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    Pending,
    Durable,
    Failed,
}

/// How the answer to a decision learns that its event is durable.
pub enum Durability {
    /// No event, and no earlier event in flight for this hold.
    Nothing,
    /// A new event: the caller publishes it and reports here.
    Owner(watch::Sender<Settled>),
    /// A repeat of a decision whose event is still in flight: wait for it.
    Waiter(watch::Receiver<Settled>),
}

/// A decision, owned, as the ledger thread hands it back.
pub struct Decided {
    /// `None`: the event could not be applied (a capacity bound); nothing was decided.
    pub decision: Option<Decision<'static>>,
    pub durability: Durability,
}

/// What the ledger thread needs of a card for its chip check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardFacts {
    pub key_set: String,
    pub psn: u16,
}

pub struct DecideJob {
    pub request: OwnedRequest,
    pub facts: Facts,
    pub reply: oneshot::Sender<Decided>,
}

/// Read access to the state on its thread, with the applier of the log (its next offsets) when
/// the pipeline has one.
pub type Inspect = Box<dyn FnOnce(&State, Option<&Applier>) + Send>;

/// `Decide` is the large variant and the common one: kept inline (no allocation per request);
/// the queue's slots are its size (about 300 bytes, 1.2 MiB for 4,096 slots).
#[allow(clippy::large_enum_variant)]
pub enum Command {
    Lookup {
        pan_hash: PanHash,
        reply: oneshot::Sender<Option<CardFacts>>,
    },
    Decide(DecideJob),
    ApplyLog(RecordBatch),
    ReplaceState {
        state: Box<State>,
        applier: Option<Applier>,
        reply: oneshot::Sender<Box<State>>,
    },
    Inspect(Inspect),
    Stop,
}

/// Pending entries are swept once the map holds this many.
const IN_FLIGHT_SWEEP: usize = 4096;

pub struct LedgerThread {
    pub state: State,
    pub decide: ledger::decide::DecideConfig,
    pub clock: fn() -> UnixSeconds,
    pub applier: Option<Applier>,
    pub flags: Arc<Flags>,
    pub batch_max: usize,
}

impl LedgerThread {
    /// Runs until `Stop` or until every sender is gone; returns the state.
    pub fn run(mut self, rx: Receiver<Command>) -> State {
        let mut in_flight: HashMap<HoldId, watch::Receiver<Settled>> = HashMap::new();
        let mut commands = Vec::with_capacity(self.batch_max);
        let mut jobs = Vec::with_capacity(self.batch_max);
        'run: while let Ok(first) = rx.recv() {
            commands.push(first);
            while commands.len() < self.batch_max {
                match rx.try_recv() {
                    Ok(c) => commands.push(c),
                    Err(_) => break,
                }
            }
            self.flags
                .queue_depth
                .fetch_sub(commands.len(), Ordering::AcqRel);
            for command in commands.drain(..) {
                if let Command::Decide(job) = command {
                    jobs.push(job);
                    continue;
                }
                self.decide_batch(&mut jobs, &mut in_flight);
                match command {
                    Command::Decide(_) => unreachable!("handled above"),
                    Command::Lookup { pan_hash, reply } => {
                        let facts = self.state.card(&pan_hash).map(|card| CardFacts {
                            key_set: self.state.key_set_name(card).to_owned(),
                            psn: u16::from(card.psn().0),
                        });
                        let _ = reply.send(facts);
                    }
                    Command::ApplyLog(batch) => match &mut self.applier {
                        Some(applier) => {
                            applier.apply_batch(&mut self.state, &batch);
                            self.flags
                                .log_ready
                                .store(applier.progress().ready, Ordering::Release);
                        }
                        None => {
                            tracing::error!(
                                "a log batch reached a pipeline started without an applier; not applied"
                            );
                        }
                    },
                    Command::ReplaceState {
                        state,
                        applier,
                        reply,
                    } => {
                        let old = std::mem::replace(&mut self.state, *state);
                        if applier.is_some() {
                            self.applier = applier;
                        }
                        in_flight.clear();
                        let log_ready = self.applier.as_ref().is_none_or(|a| a.progress().ready);
                        self.flags.log_ready.store(log_ready, Ordering::Release);
                        self.flags.diverged.store(false, Ordering::Release);
                        let _ = reply.send(Box::new(old));
                    }
                    Command::Inspect(f) => f(&self.state, self.applier.as_ref()),
                    Command::Stop => {
                        break 'run;
                    }
                }
            }
            self.decide_batch(&mut jobs, &mut in_flight);
            if in_flight.len() >= IN_FLIGHT_SWEEP {
                in_flight.retain(|_, rx| *rx.borrow() == Settled::Pending);
            }
        }
        // Whatever was queued behind a stop is answered "not decided" by dropping its reply.
        self.state
    }

    /// Decides `jobs` in order (prefetching ahead), applying each event before the next.
    fn decide_batch(
        &mut self,
        jobs: &mut Vec<DecideJob>,
        in_flight: &mut HashMap<HoldId, watch::Receiver<Settled>>,
    ) {
        if jobs.is_empty() {
            return;
        }
        let now = (self.clock)();
        let mut items = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            items.push((job.request, job.facts));
            replies.push(job.reply);
        }
        let requests: Vec<_> = items.iter().map(|(r, _)| r.view()).collect();
        let mut replies = replies.into_iter();
        let mut facts = items.iter().map(|(_, f)| *f);
        let config = &self.decide;
        for_each_prefetched(
            &mut self.state,
            &requests,
            Prepared::new,
            |state, prepared| {
                let (Some(reply), Some(facts)) = (replies.next(), facts.next()) else {
                    unreachable!("step is called once per request, in order");
                };
                let decision = decide_prepared(state, prepared, &facts, config, now);
                let decided = settle(state, decision, in_flight);
                let _ = reply.send(decided);
            },
        );
        self.flags
            .decisions
            .fetch_add(requests.len() as u64, Ordering::AcqRel);
    }
}

/// Applies the decision's event and says how its answer learns the event's fate.
fn settle(
    state: &mut State,
    decision: Decision<'_>,
    in_flight: &mut HashMap<HoldId, watch::Receiver<Settled>>,
) -> Decided {
    if let Some(event) = &decision.event {
        if let Err(e) = state.apply_decided(event, decision.account) {
            tracing::error!(error = %e, "a decision's own event does not apply; answered unavailable");
            return Decided {
                decision: None,
                durability: Durability::Nothing,
            };
        }
        let (tx, rx) = watch::channel(Settled::Pending);
        if let Some(hold_id) = decision.hold_id {
            in_flight.insert(hold_id, rx);
        }
        return Decided {
            decision: Some(decision.into_owned()),
            durability: Durability::Owner(tx),
        };
    }
    let durability = match decision.hold_id.and_then(|h| in_flight.get(&h)) {
        Some(rx) if decision.repeat && *rx.borrow() != Settled::Durable => {
            Durability::Waiter(rx.clone())
        }
        _ => Durability::Nothing,
    };
    Decided {
        decision: Some(decision.into_owned()),
        durability,
    }
}
