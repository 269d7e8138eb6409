#!/usr/bin/env bash
# Installs the shells whose completion scripts tests/completions.rs drives
# for real, from Debian's packages: zsh and fish (bash is always there).
# Idempotent: with both present it does nothing. Needs root (CI runs as root).
set -euo pipefail

have_all() { command -v zsh >/dev/null && command -v fish >/dev/null; }

if ! have_all; then
    echo "install.sh: installing zsh, fish" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends zsh fish >/dev/null
fi

have_all || {
    echo "install.sh: zsh or fish is still missing" >&2
    exit 1
}
echo "install.sh: shells ready ($(zsh --version); $(fish --version))" >&2
