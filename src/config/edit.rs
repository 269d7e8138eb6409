//! Changes `config.toml` in place for `spec-notify subscriptions`: with
//! `toml_edit`, so comments, blank lines, key order and quoting of every
//! untouched line stay byte for byte. A change is made under a lock on the
//! file (concurrent edits wait their turn and see each other's result),
//! validated by the very rules `check` applies (except for environment
//! variables) and written atomically by [`crate::files`] (a temp file in
//! the same folder with the file's mode, fsync, rename, fsync of the
//! folder); an invalid change
//! writes nothing. A symlinked config is edited where it points. A file
//! with CRLF line endings keeps them, the new lines included.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value};

use super::Config;
use crate::exit::user_error;
use crate::files::lock::{retry_within, try_lock_file};
use crate::files::{self, Perms};

/// How long an edit waits for another one to finish with the file.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// What to change. `spec` names a `specs` pattern (`SPEC-ID` or `PREFIX*`):
/// the change is made to that pattern's table for the subscription.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new subscription with these keys (`id` is added first).
    Add {
        id: String,
        keys: Vec<(String, Value)>,
        spec: Option<String>,
    },
    /// Keys set and keys removed.
    Set {
        id: String,
        set: Vec<(String, Value)>,
        unset: Vec<String>,
        spec: Option<String>,
    },
    /// The subscription (and, globally, every override of it), or with
    /// `spec` that pattern's table for it.
    Remove { id: String, spec: Option<String> },
    /// `active = true` or `false`.
    Active {
        id: String,
        active: bool,
        spec: Option<String>,
    },
}

/// What an applied change did.
#[derive(Debug)]
pub struct Applied {
    /// The config as it was, if it was valid.
    pub before: Option<Config>,
    /// The config as written (or as it stays, when nothing changed).
    pub after: Config,
    /// False when the file already said so: nothing was written.
    pub written: bool,
    /// Notes for the operator (what else the change touched).
    pub notes: Vec<String>,
}

/// Reads `KEY=VALUE`: VALUE as a TOML value if it is one (`10`, `true`,
/// `"x"`, `["a"]`, `{ A = "b" }`), else as a string.
pub fn parse_pair(pair: &str) -> Result<(String, Value)> {
    let (key, text) = pair
        .split_once('=')
        .ok_or_else(|| user_error(format!("`{pair}` is not KEY=VALUE")))?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(user_error(format!(
            "`{key}` is not a subscription key (see `spec-notify subscriptions add --help`)"
        )));
    }
    let text = text.trim();
    let value = text
        .parse::<Value>()
        .unwrap_or_else(|_| Value::from(text.to_string()));
    Ok((key.to_string(), value))
}

/// Applies `change` to the config file at `path` under its lock, validates
/// the result and writes it atomically; an invalid result is an exit-2 error
/// and the file is left as it was.
pub fn apply(path: &Path, change: &Change) -> Result<Applied> {
    let real = fs::canonicalize(path)
        .map_err(|e| user_error(format!("cannot read config `{}`: {e}", path.display())))?;
    let (file, text) = lock(&real)?;
    let before = super::parse(&text, path).ok();
    let mut doc: DocumentMut = text.parse().map_err(|e| {
        user_error(format!(
            "`{}` is not valid TOML, so it cannot be edited: {e}",
            path.display()
        ))
    })?;
    let mut notes = Vec::new();
    edit(&mut doc, change, &mut notes)?;
    let mut new_text = doc.to_string();
    if let Change::Active {
        id,
        active: true,
        spec: Some(pattern),
    } = change
    {
        // Dropping `active = false` is not enough when a less specific
        // pattern turns it off too: say so in this pattern's table.
        let still_off = super::parse(&new_text, path).ok().is_some_and(|c| {
            c.specs
                .iter()
                .find(|s| &s.pattern == pattern)
                .and_then(|s| s.subscriptions.iter().find(|x| &x.id == id))
                .is_some_and(|x| !x.active)
        });
        if still_off {
            let table = spec_table(&mut doc, pattern, id, true)?;
            set_key(table, "active", Value::from(true));
            new_text = doc.to_string();
        }
    }
    let new_text = same_line_endings(&text, new_text);
    let after = super::parse(&new_text, path).map_err(|e| {
        user_error(format!(
            "{e:#}\nthe change was refused and `{}` is unchanged",
            path.display()
        ))
    })?;
    let written = new_text != text;
    if written {
        write_atomic(&real, new_text.as_bytes())?;
    }
    drop(file);
    Ok(Applied {
        before,
        after,
        written,
        notes,
    })
}

