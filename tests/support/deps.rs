//! The one policy for tests whose real dependency may be missing (see the
//! top of `support/mod.rs`): it fails, naming the fix, unless the developer
//! listed it in `SPEC_NOTIFY_TEST_SKIP`.

/// The variable that lists what a developer accepts to go untested.
pub const SKIP_VAR: &str = "SPEC_NOTIFY_TEST_SKIP";

/// Every dependency a test may require: its name in [`SKIP_VAR`] and how
/// to provide it.
const DEPENDENCIES: [(&str, &str); 10] = [
    ("nats", "install it with `bash tests/nats/install.sh`"),
    ("chromium", "install it with `bash tests/report/install.sh`"),
    ("promtool", "install it with `bash tests/report/install.sh`"),
    (
        "node_exporter",
        "install it with `bash tests/report/install.sh`",
    ),
    (
        "python-verifiers",
        "install them with `bash tests/verifiers/install.sh`",
    ),
    (
        "node-verifiers",
        "install them with `bash tests/verifiers/install.sh`",
    ),
    ("tmux", "install it with `bash tests/tui/install.sh`"),
    (
        "faketime",
        "install libfaketime with `bash tests/clock/install.sh`",
    ),
    ("tmpfs", "run `cargo test` as root"),
    ("root", "run `cargo test` as root"),
];

/// `found`'s value; or, when `found` says why the dependency `name` is
/// missing, a panic naming the fix, or `None` (the test returns, skipped)
/// when [`SKIP_VAR`] lists `name`. A listed dependency that is present is
/// still used: the list only excuses what is missing.
#[track_caller]
pub fn require<T>(name: &str, found: Result<T, String>) -> Option<T> {
    let listed = skip_list();
    let fix = DEPENDENCIES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, fix)| *fix)
        .unwrap_or_else(|| panic!("require: `{name}` is not in support::deps::DEPENDENCIES"));
    let reason = match found {
        Ok(value) => return Some(value),
        Err(reason) => reason,
    };
    if listed.iter().any(|n| n == name || n == "all") {
        let test = std::thread::current().name().unwrap_or("test").to_string();
        eprintln!("SKIPPED {test}: {reason} ({SKIP_VAR} lists `{name}`; to run it, {fix})");
        return None;
    }
    panic!("{reason}: {fix}, or set {SKIP_VAR}={name} to skip the tests that need it");
}

/// The names in [`SKIP_VAR`]; panics on one it does not know (a typo would
/// otherwise excuse nothing, silently).
#[track_caller]
fn skip_list() -> Vec<String> {
    let value = std::env::var_os(SKIP_VAR).unwrap_or_default();
    let names: Vec<String> = value
        .to_string_lossy()
        .split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    for name in &names {
        let known = name == "all" || DEPENDENCIES.iter().any(|(n, _)| n == name);
        assert!(
            known,
            "{SKIP_VAR}: unknown name `{name}`; the names are all, {}",
            DEPENDENCIES.map(|(n, _)| n).join(", ")
        );
    }
    names
}

/// `Ok` when the tests run as root; else why `needs` cannot be done.
pub fn root(needs: &str) -> Result<(), String> {
    match rustix::process::geteuid().as_raw() {
        0 => Ok(()),
        uid => Err(format!(
            "{needs} needs root, and the tests run as uid {uid}"
        )),
    }
}
