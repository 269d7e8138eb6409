# Sourced by the bench scripts. `start_nginx OUT` starts one nginx that
# answers every POST with 204 on a free 127.0.0.1 port, its files under
# OUT (which must exist), and returns once it answers; it sets PORT, URL
# (`http://127.0.0.1:PORT/hook`) and NGINX_PID, for the caller's EXIT trap
# to stop it. nginx must be installed (the callers install nginx-light).
start_nginx() {
  local out=$1
  mkdir -p "$out/tmp"
  # A free port, so the bench never talks to somebody else's server.
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  URL=http://127.0.0.1:$PORT/hook
  cat > "$out/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $out/nginx.pid;
error_log $out/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $out/tmp;
  proxy_temp_path $out/tmp;
  fastcgi_temp_path $out/tmp;
  uwsgi_temp_path $out/tmp;
  scgi_temp_path $out/tmp;
  server { listen 127.0.0.1:$PORT; location / { return 204; } }
}
NGINX
  nginx -c "$out/nginx.conf" -p "$out" &
  NGINX_PID=$!
  for _ in $(seq 50); do
    curl -s -o /dev/null -X POST "$URL" && return 0
    sleep 0.1
  done
  kill "$NGINX_PID" 2>/dev/null || true
  echo "nginx did not answer on $URL (see $out/nginx.err)" >&2
  return 1
}
