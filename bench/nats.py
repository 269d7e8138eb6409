#!/usr/bin/env python3
"""Scale-out on NATS JetStream against the local drain and JetStream itself,
in one run.

One nginx answering 204 (it logs arrival time and X-SpecKit-Id) and one
nats-server (JetStream, one node), both on free 127.0.0.1 ports.

1. Throughput, JOBS events emitted in bulk first:
   - the ceiling: JetStream alone, pull + ack of JOBS messages with the
     same client (examples/jetstream.rs);
   - local: one `drain` of the spool;
   - relay alone: `relay` of the spool with no worker running;
   - nats: `relay` of the spool into JetStream while 1, 2 or 4 `drain
     --source nats --watch` workers deliver; the clock runs from the relay's
     start to the last arrival.
   - an idle worker's JetStream API requests per second (every message on
     `$JS.API.>`, counted for 10 s).
2. Emit -> first attempt, PACED events emitted one by one (`emit` per event,
   GAP apart, as a pipeline does):
   - local: auto_drain on, emit kicks a background drain;
   - nats: `relay --watch` and 2 workers `--watch` running.
   Latency = first arrival at nginx - the moment emit returned.

Usage: bench/nats.py BIN NATS_SERVER OUT JETSTREAM_EXAMPLE [JOBS] [PACED]
"""
import os, subprocess, sys, time

from nats_harness import EVENT, ENV, arrivals, cli, servers, start, stop, stop_all, wait_for

BIN, NATS_SERVER, OUT, JS = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
JOBS = int(sys.argv[5]) if len(sys.argv) > 5 else 10000
PACED = int(sys.argv[6]) if len(sys.argv) > 6 else 200
GAP = 0.02
HTTP, NATS, ACCESS = servers(OUT, NATS_SERVER)


def workspace(name, auto_drain, relay):
    ws = os.path.join(OUT, name)
    os.makedirs(ws)
    table = f'[spec_ops.webhooks.relay]\nurl = "nats://127.0.0.1:{NATS}"\nstream = "{name.upper()}"\n' if relay else ""
    config = os.path.join(ws, "config.toml")
    with open(config, "w") as f:
        f.write(f"""[spec_ops.webhooks]
enabled = true
auto_drain = {str(auto_drain).lower()}
max_concurrency = 4
max_spool_jobs = 100000
{table}
[[spec_ops.webhooks.subscriptions]]
id = "hook"
url = "http://127.0.0.1:{HTTP}/hook"
secret_env = "SECRET_HOOK"
jitter_ms = 0
""")
    return config


def bulk(config, spec):
    out = cli(BIN, config, "emit", "--input", "-", stdin=(EVENT % spec) * JOBS).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def delivered(ids):
    seen = arrivals(ACCESS)
    return all(i in seen for i in ids)


def workers(config, n):
    return [start([BIN, "--config", config, "drain", "--source", "nats", "--watch"]) for _ in range(n)]


def relay_only(config):
    """Relay a spooled batch with no worker running: the relay's own rate."""
    t0 = time.time()
    cli(BIN, config, "relay")
    return JOBS / (time.time() - t0)


def through(config, spec, n_workers):
    """Relay into JetStream with n workers delivering: events/s from the
    relay's start to the last arrival."""
    ids = bulk(config, spec)
    fleet = workers(config, n_workers)
    time.sleep(1)  # the workers connect; not part of the measurement
    t0 = time.time()
    cli(BIN, config, "relay")
    wait_for(f"{n_workers} workers' deliveries", lambda: delivered(ids))
    t1 = max(arrivals(ACCESS)[i] for i in ids)
    for w in fleet:
        stop(w)
    return JOBS / (t1 - t0)


