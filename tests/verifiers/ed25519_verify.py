#!/usr/bin/env python3
"""Checks recorded spec-notify deliveries' Standard Webhooks `v1a` (ed25519)
signatures with an implementation of the spec independent of spec-notify:
the `cryptography` library's Ed25519PublicKey, given only the receiver's
`whpk_...` public key.

Usage: ed25519_verify.py --batch CASES.json
       ed25519_verify.py --self-check

CASES.json is a JSON array of {"public_key", "headers", "body": path};
headers is a JSON object of the request's headers (any case). Prints one
line per case, `ok` or `rejected: reason`: valid when one `v1a,<base64>`
entry of webhook-signature is an ed25519 signature, by that key, of
`{webhook-id}.{webhook-timestamp}.{raw body}`, and webhook-timestamp is
within 5 minutes of now (the spec's advice). Exit 2 on usage errors, 3 when
the library is missing: it comes from tests/verifiers/python (install.sh).
"""

import base64
import binascii
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "python"))

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError as error:
    print(f"ed25519_verify.py: {error}: run tests/verifiers/install.sh", file=sys.stderr)
    sys.exit(3)

TOLERANCE_SECONDS = 5 * 60


class Rejected(Exception):
    pass


def header(headers, name):
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise Rejected(f"missing header {name}")


def public_key(text):
    if not text.startswith("whpk_"):
        raise Rejected("the public key does not start with whpk_")
    raw = base64.b64decode(text[len("whpk_"):], validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


def check(key_text, headers, body):
    """None when valid, else why not."""
    try:
        key = public_key(key_text)
        msg_id = header(headers, "webhook-id")
        timestamp = header(headers, "webhook-timestamp")
        offered = header(headers, "webhook-signature")
        if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
            raise Rejected(f"webhook-timestamp {timestamp} is outside the tolerance")
        signed = f"{msg_id}.{timestamp}.".encode() + body
        for entry in offered.split(" "):
            version, _, encoded = entry.partition(",")
            if version != "v1a":
                continue
            try:
                key.verify(base64.b64decode(encoded, validate=True), signed)
                return None
            except (InvalidSignature, binascii.Error, ValueError):
                continue
        raise Rejected("no v1a signature matches")
    except (Rejected, ValueError, binascii.Error) as error:
        return f"{type(error).__name__}: {error}"


def main(args):
    if args == ["--self-check"]:
        return 0
    if len(args) != 2 or args[0] != "--batch":
        print(f"ed25519_verify.py: usage: {__doc__}", file=sys.stderr)
        return 2
    with open(args[1], "rb") as f:
        cases = json.load(f)
    for case in cases:
        with open(case["body"], "rb") as f:
            reason = check(case["public_key"], case["headers"], f.read())
        print("ok" if reason is None else f"rejected: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
