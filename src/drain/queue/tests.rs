//! The spool queue against real folders: what it lists and when, what it
//! holds (SPECs served, jobs read) and what it lets go of.

use std::time::Duration;

use super::spool::lock;
use super::*;
use crate::clock::Steady;
use crate::config::Config;
use crate::drain::fds::Plan;
use crate::spool::{Job, Meta, SpecSpool, Spool, State};

/// The default config with its spool and evidence under `dir`.
fn config_in(dir: &std::path::Path) -> Config {
    let text = format!(
        "[spec_ops.webhooks]\nspool_dir = \"{0}/spool\"\nevidence_dir = \"{0}/evidence\"\n",
        dir.display()
    );
    crate::config::parse(&text, &dir.join("config.toml")).unwrap()
}

fn job(spool: &SpecSpool, seq: u64) -> Job {
    Job {
        meta: Meta::new(&spool.spec, "sub", "a.b.c", "k", seq, 1000),
        body: br#"{"x":1}"#.to_vec(),
    }
}

fn plan(served: usize) -> Plan {
    Plan {
        limit: 1024,
        workers: 1,
        served,
        appenders: 1,
    }
}

/// Claims and delivers a job the queue handed over.
fn deliver(queue: &SpoolQueue<'_>, key: &JobKey) {
    let Claimed::Job(mut job) = queue.claim(key).unwrap() else {
        panic!("claimed")
    };
    job.meta.state = State::Delivered;
    queue.settle(key, &job).unwrap();
}

#[test]
fn a_served_pending_folder_is_listed_on_news_not_at_every_look() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let spool = Spool::new(&config.spool_dir).spec("S");
    spool.enqueue(&[job(&spool, 1)]).unwrap();
    let mut queue = SpoolQueue::new(&config, None);
    queue.list_every = Duration::from_secs(3600);
    assert!(queue.watches(), "inotify is available here");
    assert_eq!(queue.refresh().unwrap().added.len(), 1);
    // Written in place (no rename, so no news): not listed yet.
    let quiet = job(&spool, 2);
    std::fs::write(
        spool.state_dir(State::Pending).join(quiet.meta.file_name()),
        quiet.encode(),
    )
    .unwrap();
    assert!(queue.refresh().unwrap().added.is_empty());
    // emit's rename is news, naming the job: read without a listing.
    let loud = job(&spool, 3);
    spool.enqueue(std::slice::from_ref(&loud)).unwrap();
    assert!(queue.wait_for_news(Duration::from_secs(10)));
    let added = queue.refresh().unwrap().added;
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].0.name, loud.meta.file_name());
    // The periodic listing finds the quiet one.
    queue.list_every = Duration::ZERO;
    let added = queue.refresh().unwrap().added;
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].0.name, quiet.meta.file_name());
}

#[test]
fn stop_waiting_ends_a_wait_for_news_at_once() {
    // A one-shot drain joins its watcher thread as it exits: the watcher
    // must not sit out its tick.
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let queue = SpoolQueue::new(&config, None);
    queue.stop_waiting();
    let started = std::time::Instant::now();
    assert!(!queue.wait_for_news(Duration::from_secs(20)));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the wait sat out its timeout"
    );
}

#[test]
fn a_job_that_arrives_as_a_spec_is_let_go_is_served_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let spool = Spool::new(&config.spool_dir).spec("S");
    spool.enqueue(&[job(&spool, 1)]).unwrap();
    let queue = SpoolQueue::new(&config, None);
    let seen = queue.refresh().unwrap();
    assert_eq!(seen.added.len(), 1);
    deliver(&queue, &seen.added[0].0);
    // An emit after the last look: it saw the SPEC served, started no drain.
    spool.enqueue(&[job(&spool, 2)]).unwrap();
    let arrived = queue.release("S").unwrap();
    assert_eq!(arrived.len(), 1, "the release reports the arrival");
    let again = queue.refresh().unwrap();
    assert_eq!(again.added.len(), 1, "and the SPEC is served again for it");
    assert_eq!(queue.served(), ["S"]);

    // Let go with nothing new: not taken again until pending/ changes.
    deliver(&queue, &again.added[0].0);
    assert!(queue.release("S").unwrap().is_empty());
    assert!(queue.refresh().unwrap().added.is_empty());
    assert!(queue.served().is_empty());
    // A SPEC with nothing pending holds no lock.
    assert!(spool.try_serve().unwrap().is_some(), "drain.alive is free");
}

