#!/usr/bin/env bash
# Installs nats-server (Debian's package, 2.9.x) for tests/nats.rs, which
# starts its own servers on free loopback ports. Idempotent and quick when
# it is already there.
set -euo pipefail
if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq nats-server >/dev/null
# The package enables a system service; the tests run their own servers.
$sudo systemctl disable --now nats-server >/dev/null 2>&1 || true
