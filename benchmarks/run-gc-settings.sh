#!/usr/bin/env bash
# GC settings of the shipped sidecar (Native AOT), chosen by measurement (issue 20 item 1).
#
# For each variant (a set of DOTNET_* variables over the build's own settings), a fresh sidecar with
# its inbound listener in front of nginx (1 KiB), alone on core 0 with DOTNET_PROCESSOR_COUNT=1 as in
# run-load.sh; load and backend on core 1. Per run: RSS idle (3 s after the first 200), then h2load at a
# fixed 1000 req/s (HTTP/1.1, 16 connections; 2 s warm-up, 10 s measured: proxy CPU per 1000 req/s and
# RSS at the end), then wrk at saturation (64 connections, 10 s: req/s, CPU per 1000 req/s, peak RSS),
# then RSS 5 s after the load stopped. Variants alternate within each round (order reversed every other
# round); the table gives medians over rounds. Results go to benchmarks/RESULTS.md, section
# "GC settings of the sidecar".
#
# usage: benchmarks/run-gc-settings.sh [--rounds=N] [--variants=a,b] [--quick] [--no-write] [--skip-build] [--keep]
#   --rounds=N     rounds (default 3)
#   --variants=a,b only these of the built-in variants (default: all but concurrent; see VARIANTS below)
#   --quick        one round, 2 s loads; prints the table only unless --write
#   --write        write RESULTS.md even with --quick
#   --no-write     print the table only
#   --skip-build   reuse benchmarks/out from an earlier run
#   --keep         keep the scratch directory
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/benchmarks/out"
RESULTS="$ROOT/benchmarks/RESULTS.md"
COMMAND_LINE="benchmarks/run-gc-settings.sh${*:+ $*}"

# label -> variables added to the sidecar's environment ("-" for none; "@<dir>" first runs
# benchmarks/out/<dir>/meshproxy-sidecar instead, a build published with other GC properties). Values
# in hexadecimal WITHOUT "0x": Native AOT's runtime ignores a DOTNET_GC* value with the prefix (the JIT
# runtime accepts both). Server GC cannot be switched on by the environment in a Native AOT build made
# for the workstation GC, hence its own publish (-p:ServerGarbageCollection=true; DATAS, the dynamic
# adaptation of the heap count, is on by default with it). C000000 = 75 % of 256 MiB, what the
# injector sets for its default memory limit.
declare -A VARIANTS=(
    [as-built]="-"
    [pod-limit]="DOTNET_GCHeapHardLimit=C000000"
    [gen0-4m]="DOTNET_GCgen0size=400000"
    [gen0-2m]="DOTNET_GCgen0size=200000"
    [gen0-1m]="DOTNET_GCgen0size=100000"
    [conserve-5]="DOTNET_GCConserveMemory=5"
    [limit-32m]="DOTNET_GCHeapHardLimit=2000000"
    [concurrent]="DOTNET_gcConcurrent=1"
    [limit-32m-concurrent]="DOTNET_GCHeapHardLimit=2000000 DOTNET_gcConcurrent=1"
    [injected-non-concurrent]="DOTNET_GCHeapHardLimit=C000000 DOTNET_GCgen0size=400000"
    [injected]="DOTNET_GCHeapHardLimit=C000000 DOTNET_GCgen0size=400000 DOTNET_gcConcurrent=1"
    [server-datas]="@server-gc"
    [server-no-datas]="@server-gc DOTNET_GCDynamicAdaptationMode=0"
)
# On request (--variants=): concurrent; limit-32m-concurrent (the crash of limit-32m is the non-concurrent GC's,
# dotnet/runtime#129681); injected (the environment the injector gives a pod with the default 256Mi limit) and
# injected-non-concurrent (what it gave before the crash was understood).
ORDER=(as-built pod-limit gen0-4m gen0-2m gen0-1m conserve-5 limit-32m server-datas server-no-datas)

