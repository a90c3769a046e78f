#!/usr/bin/env bash
# The CPU work a feature adds on the success path, counted rather than timed: instructions per request
# of MeshProxy outbound under valgrind's callgrind, feature off against on (the same configs as
# benchmarks/run-cost.sh). On this 2-core machine a timed A/B moves by +-15 % req/s between runs; an
# instruction count does not depend on what else the machine is doing, so it settles whether a
# feature's bookkeeping costs more or less than the 5 % the goals allow.
#
# Both sidecars (off and on) run at once under callgrind, each with its own ports and the same nginx
# backend. After a warm-up, the rounds alternate off and on: counters zeroed (callgrind_control -z),
# a fixed number of requests (h2load, HTTP/1.1, 16 connections), counters dumped; the figure is the
# dump's instruction total divided by the requests. Median over the rounds.
#
# Settings that make counts repeatable, identical for both variants: tiered compilation and
# ReadyToRun off, so every method is JIT-compiled once, fully optimized (without PGO), at its first
# call, and nothing is recompiled while counting. With tiering on, the JIT's own work kept going for
# thousands of requests under callgrind and rounds differed by 2x; with tiering off rounds agree
# within ~0.5 %. The absolute counts therefore differ from a tiered run; the difference between the
# variants is what is compared. W^X off (valgrind cannot follow the runtime's double-mapped code
# pages); idle thread-pool workers block instead of spinning (spinning adds instructions that
# depend on timing, not on work).
# Work that depends on wall time rather than requests (Kestrel's 1 s heartbeat, timers) is in the
# counts too: ~120,000-170,000 instructions a second (the idle line). On a quiet machine a round lasts
# under a minute and that is under 1 % of it; on a loaded one a round under callgrind can last many
# minutes, and the same build then counts several percent more per request. So each round's wall time is
# recorded too, and the table also gives the count net of idle work: the round's count less the idle
# rate (instructions per second of the idle line) times the round's seconds. Compare builds counted at
# different times on the net figures.
#
# usage: benchmarks/run-instructions.sh [resilience] [telemetry] [--inbound] [--rounds=N] [--requests=N] [--warmup=N] [--skip-build] [--profile] [--no-write]
#   Writes the "Instructions per request" section of benchmarks/RESULTS.md (not with --no-write: the
#   table is only printed). Takes ~15 min per feature.
#   MESHPROXY_INSTRUCTIONS_OUT: the publish folder (default benchmarks/out), so that two builds
#   published up front can be counted one after the other with --skip-build.
#   --inbound  counts the inbound listener (a caller's plaintext request forwarded to the app port, the
#              backend) instead of the outbound one
#   --profile  also prints, per feature, the methods whose own instructions per request differ most
#              between off and on in the last round (benchmarks/callgrind-methods.py, JIT code named
#              through the runtime's perf map)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${MESHPROXY_INSTRUCTIONS_OUT:-$ROOT/benchmarks/out}
COMMAND_LINE="benchmarks/run-instructions.sh${*:+ $*}"

features=() rounds=5 requests=3000 warm=1500 build=1 profile=0 write=1 direction=outbound
for arg in "$@"; do
    case $arg in
        resilience|telemetry) features+=("$arg") ;;
        --rounds=[1-9]*) rounds=${arg#--rounds=} ;;
        --requests=[1-9]*) requests=${arg#--requests=} ;;
        --warmup=[1-9]*) warm=${arg#--warmup=} ;;
        --skip-build) build=0 ;;
        --profile) profile=1 ;;
        --inbound) direction=inbound ;;
        --no-write) write=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [resilience] [telemetry] [--inbound] [--rounds=N] [--requests=N] [--warmup=N] [--skip-build] [--profile] [--no-write]" >&2; exit 2 ;;
    esac
