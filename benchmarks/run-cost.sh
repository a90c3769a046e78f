#!/usr/bin/env bash
# The cost of a feature on the success path, measured A/B in one run with benchmarks/run-load.sh's
# layout (proxy on core 0, load and backend on core 1), MeshProxy outbound only:
#   resilience  retries, timeouts, breakers and outlier detection armed (benchmarks/resilience/on.yaml)
#               against none (off.yaml); goal: within 5 % (issue 6)
#   telemetry   metrics + access log + 1 % traces over OTLP (benchmarks/telemetry/on.yaml) against
#               access log and traces off (off.yaml); goal: >= 0.9x req/s, <= 50 us added p99 (issue 7)
# Writes the "Resilience cost" and "Telemetry cost" sections of benchmarks/RESULTS.md.
# With --rounds=N (default 3) the off and on runs alternate N times and every figure is the median of
# its N runs, with the range of the per-round on/off ratios beside it: a single 10 s run's p99 on a
# 2-core machine moves by more than the 50 us the telemetry goal allows.
# usage: benchmarks/run-cost.sh [resilience] [telemetry] [--rounds=N] [--quick] [--skip-build]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=$(mktemp -d /tmp/meshproxy-cost.XXXXXX)
SINK_PID=
cleanup() { [[ -n $SINK_PID ]] && kill "$SINK_PID" 2>/dev/null; rm -rf "$WORK" /tmp/meshproxy-bench-access.log; }
trap cleanup EXIT

features=(); pass=(); built=false; rounds=3
for arg in "$@"; do
    case $arg in
        resilience|telemetry) features+=("$arg") ;;
        --rounds=[1-9]*) rounds=${arg#--rounds=} ;;
        --quick) pass+=(--quick) ;;
        --skip-build) built=true ;;
        *) echo "usage: $0 [resilience] [telemetry] [--rounds=N] [--quick] [--skip-build]" >&2; exit 2 ;;
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

run() { # run <feature> <on|off> <round>: raw rows of one run-load.sh pass into $WORK/<feature>-<variant>-<round>.tsv
    local config="$WORK/$1-$2.yaml" out="$WORK/$1-$2-$3"
    sed "s/OTLP_SINK/127.0.0.1:$SINK_PORT/" "$ROOT/benchmarks/$1/$2.yaml" >"$config"
    local build=(); $built && build=(--skip-build)
    MESHPROXY_BENCH_EXTRA_CONFIG="$config" MESHPROXY_BENCH_ROWS_OUT="$out.tsv" \
        bash "$ROOT/benchmarks/run-load.sh" --no-write --targets=meshproxy-outbound "${build[@]}" "${pass[@]}" >"$out.log" 2>&1 ||
        { cat "$out.log"; exit 1; }
    built=true
}

for feature in "${features[@]}"; do
    for ((r = 1; r <= rounds; r++)); do
        echo "== $feature, round $r/$rounds: off"; run "$feature" off "$r"
        echo "== $feature, round $r/$rounds: on";  run "$feature" on "$r"
    done
done

python3 - "$ROOT/benchmarks/RESULTS.md" "$WORK" "$*" "$(uptime | sed 's/.*load average: //')" "$rounds" "${features[@]}" <<'PY'
import datetime, re, statistics, sys
results, work, args, load, rounds, features = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6:]
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
def median_rows(paths):
    runs = [rows(p) for p in paths]
    return {k: {m: statistics.median(r[k][m] for r in runs) for m in runs[0][k]} for k in runs[0]}, runs
for f in features:
    off, off_runs = median_rows([f"{work}/{f}-off-{r}.tsv" for r in range(1, rounds + 1)])
    on, on_runs = median_rows([f"{work}/{f}-on-{r}.tsv" for r in range(1, rounds + 1)])
    sat, fix = ("wrk", "http/1.1"), ("h2load", "http/1.1")
    sat_off, sat_on, fix_off, fix_on = off[sat], on[sat], off[fix], on[fix]
    pairs = list(zip(off_runs, on_runs))
    def spread(values, fmt):  # the per-round figures of on against off, lowest to highest
        values = sorted(values)
        return f"{fmt(values[0])} .. {fmt(values[-1])}" if rounds > 1 else ""
    rps_spread = spread([b[sat]["rps"] / a[sat]["rps"] for a, b in pairs], lambda v: f"{v:.3f}x")
    p99_spread = spread([1000 * (b[fix]["p99"] - a[fix]["p99"]) for a, b in pairs], lambda v: f"{v:+.0f} us")
    body = [f"## {titles[f]}", "",
            f"- Date: {datetime.datetime.utcnow().strftime('%Y-%m-%dT%H:%MZ')}; command: `benchmarks/run-cost.sh {args}`; load average after: {load}.",
            f"- A/B on MeshProxy outbound in run-load.sh's layout: {what[f]}. Goal: {goals[f]}.",
            f"- {rounds} rounds, off and on alternating; each figure is the median of its {rounds} runs; the last column gives the per-round on/off figures, lowest to highest.", "",
            "| measure | off | on | on/off | per round |", "|---|---:|---:|---:|---|",
            f"| wrk req/s (64 connections) | {sat_off['rps']:,.0f} | {sat_on['rps']:,.0f} | {sat_on['rps']/sat_off['rps']:.3f}x | {rps_spread} |",
            f"| wrk p99 ms | {sat_off['p99']:.2f} | {sat_on['p99']:.2f} | {sat_on['p99']/sat_off['p99']:.3f}x | |",
            f"| 1000 req/s p50 ms | {fix_off['p50']:.3f} | {fix_on['p50']:.3f} | {fix_on['p50']-fix_off['p50']:+.3f} ms | |",
            f"| 1000 req/s p99 ms | {fix_off['p99']:.3f} | {fix_on['p99']:.3f} | {1000*(fix_on['p99']-fix_off['p99']):+.0f} us | {p99_spread} |",
            f"| CPU per 1000 req/s at saturation, % of a core | {cpu1000(sat_off):.1f} | {cpu1000(sat_on):.1f} | {cpu1000(sat_on)/cpu1000(sat_off):.3f}x | |",
            f"| errors | {sat_off['errors']+fix_off['errors']:.0f} | {sat_on['errors']+fix_on['errors']:.0f} | | |", ""]
    section = "\n".join(body) + "\n"
    pattern = re.compile(rf"^## {re.escape(titles[f])}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    print(section)
open(results, "w").write(text)
PY
