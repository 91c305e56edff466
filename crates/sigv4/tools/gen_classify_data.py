#!/usr/bin/env python3
"""Generate custody-sigv4's classification data from botocore's service models.

Reads botocore's `service-2.json` for every service in the allowlist of
`crates/sigv4/data/overrides.json`, merges the hand-kept overrides (IAM action
names, resource ARN rules, credential-minting actions, request-time handlers)
and writes one compact JSON file per service to `crates/sigv4/data/<service>.json`
plus `crates/sigv4/src/classify/data_files.rs`, which embeds them.

Usage: python3 crates/sigv4/tools/gen_classify_data.py [--check]
  --check  exit 1 if the checked-in files differ from what would be generated.

The output depends only on botocore's version (recorded in every file) and the
overrides, so CI can run `--check` with the pinned botocore.
"""
import json
import os
import re
import sys

import botocore
import botocore.session

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(HERE)
DATA = os.path.join(CRATE, "data")
RUST_INDEX = os.path.join(CRATE, "src", "classify", "data_files.rs")

PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")
BUILTIN = {"partition", "region", "account"}
PROTOCOLS = {"query": "query", "json": "json", "rest-json": "rest-json", "rest-xml": "rest-xml", "ec2": "ec2"}


def wire_location(protocol, member_name, shape):
    """Where a top-level input member travels on the wire: (location, name)."""
    ser = shape.serialization
    loc = ser.get("location")
    if loc == "uri":
        return ["uri", ser.get("name", member_name)]
    if loc == "querystring":
        return ["query", ser.get("name", member_name)]
    if loc == "header":
        return ["header", ser.get("name", member_name).lower()]
    if loc == "headers":
        return None
    if protocol == "ec2":
        name = ser.get("queryName") or (ser.get("name", member_name)[:1].upper() + ser.get("name", member_name)[1:])
        return ["body", name]
    if protocol == "query":
        return ["body", ser.get("name", member_name)]
    if protocol == "rest-xml":
        return ["xml", ser.get("name", member_name)]
    # json and rest-json use the member name (or its locationName in rest-json).
    return ["body", ser.get("name", member_name) if protocol == "rest-json" else member_name]


def template_members(template):
    return [m for m in PLACEHOLDER.findall(template) if m not in BUILTIN]


def resources_for(op_name, input_members, rules):
    """Keep, per group, the alternatives whose members all exist in the input shape."""
    groups = []
    for group in rules:
        alts = []
        for alt in group:
            ops = alt.get("ops")
            if ops and not re.search(ops, op_name):
                continue
            if all(m in input_members for m in template_members(alt["t"])):
                out = {"t": alt["t"]}
                for key in ("arn", "tr", "each"):
                    if key in alt:
                        out[key] = alt[key]
                alts.append(out)
        if alts:
            groups.append(alts)
    return groups


def split_uri(uri):
    path, _, query = uri.partition("?")
    disc = []
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if key == "x-id":
            continue
        disc.append([key, value if eq else None])
    return path, disc


