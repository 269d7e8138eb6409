//! Shared per-subscription delivery state (circuit breaker, pause) under
//! `<spool_dir>/.subscriptions/<id>.json`, one small file per subscription,
//! written like every other spool file (temp file + fsync + rename + folder
//! fsync, by [`crate::files::write_atomic`]) and changed
//! only under `<id>.lock`, so every drain process of the spool, `pause` and
//! `resume` see and update one state.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::Spool;
use super::lock::LOCK_WAIT;
use crate::circuit::Circuit;
use crate::files::lock::lock_within;
use crate::files::{Perms, Unread, create_private_dir, open_regular, read_up_to, write_atomic};

const DIR: &str = ".subscriptions";

impl Spool {
    fn circuits_dir(&self) -> PathBuf {
        self.root().join(DIR)
    }

    fn circuit_file(&self, subscription: &str) -> Result<String> {
        if subscription.is_empty() || subscription.contains(['/', '\\', '\0']) {
            bail!("subscription id {subscription:?} cannot name a state file");
        }
        Ok(format!("{subscription}.json"))
    }

    /// A subscription's state; closed and unpaused when none was saved. A
    /// file that cannot be parsed reads as closed (and is rewritten on the
    /// next change); an error reading it is an error.
    pub fn circuit(&self, subscription: &str) -> Result<Circuit> {
        let path = self.circuits_dir().join(self.circuit_file(subscription)?);
        let file = match open_regular(&path) {
            Ok(file) => file,
            Err(Unread::Gone) => return Ok(Circuit::default()),
            Err(Unread::Bad(why) | Unread::Io(why)) => {
                bail!("failed to read `{}`: {why}", path.display())
            }
        };
        let text = read_up_to(file, 64 * 1024, None)
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "stream did not contain valid UTF-8",
                    )
                })
            })
            .with_context(|| format!("failed to read `{}`", path.display()))?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    }

    /// Changes a subscription's state under its lock: reads the current
    /// state (another process may have changed it), applies `change`, and
    /// writes it back if it changed.
    pub fn update_circuit<T>(
        &self,
        subscription: &str,
        change: impl FnOnce(&mut Circuit) -> T,
    ) -> Result<(T, Circuit)> {
        let name = self.circuit_file(subscription)?;
        let dir = self.circuits_dir();
        create_private_dir(&dir)?;
        let _lock = lock_within(&dir.join(format!("{subscription}.lock")), LOCK_WAIT)?;
        let before = self.circuit(subscription)?;
        let mut after = before.clone();
        let out = change(&mut after);
        if after != before {
            let bytes = serde_json::to_vec(&after).expect("state always serialises");
            write_atomic(&dir, &name, &bytes, Perms::Private)?;
        }
        Ok((out, after))
    }

    /// Every saved subscription state, by id.
    pub fn circuits(&self) -> Result<BTreeMap<String, Circuit>> {
        let dir = self.circuits_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e).with_context(|| format!("failed to read `{}`", dir.display())),
        };
        let mut all = BTreeMap::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to read `{}`", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json").filter(|n| !n.is_empty()) {
                all.insert(id.to_string(), self.circuit(id)?);
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::BreakerPolicy;

    #[test]
    fn state_is_shared_through_the_file_and_survives_a_new_handle() {
        let dir = tempfile::tempdir().unwrap();
        let a = Spool::new(dir.path());
        assert_eq!(a.circuit("hook").unwrap(), Circuit::default());
        a.update_circuit("hook", |c| c.pause("maintenance", "operator", 7))
            .unwrap();
        let b = Spool::new(dir.path());
        let seen = b.circuit("hook").unwrap();
        assert_eq!(seen.paused.unwrap().reason, "maintenance");
        let p = BreakerPolicy::default();
        let fail = crate::circuit::Signal::Failed {
            error: "x".into(),
            retry_after_ms: None,
        };
        for _ in 0..3 {
            b.update_circuit("other", |c| c.record(&fail, false, &p, 1))
                .unwrap();
        }
        assert_eq!(a.circuit("other").unwrap().consecutive_failures, 3);
        assert_eq!(a.circuits().unwrap().len(), 2);
        assert!(
            Spool::new(dir.path()).specs().unwrap().is_empty(),
            "not a SPEC"
        );
        assert!(a.circuit("../x").is_err());
        // Ids may start with a dot (`check` allows it): still their own file.
        a.update_circuit(".hidden", |c| c.pause("x", "operator", 1))
            .unwrap();
        assert!(a.circuits().unwrap().contains_key(".hidden"));
    }
}