/// `new` with the line endings of `old`: when `old` ends its lines in CRLF
/// (Windows editors), every bare `\n` that `toml_edit` writes becomes
/// `\r\n`, so untouched lines stay byte for byte and new ones match them.
fn same_line_endings(old: &str, new: String) -> String {
    if !old.contains("\r\n") {
        return new;
    }
    let mut out = String::with_capacity(new.len() + new.len() / 16);
    let mut prev = '\0';
    for c in new.chars() {
        if c == '\n' && prev != '\r' {
            out.push('\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// Opens and locks the config file, and reads it. A writer that replaced
/// the file while we waited leaves us holding the old one: open again.
fn lock(path: &Path) -> Result<(File, String)> {
    let locked = retry_within(LOCK_WAIT, || {
        let mut file = File::open(path)
            .with_context(|| format!("failed to open config `{}`", path.display()))?;
        if !try_lock_file(&file, path)? {
            return Ok(None);
        }
        let held = file.metadata()?;
        let now = fs::metadata(path)?;
        if (held.dev(), held.ino()) != (now.dev(), now.ino()) {
            return Ok(None);
        }
        let mut text = String::new();
        file.read_to_string(&mut text)
            .with_context(|| format!("failed to read config `{}`", path.display()))?;
        Ok(Some((file, text)))
    })?;
    locked.with_context(|| {
        format!(
            "another `spec-notify subscriptions` has been editing `{}` for over {} s; if it is stuck, stop it and try again",
            path.display(),
            LOCK_WAIT.as_secs()
        )
    })
}

/// Replaces `path` with `bytes` atomically (see [`crate::files::write`]),
/// with its mode (and owner, where allowed).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".into());
    let old = fs::metadata(path)?;
    files::write_atomic(&dir, &name, bytes, Perms::Like(&old)).map(drop)
}

fn edit(doc: &mut DocumentMut, change: &Change, notes: &mut Vec<String>) -> Result<()> {
    match change {
        Change::Add {
            id,
            keys,
            spec: None,
        } => {
            if find_global(doc, id).is_some() {
                return Err(user_error(format!(
                    "subscription `{id}` already exists: change it with `spec-notify subscriptions set {id} KEY=VALUE`"
                )));
            }
            add_global(doc, id, keys)
        }
        Change::Add {
            id,
            keys,
            spec: Some(pattern),
        } => {
            if find_global(doc, id).is_some() {
                return Err(user_error(format!(
                    "subscription `{id}` exists for every SPEC: override its keys for {pattern} with `spec-notify subscriptions set {id} --spec '{pattern}' KEY=VALUE`, or pick a new id"
                )));
            }
            if spec_table(doc, pattern, id, false).is_ok() {
                return Err(user_error(format!(
                    "{pattern} already has subscription `{id}`: change it with `set --spec`"
                )));
            }
            let table = spec_table(doc, pattern, id, true)?;
            for (key, value) in keys {
                set_key(table, key, value.clone());
            }
            Ok(())
        }
        Change::Set {
            id,
            set,
            unset,
            spec,
        } => {
            if set.iter().any(|(k, _)| k == "id") || unset.iter().any(|k| k == "id") {
                return Err(user_error(
                    "`id` cannot be changed: add the subscription under its new id and remove the old one",
                ));
            }
            let mut table: Found<'_> = match spec {
                None => find_global(doc, id).ok_or_else(|| unknown(id))?,
                Some(pattern) => {
                    let known = find_global(doc, id).is_some() || spec_tables_of(doc, id) > 0;
                    if !known {
                        return Err(unknown(id));
                    }
                    Found::Table(spec_table(doc, pattern, id, true)?)
                }
            };
            for (key, value) in set {
                table.set(key, value.clone());
            }
            for key in unset {
                if !table.remove(key) {
                    notes.push(format!("`{key}` was not set"));
                }
            }
            if let Some(pattern) = spec {
                drop_if_empty(doc, pattern, id);
            }
            Ok(())
        }
        Change::Remove { id, spec: None } => {
            if !remove_global(doc, id) {
                return Err(unknown(id));
            }
            for pattern in remove_overrides(doc, id) {
                notes.push(format!(
                    "also removed its table for {pattern} ([spec_ops.webhooks.specs.\"{pattern}\".{id}])"
                ));
            }
            Ok(())
        }
        Change::Remove {
            id,
            spec: Some(pattern),
        } => {
            spec_table(doc, pattern, id, false).map_err(|_| {
                user_error(format!(
                    "there is no table [spec_ops.webhooks.specs.\"{pattern}\".{id}] to remove"
                ))
            })?;
            if let Some(entries) = specs_mut(doc)
                .and_then(|s| s.get_mut(pattern))
                .and_then(Item::as_table_like_mut)
            {
                entries.remove(id);
            }
            drop_if_empty(doc, pattern, id);
            Ok(())
        }
        Change::Active {
            id,
            active,
            spec: None,
        } => {
            let mut table = find_global(doc, id).ok_or_else(|| unknown(id))?;
            table.set("active", Value::from(*active));
            Ok(())
        }
        Change::Active {
            id,
            active,
            spec: Some(pattern),
        } => {
            if find_global(doc, id).is_none() && spec_tables_of(doc, id) == 0 {
                return Err(unknown(id));
            }
            if *active {
                // Drop this pattern's `active = false`; `apply` adds
                // `active = true` if a wider pattern still turns it off.
                if let Ok(table) = spec_table(doc, pattern, id, false) {
                    table.remove("active");
                }
                drop_if_empty(doc, pattern, id);
            } else {
                let table = spec_table(doc, pattern, id, true)?;
                set_key(table, "active", Value::from(false));
            }
            Ok(())
        }
    }
}

fn unknown(id: &str) -> anyhow::Error {
    user_error(format!(
        "no subscription `{id}` in the config (`spec-notify subscriptions list` shows them)"
    ))
}

/// `[spec_ops.webhooks]`, created (as an implicit parent) if absent.
fn webhooks(doc: &mut DocumentMut, create: bool) -> Option<&mut dyn TableLike> {
    let root = doc.as_table_mut();
    if !create && !root.contains_key("spec_ops") {
        return None;
    }
    let spec_ops = root.entry("spec_ops").or_insert_with(implicit_table);
    let spec_ops = spec_ops.as_table_like_mut()?;
    if !create && !spec_ops.contains_key("webhooks") {
        return None;
    }
    spec_ops
        .entry("webhooks")
        .or_insert_with(implicit_table)
        .as_table_like_mut()
}

fn implicit_table() -> Item {
    let mut t = Table::new();
    t.set_implicit(true);
    Item::Table(t)
}

/// A subscription table in either TOML form.
enum Found<'d> {
    Table(&'d mut dyn TableLike),
    Inline(&'d mut InlineTable),
}

impl Found<'_> {
    fn set(&mut self, key: &str, value: Value) {
        match self {
            Found::Table(t) => set_key(&mut **t, key, value),
            Found::Inline(t) => set_inline_key(t, key, value),
        }
    }

    fn remove(&mut self, key: &str) -> bool {
        match self {
            Found::Table(t) => t.remove(key).is_some(),
            Found::Inline(t) => t.remove(key).is_some(),
        }
    }
}

/// The global subscription table with `id`, in either TOML form.
fn find_global<'d>(doc: &'d mut DocumentMut, id: &str) -> Option<Found<'d>> {
    let has_id = |t: &dyn TableLike| t.get("id").and_then(Item::as_str) == Some(id);
    match webhooks(doc, false)?.get_mut("subscriptions")? {
        Item::ArrayOfTables(aot) => aot.iter_mut().find(|t| has_id(*t)).map(|t| Found::Table(t)),
        Item::Value(Value::Array(items)) => items
            .iter_mut()
            .filter_map(Value::as_inline_table_mut)
            .find(|t| has_id(*t))
            .map(Found::Inline),
        _ => None,
    }
}

