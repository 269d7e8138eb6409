//! Where health is read from: the [`Source`] trait ([`super::gather`], the
//! report and the metrics read only through it) and [`Local`], this host's
//! spool, attempt logs and circuit files. The NATS JetStream source lives
//! with the NATS client (`crate::nats::health`).

use anyhow::Result;

use crate::circuit::Circuit;
use crate::config::Config;
use crate::evidence::{Evidence, Record, Skipped};
use crate::spool::{Entry, Scan, Spool, State, Unreadable};

/// What health is computed from, read-only.
pub trait Source {
    /// Every SPEC with jobs or attempt records, sorted.
    fn specs(&self) -> Result<Vec<String>>;
    /// The jobs of `spec` in `state`, and what could not be read as a job.
    fn scan(&self, spec: &str, state: State) -> Result<Scan>;
    /// Quarantined files of `spec` with the first line of their reason.
    fn quarantined(&self, spec: &str) -> Result<Vec<(String, String)>>;
    /// Hands every evidence record of `spec` to `visit`, oldest first;
    /// returns what was skipped (lines, files) and where they are.
    fn records(&self, spec: &str, visit: &mut dyn FnMut(Record)) -> Result<(Skipped, String)>;
    /// A subscription's breaker state (the default when none is stored).
    fn circuit(&self, subscription: &str) -> Result<Circuit>;
    /// The body of a job [`Source::scan`] returned, if it can still be read.
    fn body(&self, entry: &Entry) -> Option<Vec<u8>>;
    /// Whether delivered jobs stay readable (the spool's delivered/);
    /// otherwise the delivered count comes from the attempt records.
    fn keeps_delivered(&self) -> bool;
    /// What to add to a command for it to act on this source
    /// (`--source nats`), empty for the spool.
    fn flag(&self) -> &'static str;
    /// Where a job no longer found went, for the report.
    fn gone(&self) -> &'static str;
    /// What was read that belongs to no SPEC: messages that are not jobs,
    /// and (how many, where) records that did not parse.
    fn problems(&self) -> (Vec<Unreadable>, Vec<(Skipped, String)>) {
        (Vec::new(), Vec::new())
    }
}

/// This host's spool, attempt logs and circuit files.
pub struct Local<'a> {
    config: &'a Config,
    spool: Spool,
}

impl<'a> Local<'a> {
    pub fn new(config: &'a Config) -> Local<'a> {
        Local {
            config,
            spool: Spool::new(&config.spool_dir),
        }
    }
}

impl Source for Local<'_> {
    fn specs(&self) -> Result<Vec<String>> {
        super::all_specs(self.config)
    }

    fn scan(&self, spec: &str, state: State) -> Result<Scan> {
        self.spool.spec(spec).scan(state)
    }

    fn quarantined(&self, spec: &str) -> Result<Vec<(String, String)>> {
        self.spool.spec(spec).quarantined()
    }

    fn records(&self, spec: &str, visit: &mut dyn FnMut(Record)) -> Result<(Skipped, String)> {
        let evidence = Evidence::new(
            self.config.evidence_for(spec),
            self.config.max_evidence_bytes,
        );
        let skipped = evidence.for_each_record(visit)?;
        Ok((
            skipped,
            format!("the attempt log under `{}`", evidence.dir().display()),
        ))
    }

    fn circuit(&self, subscription: &str) -> Result<Circuit> {
        self.spool.circuit(subscription)
    }

    fn body(&self, entry: &Entry) -> Option<Vec<u8>> {
        self.spool
            .spec(&entry.meta.spec)
            .read(entry.state, &entry.name)
            .ok()
            .map(|job| job.body)
    }

    fn keeps_delivered(&self) -> bool {
        true
    }

    fn flag(&self) -> &'static str {
        ""
    }

    fn gone(&self) -> &'static str {
        "no longer in the spool (discarded, or pruned by the evidence cap)"
    }
}
