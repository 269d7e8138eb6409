//! [`NatsStore`]: the [`Store`] of NATS JetStream, every host's jobs. Reads
//! come from the streams and the breaker bucket; `replay` puts dead jobs
//! back in the jobs stream and `discard` deletes them (see [`super::dead`]);
//! `pause`/`resume` change the shared breaker state that every worker
//! watches; `drain` is one worker of the fleet ([`super::queue::NatsQueue`]);
//! the alert state and alert jobs are [`super::alerts`]'s.
//! Nothing here delivers a replayed job: the workers do.

use std::collections::HashSet;

use anyhow::Result;

use super::dead::{self, Dead};
use super::health::NatsHealth;
use super::queue::NatsQueue;
use super::{Nats, view};
use crate::circuit::{Circuit, Transition};
use crate::config::Config;
use crate::drain::{Drainer, Event, Options, Stop, Summary};
use crate::evidence::{Record, Skipped};
use crate::exit::user_error;
use crate::health;
use crate::spool::{Meta, State};
use crate::store::{
    Discarded, Found, HeldLane, Listed, Pick, Replayed, Requeued, Say, Store, Unknown,
};

pub struct NatsStore<'a> {
    config: &'a Config,
    nats: Nats,
}

impl<'a> NatsStore<'a> {
    /// Connects to the relay's NATS, or says what to configure.
    pub fn connect(config: &'a Config, command: &str) -> Result<NatsStore<'a>> {
        let Some(relay) = &config.relay else {
            return Err(user_error(format!(
                "`{command} --source nats` needs a [spec_ops.webhooks.relay] table in `{}` (url = \"nats://host:4222\"); see docs/scale-out.md",
                config.path.display()
            )));
        };
        Ok(NatsStore {
            config,
            nats: Nats::connect(relay)?,
        })
    }

    /// The dead jobs of `spec` an operator named: one delivery id or a
    /// unique prefix of one (an error, changing nothing, when it is not
    /// dead or starts several jobs), or every one `keep` keeps.
    fn choose_dead(
        &self,
        spec: &str,
        pick: &Pick,
        keep: impl Fn(&Meta) -> bool,
        command: &str,
    ) -> Result<Vec<Dead>> {
        let nats = &self.nats;
        let (found, _) = dead::jobs(nats, spec)?;
        let Some(given) = pick.delivery_id.as_deref() else {
            return Ok(found.into_iter().filter(|d| keep(&d.job.meta)).collect());
        };
        let wanted = crate::store::check_delivery_id(given).map_err(user_error)?;
        let waiting: Vec<String> = view::jobs(nats, &[State::Pending], Some(spec))?
            .jobs
            .into_iter()
            .map(|(_, meta)| meta.delivery_id)
            .filter(|id| crate::store::id_starts_with(id, &wanted))
            .collect();
        let candidates = found
            .iter()
            .map(|d| (d.job.meta.delivery_id.clone(), "dead".to_string()))
            .chain(waiting.iter().map(|id| (id.clone(), "waiting".to_string())));
        let place = format!("streams {} and {}", nats.names.dead, nats.names.jobs);
        let id = crate::store::one_delivery_id(&wanted, candidates, &place)?;
        let chosen: Vec<Dead> = found
            .into_iter()
            .filter(|d| id.as_deref() == Some(d.job.meta.delivery_id.as_str()))
            .collect();
        if !chosen.is_empty() {
            return Ok(chosen);
        }
        let why = match id {
            Some(id) => format!(
                "{id} waits in stream {} (not dead); the workers deliver it",
                nats.names.jobs
            ),
            None => format!(
                "no dead job of {spec} in stream {} has that id (see `spec-notify list {spec} --source nats --state dead`)",
                nats.names.dead
            ),
        };
        Err(user_error(format!(
            "cannot {command} {given}: {why}; nothing was changed"
        )))
    }
}

impl Store for NatsStore<'_> {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn flag(&self) -> &'static str {
        " --source nats"
    }

