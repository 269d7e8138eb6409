//! Reading the config: where the file is (`--config`, the
//! `SPEC_NOTIFY_CONFIG` variable, or the first `config.toml` holding a
//! `[spec_ops.webhooks]` table in the current folder or a parent, up to the
//! repository root, the way git and cargo find theirs), reading and
//! resolving it, and what the environment says over the file: the enable
//! switch and, when [`Secrets::Required`], whether every secret, signing
//! key, `url_env` URL and `env:` header value a delivery will read is set
//! (and each secret and key is of the form its scheme takes).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::model::{Config, Subscription, check_header_value, secret_from_env};
use super::problems::Problems;
use super::raw;
use super::relay::Relay;
use super::resolve::resolve;
use super::subscription::looks_like_key;
use crate::exit::user_error;

pub const CONFIG_ENV: &str = "SPEC_NOTIFY_CONFIG";
pub const ENABLED_ENV: &str = "SPECKIT_WEBHOOKS_ENABLED";
pub const DEFAULT_CONFIG: &str = "config.toml";

/// What to do when no config was found: said by every command that needs one.
pub const HOW_TO_POINT: &str = "pass --config PATH, set SPEC_NOTIFY_CONFIG, or copy config.example.toml to config.toml at the repository root";

/// Where the config file is and how it was chosen.
#[derive(Debug, Clone)]
pub struct Location {
    /// The file; when none was found, `config.toml` in the current folder.
    pub path: PathBuf,
    pub chosen: Chosen,
}

/// How the config file was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    /// `--config PATH`.
    Flag,
    /// `$SPEC_NOTIFY_CONFIG`.
    Env,
    /// The first `config.toml` with a `[spec_ops.webhooks]` table from the
    /// current folder up.
    Found,
    /// None anywhere: where it was looked for.
    Missing(Search),
}

/// Where a config was looked for, and found nowhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// The folders looked in, the current one first.
    pub folders: Vec<PathBuf>,
    /// `config.toml` files passed over: they have no `[spec_ops.webhooks]` table.
    pub skipped: Vec<PathBuf>,
    /// Whether the last folder is a repository root (holds `.git`), not
    /// the filesystem root.
    pub at_repository_root: bool,
}

impl Location {
    /// Where it was looked for, when no config was found.
    pub fn missing(&self) -> Option<&Search> {
        match &self.chosen {
            Chosen::Missing(search) => Some(search),
            _ => None,
        }
    }

    /// The file, or an exit-2 error saying where none was found.
    pub fn require(&self) -> Result<&Path> {
        match self.missing() {
            None => Ok(&self.path),
            Some(search) => Err(user_error(format!("{}: {HOW_TO_POINT}", search.describe()))),
        }
    }
}

impl Search {
    /// "no config.toml with a [spec_ops.webhooks] table in /r/docs or /r
    /// (the repository root)", and the files passed over.
    pub fn describe(&self) -> String {
        let mut folders: Vec<String> = self
            .folders
            .iter()
            .map(|f| format!("`{}`", f.display()))
            .collect();
        let last = match (folders.pop(), self.at_repository_root) {
            (Some(last), true) => format!("{last} (the repository root)"),
            (Some(last), false) => format!("{last} (no repository root, no `.git`, on the way)"),
            (None, _) => "the current folder (which cannot be read)".to_string(),
        };
        let places = match folders.is_empty() {
            true => last,
            false => format!("{} or {last}", folders.join(", ")),
        };
        let mut text = format!("no {DEFAULT_CONFIG} with a [spec_ops.webhooks] table in {places}");
        if !self.skipped.is_empty() {
            let skipped: Vec<String> = self
                .skipped
                .iter()
                .map(|f| format!("`{}`", f.display()))
                .collect();
            text.push_str(&format!(
                " ({} has none, so it was passed over)",
                skipped.join(", ")
            ));
        }
        text
    }
}

pub fn locate(flag: Option<&Path>) -> Location {
    if let Some(path) = flag {
        return Location {
            path: path.to_path_buf(),
            chosen: Chosen::Flag,
        };
    }
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
        return Location {
            path: PathBuf::from(path),
            chosen: Chosen::Env,
        };
    }
    match std::env::current_dir() {
        Ok(cwd) => discover(&cwd),
        Err(_) => Location {
            path: PathBuf::from(DEFAULT_CONFIG),
            chosen: Chosen::Missing(Search::default()),
        },
    }
}