/// Sets a key of an inline table: a new key goes last, taking over the
/// space before the closing brace so the line keeps its look.
fn set_inline_key(table: &mut InlineTable, key: &str, mut value: Value) {
    if let Some(old) = table.get_mut(key) {
        *value.decor_mut() = old.decor().clone();
        *old = value;
        return;
    }
    let last_suffix = table
        .iter_mut()
        .last()
        .map(|(_, v)| {
            let suffix = v
                .decor()
                .suffix()
                .and_then(|s| s.as_str())
                .unwrap_or("")
                .to_string();
            if suffix.trim().is_empty() {
                v.decor_mut().set_suffix("");
            }
            suffix
        })
        .filter(|s| s.trim().is_empty())
        .unwrap_or_else(|| " ".into());
    value.decor_mut().set_prefix(" ");
    value.decor_mut().set_suffix(last_suffix);
    table.insert(key, value);
}

fn add_global(doc: &mut DocumentMut, id: &str, keys: &[(String, Value)]) -> Result<()> {
    let webhooks = webhooks(doc, true).ok_or_else(not_a_table)?;
    let entry = webhooks
        .entry("subscriptions")
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
    match entry {
        Item::ArrayOfTables(aot) => {
            let mut table = Table::new();
            table.decor_mut().set_prefix("\n");
            set_key(&mut table, "id", Value::from(id));
            for (key, value) in keys {
                set_key(&mut table, key, value.clone());
            }
            aot.push(table);
        }
        Item::Value(Value::Array(items)) => {
            let mut table = InlineTable::new();
            table.insert("id", Value::from(id));
            for (key, value) in keys {
                table.insert(key, value.clone());
            }
            table.fmt();
            push_inline(items, table);
        }
        _ => {
            return Err(user_error(
                "`subscriptions` in [spec_ops.webhooks] is not a list of tables: fix it by hand first",
            ));
        }
    }
    Ok(())
}

