//! Command-line syntax: the clap definitions of every command and flag, and the
//! rewrite of the PRD's flag forms (`--test`, `--list`, `--replay`) into
//! subcommands. Meaning lives elsewhere: `config` resolves settings, `cmd::*` acts.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::sign::Scheme;

const AFTER_HELP: &str = "\
Exit codes:
  0    success
  1    runtime failure (I/O, delivery failed in `test`, dead-letters in `status`)
  2    usage, config or input error (nothing was written)
  130  interrupted (SIGINT)      143  terminated (SIGTERM)

The PRD's flag forms work too:
  spec-notify --test SPEC-ID --subscription ID
  spec-notify --list SPEC-ID
  spec-notify --replay SPEC-ID --delivery-id UUID";

/// Signed, durable webhook notifications for spec-kit pipeline events.
///
/// Guardrail scripts `emit` events into an on-disk spool (no network, a few
/// milliseconds); `drain` delivers them by signed HTTP POST with retries,
/// dead-letters what cannot be delivered and logs every attempt as evidence.
#[derive(Debug, Parser)]
#[command(name = "spec-notify", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file [default: $SPEC_NOTIFY_CONFIG, else the first config.toml
    /// with a [spec_ops.webhooks] table here or above, up to the repository root]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Say more about what is happening (on stderr)
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and summarise its subscriptions
    #[command(after_help = "\
Examples:
  spec-notify --config config.toml check
  spec-notify check --spec SPEC-KIT-065      # the subscriptions in effect for one SPEC
  spec-notify check --probe                  # also reach every URL once (HEAD, 3 s)")]
    Check(CheckArgs),

    /// Spool an event for delivery (never touches the network)
    #[command(after_help = "\
Examples:
  spec-notify emit --spec SPEC-KIT-065 --event spec-auto.stage.completed --stage Plan --status success
  echo '{\"task\":{\"id\":\"T61\",\"status\":\"Done\"}}' | spec-notify emit --spec SPEC-KIT-065 --event spec-kit.task.completed --input -
  spec-notify emit --input - < events.jsonl      # one event per line
  spec-notify emit --spec SPEC-KIT-065 --event spec-auto.stage.completed \\
      --url \"$CALLBACK_URL\" --secret-env CALLBACK_SECRET --correlation-id req-8812")]
    Emit(EmitArgs),

    /// Deliver spooled jobs: signed POSTs with retries, dead-letters and evidence
    #[command(after_help = "\
Examples:
  spec-notify drain --once                    # one pass over due jobs, never waits
  spec-notify drain --max-time 50s            # cron: * * * * * cd repo && spec-notify drain --max-time 50s
  spec-notify drain --watch                   # long-running worker (systemd)")]
    Drain(DrainArgs),

    /// Move this host's pending jobs into NATS JetStream ([spec_ops.webhooks.relay])
    #[command(after_help = "\
Examples:
  spec-notify relay                 # one pass: publish every pending job, then stop
  spec-notify relay --watch         # keep moving jobs as they are spooled (until SIGTERM)
Workers deliver them: spec-notify drain --source nats --watch")]
    Relay(RelayArgs),

    /// Send a signed sample event to one subscription right now (no spool)
    #[command(
        after_help = "Example:\n  spec-notify test SPEC-KIT-065 --subscription chatops-slack"
    )]
    Test(TestArgs),

    /// List spooled deliveries
    #[command(
        after_help = "Examples:\n  spec-notify list SPEC-KIT-065\n  spec-notify list --state dead --json"
    )]
    List(ListArgs),

    /// Requeue dead (or delivered) jobs with the same delivery id and deliver them
    #[command(after_help = "\
Examples:
  spec-notify replay SPEC-KIT-065 --delivery-id 0b6f…
  spec-notify replay SPEC-KIT-065 --all-dead --subscription chatops-slack --since 2h")]
    Replay(ReplayArgs),

    /// Delete dead-lettered jobs on purpose (logged in the evidence)
    #[command(after_help = "Example:\n  spec-notify discard SPEC-KIT-065 --delivery-id 0b6f…")]
    Discard(DiscardArgs),

    /// Stop sending to a subscription: its jobs are spooled and wait (until resume)
    #[command(
        after_help = "Example:\n  spec-notify pause chatops-slack --reason \"Slack outage, INC-231\""
    )]
    Pause(PauseArgs),

    /// Send to a paused (or circuit-open) subscription again; its jobs go out in order
    #[command(after_help = "Example:\n  spec-notify resume chatops-slack")]
    Resume(ResumeArgs),

    /// Delivery health per SPEC and subscription; exit 1 when dead-letters exist,
    /// a circuit is open or a subscription is paused
    #[command(after_help = "Example:\n  spec-notify status SPEC-KIT-065 --json")]
    Status(StatusArgs),

    /// A live view in the terminal: every SPEC × subscription, what needs
    /// attention, and keys to replay, discard, pause and resume
    #[command(after_help = "\