/// The first `config.toml` with a `[spec_ops.webhooks]` table in `start`
/// or a folder above it, stopping at the first folder that holds `.git`
/// (the repository root) or at the filesystem root. A file that cannot be
/// read or is not TOML is chosen, so that loading it says what is wrong;
/// one without the table (another program's config) is passed over. The
/// current folder's is named `config.toml`, as people type it.
fn discover(start: &Path) -> Location {
    let mut search = Search::default();
    for dir in start.ancestors() {
        search.folders.push(dir.to_path_buf());
        let candidate = dir.join(DEFAULT_CONFIG);
        match is_ours(&candidate) {
            Some(true) => {
                let path = match dir == start {
                    true => PathBuf::from(DEFAULT_CONFIG),
                    false => candidate,
                };
                return Location {
                    path,
                    chosen: Chosen::Found,
                };
            }
            Some(false) => search.skipped.push(candidate),
            None => {}
        }
        if dir.join(".git").exists() {
            search.at_repository_root = true;
            break;
        }
    }
    Location {
        path: PathBuf::from(DEFAULT_CONFIG),
        chosen: Chosen::Missing(search),
    }
}

/// Whether `path` is a config for spec-notify: `None` when there is no
/// such file, `Some(false)` for TOML without a `[spec_ops.webhooks]` table.
fn is_ours(path: &Path) -> Option<bool> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(raw::has_webhooks(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) if path.is_dir() => None,
        Err(_) => Some(true),
    }
}

/// Whether validation demands the secrets. `check` does: signing needs them.
/// `emit` never signs, so a guardrail without secrets must still spool. A
/// host that only relays to NATS needs the relay's credentials alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Required,
    /// Only the relay's credentials (`check` on a host that relays).
    RelayOnly,
    Optional,
}

/// Loads and validates the config without requiring secrets (see
/// [`Config::secret_problems`]): emit must work without them.
pub fn load(location: &Location) -> Result<Config> {
    load_with(location, Secrets::Optional)
}

/// Loads and validates the config; with [`Secrets::Required`] an unset secret
/// is one more problem in the same list as the others.
pub fn load_with(location: &Location, secrets: Secrets) -> Result<Config> {
    let path = location.require()?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| user_error(format!("cannot read config `{}`: {e}", path.display())))?;
    parse_with(&text, path, secrets)
}

/// The settings of a config with no `[spec_ops.webhooks]` table (webhooks
/// off), for checking input where no config was found.
pub fn defaults(location: &Location) -> Config {
    let base = location
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Config::empty(&location.path, &base)
}

/// Parses config text; `path` names the file in messages and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    parse_with(text, path, Secrets::Optional)
}

fn parse_with(text: &str, path: &Path, secrets: Secrets) -> Result<Config> {
    let problems = Problems::default();
    let webhooks = raw::read(text, &problems)
        .map_err(|e| user_error(format!("`{}` is not valid TOML: {e}", path.display())))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut config = match webhooks {
        Some(webhooks) => resolve(webhooks, path, &base, &problems),
        None => Config::empty(path, &base),
    };
    apply_enabled_override(&mut config, &problems);
    match secrets {
        Secrets::Required => check_environment(&config, &problems),
        Secrets::RelayOnly => check_relay_credentials(&config, &problems),
        Secrets::Optional => {}
    }
    problems.into_result(path)?;
    Ok(config)
}

/// What the deliveries will read from the environment, checked now: each
/// secret (and its format), `url_env` URL, `env:` header value and the
/// relay's credentials.
fn check_environment(config: &Config, problems: &Problems) {
    let mut seen = HashSet::new();
    let needing: Vec<(String, &Subscription)> = config
        .every_subscription()
        .filter(|(_, s)| s.needs_secret())
        .map(|(scope, s)| (at_of(scope, s), s))
        .filter(|(at, _)| seen.insert(at.clone()))
        .collect();
    let mut reported = HashSet::new();
    for (at, sub) in &needing {
        if let (Some(var), Err(_)) = (&sub.secret_env, sub.secret()) {
            // An override that inherits the global secret says nothing new.
            if reported.insert((sub.id.clone(), var.clone())) {
                problems.push(
                    at,
                    format!("key `secret_env`: the environment variable {var} is unset or empty: export it (or set `dry_run = true` or `active = false`)"),
                );
            }
        }
        if let Some(var) = &sub.signing_key_env
            && !looks_like_key(var)
            && secret_from_env(var).is_none()
            && reported.insert((sub.id.clone(), var.clone()))
        {
            problems.push(
                at,
                format!("key `signing_key_env`: the environment variable {var} is unset or empty: export the subscription's whsk_… key in it (`spec-notify keys generate` makes a pair)"),
            );
        }
    }
    for (at, sub) in needing {
        let at = at.as_str();
        if let (Some(var), true) = (&sub.url_env, sub.url.is_empty()) {
            problems.key(
                at,
                "url_env",
                format!("the environment variable {var} is unset or empty: export it"),
            );
        }
        for (name, var) in sub
            .headers
            .iter()
            .filter_map(|h| Some((&h.name, h.env_var()?)))
        {
            let why = match std::env::var(var).ok().filter(|v| !v.is_empty()) {
                None => format!("the environment variable {var} is unset or empty: export it"),
                Some(value) => match check_header_value(&value) {
                    Ok(()) => continue,
                    Err(e) => format!("the value in {var} is {e}"),
                },
            };
            problems.key(at, "headers", format!("`{name}`: {why}"));
        }
    }
    check_relay_credentials(config, problems);
    for p in config.secret_format_problems() {
        problems.push_line(p);
    }
}