/// Appends an inline table to a list the way the list is written: on a
/// line of its own, indented like the one before, when the list has one
/// item per line; what followed the last item (a comment) stays with it.
fn push_inline(items: &mut Array, table: InlineTable) {
    let trailing = items.trailing().as_str().unwrap_or("").to_string();
    let indent = items.iter().last().and_then(|v| {
        let prefix = v.decor().prefix()?.as_str()?;
        prefix
            .rsplit_once('\n')
            .map(|(_, indent)| indent.to_string())
    });
    let mut value = Value::InlineTable(table);
    match indent {
        Some(indent) => {
            let lead = match trailing.rfind('\n') {
                Some(end) => trailing[..=end].to_string(),
                None => format!("{trailing}\n"),
            };
            value.decor_mut().set_prefix(format!("{lead}{indent}"));
            value.decor_mut().set_suffix("");
            items.push_formatted(value);
            items.set_trailing("\n");
        }
        None => {
            value
                .decor_mut()
                .set_prefix(if items.is_empty() { "" } else { " " });
            items.push_formatted(value);
        }
    }
}

fn not_a_table() -> anyhow::Error {
    user_error("[spec_ops.webhooks] in the config is not a table: fix it by hand first")
}

fn remove_global(doc: &mut DocumentMut, id: &str) -> bool {
    let has_id = |t: &dyn TableLike| t.get("id").and_then(Item::as_str) == Some(id);
    let Some(subs) = webhooks(doc, false).and_then(|w| w.get_mut("subscriptions")) else {
        return false;
    };
    match subs {
        Item::ArrayOfTables(aot) => {
            let at = aot.iter().position(|t| has_id(t));
            match at {
                Some(i) => {
                    aot.remove(i);
                    true
                }
                None => false,
            }
        }
        Item::Value(Value::Array(items)) => {
            let at = items
                .iter()
                .position(|v| v.as_inline_table().is_some_and(|t| has_id(t)));
            match at {
                Some(i) => {
                    items.remove(i);
                    true
                }
                None => false,
            }
        }
        _ => false,
    }
}

/// `[spec_ops.webhooks.specs]`, if present.
fn specs_mut(doc: &mut DocumentMut) -> Option<&mut dyn TableLike> {
    webhooks(doc, false)?.get_mut("specs")?.as_table_like_mut()
}

/// How many patterns have a table for `id`.
fn spec_tables_of(doc: &mut DocumentMut, id: &str) -> usize {
    specs_mut(doc).map_or(0, |specs| {
        specs
            .iter()
            .filter(|(_, entries)| entries.as_table_like().is_some_and(|e| e.contains_key(id)))
            .count()
    })
}