Keys: up/down select, tab/enter the row's dead jobs, r replay, d discard,
p pause/resume, / filter, ? help, q quit.
Examples:
  spec-notify top
  spec-notify top --source nats --stalled-after 5m")]
    Top(TopArgs),
    /// The alerts firing now (exit 1 while any fires); `alerts test RULE`
    /// sends a sample through a rule's routes
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "\
Examples:
  spec-notify alerts                      # what fires now, with the command that fixes each
  spec-notify alerts --json
  spec-notify alerts test platform-oncall # a sample alert through the rule's `to` and `command`
Rules are [[spec_ops.webhooks.alerts]] tables; drains and `status` evaluate them."
    )]
    Alerts(AlertsArgs),

    /// Export the attempt log (all rotated files, oldest first) of one SPEC or every SPEC
    #[command(
        after_help = "Examples:\n  spec-notify history SPEC-KIT-065 --since 1d --format csv > attempts.csv\n  spec-notify history --since 2h       # every SPEC"
    )]
    History(HistoryArgs),

    /// Write a self-contained HTML health report (opens from disk, no network)
    #[command(after_help = "\
Examples:
  spec-notify report                                   # every SPEC, last 7 days
  spec-notify report SPEC-KIT-065 --since 24h --output /tmp/webhooks.html")]
    Report(ReportArgs),

    /// Print delivery metrics in the Prometheus text format (or write them atomically)
    #[command(after_help = "\
Examples:
  spec-notify metrics
  spec-notify metrics --output /var/lib/prometheus/node-exporter/spec_notify.prom")]
    Metrics(MetricsArgs),

    /// Run a local receiver that verifies signatures and prints events
    #[command(
        after_help = "Example:\n  SECRET=s3cret spec-notify receive --listen 127.0.0.1:8787 --secret-env SECRET"
    )]
    Receive(ReceiveArgs),

    /// Verify a delivery's signature: headers as flags, raw body on stdin
    #[command(after_help = "\
Example:
  spec-notify verify --secret-env SECRET --header \"X-SpecKit-Signature: $SIG\" < body.json")]
    Verify(VerifyArgs),

    /// Make Standard Webhooks ed25519 key pairs (`v1a` signatures)
    #[command(after_help = "\
Examples:
  spec-notify keys generate                        # prints the secret key (whsk_…) and the public key (whpk_…)
  spec-notify keys generate --output signing.key   # the secret key into a new 0600 file, the public key on stdout
  spec-notify keys public --key-env SPECKIT_WEBHOOK_SIGNING_KEY   # the public key of a key you hold")]
    Keys(KeysArgs),

    /// See the whole product work on loopback in a few seconds
    #[command(after_help = "Example:\n  cargo run --release -- demo")]
    Demo(DemoArgs),

    /// List, add, change, remove, enable or disable subscriptions in config.toml
    /// (comments and layout kept; invalid changes refused)
    #[command(after_help = "\
