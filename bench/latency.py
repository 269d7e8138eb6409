#!/usr/bin/env python3
"""Emit -> first-attempt latency (issue 6), and emit's own cost.

A receiver in this process records when each delivery id first arrives; the
driver runs the real `spec-notify emit` N times, notes when each call returned,
and reports receiver time minus emit-return time (p50/p95/p99), for:
  - auto_drain = true, no drain running (emit kicks a background drain)
  - auto_drain = false with `spec-notify drain --watch` running
and the cost of emit itself with auto_drain on vs off (median, p95).
"""
import http.server, json, os, shutil, signal, statistics, subprocess, sys, threading, time

BIN = sys.argv[1]
OUT = sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 200
GAP = 0.02  # seconds between events: a pipeline emits stage by stage, not in a flood

first_seen = {}
lock = threading.Lock()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        t = time.time()
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            first_seen.setdefault(self.headers["X-SpecKit-Id"], t)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
URL = f"http://127.0.0.1:{server.server_address[1]}/hook"
ENV = dict(os.environ, BENCH_SECRET="bench-secret-not-real")

def workspace(name, auto_drain):
    ws = os.path.join(OUT, name)
    # A background drain of an earlier run may still be writing there.
    for _ in range(100):
        shutil.rmtree(ws, ignore_errors=True)
        if not os.path.exists(ws):
            break
        time.sleep(0.05)
    os.makedirs(ws)
    with open(os.path.join(ws, "config.toml"), "w") as f:
        f.write(f"""[spec_ops.webhooks]
enabled = true
auto_drain = {str(auto_drain).lower()}
[[spec_ops.webhooks.subscriptions]]
id = "hook"
url = "{URL}"
secret_env = "BENCH_SECRET"
""")
    return os.path.join(ws, "config.toml")

def emit_many(config, spec):
    """Returns [(delivery id, emit cost s, time emit returned)]."""
    out = []
    for i in range(N):
        t0 = time.time()
        p = subprocess.run([BIN, "--config", config, "emit", "--spec", spec, "--event",
                            "spec-auto.stage.completed", "--stage", "Plan", "--status", "success"],
                           env=ENV, capture_output=True, text=True, check=True)
        t1 = time.time()
        # "<delivery id> <subscription>", one line per job
        out.append((p.stdout.split()[0], t1 - t0, t1))
        time.sleep(GAP)
    return out

def wait_delivered(ids, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with lock:
            if all(i in first_seen for i in ids):
                return
        time.sleep(0.05)
    missing = [i for i in ids if i not in first_seen]
    sys.exit(f"{len(missing)} of {len(ids)} events never reached the receiver")

def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]

def latencies(runs):
    return [max(0.0, first_seen[i] - returned) * 1000 for i, _, returned in runs]

def ms(v):
    return f"{v:7.2f} ms"

# emit cost with auto_drain off (nothing else running): the baseline.
off = emit_many(workspace("off", False), "SPEC-OFF")
# auto_drain on, no drain running.
auto = emit_many(workspace("auto", True), "SPEC-AUTO")
wait_delivered([i for i, _, _ in auto])
# --watch worker, auto_drain off.
watch_config = workspace("watch", False)
worker = subprocess.Popen([BIN, "--config", watch_config, "drain", "--watch"], env=ENV, stderr=subprocess.DEVNULL)
time.sleep(0.3)
watch = emit_many(watch_config, "SPEC-WATCH")
wait_delivered([i for i, _, _ in watch])
worker.send_signal(signal.SIGTERM)
worker.wait(timeout=10)

cost = lambda runs: [c * 1000 for _, c, _ in runs]
lines = [
    f"events per mode: {N}, {GAP*1000:.0f} ms apart",
    "emit -> first attempt at the receiver:",
]
for name, runs in [("auto_drain (no daemon)", auto), ("drain --watch", watch)]:
    lat = latencies(runs)
    lines.append(f"  {name:24} p50 {ms(pct(lat, 50))}  p95 {ms(pct(lat, 95))}  p99 {ms(pct(lat, 99))}  max {ms(max(lat))}")
lines.append("emit's own cost (wall time of the process):")
for name, runs in [("auto_drain off", off), ("auto_drain on", auto), ("with --watch running", watch)]:
    c = cost(runs)
    lines.append(f"  {name:24} median {ms(statistics.median(c))}  p95 {ms(pct(c, 95))}")
ratio = statistics.median(cost(auto)) / statistics.median(cost(off))
lines.append(f"  auto_drain on / off median ratio: {ratio:.2f}x")
print("\n".join(lines))
with open(os.path.join(OUT, "results.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
server.shutdown()
