#!/usr/bin/env python3
"""Test upstream for event-stream responses (bins/gateway/tests/event_stream.rs).

moto does not serve Bedrock Runtime, so this small server stands in for it: it checks the
SigV4 signature of each request with botocore's own signer (an implementation independent
of the gateway's) against the one key pair it knows, and answers `ConverseStream` with a
real `application/vnd.amazon.eventstream` response (prelude, headers, payload, CRC32s),
sent frame by frame. Anything else, or a bad signature, gets a 403 JSON error.

Usage: eventstream_upstream.py PORT ACCESS_KEY SECRET_KEY
It prints `ready` once listening; a request log goes to stderr.
"""
import binascii
import http.server
import json
import struct
import sys
import time

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

PORT, AK, SK = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def header(name, value):
    """An event-stream header of type string (7)."""
    n, v = name.encode(), value.encode()
    return struct.pack("!B", len(n)) + n + struct.pack("!BH", 7, len(v)) + v


def frame(event_type, payload):
    """One event-stream message: prelude (lengths + CRC), headers, payload, message CRC."""
    headers = (
        header(":event-type", event_type)
        + header(":content-type", "application/json")
        + header(":message-type", "event")
    )
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack("!II", total, len(headers))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + body
    return message + struct.pack("!I", binascii.crc32(message) & 0xFFFFFFFF)


EVENTS = [
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " from the stream"}}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("messageStop", {"stopReason": "end_turn"}),
    ("metadata", {"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}, "metrics": {"latencyMs": 1}}),
]


def signature_ok(handler, body):
    """Recompute the request's SigV4 signature with botocore over the headers it signed."""
    auth = handler.headers.get("Authorization", "")
    try:
        fields = dict(p.strip().split("=", 1) for p in auth.split(" ", 1)[1].split(","))
        signed = fields["SignedHeaders"].split(";")
        _, date, region, service, _ = fields["Credential"].split("/")
    except (IndexError, KeyError, ValueError):
        return False
    headers = {h: handler.headers.get(h, "") for h in signed}
    url = f"http://{handler.headers.get('host')}{handler.path}"
    request = AWSRequest(method=handler.command, url=url, data=body, headers=headers)
    request.context["timestamp"] = handler.headers.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(AK, SK), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return fields["Credential"].startswith(AK + "/") and expected == fields.get("Signature")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n)
        sys.stderr.write(f"{self.command} {self.path} {len(body)} bytes\n")
        if not signature_ok(self, body):
            return self.error(403, "SignatureDoesNotMatch")
        if not (self.path.startswith("/model/") and self.path.endswith("/converse-stream")):
            return self.error(404, "UnknownOperationException")
        self.send_response(200)
        self.send_header("content-type", "application/vnd.amazon.eventstream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for event_type, payload in EVENTS:
            data = frame(event_type, payload)
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            time.sleep(0.02)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def error(self, status, code):
        out = json.dumps({"message": code}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("x-amzn-errortype", code)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
