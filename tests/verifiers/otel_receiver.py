#!/usr/bin/env python3
"""A webhook receiver instrumented with the OpenTelemetry Python SDK, as a
service that continues its callers' traces would be: for each delivery it
extracts the W3C trace context from the request headers with
TraceContextTextMapPropagator, handles the request in a server span whose
parent is that context (recorded by the SDK's in-memory exporter), and
prints what it found.

Usage: PORT=0 otel_receiver.py
       otel_receiver.py --self-check

Listens on 127.0.0.1:$PORT (0: a free port) and prints
`listening on http://127.0.0.1:PORT/` on stderr once ready. Each POST is
answered 204 and printed as one JSON line on stdout:
  delivery_id       the X-SpecKit-Id header
  traceparent       the header as received (null when absent)
  tracestate        the trace state the propagator extracted (null if none)
  remote_trace_id   the extracted context's trace id (32 hex digits; null
                    when the propagator found no valid context)
  remote_span_id    the extracted context's span id (the sender's span)
  span_trace_id     the trace id of the SDK span that handled the request
  span_parent_id    its parent span id
Exit 3 when the libraries are missing: they come from
tests/verifiers/python (install.sh puts them there).
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "python"))

try:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as error:
    print(f"otel_receiver.py: {error}: run tests/verifiers/install.sh", file=sys.stderr)
    sys.exit(3)

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
TRACER = PROVIDER.get_tracer("spec-notify-test-receiver")
PROPAGATOR = TraceContextTextMapPropagator()


def hex_id(value, digits):
    return None if value is None else format(value, f"0{digits}x")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        carrier = {name.lower(): value for name, value in self.headers.items()}
        context = PROPAGATOR.extract(carrier=carrier)
        remote = trace.get_current_span(context).get_span_context()
        with TRACER.start_as_current_span(
            "POST /hook", context=context, kind=trace.SpanKind.SERVER
        ):
            pass
        span = EXPORTER.get_finished_spans()[-1]
        EXPORTER.clear()
        valid = remote.is_valid
        print(
            json.dumps(
                {
                    "delivery_id": carrier.get("x-speckit-id"),
                    "traceparent": carrier.get("traceparent"),
                    "tracestate": remote.trace_state.to_header() if valid and remote.trace_state else None,
                    "remote_trace_id": hex_id(remote.trace_id, 32) if valid else None,
                    "remote_span_id": hex_id(remote.span_id, 16) if valid else None,
                    "span_trace_id": hex_id(span.context.trace_id, 32),
                    "span_parent_id": hex_id(span.parent.span_id, 16) if span.parent else None,
                }
            ),
            flush=True,
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def main(args):
    if args == ["--self-check"]:
        return 0
    server = HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "0"))), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
