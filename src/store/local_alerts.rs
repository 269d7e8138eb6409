//! The local spool's side of the alerts (`crate::alerts`): the shared
//! state in one small file, `<spool_dir>/.alerts/state.json`, changed only
//! under `<spool_dir>/.alerts/state.lock` and written like the circuit
//! files (temp file, fsync, rename, folder fsync); and alert jobs written
//! into the spool of the reserved SPEC `spec-notify.alerts` like emit
//! writes jobs, once per delivery id.
//!
//! A crash while writing leaves the previous state or the new one, never
//! a part. A state file that does not parse is an error naming it (the
//! fix: remove it; its alerts then fire anew).

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::alerts::{AlertJob, AlertState};
use crate::config::ALERTS_SPEC;
use crate::files::lock::lock_within;
use crate::files::{Perms, Unread, create_private_dir, open_regular, read_up_to, write_atomic};
use crate::spool::lock::LOCK_WAIT;
use crate::spool::{Spool, State};

const DIR: &str = ".alerts";
const FILE: &str = "state.json";
/// A state bigger than this is not ours (the outbox is bounded).
const MAX_BYTES: u64 = 16 * 1024 * 1024;

fn dir(root: &Path) -> PathBuf {
    root.join(DIR)
}

/// The state as stored (empty when there is none yet).
pub fn read(root: &Path) -> Result<AlertState> {
    let path = dir(root).join(FILE);
    let file = match open_regular(&path) {
        Ok(file) => file,
        Err(Unread::Gone) => return Ok(AlertState::default()),
        Err(Unread::Bad(why) | Unread::Io(why)) => {
            bail!("failed to read `{}`: {why}", path.display())
        }
    };
    let bytes = read_up_to(file, MAX_BYTES, None)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }).with_context(|| {
        format!(
            "the alert state `{}` is not readable; remove it to start over (the alerts firing now then fire anew)",
            path.display()
        )
    })
}

/// Changes the state under its lock: reads it (another process may have
/// changed it), applies `change`, writes it back if it changed.
pub fn update(root: &Path, change: &mut dyn FnMut(&mut AlertState)) -> Result<AlertState> {
    let dir = dir(root);
    create_private_dir(&dir)?;
    let _lock = lock_within(&dir.join("state.lock"), LOCK_WAIT)?;
    let before = read(root)?;
    let mut after = before.clone();
    change(&mut after);
    if after != before {
        let bytes = serde_json::to_vec(&after).expect("the state always serialises");
        write_atomic(&dir, FILE, &bytes, Perms::Private)?;
    }
    Ok(after)
}

/// Writes an alert job into the alerts SPEC's pending/, unless a job with
/// its delivery id is there already (in any state): `false` then.
pub fn spool(root: &Path, alert: &AlertJob) -> Result<bool> {
    let spool = Spool::new(root).spec(ALERTS_SPEC);
    let all = [State::Pending, State::Active, State::Delivered, State::Dead];
    let id = alert.delivery_id();
    if !spool.find(&all, |found| found == id)?.is_empty() {
        return Ok(false);
    }
    spool.ensure()?;
    let reserved = spool.reserve_sequence(1)?;
    spool.enqueue(&[alert.job(reserved.first, crate::clock::now_ms())])?;
    drop(reserved);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{Detail, Notice, Status};
    use crate::config::Condition;

    fn alert(id: &str) -> AlertJob {
        AlertJob {
            notice: Notice {
                id: id.into(),
                status: Status::Firing,
                rule: "r".into(),
                subscription: Some("hook".into()),
                condition: Condition::Paused,
                since_ms: 1,
                at_ms: 1,
                repeat: 0,
                detail: Detail::default(),
                to: Some("chat".into()),
                command: None,
                claim: None,
                test: false,
            },
            subscription: "chat".into(),
        }
    }

    #[test]
    fn the_state_survives_a_new_handle_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), AlertState::default());
        update(dir.path(), &mut |s| s.evaluated_by = Some("h:1".into())).unwrap();
        assert_eq!(
            read(dir.path()).unwrap().evaluated_by.as_deref(),
            Some("h:1")
        );
        assert!(
            Spool::new(dir.path()).specs().unwrap().is_empty(),
            "not a SPEC"
        );
        std::fs::write(dir.path().join(".alerts/state.json"), b"{nope").unwrap();
        let err = format!("{:#}", read(dir.path()).unwrap_err());
        assert!(err.contains("remove it to start over"), "{err}");
    }

    #[test]
    fn a_delivery_id_is_spooled_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4().to_string();
        assert!(spool(dir.path(), &alert(&id)).unwrap());
        assert!(!spool(dir.path(), &alert(&id)).unwrap(), "already there");
        let scan = Spool::new(dir.path())
            .spec(ALERTS_SPEC)
            .scan(State::Pending)
            .unwrap();
        assert_eq!(scan.entries.len(), 1);
        assert_eq!(scan.entries[0].meta.delivery_id, id);
        assert_eq!(scan.entries[0].meta.subscription, "chat");
    }
}
