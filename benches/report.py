"""Print the tables of benches/gateway-vs-nginx.sh.

argv[1]: the loadgen result lines (JSON, one per point, with "path" and "label").
stdin: one JSON object with the memory readings and the run's facts.
"""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
facts = json.load(sys.stdin)


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def tail_cells(x, d, name):
    """p50/p99 over direct, log append mean and server CPU per request, for one point.

    The proxy's own CPU per request: the gateway process's; for nginx, the nginx path's
    figure minus the direct path's (the same nginx is the upstream).
    """
    cells = []
    if d and name != "direct":
        cells += [f"{x['p50_us'] - d['p50_us']:+d} µs", f"{x['p99_us'] - d['p99_us']:+d} µs"]
    else:
        cells += ["", ""]
    mean = x.get("log_append_mean_us")
    cells.append(f"{mean:.0f} µs" if mean is not None else "")
    cpu = x.get("server_cpu_us_per_req")
    dcpu = d.get("server_cpu_us_per_req") if d else None
    if name == "nginx":
        cpu = cpu - dcpu if cpu is not None and dcpu is not None else None
    cells.append(f"{cpu:.0f} µs" if cpu is not None else "")
    return cells


print(f"\nmachine: {facts['nproc']} cores, {facts['cpu']}; date {facts['date']}; "
      f"commit {facts['commit']}; {facts['duration']} s per point; "
      f"pinned: {'yes' if facts['pin'] == '1' else 'no'}; generator threads {facts['gen_threads']}; "
      f"load average {facts['load_start']} at start, {facts['load_end']} at end")
for op, title in (("get", "GET 1 KiB object"), ("put", "PUT 1 MiB object (signed SHA-256)")):
    points = {}
    for r in rows:
        if r["label"] == op:
            points.setdefault(r["concurrency"], {})[r["path"]] = r
    if not points:
        continue
    print(f"\n{title}")
    print("| conc | path | req/s | p50 | p99 | req/s vs nginx | p50 − direct | p99 − direct "
          "| log append mean | awaited appends per request | server CPU per request |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for conc in sorted(points):
        p = points[conc]
        d, n = p.get("direct"), p.get("nginx")
        for name in ("direct", "nginx", "gateway", "gw-tmpfs"):
            x = p.get(name)
            if not x:
                continue
            cells = [str(conc), name, f"{x['rps']:.0f}", f"{x['p50_us']} µs", f"{x['p99_us']} µs"]
            cells.append(f"{x['rps'] / n['rps']:.2f}" if n and n["rps"] else "-")
            p50_added, p99_added, mean, cpu = tail_cells(x, d, name)
            sent = x.get("sent_incl_warmup") or 0
            awaited = f"{x['log_appends'] / sent:.2f}" if mean and sent else ""
            cells += [p50_added, p99_added, mean, awaited, cpu]
            print("| " + " | ".join(cells) + " |")
    errs = [(r["path"], r["concurrency"], r["errors"], r["first_error"]) for r in rows
            if r["label"] == op and r["errors"]]
    for e in errs:
        print(f"  errors on {e[0]} c={e[1]}: {e[2]} (first: {e[3]})")

rated = {}
for r in rows:
    if r["label"] == "get-rate":
        rated.setdefault((r["rate"], r["concurrency"]), {})[r["path"]] = r
if rated:
    print("\nGET 1 KiB object at fixed rates (open loop: moderate load; latency counts from "
          "each request's slot)")
    print("| rate | conc | path | req/s done | p50 | p99 | p50 − direct | p99 − direct "
          "| log append mean | server CPU per request |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for (rate, conc) in sorted(rated):
        p = rated[(rate, conc)]
        d = p.get("direct")
        for name in ("direct", "nginx", "gateway", "gw-tmpfs"):
            x = p.get(name)
            if not x:
                continue
            cells = [f"{rate:.0f}/s", str(conc), name, f"{x['rps']:.0f}", f"{x['p50_us']} µs",
                     f"{x['p99_us']} µs", *tail_cells(x, d, name)]
            print("| " + " | ".join(cells) + " |")
        for name, x in p.items():
            if x["errors"]:
                print(f"  errors on {name} at {rate:.0f}/s: {x['errors']} (first: {x['first_error']})")

h = facts["hold"]
print("\ngateway memory (VmRSS / VmHWM)")
print("| reading | value |")
print("|---|---:|")
print(f"| idle, after start | {mib(facts['rss_idle_start_kib'])} |")
print(f"| idle, after the load above | {mib(facts['rss_idle_after_load_kib'])} |")
print(f"| {facts['hold_conns']} open connections ({h['open']} open, {h['errors']} errors) "
      f"| {mib(facts['rss_hold_kib'])} |")
print(f"| after they closed | {mib(facts['rss_after_hold_kib'])} |")
for key, up, what in (("64m", "upload_64m", "64 MiB upload, signed SHA-256"),
                      ("1g", "upload_1g", "1 GiB upload, signed SHA-256"),
                      ("1g_unsigned", "upload_1g_unsigned", "1 GiB upload, UNSIGNED-PAYLOAD")):
    u = facts[up]
    peak, before = facts[f"peak_{key}_kib"], facts[f"before_{key}_kib"]
    print(f"| peak during {what} ({u['mib_per_s']:.0f} MiB/s) | {mib(peak)} "
          f"({(peak - before) / 1024:+.1f} MiB over the {mib(before)} before it) |")
print(f"| VmHWM at the end (reset before the last upload) | {mib(facts['peak_all_kib'])} |")
p50, p99 = facts["fsync_us"].split()
print(f"\nfdatasync of a 400-byte append on the log's disk: p50 {p50} µs, p99 {p99} µs")
