"""What the NATS benchmarks (bench/nats.py, bench/nats_fifo.py) share: one
nginx answering 204 that logs each request's arrival time and
X-SpecKit-Id, one nats-server (JetStream, one node), both on free
127.0.0.1 ports under OUT; processes started and stopped; the spec-notify
CLI; and the arrivals as nginx logged them."""
import os, shutil, signal, socket, subprocess, sys, time

ENV = dict(os.environ, SECRET_HOOK="bench-secret-not-real")
EVENT = '{"event":{"type":"spec-auto.stage.completed"},"spec":{"id":"%s"}}\n'
procs = []


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


def start(args, **kw):
    p = subprocess.Popen(args, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def stop(p, timeout=30):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_all():
    for p in procs:
        stop(p)


def connectable(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def servers(out, nats_server):
    """Starts nginx and nats-server in a fresh OUT; returns (HTTP port,
    NATS port, the access log's path) once both answer."""
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "tmp"))
    http, nats = free_port(), free_port()
    access = os.path.join(out, "access.log")
    with open(os.path.join(out, "nginx.conf"), "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {out}/nginx.pid;
error_log {out}/nginx.err;
events {{ worker_connections 1024; }}
http {{
  log_format t '$msec $http_x_speckit_id';
  access_log {access} t buffer=4k flush=100ms;
  keepalive_requests 1000000;
  client_body_temp_path {out}/tmp;
  server {{ listen 127.0.0.1:{http}; location / {{ return 204; }} }}
}}
""")
    log = os.path.join(out, "nats.log")
    start(["nginx", "-c", os.path.join(out, "nginx.conf"), "-p", out])
    start([nats_server, "-a", "127.0.0.1", "-p", str(nats), "-js", "-sd", os.path.join(out, "js"),
           "-l", log])
    wait_for("nginx", lambda: connectable(http), 30)
    wait_for("nats-server", lambda: os.path.exists(log) and "Server is ready" in open(log).read(), 30)
    return http, nats, access


def arrivals(access):
    """First arrival time per delivery id, in log order."""
    seen = {}
    try:
        with open(access) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    seen.setdefault(parts[1], float(parts[0]))
    except FileNotFoundError:
        pass
    return seen


def cli(binary, config, *args, stdin=None):
    return subprocess.run([binary, "--config", config, *args], env=ENV, input=stdin,
                          capture_output=True, text=True, check=True)
