#!/usr/bin/env bash
# Load harness for the core proxy path (issue 2, Benchmarks).
#
# One backend (nginx, one worker, a 1 KiB static file) reached directly, through MeshProxy (outbound
# and inbound listeners), through nginx and through haproxy. Each proxy runs alone on core 0 with one
# worker; the backend and the load generator share core 1. Two loads per target: wrk at saturation
# (64 connections) and h2load at a fixed 1000 req/s over 16 connections (HTTP/1.1 for every target,
# and h2c where the target speaks it). Results go to benchmarks/RESULTS.md, section "Core proxy path".
#
# usage: benchmarks/run-load.sh [--quick] [--no-write] [--skip-build] [--keep]
#   --quick        2 s runs (smoke test); prints the table, does not touch RESULTS.md unless --write
#   --write        write RESULTS.md even with --quick
#   --no-write     print the table only
#   --skip-build   reuse benchmarks/out from an earlier run
#   --keep         keep the scratch directory (configs, raw wrk/h2load output)
#   --profile      after the measurements, profile MeshProxy outbound with perf (cpu-clock samples, JIT
#                  symbols through DOTNET_PerfMapEnabled) under wrk and at the fixed rate; prints the
#                  top shared objects and symbols (kept in the scratch directory with --keep)
#   --targets=a,b  measure only these of: direct,meshproxy-outbound,meshproxy-inbound,meshproxy-tuned,
#                  meshproxy-jit,nginx,haproxy (meshproxy-outbound/-inbound/-tuned run the build that ships,
#                  Native AOT; meshproxy-tuned: the outbound listener with MESH_TUNED_ENV added;
#                  meshproxy-jit: the outbound listener of the trimmed JIT build, -p:PublishAot=false)
# Environment: MESHPROXY_BENCH_EXTRA_CONFIG=<file> appends resources to the sidecar's bootstrap file;
#   MESHPROXY_BENCH_ENV adds/overrides variables for the MeshProxy process
#   (e.g. MESHPROXY_BENCH_ENV="DOTNET_GCgen0size=200000", bare hexadecimal), for experiments.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/benchmarks/out"
RESULTS="$ROOT/benchmarks/RESULTS.md"
COMMAND_LINE="benchmarks/run-load.sh${*:+ $*}"

