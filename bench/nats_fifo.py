#!/usr/bin/env python3
"""FIFO against unordered on the fleet, in one run (issue 21).

One nginx answering 204 (it logs arrival time and X-SpecKit-Id) and one
nats-server (JetStream, one node), on free 127.0.0.1 ports. For each of
`ordering = "none"` and `"fifo"` (each on its own stream prefix): SPECS x
PER events emitted in bulk first, 2 `drain --source nats --watch` workers
started, then `relay`; the clock runs from the relay's start to the last
arrival. Every FIFO lane's arrivals are checked to come in sequence.

Usage: bench/nats_fifo.py BIN NATS_SERVER OUT [SPECS] [PER]
"""
import os, sys, time

from nats_harness import EVENT, arrivals, cli, servers, start, stop, stop_all, wait_for

BIN, NATS_SERVER, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
SPECS = int(sys.argv[4]) if len(sys.argv) > 4 else 10
PER = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
HTTP, NATS, ACCESS = servers(OUT, NATS_SERVER)


def workspace(name, ordering):
    ws = os.path.join(OUT, name)
    os.makedirs(ws)
    config = os.path.join(ws, "config.toml")
    with open(config, "w") as f:
        f.write(f"""[spec_ops.webhooks]
enabled = true
auto_drain = false
max_concurrency = 11
max_spool_jobs = 100000

[spec_ops.webhooks.relay]
url = "nats://127.0.0.1:{NATS}"
stream = "{name.upper()}"

[[spec_ops.webhooks.subscriptions]]
id = "hook"
url = "http://127.0.0.1:{HTTP}/hook"
secret_env = "SECRET_HOOK"
jitter_ms = 0
ordering = "{ordering}"
""")
    return config


def run(name, ordering):
    config = workspace(name, ordering)
    lanes = {}
    for s in range(SPECS):
        spec = f"{name.upper()}-{s}"
        out = cli(BIN, config, "emit", "--input", "-", stdin=(EVENT % spec) * PER).stdout
        lanes[spec] = [line.split()[0] for line in out.splitlines() if line.strip()]
    ids = [i for l in lanes.values() for i in l]
    fleet = [start([BIN, "--config", config, "drain", "--source", "nats", "--watch"]) for _ in range(2)]
    time.sleep(1)  # the workers connect; not part of the measurement
    t0 = time.time()
    cli(BIN, config, "relay")
    wait_for(f"{name} deliveries", lambda: all(i in arrivals(ACCESS) for i in ids))
    seen = arrivals(ACCESS)
    t1 = max(seen[i] for i in ids)
    for w in fleet:
        stop(w, 60)
    in_order = all(all(seen[a] <= seen[b] for a, b in zip(l, l[1:])) for l in lanes.values())
    return len(ids) / (t1 - t0), in_order


none_rate, _ = run("none", "none")
fifo_rate, fifo_in_order = run("fifo", "fifo")
stop_all()
lines = [
    f"{SPECS} SPECs x {PER} jobs, relay + 2 workers, healthy nginx (same run):",
    f"  ordering = \"none\"  {none_rate:8.0f} events/s",
    f"  ordering = \"fifo\"  {fifo_rate:8.0f} events/s  ({fifo_rate / none_rate:.2f}x; every lane in order: {fifo_in_order})",
]
print("\n".join(lines))
with open(os.path.join(OUT, "results.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
