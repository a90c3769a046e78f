#!/usr/bin/env bash
# Memory per idle keep-alive downstream connection (issue 20 item 3), MeshProxy beside nginx and haproxy.
#
# The same backend (nginx, one worker, 1 KiB) behind each proxy under test: MeshProxy's inbound listener
# (the Native AOT build that ships, standalone, as run-load.sh starts it), nginx and haproxy, each with
# one worker on core 0. benchmarks/idle-conns.py (on core 1) opens 1,000 HTTP/1.1 keep-alive connections
# to the proxy, each makes one request and reads the response, then stays open and silent; it reads the
# proxy's resident size (VmRSS over its process tree), adds connections up to 10,000 and reads it again.
# Bytes per connection = (RSS with N connections - RSS before) / N. A fresh proxy per round; targets
# alternate within each round and the table gives medians over the rounds, with ratios to nginx.
# Results go to benchmarks/RESULTS.md, section "Idle keep-alive connections".
#
# usage: benchmarks/run-idle-conns.sh [--rounds=N] [--stages=1000,10000] [--quick] [--no-write]
#                                     [--skip-build] [--keep] [--targets=meshproxy,nginx,haproxy]
#   --rounds=N     rounds of all targets (default 3)
#   --stages=a,b   connection counts, ascending (default 1000,10000); the file-descriptor limit must
#                  allow the largest plus the proxies' upstream connections
#   --quick        one round, stages 100,1000; prints the table only unless --write
#   --write        write RESULTS.md even with --quick
#   --no-write     print the table only
#   --skip-build   reuse benchmarks/out from an earlier run (run-load.sh publishes the same build there)
#   --keep         keep the scratch directory (configs, logs, raw JSON per run)
# Environment: MESHPROXY_BENCH_ENV adds/overrides variables for the MeshProxy process (experiments).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/benchmarks/out"
RESULTS="$ROOT/benchmarks/RESULTS.md"
COMMAND_LINE="benchmarks/run-idle-conns.sh${*:+ $*}"

