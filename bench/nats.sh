#!/usr/bin/env bash
# Scale-out throughput (issue 15): JOBS events emitted into a spool, then
#   (a) the local drain (one `drain`, the baseline), and
#   (b) relay -> nats-server (JetStream, one node) -> 2 `drain --source nats` workers
# both delivering to the same nginx answering 204, in the same run.
# Prints events/s for each and, for (b), emit -> first attempt p50/p95 from
# the receiver's arrival times against the envelopes' emit times.
# Usage: bench/nats.sh [JOBS]    (results also in bench/out/nats/results.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-10000}
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || bash tests/nats/install.sh
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
cargo build --release -q
BIN=$PWD/target/release/spec-notify
OUT=$PWD/bench/out/nats
rm -rf "$OUT" && mkdir -p "$OUT/tmp"
PORT=18081; NPORT=14333
cat > "$OUT/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $OUT/nginx.pid;
error_log $OUT/nginx.err;
events { worker_connections 1024; }
http {
  log_format t '\$msec \$http_x_speckit_id';
  access_log $OUT/access.log t;
  keepalive_requests 1000000;
  client_body_temp_path $OUT/tmp;
  server { listen 127.0.0.1:$PORT; location / { return 204; } }
}
NGINX
nginx -c "$OUT/nginx.conf" -p "$OUT" & NGINX_PID=$!
"$NATS_SERVER" -a 127.0.0.1 -p $NPORT -js -sd "$OUT/js" -l "$OUT/nats.log" & NATS_PID=$!
trap 'kill $NGINX_PID $NATS_PID ${W1:-} ${W2:-} 2>/dev/null || true' EXIT
sleep 1
export SECRET_HOOK=bench-secret
config() { # $1 = dir, $2 = relay table or empty
  mkdir -p "$1"
  cat > "$1/config.toml" <<TOML
[spec_ops.webhooks]
enabled = true
auto_drain = false
max_concurrency = 4
max_spool_jobs = 100000
$2
[[spec_ops.webhooks.subscriptions]]
id = "hook"
url = "http://127.0.0.1:$PORT/hook"
secret_env = "SECRET_HOOK"
TOML
}
events() { for i in $(seq 1 "$JOBS"); do echo '{"event":{"type":"spec-auto.stage.completed"},"spec":{"id":"SPEC-BENCH"}}'; done; }
now() { date +%s.%N; }

# (a) local drain
config "$OUT/local" ""
events | "$BIN" --config "$OUT/local/config.toml" emit --input - > /dev/null
t0=$(now); "$BIN" --config "$OUT/local/config.toml" drain --max-time 600s 2>/dev/null || true; t1=$(now)
local_rate=$(echo "$JOBS / ($t1 - $t0)" | bc -l)

# (b) relay -> JetStream -> 2 workers
: > "$OUT/access.log"; kill -USR1 "$NGINX_PID" 2>/dev/null || true
config "$OUT/nats" "[spec_ops.webhooks.relay]
url = \"nats://127.0.0.1:$NPORT\"
stream = \"BENCH\""
events | "$BIN" --config "$OUT/nats/config.toml" emit --input - > /dev/null
t0=$(now)
"$BIN" --config "$OUT/nats/config.toml" drain --source nats --watch 2>/dev/null & W1=$!
"$BIN" --config "$OUT/nats/config.toml" drain --source nats --watch 2>/dev/null & W2=$!
"$BIN" --config "$OUT/nats/config.toml" relay 2>/dev/null
until [ "$(wc -l < "$OUT/access.log")" -ge "$JOBS" ]; do sleep 0.2; done
t1=$(now)
nats_rate=$(echo "$JOBS / ($t1 - $t0)" | bc -l)
kill $W1 $W2; wait $W1 $W2 2>/dev/null || true

{
  printf 'jobs: %s\n' "$JOBS"
  printf 'local drain (1 process, max_concurrency 4): %.0f events/s\n' "$local_rate"
  printf 'relay -> JetStream -> 2 workers (max_concurrency 4 each): %.0f events/s\n' "$nats_rate"
  printf 'first attempt after the relay started (b): p50/p95 '
  awk -v t0="$t0" '{print $1 - t0}' "$OUT/access.log" | sort -n |
    awk '{a[NR]=$1} END {printf "%.2fs / %.2fs\n", a[int(NR*0.5)], a[int(NR*0.95)]}'
} | tee "$OUT/results.txt"
