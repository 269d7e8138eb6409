//! The machine's own parts a test may need, as root: local users
//! ([`LocalUser`], created for one test and removed when dropped) and a
//! small filesystem of its own ([`Tmpfs`]). Whether the tests run as root
//! is [`super::deps::root`]'s business.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{CEILING, Env, Run, Spawned, command, run_command};

/// A local user the tests may run commands as.
#[derive(Debug, Clone, Copy)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

pub fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// A system user without a home or a shell, and its group of the same
/// name, created for one test (root only) and removed when dropped. Names
/// are unique per run and per user (`spec-notify-t<pid>-<n>`), so users a
/// crashed run left behind never get in the next run's way; creating one
/// first removes those whose run is gone.
pub struct LocalUser {
    pub name: String,
    pub user: User,
}

/// What the names of [`LocalUser`]s start with.
const USER_PREFIX: &str = "spec-notify-t";

impl LocalUser {
    pub fn create() -> LocalUser {
        static CREATED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(remove_users_of_finished_runs);
        let n = CREATED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("{USER_PREFIX}{}-{n}", std::process::id());
        let args = [
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ];
        account_tool("useradd", &args, &name);
        // Owned from here: a failed lookup still removes the user.
        let mut created = LocalUser {
            name,
            user: User { uid: 0, gid: 0 },
        };
        created.user = User {
            uid: id(&created.name, "-u"),
            gid: id(&created.name, "-g"),
        };
        created
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        remove_user(&self.name);
    }
}

/// Removes `name` and its group (userdel leaves the group when another
/// user has it as their primary group or USERGROUPS_ENAB is off).
fn remove_user(name: &str) {
    account_tool("userdel", &[], name);
    let mut getent = command("getent");
    getent.args(["group", name]);
    if run_command(getent, b"").code == 0 {
        account_tool("groupdel", &[], name);
    }
}

/// Removes the users of earlier runs (see [`LocalUser`]) whose test
/// process no longer exists.
fn remove_users_of_finished_runs() {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for name in passwd.lines().filter_map(|l| l.split(':').next()) {
        let pid = name
            .strip_prefix(USER_PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            remove_user(name);
        }
    }
}

/// Runs `tool ARGS NAME` (useradd, userdel, groupdel) until it succeeds:
/// another run's tool may hold /etc/passwd's lock for a moment. Panics with
/// its last complaint after [`CEILING`].
#[track_caller]
fn account_tool(tool: &str, args: &[&str], name: &str) {
    let deadline = std::time::Instant::now() + CEILING;
    loop {
        let mut cmd = command(tool);
        cmd.args(args).arg(name);
        let run = run_command(cmd, b"");
        if run.code == 0 {
            return;
        }
        if std::time::Instant::now() > deadline {
            let complaint = format!("{tool} {name} failed (exit {}): {}", run.code, run.stderr);
            if std::thread::panicking() {
                eprintln!("{complaint}");
                return;
            }
            panic!("{complaint}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `id FLAG name` as a number.
#[track_caller]
fn id(name: &str, flag: &str) -> u32 {
    let mut cmd = command("id");
    cmd.arg(flag).arg(name);
    let run = run_command(cmd, b"").expect(0);
    run.stdout.trim().parse().unwrap()
}

/// Runs `command` as `user` (the workspace must be theirs).
pub fn as_user(mut command: Command, user: Option<User>) -> Command {
    if let Some(user) = user {
        command.uid(user.uid).gid(user.gid);
    }
    command
}

/// Runs the binary as `user`; a hang fails the test.
pub fn run_as(env: &Env, user: Option<User>, args: &[&str]) -> Run {
    Spawned::new(
        as_user(env.cmd(args), user)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
    .wait_output(CEILING, args[0])
}

/// Gives the workspace to `user`, readable (not writable) by others, so
/// only the spool's own modes keep them out.
pub fn hand_to(env: &Env, user: Option<User>) {
    let Some(user) = user else { return };
    for path in [env.path().to_path_buf(), env.config_path()] {
        std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).unwrap();
    }
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(env.path(), open).unwrap();
}

/// An owner who is not root, for a test that needs permissions to hold: a
/// created user when running as root, else whoever runs the tests.
pub fn non_root_owner() -> Option<LocalUser> {
    match current_uid() {
        0 => Some(LocalUser::create()),
        _ => None,
    }
}

/// A small filesystem of its own (root only): the spool and the evidence
/// live on a 4 MiB tmpfs that the test fills.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// The mounted tmpfs, or why it could not be mounted.
    pub fn mount() -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().unwrap().keep();
        let mut mount = command("mount");
        mount
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(&dir);
        let run = run_command(mount, b"");
        if run.code == 0 {
            return Ok(Tmpfs(dir));
        }
        let _ = std::fs::remove_dir(&dir);
        Err(format!(
            "cannot mount a tmpfs ({})",
            run.stderr
                .lines()
                .next()
                .unwrap_or_default()
                .trim_end_matches('.')
        ))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let mut umount = command("umount");
        umount.arg(&self.0);
        run_command(umount, b"");
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