ROUNDS=3 STAGES=1000,10000 QUICK=0 WRITE=auto BUILD=1 KEEP=0 TARGETS=meshproxy,nginx,haproxy
for arg in "$@"; do
    case "$arg" in
        --rounds=*) ROUNDS=${arg#--rounds=} ;;
        --stages=*) STAGES=${arg#--stages=} ;;
        --quick) QUICK=1 ROUNDS=1 STAGES=100,1000 ;;
        --write) WRITE=1 ;;
        --no-write) WRITE=0 ;;
        --skip-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        --targets=*) TARGETS=${arg#--targets=} ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run-idle-conns.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done
[[ $WRITE == auto ]] && WRITE=$((1 - QUICK))
PROXY_CORE=0 LOAD_CORE=1
SERVICE=backend
MAX=${STAGES##*,}

log() { printf '[run-idle-conns %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

for t in taskset python3 curl nginx haproxy; do command -v "$t" >/dev/null || die "$t is required (bash tests/setup.sh installs the peers)"; done
(($(nproc) >= 2)) || die "needs at least 2 cores (one for the proxy, one for backend and client)"

# Every proxy holds MAX downstream sockets plus its upstream pool; the client holds MAX. Raise the soft
# limit to the hard one; a hard limit below what the run needs is an error, not a silently smaller run.
want=$((MAX + 1024))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= want)) || die "needs ulimit -n >= $want (hard limit $(ulimit -Hn)); use smaller --stages"

# --- scratch space and cleanup ------------------------------------------------------------------
# shellcheck source=benchmarks/lib.sh
source "$ROOT/benchmarks/lib.sh"
bench_init meshproxy-idle

# --- build --------------------------------------------------------------------------------------
if ((BUILD)); then
    log "dotnet publish -c Release (Native AOT, as shipped) -> benchmarks/out"
    dotnet publish "$ROOT/src/MeshProxy.Sidecar/MeshProxy.Sidecar.csproj" -c Release -r linux-x64 -o "$OUT" -m:1 -v q -nologo >"$WORK/publish.log" 2>&1 ||
        { cat "$WORK/publish.log" >&2; die "publish failed"; }
fi
[[ -x $OUT/meshproxy-sidecar ]] || die "no $OUT/meshproxy-sidecar (run without --skip-build)"

# --- configs ------------------------------------------------------------------------------------
read -r BACKEND BACKEND_H2 NGINX NGINX_H2 HAPROXY HAPROXY_H2 MESH_OUT MESH_IN <<<"$(free_ports 8)"
write_backend "$WORK/backend" "$BACKEND" "$BACKEND_H2" $((MAX + 1024))
write_nginx_proxy "$WORK/nginx" "$NGINX" "$NGINX_H2" "$BACKEND" $((MAX + 1024))
write_haproxy "$WORK/haproxy.cfg" "$HAPROXY" "$HAPROXY_H2" "$BACKEND" $((MAX + 1024))
write_mesh_config "$WORK/mesh.yaml" "$BACKEND" "$MESH_OUT" "$MESH_IN" "$SERVICE"

# The sidecar's environment in run-load.sh: one core's worth of runtime, and the gen0 budget an injected
# pod gets (bare hexadecimal, which Native AOT needs).
MESH_ENV=(DOTNET_PROCESSOR_COUNT=1 DOTNET_gcServer=0 DOTNET_TieredPGO=1 DOTNET_GCgen0size=400000)
# shellcheck disable=SC2206
MESH_ENV+=(${MESHPROXY_BENCH_ENV:-})

# --- measurement --------------------------------------------------------------------------------
RUNS="$WORK/runs.tsv"
: >"$RUNS"

# one_run <label> <round> <port> <command...>: a fresh proxy, the client's stages, the proxy stopped.
one_run() {
    local label=$1 round=$2 port=$3 pid metrics=(); shift 3
    start "$label.$round" $PROXY_CORE "$@"
    pid=$LAST_PID
    wait_http "http://127.0.0.1:$port/1k" "$SERVICE"
    # MeshProxy's stats listener (a free port) reports the managed heap: dotnet_total_memory_bytes.
    local stats; stats=$(grep -o 'stats listener on [0-9.:]*' "$WORK/$label.$round.log" | awk '{ print $4 }' || true)
    [[ -n $stats ]] && metrics=(--metrics "http://$stats/metrics")
    log "$label round $round: stages $STAGES"
    taskset -c $LOAD_CORE python3 "$ROOT/benchmarks/idle-conns.py" --port "$port" --pid "$pid" --host-header "$SERVICE" --stages "$STAGES" "${metrics[@]}" \
        >"$WORK/$label.$round.json" 2>"$WORK/$label.$round.client.log" ||
        { cat "$WORK/$label.$round.client.log" >&2; die "$label: the client failed"; }
    printf '%s\t%s\t%s\n' "$label" "$round" "$(cat "$WORK/$label.$round.json")" >>"$RUNS"
    stop "$pid"
}

wanted() { [[ ,$TARGETS, == *,$1,* ]]; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "load average before: $LOAD_BEFORE"

start backend $LOAD_CORE nginx -p "$WORK/backend/" -e stderr -c "$WORK/backend/nginx.conf"
wait_http "http://127.0.0.1:$BACKEND/1k"

for ((round = 1; round <= ROUNDS; round++)); do
    # Alternate the order between rounds, so that a machine growing busier hurts every target alike.
    order=(meshproxy nginx haproxy)
    ((round % 2 == 0)) && order=(haproxy nginx meshproxy)
    for target in "${order[@]}"; do
        wanted "$target" || continue
        case $target in
            meshproxy) one_run meshproxy "$round" "$MESH_IN" env "${MESH_ENV[@]}" "$OUT/meshproxy-sidecar" --config "$WORK/mesh.yaml" ;;
            nginx) one_run nginx "$round" "$NGINX" nginx -p "$WORK/nginx/" -e stderr -c "$WORK/nginx/nginx.conf" ;;
            haproxy) one_run haproxy "$round" "$HAPROXY" haproxy -db -f "$WORK/haproxy.cfg" ;;
        esac
    done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average after: $LOAD_AFTER"

# --- report -------------------------------------------------------------------------------------
export BENCH_DIR="$ROOT/benchmarks" RUNS RESULTS COMMAND_LINE STARTED LOAD_BEFORE LOAD_AFTER WRITE ROUNDS STAGES
export MESH_ENV_TEXT="${MESH_ENV[*]}"
export CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) NPROC=$(nproc) KERNEL=$(uname -r)
export VERSIONS="$(nginx -v 2>&1 | sed 's/.*: //'); $(haproxy -v | head -1 | awk '{ print "HAProxy " $3 }'); MeshProxy $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src || echo '+local changes') (Native AOT)"
python3 - <<'EOF'
import json, os, statistics, sys

