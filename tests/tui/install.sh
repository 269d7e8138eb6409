#!/usr/bin/env bash
# Installs tmux from Debian's packages for tests/tui.rs, which drives
# `spec-notify top` in a real terminal: a detached tmux session of a fixed
# size, keys sent with `send-keys`, the screen read with `capture-pane`.
# Idempotent: does nothing when tmux is there. Needs root (CI runs as root).
set -euo pipefail

if ! command -v tmux >/dev/null; then
    echo "install.sh: installing tmux" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends tmux >/dev/null
fi

command -v tmux >/dev/null || {
    echo "install.sh: tmux is still missing" >&2
    exit 1
}
echo "install.sh: tmux ready ($(tmux -V))" >&2
