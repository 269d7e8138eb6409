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
import json, os, shutil, signal, socket, subprocess, sys, time

BIN, NATS_SERVER, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
SPECS = int(sys.argv[4]) if len(sys.argv) > 4 else 10
PER = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
ENV = dict(os.environ, SECRET_HOOK="bench-secret-not-real")
EVENT = '{"event":{"type":"spec-auto.stage.completed"},"spec":{"id":"%s"}}\n'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, done, timeout=900):
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


def start(args):
    p = subprocess.Popen(args, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=60)
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
wait_for("nats-server", lambda: os.path.exists(os.path.join(OUT, "nats.log"))
         and "Server is ready" in open(os.path.join(OUT, "nats.log")).read(), 30)


def arrivals():
    """Arrival times per delivery id, in log order."""
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


def cli(config, *args, stdin=None):
    return subprocess.run([BIN, "--config", config, *args], env=ENV, input=stdin,
                          capture_output=True, text=True, check=True)


def run(name, ordering):
    config = workspace(name, ordering)
    lanes = {}
    for s in range(SPECS):
        spec = f"{name.upper()}-{s}"
        out = cli(config, "emit", "--input", "-", stdin=(EVENT % spec) * PER).stdout
        lanes[spec] = [line.split()[0] for line in out.splitlines() if line.strip()]
    ids = [i for l in lanes.values() for i in l]
    fleet = [start([BIN, "--config", config, "drain", "--source", "nats", "--watch"]) for _ in range(2)]
    time.sleep(1)  # the workers connect; not part of the measurement
    t0 = time.time()
    cli(config, "relay")
    wait_for(f"{name} deliveries", lambda: all(i in arrivals() for i in ids))
    seen = arrivals()
    t1 = max(seen[i] for i in ids)
    for w in fleet:
        stop(w)
    in_order = all(all(seen[a] <= seen[b] for a, b in zip(l, l[1:])) for l in lanes.values())
    return len(ids) / (t1 - t0), in_order


none_rate, _ = run("none", "none")
fifo_rate, fifo_in_order = run("fifo", "fifo")
for p in procs:
    stop(p)
lines = [
    f"{SPECS} SPECs x {PER} jobs, relay + 2 workers, healthy nginx (same run):",
    f"  ordering = \"none\"  {none_rate:8.0f} events/s",
    f"  ordering = \"fifo\"  {fifo_rate:8.0f} events/s  ({fifo_rate / none_rate:.2f}x; every lane in order: {fifo_in_order})",
]
print("\n".join(lines))
with open(os.path.join(OUT, "results.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
