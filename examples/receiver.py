#!/usr/bin/env python3
"""A spec-notify webhook receiver in Python, standard library only.

    WEBHOOK_SECRET=... python3 receiver.py [speckit|github|standard-webhooks]

Listens on 127.0.0.1:$PORT (default 8788; 0 picks a free port), verifies each
POST, answers 204 when it is genuine and 401 when it is not, and prints one
line per event. Headers it reads:

  speckit            X-SpecKit-Signature: sha256=<hex HMAC-SHA256(secret, body)>
  github             X-Hub-Signature-256 (same value as X-SpecKit-Signature)
  standard-webhooks  webhook-id, webhook-timestamp, webhook-signature
                     (v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>, where
                     the secret is whsec_<base64 key>; space-separated list)
  always             X-SpecKit-Id (dedupe: the same on every retry/replay),
                     X-SpecKit-Event

During a secret rotation set WEBHOOK_SECRET_PREVIOUS too: both are accepted.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCHEMES = ("speckit", "github", "standard-webhooks")
TOLERANCE_SECONDS = 5 * 60  # standard-webhooks: reject older or newer timestamps
MAX_BODY = 1 << 20


def hex_signature_ok(secret: str, body: bytes, offered: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # compare_digest takes the same time wherever the strings differ, so an
    # attacker cannot find the signature byte by byte by timing the 401s.
    return hmac.compare_digest(expected.encode(), offered.strip().encode())


def standard_signature_ok(secret: str, headers, body: bytes) -> bool:
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    offered = headers.get("webhook-signature")
    if not (msg_id and timestamp and offered):
        return False
    try:
        sent_at = int(timestamp)
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        return False
    if abs(time.time() - sent_at) > TOLERANCE_SECONDS:
        return False  # stale (or replayed) delivery, or a badly wrong clock
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected.encode(), s.encode()) for s in offered.split(" "))


def genuine(scheme: str, secret: str, headers, body: bytes) -> bool:
    if scheme == "standard-webhooks":
        return standard_signature_ok(secret, headers, body)
    name = "X-Hub-Signature-256" if scheme == "github" else "X-SpecKit-Signature"
    offered = headers.get(name)
    return offered is not None and hex_signature_ok(secret, body, offered)


class Handler(BaseHTTPRequestHandler):
    scheme = "speckit"
    secrets: list = []
    seen: set = set()

    def do_POST(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self.answer(400)
        if length > MAX_BODY:
            return self.answer(413)
        body = self.rfile.read(length)  # verify these exact bytes, before parsing
        if not any(genuine(self.scheme, s, self.headers, body) for s in self.secrets):
            print(f"rejected: bad or missing {self.scheme} signature", file=sys.stderr, flush=True)
            return self.answer(401)
        delivery_id = self.headers.get("X-SpecKit-Id", "-")
        if delivery_id in self.seen:  # a retry or replay we already handled
            sys.stdout.write(f"duplicate {delivery_id}\n")
            sys.stdout.flush()
            return self.answer(204)
        self.seen.add(delivery_id)
        envelope = json.loads(body)
        event = envelope.get("event", {})
        # One write of the whole line: print() writes its pieces and the
        # newline separately, and two handler threads would interleave them.
        stage, status = event.get("stage", "-"), event.get("status", "-")
        spec = envelope.get("spec", {}).get("id", "-")
        kind = self.headers.get("X-SpecKit-Event", "-")
        sys.stdout.write(f"accepted {delivery_id} {kind} {spec} {stage}/{status}\n")
        sys.stdout.flush()
        self.answer(204)

    def answer(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass  # one line per event is printed above


def main():
    scheme = sys.argv[1] if len(sys.argv) > 1 else "speckit"
    secrets = [os.environ.get(v) for v in ("WEBHOOK_SECRET", "WEBHOOK_SECRET_PREVIOUS")]
    secrets = [s for s in secrets if s]
    if scheme not in SCHEMES or not secrets:
        sys.exit(f"usage: WEBHOOK_SECRET=... {sys.argv[0]} [{'|'.join(SCHEMES)}]")
    Handler.scheme, Handler.secrets = scheme, secrets
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8788"))), Handler)
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}/ ({scheme})", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