def ceiling():
    """JetStream alone: pull + ack with the same client (examples/jetstream.rs)."""
    out = subprocess.run([JS, "pull", f"nats://127.0.0.1:{NATS}", str(JOBS)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split(": ")[1].split("/")[0])


def idle_api(config, seconds=10):
    """JetStream API requests per second while one worker sits idle."""
    fleet = workers(config, 1)
    time.sleep(2)  # connected and settled
    out = subprocess.run([JS, "api", f"nats://127.0.0.1:{NATS}", str(seconds)],
                         capture_output=True, text=True, check=True).stdout
    for w in fleet:
        stop(w)
    return float(out.split(": ")[1].split("/")[0])


# 1. Throughput, all in this run, against the same nginx and server.
# (PACED_ONLY=1 skips it, to look at latency alone.)
lines = []
if not os.environ.get("PACED_ONLY"):
    js_rate = ceiling()
    local = workspace("local", False, False)
    ids = bulk(local, "SPEC-LOCAL")
    t0 = time.time()
    cli(BIN, local, "drain", "--max-time", "600s")
    wait_for("the local drain's deliveries", lambda: delivered(ids))
    t1 = max(arrivals(ACCESS)[i] for i in ids)
    local_rate = JOBS / (t1 - t0)
    relay_ws = workspace("relay", False, True)
    bulk(relay_ws, "SPEC-RELAY")
    relay_rate = relay_only(relay_ws)
    # Operator reads over the JOBS jobs now waiting in the stream.
    reads = {}
    for name, args in [("status", ["status", "--source", "nats"]),
                       ("list --json", ["list", "--source", "nats", "--json"])]:
        t0 = time.time()
        subprocess.run([BIN, "--config", relay_ws, *args], env=ENV, capture_output=True)
        reads[name] = time.time() - t0
    fleet_rates = {n: through(workspace(f"nats{n}", False, True), f"SPEC-N{n}", n)
                   for n in (1, 2, 4)}
    api_rate = idle_api(workspace("idle", False, True))
    lines += [
        f"throughput, {JOBS} events spooled first, one 204 nginx, max_concurrency 4 per process:",
        f"  JetStream alone (pull + ack, async-nats):   {js_rate:8.0f} events/s  (the ceiling)",
        f"  local drain (1 process):                    {local_rate:8.0f} events/s",
        f"  relay alone (no worker running):            {relay_rate:8.0f} events/s",
    ]
    for n, rate in fleet_rates.items():
        lines.append(
            f"  relay -> JetStream -> {n} worker(s):         {rate:8.0f} events/s  "
            f"({rate / local_rate:.2f}x local, {rate / js_rate:.1%} of JetStream)")
    lines.append(f"  idle worker: {api_rate:.2f} JetStream API requests/s")
    for name, secs in reads.items():
        lines.append(f"  `{name} --source nats` over {JOBS} waiting jobs: {secs * 1000:.0f} ms")


# 2. Emit -> first attempt, paced.
def paced(config, spec):
    runs = []
    for _ in range(PACED):
        p = cli(BIN, config, "emit", "--spec", spec, "--event", "spec-auto.stage.completed",
                "--stage", "Plan", "--status", "success")
        runs.append((p.stdout.split()[0], time.time()))
        time.sleep(GAP)
    wait_for(f"{spec} deliveries", lambda: delivered([i for i, _ in runs]), 120)
    seen = arrivals(ACCESS)
    return [max(0.0, seen[i] - t) * 1000 for i, t in runs]


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


local_lat = paced(workspace("local-paced", True, False), "SPEC-LP")
nats_paced = workspace("nats-paced", True, True)
fleet = workers(nats_paced, 2)
relay_watch = start([BIN, "--config", nats_paced, "relay", "--watch"])
time.sleep(1)
nats_lat = paced(nats_paced, "SPEC-NP")
for w in fleet + [relay_watch]:
    stop(w)
stop_all()

lines.append(f"emit -> first attempt, {PACED} events {GAP * 1000:.0f} ms apart:")
for name, lat in [("local (emit kicks a drain)", local_lat),
                  ("nats (relay --watch, 2 workers --watch)", nats_lat)]:
    lines.append(f"  {name:40} p50 {pct(lat, 50):7.1f} ms  p95 {pct(lat, 95):7.1f} ms  max {max(lat):7.1f} ms")
print("\n".join(lines))
with open(os.path.join(OUT, "results.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