done
((${#features[@]})) || features=(resilience telemetry)

log() { printf '[run-instructions %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v valgrind >/dev/null || need+=(valgrind)
((${#need[@]})) && { log "installing ${need[*]}"; apt-get install -y "${need[@]}" >/dev/null; }

WORK=$(mktemp -d /tmp/meshproxy-instructions.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if ((profile)); then
        # The dumps and perf maps stay for a closer look (callgrind-methods.py with more rows).
        for pid in "${PID_OF[@]}"; do mv -f "/tmp/perf-$pid.map" "/tmp/perfinfo-$pid.map" "$WORK/" 2>/dev/null || true; done
        log "profile data kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    rm -f /tmp/meshproxy-bench-access.log
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
EOF
}

if ((build)); then
    log "dotnet publish -c Release (trimmed JIT) -> benchmarks/out"
    rm -rf "$OUT"
    # The JIT build, not the shipped Native AOT one: the settings above (tiering off) and --profile's method
    # names (the runtime's perf map) are JIT's. A feature's off/on difference is the same code either way.
    dotnet publish "$ROOT/src/MeshProxy.Sidecar/MeshProxy.Sidecar.csproj" -c Release -r linux-x64 -p:PublishAot=false -o "$OUT" -m:1 -v q -nologo >"$WORK/publish.log" 2>&1 ||
        { cat "$WORK/publish.log" >&2; die "publish failed"; }
fi
[[ -x $OUT/meshproxy-sidecar ]] || die "no $OUT/meshproxy-sidecar (run without --skip-build)"

# The backend: nginx, one worker, a static 1 KiB file, as in run-load.sh.
read -r BACKEND SINK <<<"$(free_ports 2)"
mkdir -p "$WORK/www"
head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/www/1k"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    sendfile off;
    default_type application/octet-stream;
    server { listen 127.0.0.1:$BACKEND backlog=4096; root $WORK/www; }
}
EOF
nginx -c "$WORK/nginx.conf" &
PIDS+=($!)

# An OTLP/HTTP sink for the telemetry "on" variant's exported spans.
python3 - "$SINK" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Type", "application/x-protobuf"); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
PIDS+=($!)

declare -A PORT PID_OF
PROFILE_ENV=()
((profile)) && PROFILE_ENV=(DOTNET_PerfMapEnabled=1)
start_sidecar() { # start_sidecar <feature> <variant>
    local key=$1-$2 out in
    read -r out in <<<"$(free_ports 2)"
    PORT[$key]=$out
    [[ $direction == inbound ]] && PORT[$key]=$in
    cat >"$WORK/$key.yaml" <<EOF
apiVersion: meshproxy.io/v1alpha1
kind: Sidecar
metadata: { name: bench, namespace: bench }
spec:
  workload: { serviceAccount: bench }
  app: { port: $BACKEND, protocol: HTTP }
  listeners: { outbound: $out, inbound: $in, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
  drainDuration: 1s
---
apiVersion: meshproxy.io/v1alpha1
kind: Service
metadata: { name: backend, namespace: bench }
spec:
  ports: [{ port: 80, protocol: HTTP }]
  endpoints:
    - { address: 127.0.0.1, port: $BACKEND }
---
EOF
    # Each variant logs to its own access log file, so the two sidecars do not share one.
    sed -e "s/OTLP_SINK/127.0.0.1:$SINK/" -e "s#/tmp/meshproxy-bench-access.log#$WORK/$key.access.log#" \
        "$ROOT/benchmarks/$1/$2.yaml" >>"$WORK/$key.yaml"
    env DOTNET_PROCESSOR_COUNT=1 DOTNET_gcServer=0 DOTNET_GCgen0size=400000 \
        DOTNET_TieredCompilation=0 DOTNET_ReadyToRun=0 DOTNET_EnableWriteXorExecute=0 DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0 "${PROFILE_ENV[@]}" \
        valgrind --tool=callgrind --smc-check=all-non-file --dump-instr=no --callgrind-out-file="$WORK/$key.cg" \
        "$OUT/meshproxy-sidecar" --config "$WORK/$key.yaml" >"$WORK/$key.log" 2>&1 &
    PID_OF[$key]=$!
    PIDS+=($!)
}

# Startup under callgrind takes minutes on a quiet machine and far longer on a loaded one; the
# instruction counts do not depend on load, so only this limit does.
START_LIMIT=${MESHPROXY_INSTRUCTIONS_START_LIMIT:-1800}

wait_up() { # wait_up <key>: the listener measured answers 200
    local key=$1
    for _ in $(seq "$START_LIMIT"); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' -H 'Host: backend' "http://127.0.0.1:${PORT[$key]}/1k" || true) == 200 ]] && return 0
        kill -0 "${PID_OF[$key]}" 2>/dev/null || { tail -30 "$WORK/$key.log" >&2; die "$key exited"; }
        sleep 1
    done
    die "$key did not answer in $START_LIMIT s (MESHPROXY_INSTRUCTIONS_START_LIMIT)"
}

load() { # load <key> <requests> [warm]: fixed request count; a measured round fails unless every response is a 200
    local out
    out=$(h2load --h1 -n "$2" -c 16 -H ':authority: backend' "http://127.0.0.1:${PORT[$1]}/1k" 2>&1)
    # During the warm-up, first calls (JIT compiling) run slowly enough under callgrind for the "on"
    # variant's 2 s per-try timeout to fire now and then: those 504s are expected there.
    [[ ${3:-} == warm ]] && { log "$1 warm-up: $(grep 'status codes' <<<"$out")"; return 0; }
    grep -q "status codes: $2 2xx" <<<"$out" || { echo "$out" >&2; die "$1: not every request answered 200"; }
}

counted() { # counted <key> <command...>: instructions the sidecar executed while the command ran, a tab, and the seconds it took
    local key=$1 pid=${PID_OF[$1]} latest start end; shift
    callgrind_control -z "$pid" >/dev/null 2>&1
    start=$EPOCHREALTIME
    "$@"
    callgrind_control -d "$pid" >/dev/null 2>&1
    end=$EPOCHREALTIME
    latest=$(ls -t "$WORK/$key.cg".* | head -1)
    cp "$latest" "$WORK/$key.last"
    awk -v s="$start" -v e="$end" '/^summary:/ { printf "%s\t%.1f\n", $2, e - s }' "$latest"
}

for feature in "${features[@]}"; do
    log "$feature: starting off and on sidecars under callgrind"
    start_sidecar "$feature" off
    start_sidecar "$feature" on
    wait_up "$feature-off"; wait_up "$feature-on"
    log "$feature: warm-up, $warm requests each"
    load "$feature-off" "$warm" warm; load "$feature-on" "$warm" warm
    for variant in off on; do
        echo -e "$feature\t$variant\tidle\t$(counted "$feature-$variant" sleep 10)" >>"$WORK/rows.tsv"
    done
    for ((r = 1; r <= rounds; r++)); do
        for variant in off on; do
            read -r n secs <<<"$(counted "$feature-$variant" load "$feature-$variant" "$requests")"
            log "$feature round $r/$rounds $variant: $n instructions in $secs s, $((n / requests)) per request"
            echo -e "$feature\t$variant\t$r\t$n\t$secs" >>"$WORK/rows.tsv"
        done
    done
    if ((profile)); then
        python3 "$ROOT/benchmarks/callgrind-methods.py" "$WORK/$feature-off.last" "/tmp/perf-${PID_OF[$feature-off]}.map" \
            "$WORK/$feature-on.last" "/tmp/perf-${PID_OF[$feature-on]}.map" "$requests" 40
    fi
    for variant in off on; do kill -TERM "${PID_OF[$feature-$variant]}" 2>/dev/null || true; done
done

python3 - "$ROOT/benchmarks/RESULTS.md" "$WORK/rows.tsv" "$COMMAND_LINE" "$requests" "$rounds" "$write" "$direction" <<'PY'
import datetime, re, statistics, sys
results, rows, command, requests, rounds, write, direction = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1", sys.argv[7]
data, idle, net = {}, {}, {}
rows = [line.split() for line in open(rows)]
for feature, variant, r, n, secs in rows:
    if r == "idle":
        idle[(feature, variant)] = (int(n), float(secs))
for feature, variant, r, n, secs in rows:
    if r != "idle":
        data.setdefault((feature, variant), []).append(int(n) / requests)
        idle_n, idle_secs = idle.get((feature, variant), (0, 1.0))
        net.setdefault((feature, variant), []).append((int(n) - idle_n / idle_secs * float(secs)) / requests)
goals = {"resilience": "within 5 %", "telemetry": "<= 1.11x (0.9x req/s)"}
lines = ["## Instructions per request", "",
         f"- Date: {datetime.datetime.utcnow().strftime('%Y-%m-%dT%H:%MZ')}; command: `{command}`.",
         f"- MeshProxy {direction} under callgrind, HTTP/1.1 GETs of 1 KiB from nginx, 16 connections; {rounds} rounds of {requests} requests per variant,",
         "  off and on alternating, after a warm-up; median instructions per request (the dump's total over the requests).",
         "  Tiered compilation and ReadyToRun off (every method fully optimized once, no PGO): the on/off ratio is what is compared.",
         "  Idle: instructions in ~10 s without requests (timers, heartbeat), which every round also contains in proportion",
         "  to its wall time; net: each round's count less that idle rate times the round's seconds.", "",
         "| feature | off | on | on/off | per round on/off | net of idle: off | on | on/off | goal | idle off / on (per s) |",
         "|---|---:|---:|---:|---|---:|---:|---:|---|---|"]
for feature in dict.fromkeys(f for f, _ in data):
    off, on = data[(feature, "off")], data[(feature, "on")]
    net_off, net_on = net[(feature, "off")], net[(feature, "on")]
    per_round = sorted(b / a for a, b in zip(off, on))
    ratio = statistics.median(on) / statistics.median(off)
    rate = {v: idle[(feature, v)][0] / idle[(feature, v)][1] if (feature, v) in idle else 0 for v in ("off", "on")}
    lines.append(f"| {feature} | {statistics.median(off):,.0f} | {statistics.median(on):,.0f} | {ratio:.3f}x | "
                 f"{per_round[0]:.3f}x .. {per_round[-1]:.3f}x | {statistics.median(net_off):,.0f} | {statistics.median(net_on):,.0f} | "
                 f"{statistics.median(net_on) / statistics.median(net_off):.3f}x | {goals[feature]} | "
                 f"{rate['off']:,.0f} / {rate['on']:,.0f} |")
section = "\n".join(lines) + "\n"
print(section)
if not write:
    sys.exit(0)
text = open(results).read()
pattern = re.compile(r"^## Instructions per request\n.*?(?=^## |\Z)", re.S | re.M)
text = pattern.sub(section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
open(results, "w").write(text)
PY
