#!/usr/bin/env bash
# Installs everything the test suite drives for real, then stops:
#   tests/verifiers/install.sh  third-party webhook verifiers (PyPI, npm)
#   tests/report/install.sh     chromium, promtool, node_exporter (Debian)
#   tests/nats/install.sh       nats-server (Debian, 2.9.x) for tests/nats.rs
#   tests/clock/install.sh      libfaketime (Debian's faketime) for tests/clock.rs
# Both are idempotent and quick when nothing changed. The README's test
# command and .ci/run are: bash tests/install.sh && cargo test
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/verifiers/install.sh"
bash "$here/report/install.sh"
bash "$here/nats/install.sh"
bash "$here/clock/install.sh"