Examples:
  spec-notify subscriptions list
  spec-notify subscriptions add ops-alerts --url https://alerts.example.com/hook --secret-env OPS_SECRET --test
  spec-notify subscriptions set ops-alerts max_attempts=12 'include_events=[\"spec-auto.*\"]'
  spec-notify subscriptions set chatops-slack --spec 'SPEC-KIT-*' url_env=SLACK_URL_KIT
  spec-notify subscriptions disable ops-alerts --spec SPEC-KIT-065
  spec-notify subscriptions remove ops-alerts")]
    Subscriptions(SubscriptionsArgs),

    /// Print shell completions
    #[command(
        after_help = "Example:\n  spec-notify completions bash > /etc/bash_completion.d/spec-notify"
    )]
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    /// Show the subscriptions in effect for this SPEC (its overrides applied)
    #[arg(long, value_name = "SPEC-ID", value_parser = spec_id)]
    pub spec: Option<String>,
    /// Also reach every URL once (HEAD, no body, no secret, 3 s timeout)
    /// and report which answer; exit 1 if one does not
    #[arg(long)]
    pub probe: bool,
    /// Check this host as it is used: `spool` (it delivers, or with a relay
    /// table only relays, needing no secrets) or `nats` (a worker of the
    /// fleet: the secrets must be set here)
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Args, Default)]
pub struct EmitArgs {
    /// SPEC id, e.g. SPEC-KIT-065-add-webhook-notification-system-for
    #[arg(long, value_name = "SPEC-ID")]
    pub spec: Option<String>,
    /// Event type, `namespace.noun.verb`, e.g. spec-auto.stage.completed
    #[arg(long, value_name = "TYPE")]
    pub event: Option<String>,
    /// success | failure | halt
    #[arg(long)]
    pub status: Option<String>,
    /// Plan | Tasks | Implement | Validate | Audit | Unlock
    #[arg(long)]
    pub stage: Option<String>,
    /// Task id, for spec-kit.task.completed
    #[arg(long, value_name = "ID")]
    pub task_id: Option<String>,
    /// Task title
    #[arg(long, value_name = "T")]
    pub task_title: Option<String>,
    /// Telemetry v1 JSON file to embed as-is
    #[arg(long, value_name = "FILE")]
    pub telemetry: Option<PathBuf>,
    /// Idempotency key [default: SPEC:type:stage:status:attempt-N]
    #[arg(long, value_name = "K")]
    pub idempotency_key: Option<String>,
    /// Read a JSON object (or JSON Lines, one event each) from `-` (stdin)
    #[arg(long, value_name = "-")]
    pub input: Option<String>,
    /// With --input: a batch that would take a SPEC past max_spool_jobs
    /// moves that SPEC's oldest pending jobs to dead-letter (reason
    /// spool-overflow) instead of being refused
    #[arg(long, requires = "input")]
    pub shed_oldest: bool,
    /// Print the delivery ids as a JSON array
    #[arg(long)]
    pub json: bool,
    /// Say nothing when nothing is spooled by design: no config found, or
    /// no subscription matches (warnings and errors still show)
    #[arg(short, long)]
    pub quiet: bool,
    /// Ties the event to your request: stored in the envelope's `event`
    /// section, filterable with `list --correlation-id`
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// Send this event to URL (repeatable) instead of the configured
    /// subscriptions: spooled, retried and replayable like any job, listed
    /// as subscription `adhoc-<hash of URL>`; https, or http to loopback
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// Sign --url deliveries with the secret in this variable (without it
    /// they go unsigned)
    #[arg(long, value_name = "VAR", requires = "urls")]
    pub secret_env: Option<String>,
    /// Signature scheme for --url deliveries [default: speckit]
    #[arg(long, value_name = "SCHEME", requires = "secret_env")]
    pub signature: Option<String>,
    /// Body format for --url deliveries: json, slack, mattermost, discord, teams
    #[arg(long, value_name = "FORMAT", requires = "urls")]
    pub format: Option<String>,
    /// Let --url reach private addresses (loopback, 10/8, 192.168/16,
    /// 169.254/16, …); refused by default, also when a name resolves there
    #[arg(long, requires = "urls")]
    pub allow_private_networks: bool,
    /// With --url, send to the matching configured subscriptions too
    #[arg(long, requires = "urls")]
    pub also_configured: bool,
    /// The W3C trace context to carry to receivers, `00-<trace id>-<span
    /// id>-<flags>` (otel-cli and CI runners export it as TRACEPARENT);
    /// an invalid one is ignored with a warning
    #[arg(
        long,
        value_name = "TRACEPARENT",
        env = "TRACEPARENT",
        hide_env_values = true
    )]
    pub traceparent: Option<String>,
    /// Vendor trace state passed on unchanged with --traceparent
    #[arg(
        long,
        value_name = "TRACESTATE",
        env = "TRACESTATE",
        hide_env_values = true
    )]
    pub tracestate: Option<String>,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Only this SPEC
    #[arg(long, value_name = "SPEC-ID", value_parser = spec_id)]
    pub spec: Option<String>,
    /// One pass over due jobs; never wait for retries
    #[arg(long, conflicts_with = "watch")]
    pub once: bool,
    /// Bound on the run: no attempt starts after it (requests in flight
    /// finish, so a run ends within DURATION plus one request timeout); it
    /// also stops waiting for retries falling due later
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub max_time: Duration,
    /// Keep running: pick up new jobs as they are spooled (until SIGTERM)
    #[arg(long)]
    pub watch: bool,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Started by emit (auto_drain): print only what needs attention
    #[arg(long, hide = true)]
    pub background: bool,
    /// Started by emit: the spool's duty lock, already taken, inherited as
    /// this descriptor
    #[arg(long, hide = true, value_name = "FD", requires = "background")]
    pub duty_fd: Option<i32>,
    /// Keep FILE (Prometheus text format) up to date while draining, for
    /// node_exporter's textfile collector; written atomically
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// How often --metrics rewrites FILE (and once more at the end)
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration, requires = "metrics")]
    pub metrics_interval: Duration,
    /// With --watch, how often the alert rules are evaluated (a one-shot
    /// drain evaluates them once, before it exits)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub alerts_interval: Duration,
    /// Take jobs from this host's spool, or from NATS JetStream (a worker
    /// of the fleet; needs [spec_ops.webhooks.relay])
    #[arg(long, value_enum, default_value = "spool", conflicts_with = "spec")]
    pub source: Source,
}

/// Where a command finds the jobs: this host's spool, or the NATS JetStream
/// of `[spec_ops.webhooks.relay]` (every host's jobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Source {
    #[default]
    Spool,
    Nats,
}