/// Removes every pattern's table for `id`; returns the patterns.
fn remove_overrides(doc: &mut DocumentMut, id: &str) -> Vec<String> {
    let Some(specs) = specs_mut(doc) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for (pattern, entries) in specs.iter_mut() {
        if let Some(entries) = entries.as_table_like_mut()
            && entries.remove(id).is_some()
        {
            removed.push(pattern.get().to_string());
        }
    }
    for pattern in &removed {
        drop_if_empty(doc, pattern, id);
    }
    removed
}

/// `[spec_ops.webhooks.specs."PATTERN".ID]`, created if `create`.
fn spec_table<'d>(
    doc: &'d mut DocumentMut,
    pattern: &str,
    id: &str,
    create: bool,
) -> Result<&'d mut dyn TableLike> {
    let missing = || {
        user_error(format!(
            "no table [spec_ops.webhooks.specs.\"{pattern}\".{id}]"
        ))
    };
    let webhooks = webhooks(doc, create).ok_or_else(missing)?;
    if !create && !webhooks.contains_key("specs") {
        return Err(missing());
    }
    let specs = webhooks
        .entry("specs")
        .or_insert_with(implicit_table)
        .as_table_like_mut()
        .ok_or_else(|| {
            user_error("`specs` in [spec_ops.webhooks] is not a table: fix it by hand first")
        })?;
    if !create && !specs.contains_key(pattern) {
        return Err(missing());
    }
    let entries = specs
        .entry(pattern)
        .or_insert_with(implicit_table)
        .as_table_like_mut()
        .ok_or_else(missing)?;
    if !create && !entries.contains_key(id) {
        return Err(missing());
    }
    entries
        .entry(id)
        .or_insert_with(|| {
            let mut t = Table::new();
            t.decor_mut().set_prefix("\n");
            Item::Table(t)
        })
        .as_table_like_mut()
        .ok_or_else(missing)
}

/// Removes what an edit left empty: the pattern's table for `id`, then the
/// pattern, then `specs`.
fn drop_if_empty(doc: &mut DocumentMut, pattern: &str, id: &str) {
    let Some(specs) = specs_mut(doc) else {
        return;
    };
    if let Some(entries) = specs.get_mut(pattern).and_then(Item::as_table_like_mut) {
        if entries
            .get(id)
            .and_then(Item::as_table_like)
            .is_some_and(TableLike::is_empty)
        {
            entries.remove(id);
        }
        if entries.is_empty() {
            specs.remove(pattern);
        }
    }
    if specs.is_empty()
        && let Some(w) = webhooks(doc, false)
    {
        w.remove("specs");
    }
}

