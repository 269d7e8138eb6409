#!/usr/bin/env bash
# Installs what the report and metrics tests (tests/report.rs, tests/metrics.rs)
# drive for real, from Debian's packages:
#   chromium                  headless browser: opens the HTML report, screenshot, DOM
#   prometheus                promtool: `promtool check metrics` on our exposition
#   prometheus-node-exporter  the textfile collector that reads `metrics --output`
# Idempotent: with the three commands present it does nothing. Needs root (CI
# runs as root); services are not started by apt here (policy-rc.d), and the
# tests start node_exporter themselves on a loopback port.
set -euo pipefail

have_all() {
    command -v chromium >/dev/null &&
        command -v promtool >/dev/null &&
        command -v prometheus-node-exporter >/dev/null
}

if ! have_all; then
    echo "install.sh: installing chromium, prometheus (promtool), prometheus-node-exporter" >&2
    # The packages would start prometheus and node_exporter as services;
    # the tests start their own. A policy-rc.d that says no (101) keeps
    # apt from starting any, and goes again if we put it there.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        chromium prometheus prometheus-node-exporter fonts-dejavu-core >/dev/null
fi

have_all || {
    echo "install.sh: chromium, promtool or prometheus-node-exporter is still missing" >&2
    exit 1
}
echo "install.sh: report tools ready ($(chromium --version 2>/dev/null | head -1); $(promtool --version 2>&1 | head -1); node_exporter $(prometheus-node-exporter --version 2>&1 | head -1 | awk '{print $3}'))" >&2
