#!/usr/bin/env python3
"""Healthy-endpoint first-attempt latency beside a blackhole (issue 10).

A healthy receiver in this process (answers 204, records when each delivery
id first arrives and the envelope's `emittedAt`) and a blackhole (accepts TCP,
never answers, counts connections). Two workspaces in the same run:
  - alone:   one subscription, the healthy receiver
  - beside:  the same, plus a sibling subscription of the same events that
             points at the blackhole (per_request_timeout_ms 5000, defaults
             otherwise: max_in_flight 3 of 4 workers, breaker after 5 failures)
each under `drain --watch` and under auto_drain (emit kicks a drain). Every
case first emits WARM events (not measured: the sibling's backlog builds up
and its circuit opens), then N events GAP apart; latency = arrival at the
healthy receiver - emittedAt. Reports p50/p95/p99/max per case, the p95
ratio beside/alone (target <= 1.5x), and the requests that reached the
blackhole.
"""
import datetime, http.server, json, os, shutil, signal, socket, subprocess, sys, threading, time

BIN = sys.argv[1]
OUT = sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 200
WARM = 30
GAP = 0.02  # seconds between events: a pipeline emits stage by stage, not in a flood

seen = {}  # delivery id -> (first arrival s, emittedAt s)
lock = threading.Lock()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        t = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        emitted = datetime.datetime.fromisoformat(json.loads(body)["emittedAt"]).timestamp()
        with lock:
            seen.setdefault(self.headers["X-SpecKit-Id"], (t, emitted))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
HEALTHY = f"http://127.0.0.1:{server.server_address[1]}/hook"

class Blackhole:
    """Accepts connections, keeps them open, never answers."""
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.held = []
        threading.Thread(target=self.accept, daemon=True).start()
    def accept(self):
        while True:
            conn, _ = self.sock.accept()
            self.held.append(conn)
    def url(self):
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
    def connections(self):
        return len(self.held)

hole = Blackhole()
ENV = dict(os.environ, BENCH_SECRET="bench-secret-not-real")

def workspace(name, auto_drain, sibling):
    ws = os.path.join(OUT, name)
    shutil.rmtree(ws, ignore_errors=True)
    os.makedirs(ws)
    config = f"""[spec_ops.webhooks]
enabled = true
auto_drain = {str(auto_drain).lower()}
[[spec_ops.webhooks.subscriptions]]
id = "healthy"
url = "{HEALTHY}"
secret_env = "BENCH_SECRET"
"""
    if sibling:
        config += f"""[[spec_ops.webhooks.subscriptions]]
id = "blackhole"
url = "{hole.url()}"
secret_env = "BENCH_SECRET"
per_request_timeout_ms = 5000
"""
    with open(os.path.join(ws, "config.toml"), "w") as f:
        f.write(config)
    return os.path.join(ws, "config.toml")

def emit(config, spec):
    p = subprocess.run([BIN, "--config", config, "emit", "--spec", spec, "--event",
                        "spec-auto.stage.completed", "--stage", "Plan", "--status", "success"],
                       env=ENV, capture_output=True, text=True, check=True)
    return p.stdout.split()

def run_case(name, auto_drain, sibling):
    """Returns (latencies in ms, blackhole connections during the case)."""
    config = workspace(name, auto_drain, sibling)
    spec = "SPEC-" + name.upper().replace("-", "")
    worker = None
    if not auto_drain:
        worker = subprocess.Popen([BIN, "--config", config, "drain", "--watch"], env=ENV,
                                  stderr=open(os.path.join(OUT, name, "drain.err"), "w"))
    before = hole.connections()
    for _ in range(WARM):
        emit(config, spec)
        time.sleep(GAP)
    measured = []
    for _ in range(N):
        measured.append(emit(config, spec))
        time.sleep(GAP)
    # Each emit printed one id per subscription; exactly one is the healthy one.
    deadline = time.time() + 60
    while True:
        with lock:
            got = [[seen[i] for i in ids if i in seen] for ids in measured]
        if all(len(g) == 1 for g in got):
            break
        if time.time() > deadline:
            sys.exit(f"{name}: {sum(len(g) != 1 for g in got)} healthy deliveries missing after 60 s")
        time.sleep(0.05)
    connections = hole.connections() - before
    if worker:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=10)  # in-flight blackhole requests end within their timeout
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    else:
        # Background drains still wait on the blackhole; stop the ones for this workspace.
        for pid in os.listdir("/proc"):
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if config in cmd and "\0drain\0" in cmd:
                try:
                    os.kill(int(pid), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
    return [(g[0][0] - g[0][1]) * 1000 for g in got], connections

def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]

def ms(v):
    return f"{v:7.1f} ms"

cases = [
    ("watch-alone", False, False),
    ("watch-beside", False, True),
    ("auto-alone", True, False),
    ("auto-beside", True, True),
]
results = {}
for name, auto_drain, sibling in cases:
    print(f"{name}: {WARM} warm-up + {N} events...", file=sys.stderr)
    results[name] = run_case(name, auto_drain, sibling)

lines = [
    f"healthy endpoint, emittedAt -> first attempt: {N} events per case, {GAP*1000:.0f} ms apart, after {WARM} warm-up events",
]
for name, _, sibling in cases:
    lat, conns = results[name]
    hole_note = f"  blackhole requests {conns}" if sibling else ""
    lines.append(f"  {name:13} p50 {ms(pct(lat, 50))}  p95 {ms(pct(lat, 95))}  p99 {ms(pct(lat, 99))}  max {ms(max(lat))}{hole_note}")
for mode in ["watch", "auto"]:
    alone = pct(results[f"{mode}-alone"][0], 95)
    beside = pct(results[f"{mode}-beside"][0], 95)
    lines.append(f"  {mode}: p95 beside / alone = {beside / alone:.2f}x (target <= 1.5x)")
lines.append(f"each 'beside' case spooled {WARM + N} jobs for the blackhole sibling; 'blackhole requests' is how many reached it")
print("\n".join(lines))
with open(os.path.join(OUT, "results.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
server.shutdown()
