"""Turns run-load.sh's raw rows into the "Core proxy path" section of benchmarks/RESULTS.md.

Input (environment): ROWS, a TSV of
  kind  label  protocol  req/s  p50_ms  p99_ms  errors  proxy_cpu_s  wall_s  rss_kb  hwm_kb  requests
  probe_before  probe_after  context_switches
(the probe lines come from benchmarks/MeshProxy.RuntimeProbe, "nan" for processes without it)
plus the run's metadata. The section is replaced in place; every other section of the file is kept.
"""

import math
import os
import sys

env = os.environ
HEADING = "## Core proxy path"
MESH = "meshproxy-outbound"
TARGETS = ["direct", "meshproxy-outbound", "meshproxy-inbound", "meshproxy-tuned", "nginx", "haproxy"]
NAMES = {
    "direct": "direct (no proxy)",
    "meshproxy-outbound": "MeshProxy outbound",
    "meshproxy-inbound": "MeshProxy inbound",
    "meshproxy-tuned": "MeshProxy outbound, tuned*",
    "nginx": "nginx",
    "haproxy": "haproxy",
}

rows = []
for line in open(env["ROWS"]):
    k, label, proto, rps, p50, p99, errors, cpu, wall, rss, hwm, requests, p0, p1, ctx = line.rstrip("\n").split("\t")
    rows.append(dict(kind=k, label=label, proto=proto, rps=float(rps), p50=float(p50), p99=float(p99),
                     errors=int(errors), cpu=float(cpu), wall=float(wall), rss=float(rss), hwm=float(hwm),
                     requests=int(requests), probe=(p0.split(), p1.split()), ctx=float(ctx)))


def row(kind, label, proto):
    return next((r for r in rows if r["kind"] == kind and r["label"] == label and r["proto"] == proto), None)


def nan(x):
    return x is None or (isinstance(x, float) and math.isnan(x))


def f(x, digits=2):
    return "n/a" if nan(x) else f"{x:,.{digits}f}"


def cores(r):
    """Share of one core the proxy used while the load ran."""
    return r["cpu"] / r["wall"]


def per_1000(r):
    """% of one core per 1000 req/s (equivalently, CPU-ms per 100 requests)."""
    return float("nan") if nan(r["cpu"]) or r["rps"] == 0 else 100.0 * cores(r) / (r["rps"] / 1000.0)


def pct1(x):
    return "n/a" if nan(x) else f"{x:.1f} %"


def peak_mb(label):
    vals = [r["hwm"] for r in rows if r["label"] == label and not nan(r["hwm"])]
    return max(vals) / 1024.0 if vals else float("nan")


def added_p99(label, proto):
    r, d = row("h2load", label, proto), row("h2load", "direct", proto)
    return float("nan") if r is None or d is None else r["p99"] - d["p99"]


def ratio(a, b):
    return "n/a" if nan(a) or nan(b) or b == 0 else f"{a / b:.2f}x"


out = []
w = out.append
quick = env.get("QUICK") == "1"
w(HEADING)
w("")
if quick:
    w(f"**Smoke run (--quick: {env['DUR']} s runs); not a measurement to quote.**")
    w("")
load_before, load_after = env["LOAD_BEFORE"], env["LOAD_AFTER"]
busy = max(float(load_before.split()[0]), float(load_after.split()[0])) > 0.5
w(f"- Date: {env['STARTED']}; machine: {env['NPROC']} cores, {env['CPU_MODEL']}, Linux {env['KERNEL']}.")
w(f"- Versions: {env['VERSIONS']}.")
w(f"- Command: `{env['COMMAND_LINE']}`")
w(f"- Load average (1/5/15 min) before: {load_before}; after: {load_after}."
  + (" **The machine was busy with other work (builds by other engineers) during this run: the numbers are noisy; "
     "re-run on a quiet machine before quoting them.**" if busy else ""))
w("- Layout: the backend (nginx, 1 worker, a 1 KiB static file, keep-alive) and the load generator share core 1 "
  "(`taskset -c 1`); the proxy under test runs alone on core 0 (`taskset -c 0`) with one worker: nginx "
  "`worker_processes 1`, haproxy `nbthread 1`, MeshProxy with "
  f"`{env['MESH_ENV_TEXT']}` (workstation non-concurrent GC, set in the project). Every proxy speaks HTTP/1.1 with "
  "keep-alive to the backend (nginx `proxy_http_version 1.1` + `keepalive 128`; haproxy `http-reuse always`; "
  "MeshProxy's pooled SocketsHttpHandler). MeshProxy outbound: a Service `backend` whose endpoint is the backend, "
  "requests carry `Host: backend`; MeshProxy inbound: the workload's app port is the backend's. "
  f"\\*tuned: the outbound listener with `{env['MESH_TUNED_ENV_TEXT']}` added (not the sidecar's defaults).")
