#!/usr/bin/env bash
# A spec-notify webhook receiver in shell: `spec-notify verify` does the crypto.
#
# It handles one HTTP request on stdin and writes the response on stdout, so
# any "one process per connection" server can run it, e.g. socat
# (apt-get install socat):
#
#   export WEBHOOK_SECRET=...            # and WEBHOOK_SECRET_PREVIOUS while rotating
#   socat TCP-LISTEN:8788,bind=127.0.0.1,reuseaddr,fork EXEC:"examples/receiver.sh speckit"
#
# Scheme: speckit (default), github, standard-webhooks, or v1a (Standard
# Webhooks ed25519: set WEBHOOK_PUBLIC_KEY=whpk_… instead of a secret, and
# WEBHOOK_PUBLIC_KEY_PREVIOUS while rotating). Headers it reads:
#   speckit            X-SpecKit-Signature: sha256=<hex HMAC-SHA256(secret, body)>
#   github             X-Hub-Signature-256 (same value as X-SpecKit-Signature)
#   standard-webhooks  webhook-id, webhook-timestamp, webhook-signature
#                      (spec-notify verify enforces a 5 minute tolerance)
#   always             Content-Length, X-SpecKit-Id, X-SpecKit-Event
# Answers 204 when genuine, 401 when not; logs one line per event on stderr.
# SPEC_NOTIFY names the binary (default: spec-notify on PATH).
set -uo pipefail

scheme="${1:-speckit}"
spec_notify="${SPEC_NOTIFY:-spec-notify}"
max_body=$((1024 * 1024))

respond() {
    printf 'HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' "$1"
    exit 0
}

IFS= read -r request_line || exit 0
length=0
id="-"
event="-"
verify_args=()
while IFS= read -r line; do
    line="${line%$'\r'}"
    [[ -z "$line" ]] && break
    name="${line%%:*}"
    value="${line#*:}"
    value="${value#"${value%%[![:space:]]*}"}"
    case "${name,,}" in
    content-length) length="$value" ;;
    x-speckit-id) id="$value" ;;
    x-speckit-event) event="$value" ;;
    x-speckit-signature | x-hub-signature-256 | webhook-id | webhook-timestamp | webhook-signature)
        verify_args+=(--header "$name: $value") ;;
    esac
done
[[ "$request_line" == POST\ * ]] || respond "405 Method Not Allowed"
[[ "$length" =~ ^[0-9]+$ ]] && ((length <= max_body)) || respond "413 Content Too Large"

body="$(mktemp)"
trap 'rm -f "$body"' EXIT
head -c "$length" >"$body"

# Exit 0 = valid, 1 = not (reason on stderr), 2 = our own set-up is wrong.
if [[ "$scheme" == v1a ]]; then
    keys=()
    for var in WEBHOOK_PUBLIC_KEY WEBHOOK_PUBLIC_KEY_PREVIOUS; do
        [[ -n "${!var:-}" ]] && keys+=(--public-key "${!var}")
    done
    if reason="$("$spec_notify" verify "${keys[@]}" "${verify_args[@]}" <"$body" 2>&1)"; then
        echo "accepted $id $event" >&2
        respond "204 No Content"
    fi
    echo "rejected $id: $reason" >&2
    respond "401 Unauthorized"
fi
for var in WEBHOOK_SECRET WEBHOOK_SECRET_PREVIOUS; do
    [[ -n "${!var:-}" ]] || continue
    if "$spec_notify" verify --secret-env "$var" --scheme "$scheme" "${verify_args[@]}" \
        <"$body" 2>/dev/null; then
        echo "accepted $id $event" >&2
        respond "204 No Content"
    fi
done
echo "rejected $id: $("$spec_notify" verify --secret-env WEBHOOK_SECRET --scheme "$scheme" \
    "${verify_args[@]}" <"$body" 2>&1)" >&2
respond "401 Unauthorized"
