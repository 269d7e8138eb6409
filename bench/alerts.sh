#!/usr/bin/env bash
# What evaluating alert rules costs, on bench/report.sh's spool (10,000
# jobs, 5% of them dead, and 100,000 attempt records): `status` with and
# without a rule (`status` evaluates on the snapshot it read anyway), and
# `status SPEC` with and without (one SPEC's status, while the evaluation
# reads every SPEC: what a one-shot drain pays once before it exits).
# Alternating runs, median of 5 each, in CPU seconds (user + system: the
# machine is shared, and wall time follows its load more than our work).
#
# The rule watches every condition and runs /bin/true, so nothing is
# spooled into the bench spool; its state goes to <spool>/.alerts/.
#
# Usage: bench/alerts.sh   (run from anywhere; builds the spool once)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/bench/out/report"
bin="$root/target/release/spec-notify"
"$root/bench/report.sh" > /dev/null
export BENCH_SECRET=bench-secret NO_COLOR=1
plain="$work/config.toml"
rules="$work/config-alerts.toml"
{
  cat "$plain"
  printf '\n[[spec_ops.webhooks.alerts]]\nid = "bench"\ncommand = ["/bin/true"]\n'
} > "$rules"
"$bin" --config "$rules" status > /dev/null 2>&1 || true # the first alerts fire here

cpu() { # user + system seconds of one run
  local log
  log=$(mktemp)
  /usr/bin/time -f '%U %S' -o "$log" "$@" > /dev/null 2>&1 || true
  tail -1 "$log" | awk '{ printf "%.3f\n", $1 + $2 }'
  rm -f "$log"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A runs
for _ in 1 2 3 4 5; do
  for case in plain rules; do
    config=$plain
    [ "$case" = rules ] && config=$rules
    runs[status_$case]+="$(cpu "$bin" --config "$config" status) "
    runs[spec_$case]+="$(cpu "$bin" --config "$config" status SPEC-BENCH-A) "
  done
done
for key in status_plain status_rules spec_plain spec_rules; do
  printf '%s %s\n' "$key" "$(tr ' ' '\n' <<< "${runs[$key]}" | grep . | median)"
done | awk '
  { t[$1] = $2 }
  END {
    printf "status            : %.3fs CPU without rules, %.3fs with a rule (%.2fx)\n", t["status_plain"], t["status_rules"], t["status_rules"] / t["status_plain"]
    printf "status SPEC-BENCH-A: %.3fs CPU without rules, %.3fs with a rule (+%.3fs: one evaluation over every SPEC)\n", t["spec_plain"], t["spec_rules"], t["spec_rules"] - t["spec_plain"]
  }'
