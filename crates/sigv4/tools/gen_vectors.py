#!/usr/bin/env python3
"""Build one request per operation of every classified service with botocore's own
serializer, and print them as JSON test vectors for crates/sigv4/tests/classify_botocore.rs
(every service the classification data covers, or those named).

Each operation's required input members are filled generically from the shape model
(names that look like buckets, keys, ARNs, queue URLs get plausible values). The request
goes through botocore's whole pipeline (serialise, checksums, sign) and is captured at
`before-send`; nothing is sent. SQS operations are also serialised with the legacy query
protocol, which SQS still accepts.

Usage: python3 gen_vectors.py [service ...] > vectors.json
"""
import datetime
import json
import os
import re
import sys

import botocore
import botocore.config
import botocore.serialize
import botocore.session

HERE = os.path.dirname(os.path.abspath(__file__))
ACCOUNT = "123456789012"


class Captured(Exception):
    def __init__(self, request):
        self.request = request


def string_for(name, shape):
    if shape.enum:
        return shape.enum[0]
    low = name.lower()
    if name == "Bucket" or low.endswith("bucketname"):
        value = "bucket"
    elif name == "Key":
        value = "dir/key.txt"
    elif name == "CopySource":
        value = "src-bucket/src/key.txt"
    elif name == "QueueUrl":
        value = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/queue"
    elif low.endswith("arn"):
        value = f"arn:aws:iam::{ACCOUNT}:role/example-role"
    elif name == "TableName":
        value = "table"
    elif name == "FunctionName":
        value = "function"
    elif name == "Statement":
        value = 'SELECT * FROM "table"'
    elif name == "KeyId":
        value = "1234abcd-12ab-34cd-56ef-1234567890ab"
    else:
        value = "x"
    minimum = shape.metadata.get("min") or 0
    if len(value) < minimum:
        value = value + "x" * (minimum - len(value))
    return value


def fill(name, shape, depth=0):
    t = shape.type_name
    if t == "string":
        return string_for(name, shape)
    if t in ("integer", "long"):
        return max(1, int(shape.metadata.get("min") or 1))
    if t in ("float", "double"):
        return 1.0
    if t == "boolean":
        return True
    if t == "timestamp":
        return datetime.datetime(2024, 1, 1)
    if t == "blob":
        return b"x"
    if t == "list":
        return [fill(name, shape.member, depth + 1)] if depth < 6 else []
    if t == "map":
        return {"k": fill(name, shape.value, depth + 1)} if depth < 6 else {}
    if t == "structure":
        if depth >= 6:
            return {}
        if depth > 0 and not shape.required_members and shape.members:
            # Unions and all-optional items (DynamoDB TransactWriteItem): one member.
            first = next(iter(shape.members.items()))
            return {first[0]: fill(first[0], first[1], depth + 1)}
        return {m: fill(m, shape.members[m], depth + 1) for m in shape.required_members}
    raise ValueError(f"unknown shape type {t}")


def params_for(op):
    shape = op.input_shape
    if shape is None:
        return {}
    return {m: fill(m, shape.members[m]) for m in shape.required_members}


def signing_name(headers, url):
    auth = headers.get("Authorization", "")
    m = re.search(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request", auth)
    if m:
        return m.group(1)
    m = re.search(r"X-Amz-Credential=[^&]*%2F([^%&]+)%2Faws4_request", url)
    return m.group(1) if m else None


def text(v):
    return v.decode("latin-1") if isinstance(v, bytes) else str(v)


def body_bytes(body):
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if hasattr(body, "read"):
        data = body.read()
        return data if isinstance(data, bytes) else data.encode("utf-8")
    return bytes(body)


def vectors_for(session, service):
    config = botocore.config.Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 0},
        inject_host_prefix=False,
        parameter_validation=False,
        request_checksum_calculation="when_required",
    )
    client = session.create_client(
        service,
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=config,
    )

    def capture(request, **_):
        raise Captured(request)

    client.meta.events.register("before-send", capture)
    model = client.meta.service_model
    out = []
    for name in model.operation_names:
        op = model.operation_model(name)
        params = params_for(op)
        vector = {"service": service, "operation": name, "protocol": model.protocol}
        try:
            getattr(client, botocore.xform_name(name))(**params)
            vector["error"] = "request was not captured"
        except Captured as c:
            r = c.request
            headers = [[k, text(v)] for k, v in r.headers.items()]
            vector.update(
                method=r.method,
                url=r.url,
                headers=headers,
                body=body_bytes(r.body).hex(),
                signing_name=signing_name(dict(headers), r.url),
            )
        except Exception as e:  # a vector we could not build is reported, not hidden
            vector["error"] = f"{type(e).__name__}: {e}"
        out.append(vector)
    if model.metadata.get("awsQueryCompatible") is not None:
        out.extend(legacy_query_vectors(service, model))
    return out


def legacy_query_vectors(service, model):
    """The same operations in the query protocol (SQS before its JSON migration)."""
    serializer = botocore.serialize.create_serializer("query")
    out = []
    for name in model.operation_names:
        op = model.operation_model(name)
        vector = {"service": service, "operation": name, "protocol": "query"}
        try:
            req = serializer.serialize_to_request(params_for(op), op)
            body = "&".join(
                f"{k}={v}" for k, v in [(k, botocore.utils.percent_encode(text(v))) for k, v in req["body"].items()]
            )
            vector.update(
                method="POST",
                url="http://127.0.0.1:9/",
                headers=[["Content-Type", "application/x-www-form-urlencoded; charset=utf-8"]],
                body=body.encode().hex(),
                signing_name=model.signing_name,
            )
        except Exception as e:
            vector["error"] = f"{type(e).__name__}: {e}"
        out.append(vector)
    return out


def main():
    data = os.path.join(os.path.dirname(HERE), "data")
    generated = sorted(
        f[:-5] for f in os.listdir(data) if f.endswith(".json") and f not in ("overrides.json", "skipped.json")
    )
    services = sys.argv[1:] or generated
    session = botocore.session.get_session()
    vectors = []
    for service in services:
        vectors.extend(vectors_for(session, service))
    json.dump({"botocore": botocore.__version__, "vectors": vectors}, sys.stdout)


if __name__ == "__main__":
    main()
