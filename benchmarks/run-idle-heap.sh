#!/usr/bin/env bash
# What holds the managed memory of an idle keep-alive downstream connection (issue 20 item 3), by type.
#
# Runs the sidecar's JIT build (Release; same source as the Native AOT build that ships, and a heap that
# dotnet-gcdump can read) standalone with run-idle-conns.sh's config and environment, in front of an nginx
# backend. benchmarks/idle-conns.py opens one connection (the baseline: first request served, code paths
# warmed), then N more, each making one HTTP/1.1 keep-alive request and staying silent. At each of the two
# stages dotnet-gcdump takes a snapshot of the live objects (it forces a full collection, so garbage is not
# counted); the table is the difference per type, divided by the connections added: bytes and objects each
# idle connection holds. Sizes are the objects' own (shallow) sizes, not what they retain.
#
# usage: benchmarks/run-idle-heap.sh [--connections=N] [--top=K] [--skip-build] [--keep]
#   --connections=N  connections added after the baseline (default 3000)
#   --top=K          types listed (default 40)
#   --skip-build     reuse the Release build in src/MeshProxy.Sidecar/bin/Release/net10.0/linux-x64
#   --keep           keep the scratch directory (the two .gcdump files, logs)
# Needs dotnet-gcdump (`dotnet tool install -g dotnet-gcdump`). Prints the table; writes nothing.
# Environment: MESHPROXY_BENCH_ENV adds/overrides variables for the sidecar (experiments).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=3000 TOP=40 BUILD=1 KEEP=0
for arg in "$@"; do
    case "$arg" in
        --connections=*) N=${arg#--connections=} ;;
        --top=*) TOP=${arg#--top=} ;;
        --skip-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run-idle-heap.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

log() { printf '[run-idle-heap %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

GCDUMP=$(command -v dotnet-gcdump || echo "$HOME/.dotnet/tools/dotnet-gcdump")
[[ -x $GCDUMP ]] || die "dotnet-gcdump is required: dotnet tool install -g dotnet-gcdump"
for t in taskset python3 curl nginx; do command -v "$t" >/dev/null || die "$t is required (bash tests/setup.sh installs the peers)"; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= N + 1024)) || die "needs ulimit -n >= $((N + 1024))"

# shellcheck source=benchmarks/lib.sh
source "$ROOT/benchmarks/lib.sh"
bench_init meshproxy-idle-heap

BIN="$ROOT/src/MeshProxy.Sidecar/bin/Release/net10.0/linux-x64"
if ((BUILD)); then
    log "dotnet build -c Release (JIT)"
    dotnet build "$ROOT/src/MeshProxy.Sidecar/MeshProxy.Sidecar.csproj" -c Release -r linux-x64 -v q -nologo >"$WORK/build.log" 2>&1 ||
        { cat "$WORK/build.log" >&2; die "build failed"; }
fi
[[ -f $BIN/meshproxy-sidecar.dll ]] || die "no $BIN/meshproxy-sidecar.dll (run without --skip-build)"

read -r BACKEND BACKEND_H2 MESH_OUT MESH_IN <<<"$(free_ports 4)"
write_backend "$WORK/backend" "$BACKEND" "$BACKEND_H2" $((N + 1024))
write_mesh_config "$WORK/mesh.yaml" "$BACKEND" "$MESH_OUT" "$MESH_IN" backend
start backend 1 nginx -p "$WORK/backend/" -e stderr -c "$WORK/backend/nginx.conf"
wait_http "http://127.0.0.1:$BACKEND/1k"

# run-idle-conns.sh's environment (the JIT runtime also reads the gen0 budget in bare hexadecimal).
MESH_ENV=(DOTNET_PROCESSOR_COUNT=1 DOTNET_gcServer=0 DOTNET_TieredPGO=1 DOTNET_GCgen0size=400000)
# shellcheck disable=SC2206
MESH_ENV+=(${MESHPROXY_BENCH_ENV:-})
start sidecar 0 env "${MESH_ENV[@]}" dotnet "$BIN/meshproxy-sidecar.dll" --config "$WORK/mesh.yaml"
SIDECAR=$LAST_PID
wait_http "http://127.0.0.1:$MESH_IN/1k" backend

HOLD="$WORK/hold"
taskset -c 1 python3 "$ROOT/benchmarks/idle-conns.py" --port "$MESH_IN" --pid "$SIDECAR" --host-header backend \
    --stages "1,$((N + 1))" --hold-file "$HOLD" >"$WORK/client.json" 2>"$WORK/client.log" &
CLIENT=$!
PIDS+=("$CLIENT")
for stage in base loaded; do
    for _ in $(seq 1200); do [[ -f $HOLD ]] && break; kill -0 "$CLIENT" 2>/dev/null || { cat "$WORK/client.log" >&2; die "the client failed"; }; sleep 0.5; done
    [[ -f $HOLD ]] || die "the client did not reach stage $stage in 600 s"
    log "stage $stage: $(cat "$HOLD")"
    "$GCDUMP" collect -p "$SIDECAR" -o "$WORK/$stage.gcdump" >"$WORK/gcdump-$stage.log" 2>&1 || { cat "$WORK/gcdump-$stage.log" >&2; die "gcdump failed"; }
    "$GCDUMP" report "$WORK/$stage.gcdump" >"$WORK/$stage.txt" 2>&1 || { cat "$WORK/$stage.txt" >&2; die "gcdump report failed"; }
    rm -f "$HOLD"
done
wait "$CLIENT" || { cat "$WORK/client.log" >&2; die "the client failed"; }
python3 - "$WORK/base.txt" "$WORK/loaded.txt" "$N" "$TOP" "$(cat "$WORK/client.json")" <<'EOF'
import json, re, sys

def read(path):
    types = {}
    for line in open(path):
        # "    840     2,001  Microsoft...Http1Connection<...>  [Microsoft.AspNetCore.Server.Kestrel.Core.dll]": the size of
        # one object (for arrays, of a typical one: their bucket's total is this times the count, roughly), the count.
        m = re.match(r"\s*([\d,]+)\s+([\d,]+)\s+(.*?)\s*$", line)
        if m and not m.group(3).startswith("GC Heap"):
            name = re.sub(r"\s+\[[^\]]*\]$", "", m.group(3))
            size, count = int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))
            b, c = types.get(name, (0, 0))
            types[name] = (b + size * count, c + count)
    return types

base, loaded = read(sys.argv[1]), read(sys.argv[2])
n, top, client = int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
rows = []
for name in set(base) | set(loaded):
    b0, c0 = base.get(name, (0, 0))
    b1, c1 = loaded.get(name, (0, 0))
    rows.append((b1 - b0, c1 - c0, name))
rows.sort(reverse=True)
heap = lambda path: int(open(path).readline().split()[0].replace(",", ""))
total = heap(sys.argv[2]) - heap(sys.argv[1])
closed = client["stages"][-1]["closed"]
print(f"{n:,} idle connections added; live managed bytes per connection {total / n:,.0f} (RSS per connection {(client['stages'][-1]['rss_kb'] - client['stages'][0]['rss_kb']) * 1024 / n:,.0f}); closed by the proxy: {closed}")
print()
print("| bytes per connection | objects per connection | type |")
print("|---:|---:|---|")
for d, c, name in rows[:top]:
    print(f"| {d / n:,.0f} | {c / n:.2f} | `{name}` |")
rest = sum(r[0] for r in rows[top:])
print(f"| {rest / n:,.0f} | | (the other {len(rows) - top} types) |")
EOF
