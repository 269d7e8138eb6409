#!/usr/bin/env bash
# Installs libfaketime (Debian's `faketime`) for tests/clock.rs, which steps
# the wall clock of a running drain (FAKETIME_TIMESTAMP_FILE) to check that
# waits inside a process run on the monotonic clock. Idempotent and quick
# when it is already there.
set -euo pipefail
if ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null
