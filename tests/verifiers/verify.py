#!/usr/bin/env python3
"""Checks recorded spec-notify deliveries with third-party Python verifiers.

Usage: VERIFY_SECRET=... verify.py SCHEME HEADERS.json BODY
       verify.py --batch CASES.json
       verify.py --self-check

SCHEME is speckit, github, github-event or standard-webhooks. HEADERS.json is
a JSON object of the request's headers (any case); BODY is the raw request body.
  speckit            gidgethub.sansio.validate_event on X-SpecKit-Signature
  github             gidgethub.sansio.validate_event on X-Hub-Signature-256
  github-event       gidgethub.sansio.Event.from_http, as a GitHub app takes a
                     request: content type, X-GitHub-Event, X-GitHub-Delivery
                     and the signature (Python only)
  standard-webhooks  standardwebhooks.Webhook.verify on webhook-id,
                     webhook-timestamp, webhook-signature (5 minute tolerance)
A standard-webhooks delivery's X-SpecKit-Signature is checked with the speckit
scheme (keyed with the whole `whsec_...` string).

One delivery: exit 0 valid, 1 rejected (reason on stderr). --batch checks a
JSON array of {"scheme", "secret", "headers", "body": path} and prints one
line per case, `ok` or `rejected: reason` (one process instead of many).
Exit 2 on usage errors, 3 when the libraries are missing: they come from
tests/verifiers/python (install.sh puts them there).
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "python"))

try:
    from gidgethub import BadRequest, ValidationFailure
    from gidgethub.sansio import Event, validate_event
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError
except ImportError as error:
    print(f"verify.py: {error}: run tests/verifiers/install.sh", file=sys.stderr)
    sys.exit(3)


class Usage(Exception):
    pass


def header(headers, name):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    raise ValidationFailure(f"missing header {name}")


def check(scheme, secret, headers, body):
    """None when valid, else the library's reason."""
    try:
        if scheme == "speckit":
            validate_event(body, signature=header(headers, "X-SpecKit-Signature"), secret=secret)
        elif scheme == "github":
            validate_event(body, signature=header(headers, "X-Hub-Signature-256"), secret=secret)
        elif scheme == "github-event":
            lowered = {key.lower(): value for key, value in headers.items()}
            event = Event.from_http(lowered, body, secret=secret)
            if event.event != lowered["x-github-event"] or event.delivery_id != lowered["x-github-delivery"]:
                raise ValidationFailure("event or delivery id read wrong")
            if not isinstance(event.data, dict):
                raise ValidationFailure("payload is not a JSON object")
        elif scheme == "standard-webhooks":
            Webhook(secret).verify(body, headers)
        else:
            raise Usage(f"unknown scheme {scheme!r}")
    except KeyError as error:
        return f"KeyError: {error}"
    except (ValidationFailure, BadRequest, WebhookVerificationError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main(argv):
    args = argv[1:]
    if args == ["--self-check"]:
        return 0
    if len(args) == 2 and args[0] == "--batch":
        for case in json.loads(read(args[1])):
            reason = check(case["scheme"], case["secret"], case["headers"], read(case["body"]))
            print("ok" if reason is None else f"rejected: {reason}")
        return 0
    if len(args) != 3:
        raise Usage(__doc__)
    secret = os.environ.get("VERIFY_SECRET")
    if not secret:
        raise Usage("set VERIFY_SECRET")
    scheme, headers_path, body_path = args
    reason = check(scheme, secret, json.loads(read(headers_path)), read(body_path))
    print("ok" if reason is None else f"rejected: {reason}", file=sys.stderr)
    return 0 if reason is None else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Usage as error:
        print(f"verify.py: {error}", file=sys.stderr)
        sys.exit(2)
