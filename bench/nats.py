#!/usr/bin/env python3
"""Scale-out on NATS JetStream against the local drain, in one run (issue 15).

One nginx answering 204 (it logs arrival time and X-SpecKit-Id) and one
nats-server (JetStream, one node), both on free 127.0.0.1 ports.

1. Throughput, JOBS events emitted in bulk first:
   - local: one `drain` of the spool;
   - nats: `relay` of the spool into JetStream while 2 `drain --source nats
     --watch` workers deliver; the clock runs from the relay's start to the
     last arrival.
2. Emit -> first attempt, PACED events emitted one by one (`emit` per event,
   GAP apart, as a pipeline does), auto_drain on:
   - local: emit kicks a background drain;
   - nats: emit kicks a background relay; 2 workers --watch deliver.
   Latency = first arrival at nginx - the moment emit returned.

Usage: bench/nats.py BIN NATS_SERVER OUT [JOBS] [PACED]
"""
import os, shutil, signal, socket, statistics, subprocess, sys, time

BIN, NATS_SERVER, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
JOBS = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
PACED = int(sys.argv[5]) if len(sys.argv) > 5 else 200
GAP = 0.02
ENV = dict(os.environ, SECRET_HOOK="bench-secret-not-real")
EVENT = '{"event":{"type":"spec-auto.stage.completed"},"spec":{"id":"%s"}}\n'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, done, timeout=600):
    deadline = time.time() + timeout
    while not done():
        if time.time() > deadline:
            sys.exit(f"gave up waiting for {what}")
        time.sleep(0.05)


shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(os.path.join(OUT, "tmp"))
HTTP, NATS = free_port(), free_port()
ACCESS = os.path.join(OUT, "access.log")
with open(os.path.join(OUT, "nginx.conf"), "w") as f:
    f.write(f"""worker_processes 1;
daemon off;
pid {OUT}/nginx.pid;
error_log {OUT}/nginx.err;
events {{ worker_connections 1024; }}
http {{
  log_format t '$msec $http_x_speckit_id';
  access_log {ACCESS} t buffer=4k flush=100ms;
  keepalive_requests 1000000;
  client_body_temp_path {OUT}/tmp;
  server {{ listen 127.0.0.1:{HTTP}; location / {{ return 204; }} }}
}}
""")
procs = []


def start(args, **kw):
    p = subprocess.Popen(args, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def connectable(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


start(["nginx", "-c", os.path.join(OUT, "nginx.conf"), "-p", OUT])
start([NATS_SERVER, "-a", "127.0.0.1", "-p", str(NATS), "-js", "-sd", os.path.join(OUT, "js"),
       "-l", os.path.join(OUT, "nats.log")])
wait_for("nginx", lambda: connectable(HTTP), 30)
wait_for("nats-server", lambda: "Server is ready" in open(os.path.join(OUT, "nats.log")).read()
         if os.path.exists(os.path.join(OUT, "nats.log")) else False, 30)


def arrivals():
    """First arrival time per delivery id."""
    seen = {}
    try:
        with open(ACCESS) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    seen.setdefault(parts[1], float(parts[0]))
    except FileNotFoundError:
        pass
    return seen


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


def cli(config, *args, stdin=None):
    return subprocess.run([BIN, "--config", config, *args], env=ENV, input=stdin,
                          capture_output=True, text=True, check=True)


def bulk(config, spec):
    out = cli(config, "emit", "--input", "-", stdin=(EVENT % spec) * JOBS).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def delivered(ids):
    seen = arrivals()
    return all(i in seen for i in ids)


def workers(config):
    return [start([BIN, "--config", config, "drain", "--source", "nats", "--watch"]) for _ in range(2)]


# 1. Throughput.
local = workspace("local", False, False)
ids = bulk(local, "SPEC-LOCAL")
t0 = time.time()
cli(local, "drain", "--max-time", "600s")
wait_for("the local drain's deliveries", lambda: delivered(ids))
t1 = max(arrivals()[i] for i in ids)
local_rate = JOBS / (t1 - t0)

nats = workspace("nats", False, True)
ids = bulk(nats, "SPEC-NATS")
fleet = workers(nats)
time.sleep(1)  # the workers connect; not part of the measurement
t0 = time.time()
cli(nats, "relay")
relay_s = time.time() - t0
wait_for("the workers' deliveries", lambda: delivered(ids))
t1 = max(arrivals()[i] for i in ids)
nats_rate = JOBS / (t1 - t0)
for w in fleet:
    stop(w)


# 2. Emit -> first attempt, paced.
def paced(config, spec):
    runs = []
    for _ in range(PACED):
        p = cli(config, "emit", "--spec", spec, "--event", "spec-auto.stage.completed",
                "--stage", "Plan", "--status", "success")
        runs.append((p.stdout.split()[0], time.time()))
        time.sleep(GAP)
    wait_for(f"{spec} deliveries", lambda: delivered([i for i, _ in runs]), 120)
    seen = arrivals()
    return [max(0.0, seen[i] - t) * 1000 for i, t in runs]


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


local_lat = paced(workspace("local-paced", True, False), "SPEC-LP")
nats_paced = workspace("nats-paced", True, True)
fleet = workers(nats_paced)
time.sleep(1)
nats_lat = paced(nats_paced, "SPEC-NP")
for w in fleet:
    stop(w)
for p in procs:
    stop(p)

lines = [
    f"throughput, {JOBS} events spooled first, one 204 nginx, max_concurrency 4 per process:",
    f"  local drain (1 process):                    {local_rate:8.0f} events/s",
    f"  relay -> JetStream -> 2 workers:            {nats_rate:8.0f} events/s  (relay alone: {JOBS / relay_s:.0f} events/s)",
    f"emit -> first attempt, {PACED} events {GAP * 1000:.0f} ms apart, auto_drain on:",
]
for name, lat in [("local (emit kicks a drain)", local_lat), ("nats (emit kicks relay, 2 workers)", nats_lat)]:
    lines.append(f"  {name:38} p50 {pct(lat, 50):7.1f} ms  p95 {pct(lat, 95):7.1f} ms  max {max(lat):7.1f} ms")
print("\n".join(lines))
with open(os.path.join(OUT, "results.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