#[derive(Debug, Args, Default)]
pub struct RelayArgs {
    /// Keep running: move new jobs as they are spooled (until SIGTERM)
    #[arg(long)]
    pub watch: bool,
    /// Started by emit (auto_drain): print only what needs attention
    #[arg(long, hide = true)]
    pub background: bool,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// SPEC the sample event is for
    #[arg(value_name = "SPEC-ID", value_parser = spec_id)]
    pub spec: String,
    /// Subscription id to send to [default: the only one, when the config has one]
    #[arg(long, value_name = "ID", value_parser = subscription_id)]
    pub subscription: Option<String>,
    /// Show the exact request instead of sending it
    #[arg(long)]
    pub print: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateFilter {
    Pending,
    Active,
    Delivered,
    Dead,
    Quarantine,
    All,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// SPEC to list [default: all SPECs]
    #[arg(value_name = "SPEC-ID", value_parser = spec_id)]
    pub spec: Option<String>,
    /// Which jobs to show
    #[arg(long, value_enum, default_value = "all")]
    pub state: StateFilter,
    /// Only this subscription
    #[arg(long, value_name = "ID", value_parser = subscription_id)]
    pub subscription: Option<String>,
    /// Only events of this type (`spec-auto.*` matches by prefix)
    #[arg(long, value_name = "TYPE")]
    pub event: Option<String>,
    /// Only jobs of the event with this idempotency key
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Only jobs of events emitted with this correlation id
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// One JSON array on stdout
    #[arg(long)]
    pub json: bool,
    /// This host's spool, or NATS JetStream (every host's jobs)
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[arg(value_name = "SPEC-ID", value_parser = spec_id)]
    pub spec: String,
    /// The delivery to replay (dead or delivered): its id, or the first 8
    /// or more hex digits of it when no other delivery starts with them
    #[arg(
        long,
        value_name = "UUID",
        required_unless_present = "all_dead",
        conflicts_with = "all_dead",
        value_parser = delivery_id
    )]
    pub delivery_id: Option<String>,
    /// Every dead job of the SPEC (narrow with --subscription/--since/--until)
    #[arg(long)]
    pub all_dead: bool,
    #[arg(long, value_name = "ID", requires = "all_dead", value_parser = subscription_id)]
    pub subscription: Option<String>,
    /// Dead-lettered at or after TIME (RFC 3339, or a duration ago like 2h)
    #[arg(long, value_name = "TIME", requires = "all_dead", value_parser = parse_time)]
    pub since: Option<u64>,
    /// Dead-lettered at or before TIME
    #[arg(long, value_name = "TIME", requires = "all_dead", value_parser = parse_time)]
    pub until: Option<u64>,
    /// Only requeue; deliver on the next drain
    #[arg(long)]
    pub no_drain: bool,
    #[arg(long)]
    pub json: bool,
    /// This host's spool, or NATS JetStream's dead stream (every host's
    /// dead jobs; the workers deliver them)
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Args)]
pub struct DiscardArgs {
    #[arg(value_name = "SPEC-ID", value_parser = spec_id)]
    pub spec: String,
    /// The dead delivery to delete: its id, or the first 8 or more hex
    /// digits of it when no other delivery starts with them
    #[arg(
        long,
        value_name = "UUID",
        required_unless_present = "all_dead",
        conflicts_with = "all_dead",
        value_parser = delivery_id
    )]
    pub delivery_id: Option<String>,
    /// Every dead job of the SPEC
    #[arg(long)]
    pub all_dead: bool,
    #[arg(long, value_name = "ID", requires = "all_dead", value_parser = subscription_id)]
    pub subscription: Option<String>,
    /// This host's spool, or NATS JetStream's dead stream (every host's)
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The subscription id from the config
    #[arg(value_name = "SUBSCRIPTION", value_parser = subscription_id)]
    pub subscription: String,
    /// Why, for `status` and the evidence
    #[arg(long, value_name = "TEXT", default_value = crate::store::ops::PAUSE_REASON)]
    pub reason: String,
    /// This host's drains, or every worker of the NATS fleet
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[arg(value_name = "SUBSCRIPTION", value_parser = subscription_id)]
    pub subscription: String,
    /// This host's drains, or every worker of the NATS fleet
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(value_name = "SPEC-ID", value_parser = spec_id)]
    pub spec: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Call a subscription stalled (exit 1) when a job has been due this
    /// long and nothing was attempted for as long: no drain or worker runs
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub stalled_after: Duration,
    /// This host's spool, or NATS JetStream (every host's jobs)
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub action: Option<AlertsAction>,
    /// One JSON object on stdout
    #[arg(long)]
    pub json: bool,
    /// The alert state of this host's drains, or of the NATS fleet's
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Subcommand)]
pub enum AlertsAction {
    /// Send a sample alert (marked as a test) through the rule's `to`
    /// subscription and `command`, now; exit 1 if a route failed
    Test(AlertsTestArgs),
}

