#!/usr/bin/env bash
# Installs the third-party webhook verifiers the e2e tests use (tests/verifiers.rs):
#   PyPI: gidgethub, standardwebhooks, cryptography (ed25519),
#         opentelemetry-api/-sdk               -> tests/verifiers/python
#   npm:  @octokit/webhooks-methods, @octokit/webhooks, standardwebhooks,
#         adaptivecards, and the chat platforms' parsers @mattermost/commonmark,
#         discord-markdown, markdown-it           -> tests/verifiers/node_modules
# Versions are pinned in requirements.txt, package.json and package-lock.json.
# Idempotent: when those files have not changed since the last install, it
# only checks that the libraries load, which takes well under a second.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

need() {
    command -v "$1" >/dev/null || {
        echo "install.sh: $1 is required (${2})" >&2
        exit 1
    }
}
need python3 "CPython 3 with pip"
need node "Node.js 20 or later"
need npm "npm, with Node.js"

fingerprint() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

python_stamp=".installed-python"
python_want="$(fingerprint requirements.txt)"
python_ready() {
    python3 verify.py --self-check && python3 ed25519_verify.py --self-check && python3 otel_receiver.py --self-check
}
if [[ "$(cat "$python_stamp" 2>/dev/null)" != "$python_want" ]] || ! python_ready; then
    echo "install.sh: installing Python verifiers into tests/verifiers/python" >&2
    rm -rf python.tmp
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-input \
        --target python.tmp -r requirements.txt
    rm -rf python
    mv python.tmp python
    echo "$python_want" >"$python_stamp"
fi

node_stamp=".installed-node"
node_want="$(fingerprint package.json package-lock.json)"
node_ready() {
    node verify.mjs --self-check && node github_receiver.mjs --self-check && node adaptive_card.mjs --self-check &&
        node ed25519_verify.mjs --self-check && node chat_render.mjs --self-check
}
if [[ "$(cat "$node_stamp" 2>/dev/null)" != "$node_want" ]] || ! node_ready; then
    echo "install.sh: installing Node verifiers into tests/verifiers/node_modules" >&2
    npm ci --no-audit --no-fund --loglevel=error
    echo "$node_want" >"$node_stamp"
fi

python_ready
node_ready
echo "install.sh: verifiers ready (gidgethub, standardwebhooks, cryptography, opentelemetry-sdk for Python; @octokit/webhooks-methods, @octokit/webhooks, standardwebhooks, adaptivecards, node:crypto, @mattermost/commonmark, discord-markdown, markdown-it for Node)" >&2
