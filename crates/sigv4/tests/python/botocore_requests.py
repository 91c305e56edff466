#!/usr/bin/env python3
"""Signs requests the way real clients do (botocore) and prints them as JSON, for the
custody-sigv4 verifier tests.

Each request is captured at botocore's `before-send` event and answered with a fake empty
response, so no server is needed. Output: a JSON list of
{name, method, url, headers: [[name, value], ...], body_b64, presigned}.
Headers include `Host` as an HTTP client would send it.

Usage: botocore_requests.py ACCESS_KEY_ID SECRET_ACCESS_KEY ENDPOINT_URL
"""
import base64
import json
import sys
from urllib.parse import urlsplit

import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.config import Config


class _Raw:
    def stream(self, **_kw):
        yield b""

    def read(self, *_a, **_kw):
        return b""


def main():
    akid, secret, endpoint = sys.argv[1], sys.argv[2], sys.argv[3]
    session = botocore.session.get_session()
    session.set_credentials(akid, secret)
    captured = []
    current = {"name": None}

    def before_send(request, **_kw):
        body = request.body
        if hasattr(body, "read"):
            pos = body.tell() if hasattr(body, "tell") else None
            data = body.read()
            if pos is not None:
                body.seek(pos)
            body = data
        if body is None:
            body = b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = [[k, v.decode() if isinstance(v, bytes) else v] for k, v in request.headers.items()]
        if not any(k.lower() == "host" for k, _ in headers):
            headers.insert(0, ["Host", urlsplit(request.url).netloc])
        captured.append({
            "name": current["name"],
            "method": request.method,
            "url": request.url,
            "headers": headers,
            "body_b64": base64.b64encode(body).decode(),
            "presigned": False,
        })
        return AWSResponse(request.url, 200, {}, _Raw())

    cfg = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})

    def client(service, config=cfg):
        c = session.create_client(service, region_name="us-east-1", endpoint_url=endpoint, config=config)
        c.meta.events.register("before-send", before_send)
        return c

    def call(name, fn):
        current["name"] = name
        before = len(captured)
        try:
            fn()
        except Exception:  # the fake response does not parse for every operation
            pass
        if len(captured) == before:
            raise SystemExit(f"no request captured for {name}")

    s3 = client("s3", cfg.merge(Config(signature_version="s3v4")))
    keys = {
        "plain": "plain.txt",
        "specials": "a=b+c@d%e,f;g",
        "slashes": "dir//x/../y/./z",
        "unicode": "ünï cödé/日本.txt",
        "space": "with space",
        "tilde": "a~b!c'd(e)f*g",
    }
    for label, key in keys.items():
        call(f"s3-get-{label}", lambda key=key: s3.get_object(Bucket="bucket", Key=key))
    call("s3-put-0", lambda: s3.put_object(Bucket="bucket", Key="empty", Body=b""))
    call("s3-put-1", lambda: s3.put_object(Bucket="bucket", Key="one", Body=b"x"))
    big = bytes(range(256)) * 400
    call("s3-put-100k", lambda: s3.put_object(Bucket="bucket", Key="a=b+c@d%e", Body=big,
                                             ContentType="application/octet-stream",
                                             Metadata={"note": "a  b"}))
    call("s3-list-prefix-delimiter", lambda: s3.list_objects_v2(Bucket="bucket", Prefix="a b+c/ü", Delimiter="/"))
    call("s3-create-multipart", lambda: s3.create_multipart_upload(Bucket="bucket", Key="mp key"))
    call("s3-get-response-params", lambda: s3.get_object(
        Bucket="bucket", Key="k", VersionId="v+1 2",
        ResponseContentDisposition='attachment; filename="a b+c.txt"'))
    call("s3-delete-objects", lambda: s3.delete_objects(
        Bucket="bucket", Delete={"Objects": [{"Key": "a"}, {"Key": "b c"}]}))

    for label, params in {
        "get": ("get_object", {"Bucket": "bucket", "Key": "a=b+c@d%e/ünï"}),
        "put": ("put_object", {"Bucket": "bucket", "Key": "up load"}),
        "list": ("list_objects_v2", {"Bucket": "bucket", "Prefix": "a b+c"}),
    }.items():
        url = s3.generate_presigned_url(params[0], Params=params[1], ExpiresIn=3600,
                                        HttpMethod="PUT" if label == "put" else None)
        captured.append({
            "name": f"s3-presigned-{label}",
            "method": "PUT" if label == "put" else "GET",
            "url": url,
            "headers": [["Host", urlsplit(url).netloc]],
            "body_b64": "",
            "presigned": True,
        })

    # botocore's default for S3 presigning is still signature version 2: rejected as such.
    s3v2 = client("s3", cfg.merge(Config(signature_version="s3")))
    url = s3v2.generate_presigned_url("get_object", Params={"Bucket": "bucket", "Key": "k"})
    captured.append({
        "name": "s3-presigned-sigv2",
        "method": "GET",
        "url": url,
        "headers": [["Host", urlsplit(url).netloc]],
        "body_b64": "",
        "presigned": True,
    })

    sts = client("sts")
    call("sts-get-caller-identity", lambda: sts.get_caller_identity())
    call("sts-assume-role", lambda: sts.assume_role(
        RoleArn="arn:aws:iam::123456789012:role/r", RoleSessionName="s+1 2",
        Policy='{"Version":"2012-10-17"}'))
    # botocore presigns query-protocol operations with their modelled method (POST), body
    # moved into the query: the URL is valid for an empty-bodied POST.
    url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=600)
    captured.append({
        "name": "sts-presigned",
        "method": "POST",
        "url": url,
        "headers": [["Host", urlsplit(url).netloc]],
        "body_b64": "",
        "presigned": True,
    })

    ddb = client("dynamodb")
    call("dynamodb-get-item", lambda: ddb.get_item(TableName="t", Key={"pk": {"S": "a b+c"}}))
    call("dynamodb-batch-write", lambda: ddb.batch_write_item(RequestItems={
        "t1": [{"PutRequest": {"Item": {"pk": {"S": "1"}}}}],
        "t2": [{"DeleteRequest": {"Key": {"pk": {"S": "2"}}}}]}))

    sqs = client("sqs")
    call("sqs-send-message", lambda: sqs.send_message(
        QueueUrl=f"{endpoint}/123456789012/q", MessageBody="hello world + more & = ü"))
    call("sqs-list-queues", lambda: sqs.list_queues(QueueNamePrefix="a b+c"))

    json.dump(captured, sys.stdout)


if __name__ == "__main__":
    main()