QUICK=0 WRITE=auto BUILD=1 KEEP=0 PROFILE=0 TARGETS=direct,meshproxy-outbound,meshproxy-inbound,meshproxy-tuned,meshproxy-jit,nginx,haproxy
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --write) WRITE=1 ;;
        --no-write) WRITE=0 ;;
        --skip-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        --profile) PROFILE=1 ;;
        --targets=*) TARGETS=${arg#--targets=} ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run-load.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done
[[ $WRITE == auto ]] && WRITE=$((1 - QUICK))

if ((QUICK)); then
    WARM=2 DUR=2 RATE_WARM=1 RATE_DUR=2
else
    # 20 s: MeshProxy's tiered JIT (with PGO) needs ~15-20 s of one core's time under load to settle.
    WARM=20 DUR=10 RATE_WARM=2 RATE_DUR=10
fi
CONNS=64 RATE=1000 RATE_CONNS=16
PROXY_CORE=0 LOAD_CORE=1
SERVICE=backend
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[run-load %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools -------------------------------------------------------------------------------------
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get install -y "${need[@]}" >/dev/null
fi
for t in taskset python3 curl dotnet; do command -v "$t" >/dev/null || die "$t is required"; done
(($(nproc) >= 2)) || die "needs at least 2 cores (one for the proxy, one for backend and load generator)"

# --- scratch space and cleanup ------------------------------------------------------------------
# shellcheck source=benchmarks/lib.sh
source "$ROOT/benchmarks/lib.sh"
bench_init meshproxy-bench

# --- build MeshProxy ----------------------------------------------------------------------------
if ((BUILD)); then
    log "dotnet publish -c Release -> benchmarks/out"
    # As the image ships it: the project's publish default for a runtime identifier (Native AOT; see
    # src/MeshProxy.Sidecar/MeshProxy.Sidecar.csproj), and beside it the trimmed JIT build. Neither runs
    # startup hooks, so the runtime-probe columns read "nan" for them.
    rm -rf "$OUT"
    dotnet publish "$ROOT/src/MeshProxy.Sidecar/MeshProxy.Sidecar.csproj" -c Release -r linux-x64 -o "$OUT" -m:1 -v q -nologo >"$WORK/publish.log" 2>&1 ||
        { cat "$WORK/publish.log" >&2; die "publish failed"; }
    dotnet publish "$ROOT/src/MeshProxy.Sidecar/MeshProxy.Sidecar.csproj" -c Release -r linux-x64 -p:PublishAot=false -o "$OUT/jit" -m:1 -v q -nologo >"$WORK/publish-jit.log" 2>&1 ||
        { cat "$WORK/publish-jit.log" >&2; die "publish of the JIT build failed"; }
fi
if ((BUILD)); then
    dotnet build "$ROOT/benchmarks/MeshProxy.RuntimeProbe/MeshProxy.RuntimeProbe.csproj" -c Release -o "$OUT/probe" -m:1 -v q -nologo >"$WORK/probe-build.log" 2>&1 ||
        { cat "$WORK/probe-build.log" >&2; die "probe build failed"; }
fi
[[ -f $OUT/probe/MeshProxy.RuntimeProbe.dll ]] || die "no $OUT/probe/MeshProxy.RuntimeProbe.dll (run without --skip-build)"
[[ -x $OUT/meshproxy-sidecar ]] || die "no $OUT/meshproxy-sidecar (run without --skip-build)"
[[ -x $OUT/jit/meshproxy-sidecar ]] || ! [[ ,$TARGETS, == *,meshproxy-jit,* ]] || die "no $OUT/jit/meshproxy-sidecar (run without --skip-build)"

# --- ports and configs --------------------------------------------------------------------------
read -r BACKEND BACKEND_H2 NGINX NGINX_H2 HAPROXY HAPROXY_H2 MESH_OUT MESH_IN <<<"$(free_ports 8)"

write_backend "$WORK/backend" "$BACKEND" "$BACKEND_H2" 4096
write_nginx_proxy "$WORK/nginx" "$NGINX" "$NGINX_H2" "$BACKEND" 4096
write_haproxy "$WORK/haproxy.cfg" "$HAPROXY" "$HAPROXY_H2" "$BACKEND" 4096
write_mesh_config "$WORK/mesh.yaml" "$BACKEND" "$MESH_OUT" "$MESH_IN" "$SERVICE"

# Extra resources for A/B runs (benchmarks/run-cost.sh): appended to the sidecar's bootstrap file.
if [[ -n ${MESHPROXY_BENCH_EXTRA_CONFIG:-} ]]; then
    { printf -- '---\n'; cat "$MESHPROXY_BENCH_EXTRA_CONFIG"; } >>"$WORK/mesh.yaml"
fi

# One core's worth of runtime: the thread pool, GC and Kestrel size themselves from the processor count.
# The 4 MiB gen0 budget an injected pod gets (src/MeshProxy.Injection, InjectorOptions.GcGen0SizeBytes),
# in bare hexadecimal: Native AOT ignores "0x400000" (until 2026-12-07 this line said so, and the AOT
# rows ran with the default budget). The workstation GC is the build's own setting since then, and the
# gcServer=0 here only matters for older builds.
MESH_ENV=(DOTNET_PROCESSOR_COUNT=1 DOTNET_gcServer=0 DOTNET_TieredPGO=1 DOTNET_GCgen0size=400000)
# shellcheck disable=SC2206
MESH_ENV+=(${MESHPROXY_BENCH_ENV:-})

# The runtime probe (benchmarks/MeshProxy.RuntimeProbe, a startup hook) reports allocations and GCs.
PROBE_ENV=(DOTNET_STARTUP_HOOKS="$OUT/probe/MeshProxy.RuntimeProbe.dll")
PROBE_FILE=/dev/null

probe() { # one line: allocated_bytes gen0 gen1 gen2 pause_ms heap committed gc_mode cpus (or "nan" if no probe)
    if [[ -s $PROBE_FILE ]]; then cat "$PROBE_FILE"; else echo nan; fi
}

# Not defaults of the sidecar: socket continuations run inline on the epoll thread (Kestrel's
# UnsafePreferInlineScheduling follows this variable too) and idle thread-pool workers block at once
# instead of spinning: fewer thread hops per request on a single core.
MESH_TUNED_ENV=(DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1 DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0)

start_mesh() { # start_mesh <label> [env...]: sets MESH_PID and PROBE_FILE; MESH_BINARY picks the build
    PROBE_FILE="$WORK/$1.probe"
    local label=$1; shift
    start "$label" $PROXY_CORE env "${MESH_ENV[@]}" "$@" "${PROBE_ENV[@]}" MESHPROXY_PROBE_FILE="$PROBE_FILE" "${MESH_BINARY:-$OUT/meshproxy-sidecar}" --config "$WORK/mesh.yaml"
    MESH_PID=$LAST_PID
}

# --- measurement --------------------------------------------------------------------------------
ROWS="$WORK/rows.tsv"
: >"$ROWS"

# wrk_run <label> <url> <host> <proxy pid or 0>: warm-up, then the measured saturation run.
wrk_run() {
    local label=$1 url=$2 host=$3 pid=$4 t0 t1 c0 c1 out
    taskset -c $LOAD_CORE wrk -t1 -c$CONNS -d${WARM}s -H "Host: $host" "$url" >"$WORK/$label.wrk-warm.txt" 2>&1
    sleep 0.2 # let the probe catch up with the warm-up
    local p0 p1; p0=$(probe)
    ((pid)) && ctx_snapshot "$pid" >"$WORK/ctx.before"
    c0=$( ((pid)) && cpu_ticks "$pid" || echo 0); t0=$(now)
    out="$WORK/$label.wrk.txt"
    taskset -c $LOAD_CORE wrk -t1 -c$CONNS -d${DUR}s --latency -H "Host: $host" "$url" >"$out" 2>&1
    t1=$(now); c1=$( ((pid)) && cpu_ticks "$pid" || echo 0)
    local ctx=nan; ((pid)) && ctx_snapshot "$pid" >"$WORK/ctx.after" && ctx=$(ctx_delta "$WORK/ctx.before" "$WORK/ctx.after")
    sleep 0.2; p1=$(probe)
    python3 - "$out" "$label" "$t0" "$t1" "$c0" "$c1" "$CLK_TCK" "$pid" "$p0" "$p1" "$ctx" >>"$ROWS" <<'EOF'
import re, sys
path, label, t0, t1, c0, c1, hz, pid, p0, p1, ctx = sys.argv[1:]
text = open(path).read()
def lat(p):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % p, text, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors += int(m.group(1)) if m else 0
wall = float(t1) - float(t0)
cpu = (int(c1) - int(c0)) / int(hz) if pid != "0" else float("nan")
requests = int(re.search(r"(\d+) requests in", text).group(1))
print("\t".join(map(str, ["wrk", label, "http/1.1", rps, lat(50), lat(99), errors, cpu, wall, "nan", "nan", requests, p0, p1, ctx])))
EOF
}

# h2load_run <label> <proto h1|h2c> <url> <host> <proxy pid or 0>: fixed rate; percentiles from the per-request log.
h2load_run() {
    local label=$1 proto=$2 url=$3 host=$4 pid=$5 t0 t1 c0 c1 flags=() out logf rss hwm
    [[ $proto == h1 ]] && flags=(--h1)
    # --rps is per connection: 16 x 62.5 = 1000 req/s in all.
    local per=$(python3 -c "print($RATE / $RATE_CONNS)")
    taskset -c $LOAD_CORE h2load "${flags[@]}" -c$RATE_CONNS --rps "$per" -D $RATE_WARM -H ":authority: $host" "$url" >"$WORK/$label.$proto.h2load-warm.txt" 2>&1
    out="$WORK/$label.$proto.h2load.txt" logf="$WORK/$label.$proto.h2load.log"
    sleep 0.2
    local p0 p1; p0=$(probe)
    ((pid)) && ctx_snapshot "$pid" >"$WORK/ctx.before"
    c0=$( ((pid)) && cpu_ticks "$pid" || echo 0); t0=$(now)
    taskset -c $LOAD_CORE h2load "${flags[@]}" -c$RATE_CONNS --rps "$per" -D $RATE_DUR -H ":authority: $host" --log-file "$logf" "$url" >"$out" 2>&1
    t1=$(now); c1=$( ((pid)) && cpu_ticks "$pid" || echo 0)
    local ctx=nan; ((pid)) && ctx_snapshot "$pid" >"$WORK/ctx.after" && ctx=$(ctx_delta "$WORK/ctx.before" "$WORK/ctx.after")
    if ((pid)); then rss=$(mem_kb "$pid" VmRSS); hwm=$(mem_kb "$pid" VmHWM); else rss=nan hwm=nan; fi
    sleep 0.2; p1=$(probe)
    python3 - "$logf" "$label" "$proto" "$t0" "$t1" "$c0" "$c1" "$CLK_TCK" "$pid" "$rss" "$hwm" "$p0" "$p1" "$ctx" >>"$ROWS" <<'EOF'
import math, sys
logf, label, proto, t0, t1, c0, c1, hz, pid, rss, hwm, p0, p1, ctx = sys.argv[1:]
ok, lat, errors, first, last = 0, [], 0, None, None
for line in open(logf):
    start, status, dur = line.split("\t")[:3]
    start, dur = int(start), int(dur)
    if status != "200":
        errors += 1
        continue
    lat.append(dur / 1000.0)
    first = start if first is None else min(first, start)
    last = start + dur if last is None else max(last, start + dur)
lat.sort()
pct = lambda p: lat[max(0, math.ceil(p / 100.0 * len(lat)) - 1)] if lat else float("nan")
wall = float(t1) - float(t0)
rps = len(lat) / ((last - first) / 1e6) if lat and last > first else 0.0
cpu = (int(c1) - int(c0)) / int(hz) if pid != "0" else float("nan")
print("\t".join(map(str, ["h2load", label, "h2c" if proto == "h2c" else "http/1.1", rps, pct(50), pct(99), errors, cpu, wall, rss, hwm, len(lat) + errors, p0, p1, ctx])))
EOF
}

# measure <label> <pid or 0> <h1 url> <h2c url or -> <host>
measure() {
    local label=$1 pid=$2 url=$3 url_h2=$4 host=$5
    log "$label: wrk ${WARM}s warm-up + ${DUR}s at saturation"
    wrk_run "$label" "$url" "$host" "$pid"
    log "$label: h2load ${RATE} req/s HTTP/1.1 (${RATE_WARM}s warm-up + ${RATE_DUR}s)"
    h2load_run "$label" h1 "$url" "$host" "$pid"
    if [[ $url_h2 != - ]]; then
        log "$label: h2load ${RATE} req/s h2c"
        h2load_run "$label" h2c "$url_h2" "$host" "$pid"
    fi
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "load average before: $LOAD_BEFORE"

start backend $LOAD_CORE nginx -p "$WORK/backend/" -e stderr -c "$WORK/backend/nginx.conf"
wait_http "http://127.0.0.1:$BACKEND/1k"
size=$(curl -s "http://127.0.0.1:$BACKEND/1k" | wc -c)
[[ $size == 1024 ]] || die "backend answered $size bytes, not 1024"

wanted() { [[ ,$TARGETS, == *,$1,* ]]; }

wanted direct && measure direct 0 "http://127.0.0.1:$BACKEND/1k" "http://127.0.0.1:$BACKEND_H2/1k" "$SERVICE"

if wanted meshproxy-outbound; then
    start_mesh meshproxy-outbound
    wait_http "http://127.0.0.1:$MESH_OUT/1k" "$SERVICE"
    measure meshproxy-outbound "$MESH_PID" "http://127.0.0.1:$MESH_OUT/1k" "http://127.0.0.1:$MESH_OUT/1k" "$SERVICE"
    stop "$MESH_PID"; PROBE_FILE=/dev/null
fi

# A fresh process for the inbound listener, so that its peak RSS is its own.
if wanted meshproxy-inbound; then
    start_mesh meshproxy-inbound
    wait_http "http://127.0.0.1:$MESH_IN/1k" "$SERVICE"
    measure meshproxy-inbound "$MESH_PID" "http://127.0.0.1:$MESH_IN/1k" "http://127.0.0.1:$MESH_IN/1k" "$SERVICE"
    stop "$MESH_PID"; PROBE_FILE=/dev/null
fi

if wanted meshproxy-tuned; then
    start_mesh meshproxy-tuned "${MESH_TUNED_ENV[@]}"
    wait_http "http://127.0.0.1:$MESH_OUT/1k" "$SERVICE"
    measure meshproxy-tuned "$MESH_PID" "http://127.0.0.1:$MESH_OUT/1k" "http://127.0.0.1:$MESH_OUT/1k" "$SERVICE"
    stop "$MESH_PID"; PROBE_FILE=/dev/null
fi

if wanted meshproxy-jit; then
    MESH_BINARY="$OUT/jit/meshproxy-sidecar" start_mesh meshproxy-jit
    wait_http "http://127.0.0.1:$MESH_OUT/1k" "$SERVICE"
    measure meshproxy-jit "$MESH_PID" "http://127.0.0.1:$MESH_OUT/1k" "http://127.0.0.1:$MESH_OUT/1k" "$SERVICE"
    stop "$MESH_PID"; PROBE_FILE=/dev/null
fi

if wanted nginx; then
    start nginx $PROXY_CORE nginx -p "$WORK/nginx/" -e stderr -c "$WORK/nginx/nginx.conf"
    NGINX_PID=$LAST_PID
    wait_http "http://127.0.0.1:$NGINX/1k"
    measure nginx "$NGINX_PID" "http://127.0.0.1:$NGINX/1k" "http://127.0.0.1:$NGINX_H2/1k" "$SERVICE"
    stop "$NGINX_PID"
fi

if wanted haproxy; then
    start haproxy $PROXY_CORE haproxy -db -f "$WORK/haproxy.cfg"
    HAPROXY_PID=$LAST_PID
    wait_http "http://127.0.0.1:$HAPROXY/1k"
    measure haproxy "$HAPROXY_PID" "http://127.0.0.1:$HAPROXY/1k" "http://127.0.0.1:$HAPROXY_H2/1k" "$SERVICE"
    stop "$HAPROXY_PID"
fi

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average after: $LOAD_AFTER"

# profile <label> <pid> <load command...>: perf samples of the proxy while the load runs
profile() {
    local label=$1 pid=$2; shift 2
    perf record -q -e cpu-clock -F 999 -g -p "$pid" -o "$WORK/$label.perf.data" -- sleep "$DUR" >/dev/null 2>&1 &
    local perf_pid=$!
    "$@" >"$WORK/$label.load.txt" 2>&1
    wait "$perf_pid" || true
    perf report -i "$WORK/$label.perf.data" --no-children --sort dso --stdio -g none >"$WORK/$label.dso.txt" 2>/dev/null || true
    perf report -i "$WORK/$label.perf.data" --no-children --sort dso,sym --stdio -g none >"$WORK/$label.sym.txt" 2>/dev/null || true
    echo "### $label: by shared object"
    grep -v -e '^#' -e '^$' "$WORK/$label.dso.txt" | sed -n 1,15p
    echo "### $label: by symbol"
    grep -v -e '^#' -e '^$' "$WORK/$label.sym.txt" | sed -n 1,45p
}

if ((PROFILE)); then
    command -v perf >/dev/null || die "--profile needs perf"
    # Without W^X the JIT's code is anonymous memory, which perf resolves through /tmp/perf-<pid>.map.
    start_mesh meshproxy-profile DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0
    wait_http "http://127.0.0.1:$MESH_OUT/1k" "$SERVICE"
    taskset -c $LOAD_CORE wrk -t1 -c$CONNS -d${WARM}s -H "Host: $SERVICE" "http://127.0.0.1:$MESH_OUT/1k" >/dev/null 2>&1
    log "profile: wrk at saturation"
    profile saturation "$MESH_PID" taskset -c $LOAD_CORE wrk -t1 -c$CONNS -d${DUR}s -H "Host: $SERVICE" "http://127.0.0.1:$MESH_OUT/1k"
    log "profile: ${RATE} req/s HTTP/1.1"
    profile fixed-rate "$MESH_PID" taskset -c $LOAD_CORE h2load --h1 -c$RATE_CONNS --rps "$(python3 -c "print($RATE / $RATE_CONNS)")" -D $DUR -H ":authority: $SERVICE" "http://127.0.0.1:$MESH_OUT/1k"
    stop "$MESH_PID"
    rm -f /tmp/perf-"$MESH_PID".map /tmp/perfinfo-"$MESH_PID".map
fi

# --- report -------------------------------------------------------------------------------------
export ROWS RESULTS COMMAND_LINE STARTED LOAD_BEFORE LOAD_AFTER WRITE QUICK CONNS RATE RATE_CONNS DUR RATE_DUR WARM RATE_WARM
export MESH_ENV_TEXT="${MESH_ENV[*]}" MESH_TUNED_ENV_TEXT="${MESH_TUNED_ENV[*]}"
export CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
export NPROC=$(nproc) KERNEL=$(uname -r)
export VERSIONS="$(nginx -v 2>&1 | sed 's/.*: //'); $(haproxy -v | head -1 | awk '{ print "HAProxy " $3 }'); $(wrk -v 2>&1 | head -1 | awk '{ print "wrk " $2 }'); $(h2load --version | head -1); .NET SDK $(dotnet --version); MeshProxy $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src || echo '+local changes')"
python3 "$ROOT/benchmarks/report.py"
# benchmarks/run-cost.sh reads the raw rows of its A/B runs.
if [[ -n ${MESHPROXY_BENCH_ROWS_OUT:-} ]]; then cp "$ROWS" "$MESHPROXY_BENCH_ROWS_OUT"; fi