w(f"- Saturation: `wrk -t1 -c{env['CONNS']} -d{env['DUR']}s --latency` after a {env['WARM']} s warm-up run. "
  f"Fixed rate: `h2load -c{env['RATE_CONNS']} --rps {int(env['RATE']) / int(env['RATE_CONNS']):g} -D {env['RATE_DUR']}` "
  f"({env['RATE']} req/s in all; `--h1` for HTTP/1.1, prior-knowledge h2c otherwise) after a {env['RATE_WARM']} s "
  "warm-up run; p50/p99 from h2load's per-request log. Direct h2c goes to a second, `http2` listener of the backend.")
w("- Proxy CPU: utime+stime from /proc/<pid>/stat summed over the proxy's process tree (all threads; nginx master "
  "and worker) over the measured window. Peak RSS: VmHWM from /proc/<pid>/status (lifetime peak, reached under "
  "wrk); RSS: VmRSS at the end of the fixed-rate run. A fresh process per target.")
w("")

w(f"### Saturation: wrk, {env['CONNS']} connections, HTTP/1.1, 1 KiB responses")
w("")
w("| Target | req/s | p50 ms | p99 ms | proxy CPU (cores) | proxy CPU per 1000 req/s | proxy context switches per request | errors |")
w("|---|---:|---:|---:|---:|---:|---:|---:|")
for t in TARGETS:
    r = row("wrk", t, "http/1.1")
    if r is None:
        continue
    c = float("nan") if nan(r["cpu"]) else cores(r)
    w(f"| {NAMES[t]} | {f(r['rps'], 0)} | {f(r['p50'])} | {f(r['p99'])} | {f(c)} | {pct1(per_1000(r))} | {f(r['ctx'] / max(1, r['requests']))} | {r['errors']} |")
w("")

w(f"### Fixed rate: h2load, {env['RATE']} req/s over {env['RATE_CONNS']} connections")
w("")
w("| Target | client protocol | achieved req/s | p50 ms | p99 ms | added p99 over direct ms | proxy CPU per 1000 req/s | proxy context switches per request | RSS at end MB | peak RSS MB | errors |")
w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for proto in ("http/1.1", "h2c"):
    for t in TARGETS:
        r = row("h2load", t, proto)
        if r is None:
            continue
        add = "-" if t == "direct" else f(added_p99(t, proto))
        w(f"| {NAMES[t]} | {proto} | {f(r['rps'], 0)} | {f(r['p50'])} | {f(r['p99'])} | {add} | "
          f"{pct1(per_1000(r))} | {f(r['ctx'] / max(1, r['requests']))} | {f(r['rss'] / 1024.0, 1)} | "
          f"{f(peak_mb(t), 1)} | {r['errors']} |")
w("")

w("### MeshProxy (outbound) against nginx and haproxy")
w("")
w("| Measure | MeshProxy | nginx | haproxy | MeshProxy/nginx | MeshProxy/haproxy |")
w("|---|---:|---:|---:|---:|---:|")


def measure_line(name, get, digits=2, lower_is_better=True):
    m, n, h = get(MESH), get("nginx"), get("haproxy")
    w(f"| {name} | {f(m, digits)} | {f(n, digits)} | {f(h, digits)} | {ratio(m, n)} | {ratio(m, h)} |")


def val(kind, proto, key):
    def get(label):
        r = row(kind, label, proto)
        if r is None:
            return float("nan")
        return per_1000(r) if key == "per1000" else r[key]
    return get


measure_line("wrk req/s (higher is better)", val("wrk", "http/1.1", "rps"), 0)
measure_line("req/s per core of proxy CPU at saturation (= 100000 / CPU per 1000 req/s)", lambda l: 100000.0 / val("wrk", "http/1.1", "per1000")(l), 0)
measure_line("wrk p99 ms", val("wrk", "http/1.1", "p99"))
measure_line("1000 req/s HTTP/1.1: added p99 ms", lambda l: added_p99(l, "http/1.1"))
measure_line("1000 req/s h2c: added p99 ms", lambda l: added_p99(l, "h2c"))
measure_line("CPU per 1000 req/s, HTTP/1.1 (% of a core)", val("h2load", "http/1.1", "per1000"), 1)
measure_line("CPU per 1000 req/s, h2c (% of a core)", val("h2load", "h2c", "per1000"), 1)
measure_line("CPU per 1000 req/s at saturation (% of a core)", val("wrk", "http/1.1", "per1000"), 1)
measure_line("RSS at end of 1000 req/s HTTP/1.1, MB", lambda l: (row("h2load", l, "http/1.1") or {"rss": float("nan")})["rss"] / 1024.0, 1)
measure_line("peak RSS (VmHWM), MB", peak_mb, 1)
w("")