/// Sets `key`, keeping the spacing and trailing comment of a value it replaces.
fn set_key(table: &mut dyn TableLike, key: &str, mut value: Value) {
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            let decor = old.decor().clone();
            *value.decor_mut() = decor;
            *old = value;
        }
        _ => {
            table.insert(key, Item::Value(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMENTED: &str = r#"# Team notifications
[model]
name = "x"   # not ours

[spec_ops.webhooks]
enabled = true # on
# Slack, via url_env
[[spec_ops.webhooks.subscriptions]]
id = "slack"          # the channel
url_env = "SLACK_URL"
format = "slack"
max_attempts = 8      # default
dry_run = true

# Audit log
[[spec_ops.webhooks.subscriptions]]
id = "audit"
url = "https://audit.example/h"
secret_env = "AUDIT_SECRET"

[spec_ops.telemetry]
keep = true # trailing
"#;

    fn edited(text: &str, change: Change) -> String {
        let mut doc: DocumentMut = text.parse().unwrap();
        edit(&mut doc, &change, &mut Vec::new()).unwrap();
        doc.to_string()
    }

    #[test]
    fn crlf_files_keep_crlf() {
        let crlf = COMMENTED.replace('\n', "\r\n");
        let out = same_line_endings(
            &crlf,
            edited(
                &crlf,
                Change::Remove {
                    id: "slack".into(),
                    spec: None,
                },
            ),
        );
        assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
        assert_eq!(same_line_endings("a\n", "a\nb\n".into()), "a\nb\n");
    }

    #[test]
    fn set_keeps_every_other_byte() {
        let out = edited(
            COMMENTED,
            Change::Set {
                id: "slack".into(),
                set: vec![
                    parse_pair("max_attempts=12").unwrap(),
                    parse_pair("rate_limit=2/s").unwrap(),
                ],
                unset: vec!["dry_run".into()],
                spec: None,
            },
        );
        let want = COMMENTED.replace(
            "max_attempts = 8      # default\ndry_run = true\n",
            "max_attempts = 12      # default\nrate_limit = \"2/s\"\n",
        );
        assert_eq!(out, want);
    }

    #[test]
    fn add_appends_after_the_last_subscription() {
        let out = edited(
            COMMENTED,
            Change::Add {
                id: "ops".into(),
                keys: vec![
                    parse_pair("url=https://ops.example/h").unwrap(),
                    parse_pair("secret_env=OPS").unwrap(),
                ],
                spec: None,
            },
        );
        let want = COMMENTED.replace(
            "secret_env = \"AUDIT_SECRET\"\n",
            "secret_env = \"AUDIT_SECRET\"\n\n[[spec_ops.webhooks.subscriptions]]\nid = \"ops\"\nurl = \"https://ops.example/h\"\nsecret_env = \"OPS\"\n",
        );
        assert_eq!(out, want);
    }

    #[test]
    fn remove_takes_the_table_and_its_comment_only() {
        let out = edited(
            COMMENTED,
            Change::Remove {
                id: "audit".into(),
                spec: None,
            },
        );
        let want = COMMENTED.replace(
            "\n# Audit log\n[[spec_ops.webhooks.subscriptions]]\nid = \"audit\"\nurl = \"https://audit.example/h\"\nsecret_env = \"AUDIT_SECRET\"\n",
            "",
        );
        assert_eq!(out, want);
    }

    #[test]
    fn spec_tables_come_and_go() {
        let with = edited(
            COMMENTED,
            Change::Active {
                id: "audit".into(),
                active: false,
                spec: Some("SPEC-KIT-*".into()),
            },
        );
        assert_eq!(
            with,
            COMMENTED.replace(
                "secret_env = \"AUDIT_SECRET\"\n",
                "secret_env = \"AUDIT_SECRET\"\n\n[spec_ops.webhooks.specs.\"SPEC-KIT-*\".audit]\nactive = false\n"
            ),
            "the new table sits with the other webhook tables"
        );
        let without = edited(
            &with,
            Change::Active {
                id: "audit".into(),
                active: true,
                spec: Some("SPEC-KIT-*".into()),
            },
        );
        assert_eq!(
            without, COMMENTED,
            "an emptied table goes, with its parents"
        );
    }

    #[test]
    fn inline_lists_are_edited_too() {
        let text = "[spec_ops.webhooks]\nsubscriptions = [\n  { id = \"a\", url = \"https://a/h\", secret_env = \"A\" }, # first\n]\n";
        let out = edited(
            text,
            Change::Set {
                id: "a".into(),
                set: vec![parse_pair("dry_run=true").unwrap()],
                unset: vec![],
                spec: None,
            },
        );
        assert!(
            out.contains("secret_env = \"A\", dry_run = true }, # first"),
            "{out}"
        );
        let out = edited(
            &out,
            Change::Add {
                id: "b".into(),
                keys: vec![parse_pair("url=https://b/h").unwrap()],
                spec: None,
            },
        );
        assert!(
            out.contains("# first\n  { id = \"b\", url = \"https://b/h\" },\n]"),
            "{out}"
        );
    }

    #[test]
    fn values_parse_as_toml_or_else_strings() {
        let cases = [
            ("max_attempts=12", "12"),
            ("dry_run=true", "true"),
            ("url=https://x/h?a=b", "\"https://x/h?a=b\""),
            ("format=slack", "\"slack\""),
            ("include_events=[\"spec-auto.*\"]", "[\"spec-auto.*\"]"),
            ("text=\"quoted\"", "\"quoted\""),
        ];
        for (pair, want) in cases {
            let (_, value) = parse_pair(pair).unwrap();
            assert_eq!(value.to_string().trim(), want, "{pair}");
        }
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("bad key=1").is_err());
    }
}
