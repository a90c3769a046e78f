#!/usr/bin/env bash
# Publish modes of the sidecar side by side (the Native AOT question, benchmarks/RESULTS.md "what holds
# MeshProxy back" item 4): ReadyToRun framework-dependent, trimmed self-contained JIT (shipped until
# 2026-12-07), and trimmed self-contained + ReadyToRun; with --aot also Native AOT, which ships now.
#
# For each build, <rounds> times, alternating builds so that a busy machine hurts them alike: the
# sidecar pinned to core 0 (same environment as run-load.sh's MeshProxy rows), nginx serving 1 KiB on
# core 1, load on core 1. Prints one line per run: time from exec to the first proxied 200, RSS idle
# (3 s after that), RSS after 10 s at 1000 req/s (h2load, HTTP/1.1, 16 connections), wrk req/s at
# saturation (64 connections) for the first and the next 10 s, peak RSS, exit code of SIGTERM drain.
#
# usage: benchmarks/run-publish-compare.sh [--aot] [--skip-build] [rounds (default 2)]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/benchmarks/out/publish"
AOT=0 BUILD=1 ROUNDS=2
for arg in "$@"; do
    case "$arg" in
        --aot) AOT=1 ;;
        --skip-build) BUILD=0 ;;
        [0-9]*) ROUNDS=$arg ;;
        *) echo "run-publish-compare.sh: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done
for t in taskset nginx h2load wrk curl python3 dotnet; do command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 1; }; done

publish() { # publish <name> <args...>; the trimmed builds are publish experiments: ILLink's one warning
    # (inside Google.Protobuf, see src/MeshProxy.Sidecar/README.md) must not fail them.
    local name=$1; shift
    echo "publishing $name" >&2
    dotnet publish "$ROOT/src/MeshProxy.Sidecar" -c Release -r linux-x64 -m:1 -v q -nologo -o "$OUT/$name" "$@" >"$OUT/$name.log" 2>&1 ||
        { tail -20 "$OUT/$name.log" >&2; exit 1; }
}
mkdir -p "$OUT"
if ((BUILD)); then
    publish r2r -p:PublishAot=false --self-contained false -p:PublishTrimmed=false -p:PublishReadyToRun=true
    publish trimmed -p:PublishAot=false # what shipped until 2026-12-07
    publish trimmed-r2r -p:PublishAot=false -p:PublishReadyToRun=true
    ((AOT)) && publish aot # the project's publish default: what ships
fi
declare -A CMD=([r2r]="dotnet $OUT/r2r/meshproxy-sidecar.dll" [trimmed]="$OUT/trimmed/meshproxy-sidecar" [trimmed-r2r]="$OUT/trimmed-r2r/meshproxy-sidecar")
BUILDS=(r2r trimmed trimmed-r2r)
((AOT)) && CMD[aot]="$OUT/aot/meshproxy-sidecar" && BUILDS+=(aot)
for b in "${BUILDS[@]}"; do printf '%s: %s on disk\n' "$b" "$(du -sh "$OUT/$b" | cut -f1)"; done

WORK=$(mktemp -d /tmp/meshproxy-publish.XXXXXX); chmod 755 "$WORK"
PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
mb() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' /proc/"$1"/status; }

run() { # run <label> <command...>
    local label=$1 w="$WORK/$1"; shift
    mkdir -p "$w/www"; chmod 755 "$w" "$w/www"
    head -c 1024 /dev/zero | tr '\0' x >"$w/www/1k"
    local bp outp inp
    read -r bp outp inp <<<"$(python3 -c 'import socket;s=[socket.socket() for _ in range(3)];[x.bind(("127.0.0.1",0)) for x in s];print(*[x.getsockname()[1] for x in s])')"
    cat >"$w/nginx.conf" <<N
worker_processes 1; daemon off; pid $w/nginx.pid; error_log stderr;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s; sendfile off;
  server { listen 127.0.0.1:$bp backlog=4096; root $w/www; } }
N
    cat >"$w/mesh.yaml" <<Y
apiVersion: meshproxy.io/v1alpha1
kind: Sidecar
metadata: { name: bench, namespace: bench }
spec:
  workload: { serviceAccount: bench }
  app: { port: $bp, protocol: HTTP }
  listeners: { outbound: $outp, inbound: $inp, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
  drainDuration: 1s
---
apiVersion: meshproxy.io/v1alpha1
kind: Service
metadata: { name: backend, namespace: bench }
spec:
  ports: [{ port: 80, protocol: HTTP }]
  endpoints:
    - { address: 127.0.0.1, port: $bp }
Y
    taskset -c 1 nginx -p "$w/" -c "$w/nginx.conf" >"$w/nginx.log" 2>&1 & local ng=$!; PIDS+=("$ng")
    sleep 0.5
    local t0 t1 sc
    t0=$(date +%s.%N)
    # shellcheck disable=SC2068
    taskset -c 0 env DOTNET_PROCESSOR_COUNT=1 DOTNET_gcServer=0 DOTNET_TieredPGO=1 DOTNET_GCgen0size=400000 $@ --config "$w/mesh.yaml" >"$w/sidecar.log" 2>&1 &
    sc=$!; PIDS+=("$sc")
    for _ in $(seq 1500); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' -H 'Host: backend' "http://127.0.0.1:$outp/1k") == 200 ]] && break
        sleep 0.02
    done
    t1=$(date +%s.%N)
    sleep 3
    local idle rate ok w1 w2 after hwm rc
    idle=$(mb "$sc" VmRSS)
    timeout 40 taskset -c 1 h2load --h1 -c16 --rps 62.5 -D 10 -H ':authority: backend' "http://127.0.0.1:$outp/1k" >"$w/h2load.txt" 2>&1 || true
    rate=$(mb "$sc" VmRSS); ok=$(grep -o '[0-9]* succeeded' "$w/h2load.txt" | head -1 || true)
    w1=$(taskset -c 1 wrk -t1 -c64 -d10s -H 'Host: backend' "http://127.0.0.1:$outp/1k" | awk '/Requests\/sec/ { print $2 }')
    w2=$(taskset -c 1 wrk -t1 -c64 -d10s -H 'Host: backend' "http://127.0.0.1:$outp/1k" | awk '/Requests\/sec/ { print $2 }')
    after=$(mb "$sc" VmRSS); hwm=$(mb "$sc" VmHWM)
    kill -TERM "$sc"; rc=0; wait "$sc" || rc=$?
    kill -TERM "$ng"; wait "$ng" 2>/dev/null || true
    printf '%-14s ready %5.2f s  RSS idle %5s MB  at 1000 req/s %5s MB (%s)  wrk %8s then %8s req/s  RSS after %5s MB  peak %5s MB  exit %s  load %s\n' \
        "$label" "$(python3 -c "print($t1 - $t0)")" "$idle" "$rate" "$ok" "$w1" "$w2" "$after" "$hwm" "$rc" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((i = 1; i <= ROUNDS; i++)); do
    for b in "${BUILDS[@]}"; do run "$b#$i" ${CMD[$b]}; done
done