    /// The attempt records of the last hour ([`super::health::RECENT`]).
    fn health(&self) -> Result<Box<dyn health::Source + '_>> {
        let since = crate::clock::now_ms().saturating_sub(super::health::RECENT);
        self.health_since(Some(since))
    }

    fn health_since(&self, since_ms: Option<u64>) -> Result<Box<dyn health::Source + '_>> {
        Ok(Box::new(NatsHealth::load(&self.nats, since_ms)?))
    }

    fn shown_from(&self) -> Option<String> {
        let names = &self.nats.names;
        Some(format!(
            "NATS JetStream (streams {}, {}, {}: every host)",
            names.jobs, names.dead, names.evidence
        ))
    }

    fn unknown_spec(&self, spec: &str, records_count: bool) -> Result<Option<Unknown>> {
        let mut known = view::specs_with_jobs(&self.nats)?;
        if records_count {
            known.extend(view::specs_with_records(&self.nats)?);
        }
        known.sort();
        known.dedup();
        if known.iter().any(|s| s == spec) {
            return Ok(None);
        }
        Ok(Some(Unknown {
            missing: "has no jobs in the streams yet".into(),
            listing: if known.is_empty() {
                format!("no SPEC has jobs in stream {} yet", self.nats.names.jobs)
            } else {
                format!("SPECs in the streams: {}", known.join(", "))
            },
        }))
    }

    fn jobs(&self, spec: Option<&str>, states: &[State]) -> Result<Found> {
        let found = view::jobs(&self.nats, states, spec)?;
        let mut out = Found::default();
        if found.unreadable > 0 {
            out.unreadable.push(crate::spool::Unreadable {
                path: format!(
                    "{} message(s) of streams {} and {}",
                    found.unreadable, self.nats.names.jobs, self.nats.names.dead
                )
                .into(),
                reason: "not jobs".into(),
            });
        }
        out.items = found
            .jobs
            .into_iter()
            .filter(|(_, m)| spec.is_none_or(|s| s == m.spec))
            .map(|(state, meta)| Listed::Job {
                state,
                name: meta.file_name(),
                meta: Box::new(meta),
            })
            .collect();
        Ok(out)
    }

    fn records(&self, spec: &str, visit: &mut dyn FnMut(Record)) -> Result<(Skipped, String)> {
        let skipped = view::each_record(&self.nats, Some(spec), None, visit)?;
        Ok((
            Skipped::unparseable(skipped),
            format!("stream {}", self.nats.names.evidence),
        ))
    }

    fn update_circuit(
        &self,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
    ) -> Result<(Option<Transition>, Circuit)> {
        super::circuits::update(&self.nats, subscription, change)
    }

    fn waiting(&self, subscription: &str) -> Result<usize> {
        let n = &self.nats.names;
        let mut waiting = 0;
        for filter in [
            n.lanes_of(subscription),
            n.retries_of(subscription),
            n.fifo_of(subscription),
        ] {
            waiting += self
                .nats
                .counts(&n.jobs, &filter)?
                .into_iter()
                .map(|(_, count)| count as usize)
                .sum::<usize>();
        }
        Ok(waiting)
    }

    fn log(&self, records: &[Record]) -> Result<()> {
        dead::log(&self.nats, records)
    }

    fn specs_with_jobs(&self) -> Result<Vec<String>> {
        view::specs_with_jobs(&self.nats)
    }

    fn replay(&self, spec: &str, pick: &Pick, _say: Say<'_>) -> Result<Replayed> {
        let chosen = self.choose_dead(spec, pick, |m| pick.keeps(m), "replay")?;
        let now = crate::clock::now_ms();
        let mut requeued = Vec::new();
        for Dead { seq, mut job } in chosen {
            crate::store::reset(&mut job.meta, now);
            let url = crate::store::job_url(self.config, &job.meta);
            let record = crate::store::requeued_record(url, &job.meta, State::Dead, now);
            let fifo = super::fifo::ordering(self.config, &job.meta).is_fifo();
            dead::replay(&self.nats, seq, &job, &record, fifo)?;
            requeued.push(Requeued {
                meta: job.meta,
                from: State::Dead,
            });
        }
        Ok(Replayed {
            requeued,
            quarantined: Vec::new(),
            place: format!("stream {}", self.nats.names.dead),
        })
    }

    fn deliver_now(
        &self,
        _spec: &str,
        _ids: HashSet<String>,
        _report: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Option<Summary>> {
        Ok(None) // the workers deliver them
    }

    fn discard(&self, spec: &str, pick: &Pick, _say: Say<'_>) -> Result<Discarded> {
        let chosen = self.choose_dead(
            spec,
            pick,
            |m| {
                pick.subscription
                    .as_deref()
                    .is_none_or(|s| s == m.subscription)
            },
            "discard",
        )?;
        let mut out = Discarded {
            place: format!("stream {}", self.nats.names.dead),
            ..Discarded::default()
        };
        for Dead { seq, job } in chosen {
            let url = crate::store::job_url(self.config, &job.meta);
            let record = crate::store::discard_record(url, &job.meta);
            if let Err(e) = dead::discard(&self.nats, seq, &job, &record) {
                out.error = Some(e);
                break;
            }
            out.removed.push(job.meta);
        }
        Ok(out)
    }

    fn drain(
        &self,
        options: Options,
        stop: Stop,
        report: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Summary> {
        let queue = NatsQueue::new(self.config, &self.nats, !options.watch)?;
        let summary = Drainer::new(self.config, options, stop).run_on(&queue, report);
        drop(queue); // jobs still held go back before the last metrics
        summary
    }

    fn hand_over(&self, _specs: &[String]) -> Vec<String> {
        Vec::new() // the workers watch the streams
    }

    fn place(&self, _spec: &str) -> String {
        format!("stream {}", self.nats.names.dead)
    }

    fn held_lanes(&self) -> Result<Vec<HeldLane>> {
        Ok(super::fifo::held(&self.nats)?
            .into_iter()
            .map(|(lane, delivery_id)| HeldLane {
                subscription: lane.subscription,
                spec: lane.spec,
                delivery_id,
            })
            .collect())
    }

    fn alert_source(&self) -> Result<Box<dyn health::Source + '_>> {
        Ok(Box::new(super::alerts::JobsView::load(&self.nats)?))
    }

    fn alert_state(&self) -> Result<crate::alerts::AlertState> {
        super::alerts::read(&self.nats)
    }

    fn update_alerts(
        &self,
        change: &mut dyn FnMut(&mut crate::alerts::AlertState),
    ) -> Result<crate::alerts::AlertState> {
        super::alerts::update(&self.nats, change)
    }

    fn spool_alert(&self, alert: &crate::alerts::AlertJob) -> Result<bool> {
        super::alerts::publish(&self.nats, alert).map(|()| true)
    }
}