#[derive(Debug, Args)]
pub struct AlertsTestArgs {
    /// The rule's id ([[spec_ops.webhooks.alerts]] `id`)
    #[arg(value_name = "RULE")]
    pub rule: String,
    /// Spool the sample here and deliver it at once, or publish it to
    /// NATS JetStream for the fleet's workers
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryFormat {
    /// Aligned columns for people (the default on a terminal)
    Table,
    /// The records as written, one JSON object per line (the default in a pipe)
    Jsonl,
    /// A header row, then one row per record (cells guarded against formulas)
    Csv,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// SPEC whose attempts to show [default: every SPEC, with a SPEC column]
    #[arg(value_name = "SPEC-ID", value_parser = spec_id)]
    pub spec: Option<String>,
    #[arg(long, value_name = "ID", value_parser = subscription_id)]
    pub subscription: Option<String>,
    /// Attempts at or after TIME (RFC 3339, or a duration ago like 2h)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<u64>,
    /// [default: table on a terminal, jsonl otherwise]
    #[arg(long, value_enum)]
    pub format: Option<HistoryFormat>,
    /// This host's attempt log, or NATS JetStream's evidence stream (every
    /// worker's attempts)
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// SPECs to include [default: every SPEC]
    #[arg(value_name = "SPEC-ID", value_parser = spec_id)]
    pub specs: Vec<String>,
    /// Where to write the HTML [default: <evidence_dir>/webhooks-report.html]
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Attempts at or after TIME count (RFC 3339, or a duration ago like 24h)
    #[arg(long, value_name = "TIME", default_value = "7d", value_parser = parse_time)]
    pub since: u64,
    /// This host's spool and attempt logs, or NATS JetStream's streams
    /// (every host's jobs and every worker's attempts)
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Call a subscription stalled (banner) when a job has been due this
    /// long and nothing was attempted for as long, as `status` does
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub stalled_after: Duration,
    /// This host's spool, or NATS JetStream (every host's jobs)
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Write to FILE atomically (tmp + rename) instead of stdout; name it
    /// `*.prom` in node_exporter's textfile directory
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// This host's spool and attempt logs, or NATS JetStream's streams
    /// (every host's jobs and every worker's attempts)
    #[arg(long, value_enum, default_value = "spool")]
    pub source: Source,
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// Address to listen on, IP:PORT (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR", value_parser = listen_addr)]
    pub listen: String,
    /// Environment variable holding the secret; signatures are verified when given
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// Signature scheme to verify
    #[arg(long, value_enum, default_value = "speckit")]
    pub scheme: SchemeArg,
    /// Answer this status (200–599) instead of 204 (rehearse failures)
    #[arg(long, value_name = "CODE", value_parser = answer_status)]
    pub status: Option<u16>,
    /// Fraction of requests (0.0–1.0) answered 503
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = fail_rate)]
    pub fail_rate: f64,
    /// Exit after this many requests (at least 1)
    #[arg(long, value_name = "N", value_parser = request_count)]
    pub count: Option<u64>,
    /// Print each event as a JSON line
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemeArg {
    Speckit,
    Github,
    StandardWebhooks,
}

/// The `--scheme` flag as the library's scheme.
impl From<SchemeArg> for Scheme {
    fn from(arg: SchemeArg) -> Scheme {
        match arg {
            SchemeArg::Speckit => Scheme::Speckit,
            SchemeArg::Github => Scheme::Github,
            SchemeArg::StandardWebhooks => Scheme::StandardWebhooks,
        }
    }
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("key").required(true).args(["secret_env", "public_key"]))]
pub struct VerifyArgs {
    /// Environment variable holding the secret
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// A Standard Webhooks ed25519 public key (whpk_…): check the `v1a`
    /// signatures (repeat to trust several keys, e.g. during a rotation)
    #[arg(long, value_name = "whpk_…", conflicts_with_all = ["secret_env", "scheme"])]
    pub public_key: Vec<String>,
    #[arg(long, value_enum, default_value = "speckit")]
    pub scheme: SchemeArg,
    /// A request header, `Name: value` (repeat)
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Largest accepted age of webhook-timestamp (standard-webhooks)
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub tolerance: Duration,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Print a new key pair: the secret key (whsk_…) for the sender's
    /// environment, the public key (whpk_…) for receivers. The secret key
    /// is written nowhere but stdout, or the new file given to --output
    Generate(KeysGenerateArgs),
    /// Print the public key (whpk_…) of the secret key in an environment variable
    Public(KeysPublicArgs),
}