runs = {}
for line in open(os.environ["RUNS"]):
    label, rnd, raw = line.rstrip("\n").split("\t", 2)
    runs.setdefault(label, []).append(json.loads(raw))
stages = [int(s) for s in os.environ["STAGES"].split(",")]
targets = [t for t in ("meshproxy", "nginx", "haproxy") if t in runs]
names = {"meshproxy": "MeshProxy inbound (Native AOT)", "nginx": "nginx", "haproxy": "haproxy"}

def med(xs):
    return statistics.median(xs)

def per_conn(run, i):  # bytes per connection at stage i
    s = run["stages"][i]
    return (s["rss_kb"] - run["rss_before_kb"]) * 1024 / s["connections"]

closed = [(t, s["connections"], s["closed"]) for t in targets for r in runs[t] for s in r["stages"] if s["closed"]]
lines = []
head = "| Target | RSS before MB | " + " | ".join(f"RSS at {n:,} MB | bytes per connection at {n:,} | per connection / nginx's" for n in stages) + " |"
lines += [head, "|---|---:|" + "---:|---:|---:|" * len(stages)]
base = {i: med([per_conn(r, i) for r in runs["nginx"]]) for i in range(len(stages))} if "nginx" in runs else {}
for t in targets:
    rs = runs[t]
    cells = [names[t], f"{med([r['rss_before_kb'] for r in rs]) / 1024:.1f}"]
    for i in range(len(stages)):
        pc = med([per_conn(r, i) for r in rs])
        ratio = f"{pc / base[i]:.2f}x" if base.get(i) else "n/a"
        cells += [f"{med([r['stages'][i]['rss_kb'] for r in rs]) / 1024:.1f}", f"{pc:,.0f}", ratio]
    lines.append("| " + " | ".join(cells) + " |")
detail = ["", "Every run (bytes per connection at each stage; seconds to open the stage's connections):", ""]
for t in targets:
    for k, r in enumerate(runs[t], 1):
        detail.append(f"- {names[t]} round {k}: before {r['rss_before_kb'] / 1024:.1f} MB; " + "; ".join(
            f"{s['connections']:,}: {s['rss_kb'] / 1024:.1f} MB, {per_conn(r, i):,.0f} B/conn, opened in {s['open_seconds']} s"
            for i, s in enumerate(r["stages"])))
managed = ["", "MeshProxy's managed heap (dotnet_total_memory_bytes from its stats listener, garbage not yet collected included), per connection: " + "; ".join(
    f"at {n:,}: {med([(r['stages'][i]['managed'] - r['managed_before']) / n for r in runs['meshproxy']]):,.0f} bytes"
    for i, n in enumerate(stages))] if "meshproxy" in runs and runs["meshproxy"][0].get("managed_before") is not None else []
table = "\n".join(lines + managed + detail)
print(table)
if closed:
    print("\nWARNING: connections closed by the proxy during a stage:", closed)

if os.environ["WRITE"] == "1":
    section = f"""## Idle keep-alive connections

- Date: {os.environ['STARTED']}; machine: {os.environ['NPROC']} cores, {os.environ['CPU_MODEL']}, Linux {os.environ['KERNEL']}.
- Versions: {os.environ['VERSIONS']}.
- Command: `{os.environ['COMMAND_LINE']}`
- Load average (1/5/15 min) before: {os.environ['LOAD_BEFORE']}; after: {os.environ['LOAD_AFTER']}.
- Layout: each proxy alone on core 0 with one worker (nginx `worker_processes 1`, haproxy `nbthread 1`, MeshProxy's inbound listener with `{os.environ['MESH_ENV_TEXT']}`), in front of the same nginx backend (1 KiB) on core 1; the client (benchmarks/idle-conns.py) on core 1 opens connections 64 at a time, each makes one HTTP/1.1 keep-alive request, reads the response and stays open and silent. RSS: VmRSS over the proxy's process tree, 3 s after the stage's last connection opened. Bytes per connection = (RSS at N - RSS before) / N. A fresh proxy per round, {os.environ['ROUNDS']} rounds, order alternating; medians over rounds.

{table}
"""
    sys.path.insert(0, os.environ["BENCH_DIR"])
    from results_section import write_section
    write_section(os.environ["RESULTS"], "Idle keep-alive connections", section)
EOF