def generate_service(session, name, over, minting):
    model = session.get_service_model(name)
    protocol = PROTOCOLS[model.protocol]
    meta = model.metadata
    prefix = meta.get("signingName", meta["endpointPrefix"])
    actions = over.get("actions", {})
    handlers = over.get("handlers", {})
    aliases = over.get("aliases", {})
    op_resources = over.get("op_resources", {})
    requires = over.get("requires_header", {})
    forbids = over.get("forbids_header", {})
    ops = []
    for op_name in model.operation_names:
        op = model.operation_model(op_name)
        shape = op.input_shape
        members = dict(shape.members) if shape is not None else {}
        required = set(shape.required_members) if shape is not None else set()
        action = actions.get(op_name, f"{prefix}:{op_name}")
        rules = op_resources.get(op_name, over.get("resources", []))
        res = resources_for(op_name, members, rules)
        used = set()
        for group in res:
            for alt in group:
                used.update(template_members(alt["t"]))
        if "Qualifier" in members and any(a.get("tr") == "lambda_function" for g in res for a in g):
            used.add("Qualifier")
        mem = {}
        for m in sorted(used):
            loc = wire_location(protocol, m, members[m])
            if loc is not None:
                mem[m] = loc
        entry = {"name": op_name, "action": action}
        if protocol in ("rest-json", "rest-xml"):
            path, disc = split_uri(op.http["requestUri"])
            for m in sorted(required):
                ser = members[m].serialization
                if ser.get("location") == "querystring":
                    disc.append([ser.get("name", m), None])
            entry["method"] = op.http["method"]
            entry["path"] = path
            if disc:
                entry["disc"] = disc
            if protocol == "rest-xml":
                # Every query parameter the operation knows: anything else in an S3
                # request could be a subresource this data does not know, so deny.
                qkeys = sorted(
                    s.serialization.get("name", m)
                    for m, s in members.items()
                    if s.serialization.get("location") == "querystring"
                )
                if qkeys:
                    entry["qkeys"] = qkeys
        if mem:
            entry["mem"] = mem
        if res:
            entry["res"] = res
        handler = handlers.get(op_name, handlers.get("*"))
        if handler:
            entry["handler"] = handler
        if op_name in aliases:
            entry["alias"] = aliases[op_name]
        if op_name in requires:
            entry["requires_header"] = requires[op_name]
        if op_name in forbids:
            entry["forbids_header"] = forbids[op_name]
        if op_name in over.get("version_actions", {}):
            entry["version_action"] = over["version_actions"][op_name]
        if action in minting:
            entry["mints"] = True
        ops.append(entry)
    return {
        "service": name,
        "botocore": botocore.__version__,
        "api_version": meta["apiVersion"],
        "protocol": protocol,
        "signing_name": prefix,
        "iam_prefix": prefix,
        "target_prefix": meta.get("targetPrefix"),
        "json_version": meta.get("jsonVersion"),
        "query_compatible": "awsQueryCompatible" in meta,
        "operations": ops,
    }


def render(doc):
    """One operation per line: small diffs when a model changes, cheap to parse."""
    head = {k: v for k, v in doc.items() if k != "operations"}
    lines = [json.dumps(head, separators=(",", ":"))[:-1] + ',"operations":[']
    ops = [json.dumps(op, separators=(",", ":")) for op in doc["operations"]]
    lines.append(",\n".join(ops))
    lines.append("]}")
    return "\n".join(lines) + "\n"


def render_index(names):
    out = [
        "// @generated by crates/sigv4/tools/gen_classify_data.py; do not edit.",
        "//! The embedded per-service classification data (one JSON file per service).",
        "",
        "/// `(service name, JSON text)` for every service the gateway can classify.",
        "#[rustfmt::skip]",
        "pub(crate) const SERVICE_DATA: &[(&str, &str)] = &[",
    ]
    for n in names:
        out.append(f'    ("{n}", include_str!("../../data/{n}.json")),')
    out.append("];")
    return "\n".join(out) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    with open(os.path.join(DATA, "overrides.json")) as f:
        overrides = json.load(f)
    minting = set(overrides["mints_credentials"])
    session = botocore.session.get_session()
    outputs = {}
    names = overrides["allowlist"]
    for name in names:
        doc = generate_service(session, name, overrides["services"].get(name, {}), minting)
        outputs[os.path.join(DATA, f"{name}.json")] = render(doc)
    outputs[RUST_INDEX] = render_index(names)
    stale = []
    for path, text in outputs.items():
        old = open(path).read() if os.path.exists(path) else None
        if old != text:
            stale.append(path)
            if not check:
                with open(path, "w") as f:
                    f.write(text)
    if check and stale:
        print("stale generated files (run tools/gen_classify_data.py):", *stale, sep="\n  ")
        sys.exit(1)
    total = sum(len(json.loads(t)["operations"]) for p, t in outputs.items() if p.endswith(".json"))
    print(f"{len(names)} services, {total} operations, botocore {botocore.__version__}")


if __name__ == "__main__":
    main()