#[derive(Debug, Args)]
pub struct KeysGenerateArgs {
    /// Write the secret key to this new file (mode 0600; an existing file
    /// is never replaced) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print the keys as a JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeysPublicArgs {
    /// Environment variable holding the secret key (whsk_…)
    #[arg(long, value_name = "VAR")]
    pub key_env: String,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the temp workspace and print its path
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct SubscriptionsArgs {
    #[command(subcommand)]
    pub action: SubscriptionsAction,
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionsAction {
    /// Every subscription and its per-SPEC overrides
    List(SubscriptionsListArgs),
    /// Add a subscription (with --spec: one for those SPECs only)
    Add(SubscriptionAddArgs),
    /// Set (or --unset) keys of a subscription (with --spec: only for those SPECs)
    Set(SubscriptionSetArgs),
    /// Remove a subscription (with --spec: its table for those SPECs)
    Remove(SubscriptionTargetArgs),
    /// Send to a subscription again (`active = true`)
    Enable(SubscriptionTargetArgs),
    /// Stop creating jobs for a subscription (`active = false`); with
    /// --spec, only for those SPECs
    Disable(SubscriptionTargetArgs),
}

#[derive(Debug, Args)]
pub struct SubscriptionsListArgs {
    /// One JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["url", "url_env"])))]
pub struct SubscriptionAddArgs {
    /// The new subscription's id
    #[arg(value_name = "ID", value_parser = subscription_id)]
    pub id: String,
    /// Endpoint URL (https, or http to loopback)
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Variable holding a secret endpoint URL (Slack, Discord, Teams)
    #[arg(long, value_name = "VAR")]
    pub url_env: Option<String>,
    /// Variable holding the signing secret
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// speckit | github | standard-webhooks
    #[arg(long, value_name = "SCHEME")]
    pub signature: Option<String>,
    /// json | slack | mattermost | discord | teams
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Only these event types (repeat; `spec-auto.*` matches by prefix)
    #[arg(long = "event", value_name = "TYPE")]
    pub events: Vec<String>,
    /// Log deliveries without sending them
    #[arg(long)]
    pub dry_run: bool,
    /// Any other key, as KEY=VALUE (repeat); VALUE is TOML if it parses
    /// as TOML (10, true, ["a"]), else a string
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Add it for the SPECs matching SPEC-ID or PREFIX* only
    #[arg(long, value_name = "SPEC-ID|PREFIX*")]
    pub spec: Option<String>,
    /// Then send it a signed test event (`spec-notify test`), for the
    /// --spec SPEC if it is one SPEC, else for SPEC `spec-notify-test`
    #[arg(long)]
    pub test: bool,
}

#[derive(Debug, Args)]
pub struct SubscriptionSetArgs {
    #[arg(value_name = "ID", value_parser = subscription_id)]
    pub id: String,
    /// KEY=VALUE pairs; VALUE is TOML if it parses as TOML, else a string
    #[arg(value_name = "KEY=VALUE")]
    pub pairs: Vec<String>,
    /// Remove this key (repeat)
    #[arg(long, value_name = "KEY")]
    pub unset: Vec<String>,
    /// Change it only for the SPECs matching SPEC-ID or PREFIX*
    #[arg(long, value_name = "SPEC-ID|PREFIX*")]
    pub spec: Option<String>,
}

#[derive(Debug, Args)]
pub struct SubscriptionTargetArgs {
    #[arg(value_name = "ID", value_parser = subscription_id)]
    pub id: String,
    /// Only for the SPECs matching SPEC-ID or PREFIX*
    #[arg(long, value_name = "SPEC-ID|PREFIX*")]
    pub spec: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

/// A SPEC id names a folder: the envelope's rule, checked before anything runs.
fn spec_id(s: &str) -> Result<String, String> {
    crate::envelope::check_spec_id(s)?;
    Ok(s.to_string())
}

/// Subscription ids as the config allows them (see
/// [`crate::config::check_subscription_id`]).
fn subscription_id(s: &str) -> Result<String, String> {
    match crate::config::check_subscription_id(s) {
        Ok(()) => Ok(s.to_string()),
        Err(why) => Err(format!("{why} (`spec-notify check` lists them)")),
    }
}

/// A delivery id or a prefix of one (see [`crate::store::check_delivery_id`]).
fn delivery_id(s: &str) -> Result<String, String> {
    crate::store::check_delivery_id(s)
}

/// An address `receive` can bind: IP:PORT. Kept as text for `cmd::receive`.
fn listen_addr(s: &str) -> Result<String, String> {
    s.parse::<std::net::SocketAddr>()
        .map(|_| s.to_string())
        .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:8787".into())
}

/// An HTTP status a receiver can answer with.
fn answer_status(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(code) if (200..=599).contains(&code) => Ok(code),
        _ => Err("not an HTTP status a receiver can answer (200–599)".into()),
    }
}

/// The share of requests answered 503.
fn fail_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .parse()
        .map_err(|_| "expected a number from 0.0 to 1.0, e.g. 0.25")?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err("outside 0.0–1.0 (it is the share of requests answered 503)".into())
    }
}

fn request_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number, at least 1".into()),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 90s, 5m, 1h30m)"))
}

/// A point in time as unix milliseconds: RFC 3339, or a duration meaning "that long ago".
fn parse_time(s: &str) -> Result<u64, String> {
    if let Some(ms) = crate::clock::parse_rfc3339(s) {
        return Ok(ms);
    }
    match humantime::parse_duration(s) {
        Ok(ago) => Ok(crate::clock::now_ms().saturating_sub(ago.as_millis() as u64)),
        Err(_) => Err(
            "expected RFC 3339 (2026-01-31T12:00:00Z, 2026-01-31T14:00:00+02:00) or a duration ago (2h, 1d)"
                .into(),
        ),
    }
}