ROUNDS=3 QUICK=0 WRITE=auto BUILD=1 KEEP=0 ONLY=
for arg in "$@"; do
    case "$arg" in
        --rounds=*) ROUNDS=${arg#--rounds=} ;;
        --variants=*) ONLY=${arg#--variants=} ;;
        --quick) QUICK=1 ROUNDS=1 ;;
        --write) WRITE=1 ;;
        --no-write) WRITE=0 ;;
        --skip-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run-gc-settings.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done
[[ $WRITE == auto ]] && WRITE=$((1 - QUICK))
if [[ -n $ONLY ]]; then
    IFS=, read -r -a ORDER <<<"$ONLY"
    for v in "${ORDER[@]}"; do [[ -n ${VARIANTS[$v]:-} ]] || { echo "run-gc-settings.sh: no variant '$v'" >&2; exit 2; }; done
fi
if ((QUICK)); then RATE_WARM=1 RATE_DUR=2 DUR=2; else RATE_WARM=2 RATE_DUR=10 DUR=10; fi
RATE=1000 RATE_CONNS=16 CONNS=64
PROXY_CORE=0 LOAD_CORE=1
SERVICE=backend
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[run-gc-settings %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

for t in taskset python3 curl nginx wrk h2load; do command -v "$t" >/dev/null || die "$t is required (bash tests/setup.sh installs the peers)"; done
(($(nproc) >= 2)) || die "needs at least 2 cores"

# shellcheck source=benchmarks/lib.sh
source "$ROOT/benchmarks/lib.sh"
bench_init meshproxy-gc

if ((BUILD)); then
    log "dotnet publish -c Release (Native AOT, as shipped) -> benchmarks/out"
    dotnet publish "$ROOT/src/MeshProxy.Sidecar/MeshProxy.Sidecar.csproj" -c Release -r linux-x64 -o "$OUT" -m:1 -v q -nologo >"$WORK/publish.log" 2>&1 ||
        { cat "$WORK/publish.log" >&2; die "publish failed"; }
    if [[ " ${ORDER[*]} " == *" server-"* ]]; then
        log "dotnet publish -c Release -p:ServerGarbageCollection=true -> benchmarks/out/server-gc"
        dotnet publish "$ROOT/src/MeshProxy.Sidecar/MeshProxy.Sidecar.csproj" -c Release -r linux-x64 -p:ServerGarbageCollection=true -o "$OUT/server-gc" -m:1 -v q -nologo >"$WORK/publish-server.log" 2>&1 ||
            { cat "$WORK/publish-server.log" >&2; die "publish of the server-GC build failed"; }
    fi
fi
[[ -x $OUT/meshproxy-sidecar ]] || die "no $OUT/meshproxy-sidecar (run without --skip-build)"

read -r BACKEND BACKEND_H2 MESH_OUT MESH_IN <<<"$(free_ports 4)"
write_backend "$WORK/backend" "$BACKEND" "$BACKEND_H2" 4096
write_mesh_config "$WORK/mesh.yaml" "$BACKEND" "$MESH_OUT" "$MESH_IN" "$SERVICE"

mb() { python3 -c "print(round($(mem_kb "$1" "$2") / 1024, 1))"; }

RUNS="$WORK/runs.tsv"
: >"$RUNS"

# one_run <variant> <round>: one row of runs.tsv
one_run() {
    local v=$1 round=$2 env=() pid idle c0 c1 t0 t1 rate_rss w0 w1 wt0 wt1 wrk_out rps hwm after per
    local binary="$OUT/meshproxy-sidecar"
    [[ ${VARIANTS[$v]} != - ]] && read -r -a env <<<"${VARIANTS[$v]}"
    if [[ ${env[0]:-} == @* ]]; then binary="$OUT/${env[0]#@}/meshproxy-sidecar"; env=("${env[@]:1}"); fi
    [[ -x $binary ]] || die "$v: no $binary (publish it with the GC properties the variant names)"
    start "$v.$round" $PROXY_CORE env DOTNET_PROCESSOR_COUNT=1 "${env[@]}" "$binary" --config "$WORK/mesh.yaml"
    pid=$LAST_PID
    wait_http "http://127.0.0.1:$MESH_IN/1k" "$SERVICE"
    sleep 3
    idle=$(mb "$pid" VmRSS)
    per=$(python3 -c "print($RATE / $RATE_CONNS)")
    taskset -c $LOAD_CORE h2load --h1 -c$RATE_CONNS --rps "$per" -D $RATE_WARM -H ":authority: $SERVICE" "http://127.0.0.1:$MESH_IN/1k" >/dev/null 2>&1
    c0=$(cpu_ticks "$pid"); t0=$(now)
    taskset -c $LOAD_CORE h2load --h1 -c$RATE_CONNS --rps "$per" -D $RATE_DUR -H ":authority: $SERVICE" "http://127.0.0.1:$MESH_IN/1k" >"$WORK/$v.$round.h2load.txt" 2>&1
    t1=$(now); c1=$(cpu_ticks "$pid")
    rate_rss=$(mb "$pid" VmRSS)
    local ok; ok=$(awk '/^requests:/ { print $8 }' "$WORK/$v.$round.h2load.txt")
    w0=$(cpu_ticks "$pid"); wt0=$(now)
    wrk_out=$(taskset -c $LOAD_CORE wrk -t1 -c$CONNS -d${DUR}s -H "Host: $SERVICE" "http://127.0.0.1:$MESH_IN/1k")
    wt1=$(now)
    if ! kill -0 "$pid" 2>/dev/null; then
        # A variant that kills the process (a heap limit too small for the load) is a result, not an error.
        log "$v round $round: the sidecar died under wrk; its log ends: $(tail -c 300 "$WORK/$v.$round.log" | tr '\n' ' ')"
        stop "$pid"
        printf '%s\t%s\t%s\t%s\tnan\tnan\tnan\tnan\tnan\tnan\n' "$v" "$round" "$idle" "$rate_rss" >>"$RUNS"
        return
    fi
    w1=$(cpu_ticks "$pid")
    rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$wrk_out")
    hwm=$(mb "$pid" VmHWM)
    sleep 5
    after=$(mb "$pid" VmRSS)
    stop "$pid"
    # CPU per 1000 req/s, % of a core = ticks / CLK_TCK / requests * 1000 * 100
    python3 - "$v" "$round" "$idle" "$rate_rss" "$hwm" "$after" "$c0" "$c1" "$t0" "$t1" "${ok:-0}" "$w0" "$w1" "$wt0" "$wt1" "$rps" "$CLK_TCK" >>"$RUNS" <<'EOF'
import sys
v, rnd, idle, rate_rss, hwm, after, c0, c1, t0, t1, ok, w0, w1, wt0, wt1, rps, hz = sys.argv[1:]
hz = int(hz)
rate_cpu = (int(c1) - int(c0)) / hz / max(int(ok), 1) * 1000 * 100
sat_req = float(rps) * (float(wt1) - float(wt0))
sat_cpu = (int(w1) - int(w0)) / hz / max(sat_req, 1) * 1000 * 100
print("\t".join(map(str, [v, rnd, idle, rate_rss, rate_cpu, ok, rps, sat_cpu, hwm, after])))
EOF
    log "$v round $round: $(tail -1 "$RUNS" | cut -f3-)"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "load average before: $LOAD_BEFORE"
start backend $LOAD_CORE nginx -p "$WORK/backend/" -e stderr -c "$WORK/backend/nginx.conf"
wait_http "http://127.0.0.1:$BACKEND/1k"

for ((round = 1; round <= ROUNDS; round++)); do
    order=("${ORDER[@]}")
    if ((round % 2 == 0)); then
        order=(); for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do order+=("${ORDER[$i]}"); done
    fi
    for v in "${order[@]}"; do one_run "$v" "$round"; done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average after: $LOAD_AFTER"

export BENCH_DIR="$ROOT/benchmarks" RUNS RESULTS COMMAND_LINE STARTED LOAD_BEFORE LOAD_AFTER WRITE ROUNDS QUICK
export ORDER_TEXT="${ORDER[*]}"
export VARIANT_TEXT="$(for v in "${ORDER[@]}"; do printf '%s\t%s\n' "$v" "${VARIANTS[$v]}"; done)"
export CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) NPROC=$(nproc) KERNEL=$(uname -r)
export VERSIONS="$(nginx -v 2>&1 | sed 's/.*: //'); $(wrk -v 2>&1 | head -1 | awk '{ print "wrk " $2 }'); $(h2load --version | head -1); MeshProxy $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src || echo '+local changes') (Native AOT)"
python3 - <<'EOF'
import os, statistics, sys
cols = ["idle", "rate_rss", "rate_cpu", "ok", "rps", "sat_cpu", "hwm", "after"]
runs = {}
for line in open(os.environ["RUNS"]):
    f = line.rstrip("\n").split("\t")
    runs.setdefault(f[0], []).append(dict(zip(cols, map(float, f[2:]))))
env = dict(l.split("\t", 1) for l in os.environ["VARIANT_TEXT"].splitlines())
order = [v for v in os.environ["ORDER_TEXT"].split() if v in runs]
def med(v, c):  # over the runs that lived to give the figure
    xs = [r[c] for r in runs[v] if r[c] == r[c]]
    return statistics.median(xs) if xs else float("nan")
died = {v: sum(r["hwm"] != r["hwm"] for r in runs[v]) for v in runs}
base = "as-built" if "as-built" in runs else order[0]
lines = ["| Variant | variables added | RSS idle MB | RSS at 1000 req/s MB | CPU per 1000 req/s (% of a core) | wrk req/s | CPU per 1000 req/s at saturation | peak RSS MB | RSS 5 s after load MB | peak RSS / " + base + "'s | CPU at 1000 req/s / " + base + "'s |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for v in order:
    name = v + (f" (died under wrk in {died[v]} of {len(runs[v])} runs)" if died[v] else "")
    lines.append(f"| {name} | {'(none)' if env[v] == '-' else '`' + env[v] + '`'} | {med(v, 'idle'):.1f} | {med(v, 'rate_rss'):.1f} | {med(v, 'rate_cpu'):.1f} | {med(v, 'rps'):,.0f} | {med(v, 'sat_cpu'):.2f} | {med(v, 'hwm'):.1f} | {med(v, 'after'):.1f} | {med(v, 'hwm') / med(base, 'hwm'):.2f}x | {med(v, 'rate_cpu') / med(base, 'rate_cpu'):.2f}x |")
detail = ["", "Every run (idle / at 1000 req/s / peak / after MB; CPU per 1000 req/s at the fixed rate and at saturation; wrk req/s):", ""]
for v in order:
    detail.append(f"- {v}: " + "; ".join(f"{r['idle']:.1f} / {r['rate_rss']:.1f} / {r['hwm']:.1f} / {r['after']:.1f} MB, {r['rate_cpu']:.1f} % and {r['sat_cpu']:.2f} %, {r['rps']:,.0f} req/s" for r in runs[v]))
table = "\n".join(lines + detail)
print(table)
if os.environ["WRITE"] == "1":
    section = f"""## GC settings of the sidecar

- Date: {os.environ['STARTED']}; machine: {os.environ['NPROC']} cores, {os.environ['CPU_MODEL']}, Linux {os.environ['KERNEL']}.
- Versions: {os.environ['VERSIONS']}.
- Command: `{os.environ['COMMAND_LINE']}`
- Load average (1/5/15 min) before: {os.environ['LOAD_BEFORE']}; after: {os.environ['LOAD_AFTER']}.
- Layout: the sidecar's inbound listener (Native AOT, `DOTNET_PROCESSOR_COUNT=1` plus the variant's variables over the build's own settings) alone on core 0, in front of nginx (1 KiB) on core 1; h2load `--h1 -c16 --rps 62.5` (1000 req/s; 2 s warm-up, 10 s measured), then `wrk -t1 -c64 -d10s`, both on core 1. CPU: utime+stime of the sidecar over the window. A fresh sidecar per run, {os.environ['ROUNDS']} rounds, variants alternating (order reversed every other round); medians over rounds.

{table}
"""
    sys.path.insert(0, os.environ["BENCH_DIR"])
    from results_section import write_section
    write_section(os.environ["RESULTS"], "GC settings of the sidecar", section)
EOF