w("### MeshProxy runtime during each measured window")
w("")
w("From the startup-hook probe (benchmarks/MeshProxy.RuntimeProbe: GC.GetTotalAllocatedBytes, GC.CollectionCount, "
  "GC.GetTotalPauseDuration, sampled every 100 ms at the window's edges).")
w("")
w("| Target | load | requests | allocated bytes/request | GCs gen0/gen1/gen2 | requests per GC | GC pause, % of window | GC heap at end MB | GC committed MB | GC mode, CPUs seen |")
w("|---|---|---:|---:|---|---:|---:|---:|---:|---|")
for r in rows:
    b, a = r["probe"]
    if len(b) < 9 or len(a) < 9:
        continue
    alloc = (int(a[0]) - int(b[0])) / max(1, r["requests"])
    gcs = [int(a[i]) - int(b[i]) for i in (1, 2, 3)]
    pause = (float(a[4]) - float(b[4])) / (r["wall"] * 1000.0) * 100.0
    per_gc = r["requests"] / gcs[0] if gcs[0] else float("nan")
    load = "wrk saturation" if r["kind"] == "wrk" else f"{env['RATE']} req/s {r['proto']}"
    w(f"| {NAMES[r['label']]} | {load} | {r['requests']:,} | {alloc:,.0f} | {gcs[0]}/{gcs[1]}/{gcs[2]} | {f(per_gc, 0)} | "
      f"{pause:.2f} % | {int(a[5]) / 1048576:.1f} | {int(a[6]) / 1048576:.1f} | {a[7]}, {a[8]} |")
w("")

w("### Goals (issue 2)")
w("")
mw, nw = val("wrk", "http/1.1", "rps")(MESH), val("wrk", "http/1.1", "rps")("nginx")
ma, ha = added_p99(MESH, "http/1.1"), added_p99("haproxy", "http/1.1")
mrss = max((r["rss"] for r in rows if r["label"] == MESH and r["kind"] == "h2load"), default=float("nan")) / 1024.0


def verdict(ok):
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def sat_cores(label):
    r = row("wrk", label, "http/1.1")
    return float("nan") if r is None or nan(r["cpu"]) else cores(r)


# A proxy that did not use its whole core at saturation was not what limited the run (a busy machine,
# the load generator): its req/s says nothing about the goal, its CPU per request still does.
mc, nc = sat_cores(MESH), sat_cores("nginx")
capacity = lambda l: 100000.0 / val("wrk", "http/1.1", "per1000")(l)
if nan(mc) or nan(nc) or min(mc, nc) < 0.8:
    req_verdict = (f"inconclusive: the proxies were not CPU-bound (MeshProxy {f(mc)} cores, nginx {f(nc)} cores); "
                   f"by CPU per request MeshProxy reaches {ratio(capacity(MESH), capacity('nginx'))} of nginx "
                   f"({f(capacity(MESH), 0)} vs {f(capacity('nginx'), 0)} req/s per core): "
                   + verdict(None if nan(capacity(MESH)) or nan(capacity("nginx")) else capacity(MESH) >= capacity("nginx")))
else:
    req_verdict = verdict(mw >= nw)
if busy:
    w("Measured on a busy machine: every verdict below is provisional, the latency one most of all "
      "(p99 there measures the scheduler as much as the proxy).")
    w("")
w("| Goal | Reached | Verdict |")
w("|---|---|---|")
w(f"| req/s at least 1.0x nginx's | {ratio(mw, nw)} ({f(mw, 0)} vs {f(nw, 0)}) | {req_verdict} |")
w(f"| added p99 at 1000 req/s no more than haproxy's (HTTP/1.1) | {f(ma)} ms vs {f(ha)} ms | {verdict(None if nan(ma) or nan(ha) else ma <= ha)} |")
w(f"| RSS under 40 MB at 1000 req/s | {f(mrss, 1)} MB (peak under wrk {f(peak_mb(MESH), 1)} MB) | {verdict(None if nan(mrss) else mrss < 40)} |")
w("")

section = "\n".join(out)
print(section)

if env.get("WRITE") == "1":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from results_section import write_section
    write_section(env["RESULTS"], "Core proxy path", section)