/// Rewrites the PRD's flag forms into subcommands: `--test X ...` → `test X ...`.
///
/// Only the first argument that is not a global option is considered, so a
/// SPEC literally named `--list` elsewhere on the line is left alone.
pub fn rewrite_flag_forms(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        match arg.as_ref() {
            "--config" => i += 2,
            "-v" | "--verbose" => i += 1,
            a if a.starts_with("--config=") => i += 1,
            "--test" | "--list" | "--replay" => {
                args[i] = OsString::from(&arg[2..]);
                break;
            }
            _ => break,
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(rewrite_flag_forms(args.iter().map(OsString::from)))
    }

    #[test]
    fn verify_takes_a_secret_or_public_keys_but_not_both() {
        let verify = |args: &[&str]| parse(&[&["spec-notify", "verify"], args].concat());
        assert!(verify(&[]).is_err(), "one of them is required");
        assert!(verify(&["--secret-env", "S"]).is_ok());
        let cli = verify(&["--public-key", "whpk_a", "--public-key", "whpk_b"]).unwrap();
        assert!(
            matches!(cli.command, Command::Verify(VerifyArgs { ref public_key, secret_env: None, .. }) if public_key.len() == 2)
        );
        assert!(verify(&["--secret-env", "S", "--public-key", "whpk_a"]).is_err());
        assert!(verify(&["--public-key", "whpk_a", "--scheme", "github"]).is_err());
    }

    #[test]
    fn keys_generate_takes_an_output_file() {
        let cli = parse(&["spec-notify", "keys", "generate", "--output", "k.key"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Keys(KeysArgs {
                action: KeysAction::Generate(KeysGenerateArgs {
                    output: Some(_),
                    ..
                })
            })
        ));
        assert!(
            parse(&["spec-notify", "keys", "public"]).is_err(),
            "--key-env is required"
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn prd_flag_forms_become_subcommands() {
        let cli = parse(&["spec-notify", "--test", "SPEC-1", "--subscription", "slack"]).unwrap();
        assert!(
            matches!(cli.command, Command::Test(TestArgs { ref spec, .. }) if spec == "SPEC-1")
        );
        let cli = parse(&["spec-notify", "--config", "c.toml", "--list", "SPEC-1"]).unwrap();
        assert!(
            matches!(cli.command, Command::List(ListArgs { ref spec, .. }) if spec.as_deref() == Some("SPEC-1"))
        );
        let cli = parse(&["spec-notify", "--replay", "S", "--delivery-id", "0B6F1C2E"]).unwrap();
        assert!(
            matches!(cli.command, Command::Replay(ReplayArgs { ref delivery_id, .. }) if delivery_id.as_deref() == Some("0b6f1c2e"))
        );
    }

    #[test]
    fn alerts_lists_or_tests_a_rule() {
        let cli = parse(&["spec-notify", "alerts", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Alerts(AlertsArgs {
                action: None,
                json: true,
                ..
            })
        ));
        let cli = parse(&[
            "spec-notify",
            "alerts",
            "test",
            "oncall",
            "--source",
            "nats",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Alerts(AlertsArgs {
                action: Some(AlertsAction::Test(AlertsTestArgs { ref rule, source: Source::Nats })),
                ..
            }) if rule == "oncall"
        ));
        assert!(
            parse(&["spec-notify", "alerts", "test"]).is_err(),
            "RULE is required"
        );
    }

    #[test]
    fn delivery_ids_are_whole_or_eight_hex_digits_or_more() {
        for command in ["replay", "discard"] {
            let err = value_error(&["spec-notify", command, "S", "--delivery-id", "0b6f1c2"]);
            assert!(
                err.contains("too short") && err.contains("at least 8"),
                "{err}"
            );
            let err = value_error(&["spec-notify", command, "S", "--delivery-id", "../x"]);
            assert!(err.contains("not a delivery id"), "{err}");
            parse(&["spec-notify", command, "S", "--delivery-id", "0b6f1c2e-3a"]).unwrap();
        }
    }

    #[test]
    fn replay_needs_an_id_or_all_dead() {
        assert!(parse(&["spec-notify", "replay", "S"]).is_err());
        assert!(parse(&["spec-notify", "replay", "S", "--all-dead", "--since", "2h"]).is_ok());
    }

    /// The clap error for `args`, which must be a value error (exit 2).
    #[track_caller]
    fn value_error(args: &[&str]) -> String {
        let err = parse(args).expect_err("bad value accepted");
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{err}");
        assert_eq!(err.exit_code(), 2);
        err.to_string()
    }

    #[test]
    fn spec_ids_that_could_leave_the_spool_are_refused_by_clap() {
        for args in [
            &["spec-notify", "list", "../etc"][..],
            &["spec-notify", "status", "a/b"],
            &["spec-notify", "history", ".hidden"],
            &["spec-notify", "discard", "", "--all-dead"],
            &["spec-notify", "replay", "a\\b", "--all-dead"],
            &["spec-notify", "test", "a\u{7}b", "--subscription", "s"],
            &["spec-notify", "drain", "--spec", ".."],
        ] {
            let err = value_error(args);
            assert!(err.contains("invalid SPEC id"), "{args:?}: {err}");
        }
        let cli = parse(&["spec-notify", "status", "SPEC-KIT-065-add-webhooks"]).unwrap();
        assert!(
            matches!(cli.command, Command::Status(StatusArgs { spec: Some(ref s), .. }) if s == "SPEC-KIT-065-add-webhooks")
        );
    }

    #[test]
    fn emit_flags_are_left_to_the_envelope() {
        // The envelope checks them, with or without a config: not clap.
        assert!(parse(&["spec-notify", "emit", "--spec", "../x", "--stage", "Deploy"]).is_ok());
    }

    #[test]
    fn subscription_ids_follow_the_config_rule() {
        let cli = parse(&["spec-notify", "list", "--subscription", "chat-ops_1.v2"]).unwrap();
        assert!(
            matches!(cli.command, Command::List(ListArgs { subscription: Some(ref s), .. }) if s == "chat-ops_1.v2")
        );
        let long = "a".repeat(65);
        for bad in ["slack,github", "a b", "", "ünï", ".", "..", &long] {
            let err = value_error(&["spec-notify", "list", "--subscription", bad]);
            assert!(err.contains("1 to 64 letters, digits"), "{bad:?}: {err}");
        }
        parse(&["spec-notify", "pause", &"a".repeat(64)]).unwrap();
        for bad in ["..", &long] {
            value_error(&[
                "spec-notify",
                "subscriptions",
                "add",
                bad,
                "--url",
                "https://a.example/h",
            ]);
            value_error(&["spec-notify", "pause", bad]);
        }
        value_error(&["spec-notify", "test", "S", "--subscription", "x/y"]);
        value_error(&["spec-notify", "history", "S", "--subscription", "x y"]);
        value_error(&[
            "spec-notify",
            "discard",
            "S",
            "--all-dead",
            "--subscription",
            "?",
        ]);
        value_error(&[
            "spec-notify",
            "replay",
            "S",
            "--all-dead",
            "--subscription",
            "?",
        ]);
    }

    fn receive(args: &[&str]) -> Result<ReceiveArgs, clap::Error> {
        let mut all = vec!["spec-notify", "receive"];
        all.extend_from_slice(args);
        match parse(&all)?.command {
            Command::Receive(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn receive_flags_are_checked_by_clap() {
        let args = receive(&[]).unwrap();
        assert_eq!(
            (
                args.listen.as_str(),
                args.status,
                args.fail_rate,
                args.count
            ),
            ("127.0.0.1:8787", None, 0.0, None)
        );
        let args = receive(&[
            "--listen",
            "[::1]:0",
            "--status",
            "599",
            "--fail-rate",
            "1",
            "--count",
            "1",
        ])
        .unwrap();
        assert_eq!(
            (
                args.listen.as_str(),
                args.status,
                args.fail_rate,
                args.count
            ),
            ("[::1]:0", Some(599), 1.0, Some(1))
        );
        let cases: &[(&[&str], &str)] = &[
            (&["--listen", "localhost-ish"], "expected IP:PORT"),
            (&["--listen", "127.0.0.1:99999"], "expected IP:PORT"),
            (&["--listen", "127.0.0.1"], "expected IP:PORT"),
            (&["--status", "199"], "(200–599)"),
            (&["--status", "600"], "(200–599)"),
            (&["--status", "ok"], "(200–599)"),
            (&["--fail-rate", "1.5"], "outside 0.0–1.0"),
            (&["--fail-rate=-0.1"], "outside 0.0–1.0"),
            (&["--fail-rate", "NaN"], "outside 0.0–1.0"),
            (&["--fail-rate", "half"], "from 0.0 to 1.0"),
            (&["--count", "0"], "at least 1"),
            (&["--count=-3"], "at least 1"),
        ];
        for (args, needle) in cases {
            let err = receive(args).expect_err("bad value accepted");
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{err}");
            let err = err.to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
            assert!(err.contains(args[0].split('=').next().unwrap()), "{err}");
        }
    }

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(parse_time("1970-01-01T02:00:01+02:00").unwrap(), 1000);
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z").unwrap(), 1500);
        let week = 7 * 86_400_000;
        let before = crate::clock::now_ms();
        let week_ago = parse_time("7d").unwrap();
        let after = crate::clock::now_ms();
        assert!((before - week..=after - week).contains(&week_ago));
        assert!(parse_time("2026-11-25").is_err());
        assert!(parse_time("2h").unwrap() < crate::clock::now_ms());
    }
}
