#!/usr/bin/env bash
# CPU time and context switches per request of two sidecar builds side by side (A/B), for a change on the
# request path: both builds run at once against one nginx backend (a service with two endpoints, two ports
# of the same nginx, so the default passive health and the load balancer are armed), the sidecars pinned to
# core 0, h2load and nginx to core 1; rounds alternate A and B, each round n closed-loop HTTP/1.1 GETs
# (benchmarks/cpu-per-request.sh). Prints each round and the medians; ratio is B/A.
# usage: benchmarks/run-ab-cpu.sh <A meshproxy-sidecar.dll> <B meshproxy-sidecar.dll> [rounds] [requests]
#   MESHPROXY_AB_LISTENER=inbound: the requests go to the inbound listener (a caller's plaintext request forwarded
#   to the app port, the backend's first port) instead of the outbound one.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
A=$1 B=$2 rounds=${3:-7} n=${4:-100000} listener=${MESHPROXY_AB_LISTENER:-outbound}
command -v nginx >/dev/null && command -v h2load >/dev/null || apt-get install -y nginx-light nghttp2-client >/dev/null
WORK=$(mktemp -d /tmp/meshproxy-ab.XXXXXX); chmod 755 "$WORK"
PIDS=(); trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
E1=$(port) E2=$(port)
mkdir -p "$WORK/www"; head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/www/1k"
cat >"$WORK/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  server { listen 127.0.0.1:$E1 backlog=4096; listen 127.0.0.1:$E2 backlog=4096; root $WORK/www; } }
NGX
taskset -c 1 nginx -c "$WORK/nginx.conf" & PIDS+=($!)
declare -A OUT PID
for v in A B; do
  o=$(port) i=$(port); OUT[$v]=$o
  [ "$listener" = inbound ] && OUT[$v]=$i
  cat >"$WORK/$v.yaml" <<YML
apiVersion: meshproxy.io/v1alpha1
kind: Sidecar
metadata: { name: bench, namespace: bench }
spec:
  workload: { serviceAccount: bench }
  app: { port: $E1, protocol: HTTP }
  listeners: { outbound: $o, inbound: $i, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
  drainDuration: 1s
---
apiVersion: meshproxy.io/v1alpha1
kind: Service
metadata: { name: backend, namespace: bench }
spec:
  ports: [{ port: 80, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, port: $E1 }, { address: 127.0.0.1, port: $E2 }]
YML
  dll=$A; [ $v = B ] && dll=$B
  env DOTNET_PROCESSOR_COUNT=1 DOTNET_gcServer=0 DOTNET_GCgen0size=400000 taskset -c 0 dotnet "$dll" --config "$WORK/$v.yaml" >"$WORK/$v.log" 2>&1 &
  PID[$v]=$!; PIDS+=($!)
done
for v in A B; do for _ in $(seq 300); do curl -sf -o /dev/null -H 'Host: backend' "http://127.0.0.1:${OUT[$v]}/1k" && break; sleep 0.2; done; done
for v in A B; do bash "$ROOT/benchmarks/cpu-per-request.sh" "${PID[$v]}" "${OUT[$v]}" 20000 >/dev/null; done  # warm-up (tiering, PGO)
for r in $(seq "$rounds"); do for v in A B; do
  echo "$r $v $(bash "$ROOT/benchmarks/cpu-per-request.sh" "${PID[$v]}" "${OUT[$v]}" "$n")"
done; done | tee "$WORK/rounds"
python3 - "$WORK/rounds" <<'PY'
import sys, statistics as st
rows=[l.split() for l in open(sys.argv[1])]
for col, name in ((2, "context switches per request"), (4, "CPU us per request")):
    a=st.median(float(r[col]) for r in rows if r[1]=="A"); b=st.median(float(r[col]) for r in rows if r[1]=="B")
    print(f"{name}: A median {a:.3f}  B median {b:.3f}  B/A {b/a:.3f}")
PY
