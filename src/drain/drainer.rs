//! The [`Drainer`]: a run's settings, its HTTP agents, and its routes —
//! which subscription, as in effect for a job's SPEC (or its per-call
//! target), a job goes to, and whether this run sends it at all; its time
//! line ([`clock::Steady`]: waits on the monotonic clock) and its file
//! descriptor plan ([`super::fds::Plan`]). Running it is
//! [`super::coordinator`]'s; one job's path is [`super::job`]'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::clock;
use crate::config::{Config, Subscription};
use crate::deliver;
use crate::spool::{Meta, Target};

use super::attempt::{self, Route, Routed};
use super::fds::{Plan, Reserves};
use super::run::{Options, Stop};
use super::scheduler::Limits;

/// Delivers the jobs of a queue (see [`Options`]); `run` and `run_on` are
/// in `drain::coordinator`.
pub struct Drainer<'a> {
    pub(super) config: &'a Config,
    pub(super) options: Options,
    pub(super) stop: Stop,
    pub(super) agents: deliver::Agents,
    /// Every configured subscription's route, by scope (see [`attempt::Routes`]).
    routes: attempt::Routes,
    /// Routes of per-call targets (`emit --url`), made as their jobs turn up.
    per_call: Mutex<HashMap<Target, Arc<Routed>>>,
    /// Unset secrets and the like, each once: they hold jobs (exit 2).
    pub(super) problems: Vec<String>,
    /// The run's own time line: every wait is measured on it.
    pub(super) time: clock::Steady,
    /// What the run holds at most, sized from its descriptor limit.
    pub(super) plan: Plan,
    /// Where workers take the descriptors a job's outcome needs.
    pub(super) reserves: Reserves,
}

impl<'a> Drainer<'a> {
    pub fn new(config: &'a Config, options: Options, stop: Stop) -> Drainer<'a> {
        let (routes, problems) = attempt::routes(config);
        let plan = Plan::for_this_process(config.max_concurrency);
        Drainer {
            config,
            options,
            stop,
            agents: deliver::Agents::new(plan.workers),
            routes,
            per_call: Mutex::new(HashMap::new()),
            problems,
            time: clock::Steady::start(),
            plan,
            reserves: Reserves::new(),
        }
    }

    /// A job's next attempt on the run's time line: its due time as written,
    /// but never more than its own wait after `seen` (a clock that stepped).
    pub(super) fn due_of(&self, meta: &Meta, seen: u64) -> u64 {
        self.time
            .from_wall(meta.next_attempt_at_ms, seen, meta.own_wait())
    }

    /// Where a job's age against `max_age` starts on the run's time line:
    /// never after `seen` (an emitter's clock that was ahead).
    pub(super) fn age_from(&self, meta: &Meta, seen: u64) -> u64 {
        self.time.from_wall(meta.age_from(), seen, 0)
    }

    /// The route of a job: its per-call target's, or its subscription's as
    /// in effect for its SPEC. `None`: the subscription is not in the config.
    pub(super) fn routed(&self, meta: &Meta) -> Option<Arc<Routed>> {
        if let Some(target) = &meta.target {
            let mut cache = self.per_call.lock().unwrap_or_else(|e| e.into_inner());
            let routed = cache
                .entry(target.clone())
                .or_insert_with(|| Arc::new(self.per_call_route(target, &meta.subscription)));
            return Some(Arc::clone(routed));
        }
        let scope = self
            .config
            .scope_for(&meta.spec)
            .map_or("", |s| s.pattern.as_str());
        self.routes
            .get(scope)?
            .get(meta.subscription.as_str())
            .cloned()
    }

    /// A per-call target checked as emit checked it; one that no longer
    /// passes (a hand-edited job) is held, with the reason.
    fn per_call_route(&self, target: &Target, subscription: &str) -> Routed {
        let unusable = |why: String| Routed {
            route: Route::Hold,
            problem: Some(format!(
                "the per-call target of subscription `{subscription}` is not usable ({why}); its jobs stay pending: discard them with `spec-notify discard`"
            )),
            shown_url: String::new(),
        };
        match self.config.per_call(target) {
            Ok(sub) if sub.id == subscription => attempt::route(&sub),
            Ok(sub) => unusable(format!("its URL belongs to `{}`", sub.id)),
            Err(problems) => unusable(problems.join("; ")),
        }
    }

    /// Every subscription id a lane may serve: configured ones (global and
    /// SPEC-only) and the per-call targets seen so far.
    pub(super) fn lane_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        let configured = self.config.every_subscription().map(|(_, s)| s.id.clone());
        let per_call: Vec<String> = self
            .per_call
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|r| r.route.sub().map(|s| s.id.clone()))
            .collect();
        for id in configured.chain(per_call) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// The delivery order of a configured subscription (per-call targets
    /// have none).
    pub(super) fn ordering_of(&self, id: &str) -> crate::config::Ordering {
        self.config
            .every_subscription()
            .map(|(_, s)| s)
            .find(|s| s.id == id)
            .map_or(crate::config::Ordering::None, |s| s.ordering)
    }

    /// The request timeout of a lane's subscription (for a probe's claim).
    pub(super) fn timeout_of(&self, id: &str) -> u64 {
        let configured = self
            .config
            .every_subscription()
            .map(|(_, s)| s)
            .find(|s| s.id == id);
        let per_call = || {
            self.per_call
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .find_map(|r| {
                    r.route
                        .sub()
                        .filter(|s| s.id == id)
                        .map(|s| s.retry.per_request_timeout_ms)
                })
        };
        configured
            .map(|s| s.retry.per_request_timeout_ms)
            .or_else(per_call)
            .unwrap_or(5000)
    }

    /// Whether a normal drain would send this pending job now (for handing
    /// over jobs that arrived as this run let go of their SPEC).
    pub(super) fn sendable(&self, meta: &Meta) -> bool {
        let now = self.time.now();
        self.routed(meta)
            .is_none_or(|r| !matches!(r.route, Route::Hold))
            && self.due_of(meta, now) <= now
    }

    /// Whether this run delivers the job at all (replay picks ids).
    pub(super) fn wanted(&self, meta: &Meta) -> bool {
        self.options
            .only
            .as_ref()
            .is_none_or(|only| only.contains(&meta.delivery_id))
    }
}

/// A subscription's scheduling limits: `max_in_flight` defaults to one less
/// than `max_concurrency` (at least 1), so one endpoint that never answers
/// leaves a worker for everybody else.
pub fn limits_for(config: &Config, sub: Option<&Subscription>) -> Limits {
    let fair_share = config.max_concurrency.saturating_sub(1).max(1);
    match sub {
        Some(sub) => Limits {
            max_in_flight: sub.max_in_flight.unwrap_or(fair_share).max(1),
            fifo: sub.ordering.is_fifo(),
            min_interval_ms: sub.rate_limit.map(|r| r.interval_ms()),
            max_age_ms: sub.max_age_ms,
        },
        None => Limits {
            max_in_flight: fair_share,
            ..Limits::default()
        },
    }
}
