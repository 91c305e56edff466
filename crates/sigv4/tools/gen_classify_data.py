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

IAM_DATA = os.path.join(os.path.dirname(CRATE), "grant", "data", "iam-actions.tsv")

GLOBAL_HOSTS = {}

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


def query_name(protocol, shape, default):
    """A member's name on the query/EC2 wire (botocore's Query/EC2 serializers)."""
    ser = shape.serialization
    if protocol == "ec2":
        if "queryName" in ser:
            return ser["queryName"]
        if "name" in ser:
            return ser["name"][:1].upper() + ser["name"][1:]
        return default
    return ser.get("name", default)


class Shapes:
    """The input shapes of a service as the validator reads them: which member names
    may appear on the wire, and what each holds. Only shapes reachable from an
    operation's input are kept. A structure is `{wire name: ref}`, a list
    `["l", ref, member segment or null]`, a map `["m", value ref, key name, value
    name, flattened]`; the ref `""` is a scalar and `"*"` a document (any JSON)."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.table = {}

    def ref(self, shape):
        if shape.type_name == "structure":
            if shape.metadata.get("document"):
                return "*"
            if shape.name not in self.table:
                self.table[shape.name] = None  # recursion guard
                self.table[shape.name] = self.struct(shape.members)
            return shape.name
        if shape.type_name == "list":
            if shape.name not in self.table:
                self.table[shape.name] = None
                self.table[shape.name] = self.list(shape)
            return shape.name
        if shape.type_name == "map":
            if shape.name not in self.table:
                self.table[shape.name] = None
                self.table[shape.name] = self.map(shape)
            return shape.name
        return ""

    def struct(self, members):
        out = {}
        for key, m in members.items():
            out[self.wire_name(key, m)] = self.ref(m)
        return dict(sorted(out.items()))

    def wire_name(self, key, m):
        if self.protocol in ("json", "rest-json"):
            return m.serialization.get("name", key)
        if (
            self.protocol == "query"
            and m.type_name == "list"
            and m.serialization.get("flattened")
            and m.member.serialization.get("name")
        ):
            # A flattened list whose member is named replaces the list's own name.
            return query_name(self.protocol, m.member, "")
        return query_name(self.protocol, m, key)

    def list(self, shape):
        seg = None
        if self.protocol == "query" and not shape.serialization.get("flattened"):
            seg = shape.member.serialization.get("name", "member")
        return ["l", self.ref(shape.member), seg]

    def map(self, shape):
        flat = bool(shape.serialization.get("flattened")) or self.protocol not in ("query", "ec2")
        key = query_name(self.protocol, shape.key, "key")
        value = query_name(self.protocol, shape.value, "value")
        return ["m", self.ref(shape.value), key, value, flat]


def located(members, location, lower=False):
    """The sorted wire names of the members that travel at `location` (REST)."""
    names = (
        s.serialization.get("name", m)
        for m, s in members.items()
        if s.serialization.get("location") == location
    )
    return sorted(n.lower() if lower else n for n in names)


def body_members(protocol, members):
    """Top-level members that travel in the body (not in the URI, query or headers)."""
    if protocol not in ("rest-json", "rest-xml"):
        return members
    return {k: m for k, m in members.items() if "location" not in m.serialization}


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
            needed = template_members(alt["t"]) + ([alt["if"]] if "if" in alt else [])
            if all(m in input_members for m in needed):
                out = {"t": alt["t"]}
                for key in ("arn", "tr", "each", "if"):
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


def global_hosts():
    """Endpoint prefix -> host name of the services AWS serves from one global endpoint in
    its `aws` partition (botocore's endpoints.json: `isRegionalized: false`)."""
    with open(os.path.join(os.path.dirname(botocore.__file__), "data", "endpoints.json")) as f:
        partitions = json.load(f)["partitions"]
    aws = next(p for p in partitions if p["partition"] == "aws")
    out = {}
    for prefix, svc in aws["services"].items():
        end = svc.get("endpoints", {}).get(svc.get("partitionEndpoint") or "", {})
        if svc.get("isRegionalized") is False and end.get("hostname"):
            out[prefix] = end["hostname"]
    return out


def load_iam_actions():
    """IAM prefix -> {action name lower case: action name as AWS spells it}, from the
    Service Authorization Reference data `custody_grant::iam` embeds."""
    actions = {}
    with open(IAM_DATA) as f:
        for line in f:
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or fields[1].startswith("="):
                continue
            actions.setdefault(fields[0], {})[fields[1].lower()] = fields[1]
    return actions


def returns_aws_credentials(shape, seen=None):
    """Whether an output shape carries AWS credentials anywhere (a `SecretAccessKey`
    member): an operation that hands them out mints credentials, whatever its name."""
    seen = set() if seen is None else seen
    if shape is None or shape.name in seen:
        return False
    seen.add(shape.name)
    if shape.type_name == "structure":
        return any(
            m.lower() == "secretaccesskey" or returns_aws_credentials(ms, seen)
            for m, ms in shape.members.items()
        )
    if shape.type_name == "list":
        return returns_aws_credentials(shape.member, seen)
    if shape.type_name == "map":
        return returns_aws_credentials(shape.value, seen)
    return False


def known_action(iam, action):
    prefix, _, name = action.partition(":")
    return name.lower() in iam.get(prefix, {})


def pick_protocol(model):
    """The protocol botocore speaks to the service (the first of the model's protocols in
    botocore's priority order), when the classifier reads it. `smithy-rpc-v2-cbor`, which
    other SDKs may send to services that list it, is not read."""
    try:
        resolved = model.resolved_protocol
    except Exception:  # no protocol botocore speaks
        return None
    return PROTOCOLS.get(resolved)


def iam_prefix_for(name, model, iam, renamed):
    """The IAM service prefix of a botocore service: an explicit rename (reviewed by hand),
    else the signing name, endpoint prefix or service name when the reference knows it and
    at least one operation is an action of it. `None`: the reference names none."""
    if name in renamed:
        return renamed[name]
    meta = model.metadata
    ops = {o.lower() for o in model.operation_names}
    for candidate in (meta.get("signingName"), meta.get("endpointPrefix"), name):
        if candidate in iam and ops & set(iam[candidate]):
            return candidate
    return None


def auto_overrides(name, model, iam, renamed):
    """What the hand-kept overrides say for a curated service, derived for any other: the
    IAM action of each operation from the reference (an operation whose name is no action
    of the service's IAM prefix is marked `noaction` and refused), no resource rules (the
    resource is `*`, which `custody_grant` decides over every resource the action takes)."""
    prefix = iam_prefix_for(name, model, iam, renamed)
    if prefix is None:
        return None
    known = iam[prefix]
    actions, noaction = {}, []
    for op in model.operation_names:
        spelled = known.get(op.lower())
        if spelled is None:
            noaction.append(op)
        else:
            actions[op] = f"{prefix}:{spelled}"
    return {"actions": actions, "noaction": noaction, "iam_prefix": prefix}


def generate_service(session, name, over, minting):
    model = session.get_service_model(name)
    protocol = pick_protocol(model)
    shapes = Shapes(protocol)
    # AWS JSON services that still take the query protocol (SQS) get a second table with
    # the query wire names.
    query_shapes = Shapes("query") if "awsQueryCompatible" in model.metadata else None
    meta = model.metadata
    prefix = meta.get("signingName", meta["endpointPrefix"])
    iam_prefix = over.get("iam_prefix", prefix)
    noaction = set(over.get("noaction", []))
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
                if "if" in alt:
                    used.add(alt["if"])
        if "Qualifier" in members and any(a.get("tr") == "lambda_function" for g in res for a in g):
            used.add("Qualifier")
        mem = {}
        for m in sorted(used):
            loc = wire_location(protocol, m, members[m])
            if loc is not None:
                mem[m] = loc
        entry = {"name": op_name, "action": action}
        if op_name in noaction:
            entry["noaction"] = True
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
            # Every query parameter the operation knows: anything else could be a
            # subresource or member this data does not know, so it is refused.
            qkeys = located(members, "querystring")
            if qkeys:
                entry["qkeys"] = qkeys
            # Header members an S3 or Lambda request may carry (any other `x-amz-*`
            # header is refused), and the prefix of a headers map (`x-amz-meta-`).
            hkeys = [h for h in located(members, "header", lower=True) if h.startswith("x-amz-")]
            # Headers the SDKs add to every request of the service (not model members).
            hkeys = sorted(set(hkeys) | set(over.get("sdk_headers", [])))
            if hkeys:
                entry["hkeys"] = hkeys
            hpre = located(members, "headers", lower=True)
            if hpre:
                entry["hpre"] = hpre
        payload = shape.serialization.get("payload") if shape is not None else None
        if protocol in ("json", "query", "ec2"):
            entry["in"] = shapes.struct(members)
            if query_shapes is not None:
                entry["qin"] = query_shapes.struct(members)
        elif payload is None and not body_members(protocol, members):
            # Nothing of this operation travels in the body: a body is refused.
            entry["nobody"] = True
        elif protocol == "rest-json":
            if payload is None:
                entry["in"] = shapes.struct(body_members(protocol, members))
            elif members[payload].type_name == "structure":
                entry["in"] = shapes.struct(members[payload].members)
        if op.request_compression and "gzip" in op.request_compression.get("encodings", []):
            entry["gzip"] = True
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
        if action in minting or returns_aws_credentials(op.output_shape):
            entry["mints"] = True
        ops.append(entry)
    return {
        "service": name,
        "botocore": botocore.__version__,
        "api_version": meta["apiVersion"],
        "protocol": protocol,
        "signing_name": prefix,
        "iam_prefix": iam_prefix,
        "endpoint_prefix": meta["endpointPrefix"],
        "global_host": GLOBAL_HOSTS.get(meta["endpointPrefix"]),
        "target_prefix": meta.get("targetPrefix"),
        "json_version": meta.get("jsonVersion"),
        "query_compatible": "awsQueryCompatible" in meta,
        "operations": ops,
        "shapes": dict(sorted(shapes.table.items())),
        "qshapes": dict(sorted(query_shapes.table.items())) if query_shapes else {},
    }


def render(doc):
    """One operation per line: small diffs when a model changes, cheap to parse."""
    head = {k: v for k, v in doc.items() if k not in ("operations", "shapes", "qshapes")}
    lines = [json.dumps(head, separators=(",", ":"))[:-1] + ',"operations":[']
    ops = [json.dumps(op, separators=(",", ":")) for op in doc["operations"]]
    lines.append(",\n".join(ops))
    lines.append('],"shapes":{')
    shapes = [
        json.dumps(k) + ":" + json.dumps(v, separators=(",", ":"))
        for k, v in doc["shapes"].items()
    ]
    lines.append(",\n".join(shapes))
    lines.append('},"qshapes":{')
    qshapes = [
        json.dumps(k) + ":" + json.dumps(v, separators=(",", ":"))
        for k, v in doc["qshapes"].items()
    ]
    lines.append(",\n".join(qshapes))
    lines.append("}}")
    return "\n".join(lines) + "\n"


def render_index(docs):
    out = [
        "// @generated by crates/sigv4/tools/gen_classify_data.py; do not edit.",
        "//! The embedded per-service classification data (one JSON file per service), with",
        "//! what picks a service before its file is parsed.",
        "",
        "use super::data::Embedded;",
        "",
        "/// Every service the gateway can classify, by service name.",
        "#[rustfmt::skip]",
        "pub(crate) const SERVICE_DATA: &[Embedded] = &[",
    ]
    for d in sorted(docs, key=lambda d: d["service"]):
        n = d["service"]
        out.append(
            f'    Embedded {{ name: "{n}", signing_name: "{d["signing_name"]}", '
            f'endpoint_prefix: "{d["endpoint_prefix"]}", global_host: "{d["global_host"] or ""}", '
            f'json: include_str!("../../data/{n}.json") }},'
        )
    out.append("];")
    return "\n".join(out) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    with open(os.path.join(DATA, "overrides.json")) as f:
        overrides = json.load(f)
    minting = set(overrides["mints_credentials"])
    session = botocore.session.get_session()
    iam = load_iam_actions()
    GLOBAL_HOSTS.update(global_hosts())
    outputs = {}
    curated = overrides["allowlist"]
    excluded = overrides["excluded"]
    names, entries, skipped = [], [], {}
    for name in session.get_available_services():
        if name in excluded:
            skipped[name] = excluded[name]
            continue
        model = session.get_service_model(name)
        if name in curated:
            over = dict(overrides["services"].get(name, {}))
            # An action the reference does not know (an operation newer than the data):
            # refused, as for any other service.
            # (A handler names the actions of its operations itself.)
            handlers = over.get("handlers", {})
            over["noaction"] = [
                op for op in model.operation_names
                if op not in handlers
                and not known_action(iam, over.get("actions", {}).get(op, f"{model.signing_name}:{op}"))
            ]
        else:
            over = auto_overrides(name, model, iam, overrides["iam_prefix"])
            if over is None:
                skipped[name] = "no IAM service prefix in the Service Authorization Reference matches it"
                continue
            extra = dict(overrides["services"].get(name, {}))
            # Hand-kept action names (an operation IAM authorises under another action's
            # name) join the derived ones; each must be in the reference.
            for op, action in extra.pop("actions", {}).items():
                if not known_action(iam, action):
                    sys.exit(f"{name}: override action `{action}` is not in the IAM reference")
                over["actions"][op] = action
                over["noaction"] = [o for o in over["noaction"] if o != op]
            over.update(extra)
        if pick_protocol(model) is None:
            skipped[name] = f"protocols {model.metadata.get('protocols')} not read by the classifier"
            continue
        doc = generate_service(session, name, over, minting)
        names.append(name)
        entries.append(doc)
        outputs[os.path.join(DATA, f"{name}.json")] = render(doc)
    outputs[RUST_INDEX] = render_index(entries)
    outputs[os.path.join(DATA, "skipped.json")] = json.dumps(skipped, indent=1, sort_keys=True) + "\n"
    # Files of services no longer generated would be embedded no more; remove them.
    for f in os.listdir(DATA):
        if f.endswith(".json") and f not in ("overrides.json", "skipped.json") and f[:-5] not in names:
            if check:
                print(f"stale data file: {f}")
                sys.exit(1)
            os.remove(os.path.join(DATA, f))
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
    total = sum(len(d["operations"]) for d in entries)
    refused = sum(1 for d in entries for op in d["operations"] if op.get("noaction"))
    print(
        f"{len(names)} services ({len(skipped)} skipped), {total} operations "
        f"({refused} without an IAM action), botocore {botocore.__version__}"
    )


if __name__ == "__main__":
    main()
