"""Bootstrap a moto server before IAM enforcement is switched on.

Reads a JSON plan on stdin, creates what it names with unauthenticated calls
(moto serves those while its no-auth allowance lasts) and prints a JSON
summary on stdout: the gateway user's key pair, role ARNs and queue URLs.
"""
import json
import sys

import boto3

plan = json.load(sys.stdin)
endpoint = plan["endpoint"]
region = plan.get("region", "us-east-1")
kw = dict(
    endpoint_url=endpoint,
    region_name=region,
    aws_access_key_id="bootstrap",
    aws_secret_access_key="bootstrap",
)
iam = boto3.client("iam", **kw)
out = {"roles": {}, "queues": {}, "users": {}}

for user in plan.get("users", []):
    name = user["name"]
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    key = iam.create_access_key(UserName=name)["AccessKey"]
    for i, doc in enumerate(user.get("policies", [])):
        iam.put_user_policy(
            UserName=name, PolicyName=f"{name}-{i}", PolicyDocument=json.dumps(doc)
        )
    out["users"][name] = {
        "arn": arn,
        "access_key_id": key["AccessKeyId"],
        "secret_access_key": key["SecretAccessKey"],
    }

for role in plan.get("roles", []):
    # A role with no trusted users trusts only a foreign account, so nobody here may
    # assume it (IAM rejects an empty principal list).
    principals = [out["users"][p]["arn"] for p in role["trusted_users"]] or [
        "arn:aws:iam::111122223333:root"
    ]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": principals},
                "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
            }
        ],
    }
    arn = iam.create_role(
        RoleName=role["name"],
        AssumeRolePolicyDocument=json.dumps(trust),
        MaxSessionDuration=role.get("max_session_duration", 3600),
    )["Role"]["Arn"]
    for i, doc in enumerate(role.get("policies", [])):
        iam.put_role_policy(
            RoleName=role["name"],
            PolicyName=f"{role['name']}-{i}",
            PolicyDocument=json.dumps(doc),
        )
    out["roles"][role["name"]] = arn

if plan.get("buckets"):
    s3 = boto3.client("s3", **kw)
    for bucket in plan["buckets"]:
        s3.create_bucket(Bucket=bucket["name"])
        for key, body in bucket.get("objects", {}).items():
            s3.put_object(Bucket=bucket["name"], Key=key, Body=body.encode())

if plan.get("tables"):
    ddb = boto3.client("dynamodb", **kw)
    for table in plan["tables"]:
        ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

if plan.get("queues"):
    sqs = boto3.client("sqs", **kw)
    for queue in plan["queues"]:
        out["queues"][queue] = sqs.create_queue(QueueName=queue)["QueueUrl"]

if plan.get("secrets"):
    sm = boto3.client("secretsmanager", **kw)
    for name, value in plan["secrets"]:
        sm.create_secret(Name=name, SecretString=value)

json.dump(out, sys.stdout)
