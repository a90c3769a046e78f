#!/usr/bin/env bash
# The cost of a feature on the success path, measured A/B in one run with benchmarks/run-load.sh's
# layout (proxy on core 0, load and backend on core 1), MeshProxy outbound only:
#   resilience  retries, timeouts, breakers and outlier detection armed (benchmarks/resilience/on.yaml)
#               against none (off.yaml); goal: within 5 % (issue 6)
#   telemetry   metrics + access log + 1 % traces over OTLP (benchmarks/telemetry/on.yaml) against
#               access log and traces off (off.yaml); goal: >= 0.9x req/s, <= 50 us added p99 (issue 7)
# Writes the "Resilience cost" and "Telemetry cost" sections of benchmarks/RESULTS.md.
# usage: benchmarks/run-cost.sh [resilience] [telemetry] [--quick] [--skip-build]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=$(mktemp -d /tmp/meshproxy-cost.XXXXXX)
SINK_PID=
cleanup() { [[ -n $SINK_PID ]] && kill "$SINK_PID" 2>/dev/null; rm -rf "$WORK" /tmp/meshproxy-bench-access.log; }
trap cleanup EXIT

features=(); pass=(); built=false
for arg in "$@"; do
    case $arg in
        resilience|telemetry) features+=("$arg") ;;
        --quick) pass+=(--quick) ;;
        --skip-build) built=true ;;
        *) echo "usage: $0 [resilience] [telemetry] [--quick] [--skip-build]" >&2; exit 2 ;;
    esac
done
((${#features[@]})) || features=(resilience telemetry)

# An OTLP/HTTP sink that accepts every export (the telemetry "on" run sends its 1 % of spans here).
SINK_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$SINK_PORT" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Type", "application/x-protobuf"); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
SINK_PID=$!

run() { # run <feature> <on|off>: raw rows of one run-load.sh pass into $WORK/<feature>-<variant>.tsv
    local config="$WORK/$1-$2.yaml"
    sed "s/OTLP_SINK/127.0.0.1:$SINK_PORT/" "$ROOT/benchmarks/$1/$2.yaml" >"$config"
    local build=(); $built && build=(--skip-build)
    MESHPROXY_BENCH_EXTRA_CONFIG="$config" MESHPROXY_BENCH_ROWS_OUT="$WORK/$1-$2.tsv" \
        bash "$ROOT/benchmarks/run-load.sh" --no-write --targets=meshproxy-outbound "${build[@]}" "${pass[@]}" >"$WORK/$1-$2.log" 2>&1 ||
        { cat "$WORK/$1-$2.log"; exit 1; }
    built=true
}

for feature in "${features[@]}"; do
    echo "== $feature: off"; run "$feature" off
    echo "== $feature: on";  run "$feature" on
done

python3 - "$ROOT/benchmarks/RESULTS.md" "$WORK" "$*" "$(uptime | sed 's/.*load average: //')" "${features[@]}" <<'PY'
import datetime, re, sys
results, work, args, load, features = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
def rows(path):
    out = {}
    for line in open(path):
        k, label, proto, rps, p50, p99, errors, cpu, wall, *_ = line.rstrip("\n").split("\t")
        out[(k, proto)] = dict(rps=float(rps), p50=float(p50), p99=float(p99), cpu=float(cpu), wall=float(wall), errors=int(errors))
    return out
def cpu1000(r): return 100.0 * r["cpu"] / r["wall"] / (r["rps"] / 1000.0)
goals = {"resilience": "within 5 % of off on req/s and p99", "telemetry": ">= 0.9x req/s and <= 50 us added p99"}
titles = {"resilience": "Resilience cost", "telemetry": "Telemetry cost"}
what = {"resilience": "retries (replayable body, budget), per-try and route timeouts, breakers, outlier detection armed (benchmarks/resilience/on.yaml) vs none (off.yaml)",
        "telemetry": "Istio metrics + JSON access log to a file + 1 % of requests traced and exported over OTLP/HTTP (benchmarks/telemetry/on.yaml) vs access log and tracing off (off.yaml); metrics are always on"}
text = open(results).read() if __import__("os").path.exists(results) else "# Benchmark results\n"
for f in features:
    off, on = rows(f"{work}/{f}-off.tsv"), rows(f"{work}/{f}-on.tsv")
    sat_off, sat_on = off[("wrk", "http/1.1")], on[("wrk", "http/1.1")]
    fix_off, fix_on = off[("h2load", "http/1.1")], on[("h2load", "http/1.1")]
    body = [f"## {titles[f]}", "",
            f"- Date: {datetime.datetime.utcnow().strftime('%Y-%m-%dT%H:%MZ')}; command: `benchmarks/run-cost.sh {args}`; load average after: {load}.",
            f"- A/B on MeshProxy outbound in run-load.sh's layout: {what[f]}. Goal: {goals[f]}.", "",
            "| measure | off | on | on/off |", "|---|---:|---:|---:|",
            f"| wrk req/s (64 connections) | {sat_off['rps']:,.0f} | {sat_on['rps']:,.0f} | {sat_on['rps']/sat_off['rps']:.3f}x |",
            f"| wrk p99 ms | {sat_off['p99']:.2f} | {sat_on['p99']:.2f} | {sat_on['p99']/sat_off['p99']:.3f}x |",
            f"| 1000 req/s p50 ms | {fix_off['p50']:.3f} | {fix_on['p50']:.3f} | {fix_on['p50']-fix_off['p50']:+.3f} ms |",
            f"| 1000 req/s p99 ms | {fix_off['p99']:.3f} | {fix_on['p99']:.3f} | {1000*(fix_on['p99']-fix_off['p99']):+.0f} us |",
            f"| CPU per 1000 req/s at saturation, % of a core | {cpu1000(sat_off):.1f} | {cpu1000(sat_on):.1f} | {cpu1000(sat_on)/cpu1000(sat_off):.3f}x |",
            f"| errors | {sat_off['errors']+fix_off['errors']} | {sat_on['errors']+fix_on['errors']} | |", ""]
    section = "\n".join(body) + "\n"
    pattern = re.compile(rf"^## {re.escape(titles[f])}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    print(section)
open(results, "w").write(text)
PY