/// The relay's credentials: what a host that only relays reads from its
/// environment.
fn check_relay_credentials(config: &Config, problems: &Problems) {
    if let Some(Err(line)) = config.relay.as_ref().map(Relay::credentials) {
        problems.push_line(line);
    }
}

/// Where messages name a subscription of a scope: ``subscription `id` `` for
/// a global one, its `specs` table for an override.
fn at_of(scope: Option<&str>, sub: &Subscription) -> String {
    match scope {
        None => format!("subscription `{}`", sub.id),
        Some(pattern) => raw::spec_table_at(pattern, Some(&sub.id)),
    }
}

fn apply_enabled_override(config: &mut Config, problems: &Problems) {
    let Ok(value) = std::env::var(ENABLED_ENV) else {
        return;
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => config.enabled = true,
        "0" | "false" | "no" | "off" | "" => config.enabled = false,
        _ => {
            problems.push(
                ENABLED_ENV,
                format!("`{value}` is not a switch: use 1, 0, true or false"),
            );
            return;
        }
    }
    config.enabled_source = format!("{ENABLED_ENV}={value}");
}

/// Loads the config for commands that cannot work without one; a missing
/// file is an exit-2 error naming where it was looked for.
pub fn load_required(flag: Option<&Path>) -> Result<Config> {
    load(&locate(flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> String {
        format!(
            "{:#}",
            parse(text, Path::new("/x/config.toml")).unwrap_err()
        )
    }

    const OURS: &str = "[spec_ops.webhooks]\nenabled = true\n";

    /// A repository `repo/` (with `.git`) holding `docs/sub/`, inside `outer/`.
    fn repository() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("outer/repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("docs/sub")).unwrap();
        (dir, repo)
    }

    #[test]
    fn the_first_config_with_our_table_from_here_up_is_found() {
        let (_dir, repo) = repository();
        let sub = repo.join("docs/sub");
        std::fs::write(repo.join("config.toml"), OURS).unwrap();
        let found = discover(&sub);
        assert_eq!(found.chosen, Chosen::Found);
        assert_eq!(found.path, repo.join("config.toml"));
        // Another program's config.toml on the way is passed over.
        std::fs::write(repo.join("docs/config.toml"), "[model]\nname = 'x'\n").unwrap();
        assert_eq!(discover(&sub).path, repo.join("config.toml"));
        // Ours in the current folder wins, named as people type it.
        std::fs::write(sub.join("config.toml"), OURS).unwrap();
        assert_eq!(discover(&sub).path, PathBuf::from("config.toml"));
        // Text that is not TOML is chosen: loading it says what is wrong.
        std::fs::write(sub.join("config.toml"), "[spec_ops.webhooks\n").unwrap();
        assert_eq!(discover(&sub).path, PathBuf::from("config.toml"));
    }

    #[test]
    fn the_search_stops_at_the_repository_root_and_says_where_it_looked() {
        let (_dir, repo) = repository();
        // Above the repository: not this repository's config.
        std::fs::write(repo.parent().unwrap().join("config.toml"), OURS).unwrap();
        std::fs::write(repo.join("docs/config.toml"), "x = 1\n").unwrap();
        let missing = discover(&repo.join("docs/sub"));
        let search = missing.missing().expect("nothing found");
        assert_eq!(
            search.folders,
            [repo.join("docs/sub"), repo.join("docs"), repo.clone()]
        );
        assert_eq!(search.skipped, [repo.join("docs/config.toml")]);
        let text = search.describe();
        assert!(
            text.contains(&format!("`{}` (the repository root)", repo.display()))
                && text.contains(&format!("`{}`, ", repo.join("docs/sub").display()))
                && text.contains("has none, so it was passed over"),
            "{text}"
        );
        let err = load(&missing).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::ExitCode::Usage);
        assert!(format!("{err:#}").contains(HOW_TO_POINT), "{err:#}");
    }

    #[test]
    fn foreign_tables_are_ignored_but_unknown_keys_inside_ours_are_named() {
        let text =
            "[model]\nname='x'\n[spec_ops.telemetry]\nx=1\n[spec_ops.webhooks]\nenabld = true\n";
        let e = errors(text);
        assert!(
            e.contains("unknown key `enabld` (did you mean `enabled`?)"),
            "{e}"
        );
    }
}