#[test]
fn no_more_specs_are_served_at_once_than_the_plan_allows() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let root = Spool::new(&config.spool_dir);
    for n in 0..10 {
        let spool = root.spec(&format!("S{n}"));
        spool.enqueue(&[job(&spool, 1)]).unwrap();
    }
    let queue = SpoolQueue::for_run(&config, None, Steady::start(), plan(3));
    let mut delivered = 0;
    for _ in 0..20 {
        let added = queue.refresh().unwrap().added;
        assert!(queue.served().len() <= 3, "{:?}", queue.served());
        for (key, _) in &added {
            deliver(&queue, key);
            delivered += 1;
        }
        for spec in queue.served() {
            queue.idle(&spec).unwrap();
        }
        if delivered == 10 {
            break;
        }
    }
    assert_eq!(delivered, 10, "every SPEC had its turn");
    assert_eq!(queue.starved(), 0);
    assert!(queue.served().is_empty());
}

#[test]
fn a_look_reads_no_more_jobs_than_the_room_and_shares_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let root = Spool::new(&config.spool_dir);
    for spec in ["A", "B"] {
        let spool = root.spec(spec);
        let jobs: Vec<Job> = (1..=5).map(|n| job(&spool, n)).collect();
        spool.enqueue(&jobs).unwrap();
    }
    let queue = SpoolQueue::new(&config, None);
    let first = queue.refresh_up_to(4).unwrap().added;
    assert_eq!(first.len(), 4);
    let from_a = first.iter().filter(|(k, _)| k.spec == "A").count();
    assert_eq!(from_a, 2, "two each: {first:?}");
    let sequences: Vec<u64> = first.iter().map(|(_, m)| m.sequence).collect();
    assert!(
        sequences.iter().all(|&s| s <= 2),
        "lowest first: {sequences:?}"
    );
    assert!(queue.more_to_come(), "names left unread");
    assert!(queue.idle("A").unwrap().is_empty(), "kept: it is behind");
    assert_eq!(queue.served().len(), 2);
    let rest = queue.refresh_up_to(100).unwrap().added;
    assert_eq!(rest.len(), 6);
    assert!(!queue.more_to_come());
}

#[test]
fn a_put_off_job_is_not_read_again_until_its_time_or_a_gate_change() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let spool = Spool::new(&config.spool_dir).spec("S");
    let jobs: Vec<Job> = (1..=3).map(|n| job(&spool, n)).collect();
    spool.enqueue(&jobs).unwrap();
    let mut queue = SpoolQueue::new(&config, None);
    queue.list_every = Duration::ZERO;
    let added = queue.refresh().unwrap().added;
    assert_eq!(added.len(), 3);
    assert!(queue.put_off(&added[1].0, u64::MAX));
    // Listed again and again: the put-off job stays on disk, unread.
    assert!(queue.refresh().unwrap().added.is_empty());
    spool.enqueue(&[job(&spool, 4)]).unwrap();
    let added4 = queue.refresh().unwrap().added;
    assert_eq!(added4.len(), 1, "a new job is read: {added4:?}");
    assert_eq!(added4[0].1.sequence, 4);
    // A gate that changes (a circuit opens) sends the folder round again.
    queue.circuit("sub").unwrap();
    lock(&queue.folders).gate_changed();
    let again = queue.refresh().unwrap().added;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0, added[1].0);
}

#[test]
fn a_job_in_a_new_spec_folder_is_seen_through_inotify() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let root = Spool::new(&config.spool_dir);
    let first = root.spec("A");
    first.enqueue(&[job(&first, 1)]).unwrap();
    let queue = SpoolQueue::new(&config, None);
    assert_eq!(queue.refresh().unwrap().added.len(), 1);
    let new = root.spec("B");
    new.enqueue(&[job(&new, 1)]).unwrap();
    let mut found = Vec::new();
    for _ in 0..50 {
        queue.wait_for_news(Duration::from_millis(100));
        found.extend(queue.refresh().unwrap().added);
        if !found.is_empty() {
            break;
        }
    }
    assert_eq!(found.len(), 1, "the new SPEC's job: {found:?}");
    assert_eq!(found[0].0.spec, "B");
}

#[test]
fn a_run_over_the_whole_spool_is_on_duty_and_looks_once_more_when_it_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let root = Spool::new(&config.spool_dir);
    let spool = root.spec("S");
    spool.enqueue(&[job(&spool, 1)]).unwrap();
    let queue = SpoolQueue::new(&config, None);
    assert!(queue.on_duty());
    assert!(
        root.try_take_duty().unwrap().is_none(),
        "emit sees it on duty"
    );
    let added = queue.refresh().unwrap().added;
    deliver(&queue, &added[0].0);
    queue.release("S").unwrap();
    // An emit after the last look saw a drain on duty and started none.
    spool.enqueue(&[job(&spool, 2)]).unwrap();
    let left = queue.let_go();
    assert_eq!(left.len(), 1, "the last look finds it: {left:?}");
    assert!(!queue.on_duty());
    assert!(root.try_take_duty().unwrap().is_some(), "off duty");
    // A run over one SPEC is never on duty.
    let one = SpoolQueue::new(&config, Some("S".into()));
    assert!(!one.on_duty());
}
