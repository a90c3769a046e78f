#!/usr/bin/env bash
# Mutual TLS two-hop path (issue 4, Benchmark).
#
#   client -> outbound proxy -> (mTLS) -> inbound proxy -> backend (nginx, 1 KiB static file)
#
# built twice with the same certificates (ECDSA P-256 SVIDs from one openssl-made root):
#   meshproxy: two sidecars, "store" (outbound, originates mTLS) and "billing" (inbound, STRICT)
#   haproxy:   two haproxy processes, the outbound one with `ssl crt ... ca-file ... verify required` on its
#              server line, the inbound one with `ssl crt ... ca-file ... verify required` on its bind line
# Both proxies of a path run on core 0; backend and load generator on core 1 (taskset).
#
# Figures, in one run:
#   added p99 at 1000 req/s: h2load --h1 at a fixed rate (10 clients x --rps 100), p99 from its per-request
#                            log, minus the p99 of the same load sent to the backend directly
#   CPU per 1000 req/s:      utime+stime of both proxy processes (/proc/<pid>/stat) over that run, as % of one core
#   new handshakes/s:        full mTLS handshakes (client certificate, no resumption) the inbound proxy completes
#                            per second: `openssl s_time -new` with the caller's certificate, two in parallel on core 1
#
# usage: benchmarks/run-mtls-load.sh [--quick] [--no-write]
#   --quick     short runs (smoke test); does not touch RESULTS.md
#   --no-write  print the table only
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS="$ROOT/benchmarks/RESULTS.md"
COMMAND_LINE="benchmarks/run-mtls-load.sh${*:+ $*}"
QUICK=0 WRITE=1
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 WRITE=0 ;;
        --no-write) WRITE=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run-mtls-load.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done
if ((QUICK)); then WARM=3 DUR=5 HS_DUR=3; else WARM=20 DUR=15 HS_DUR=10; fi
CLIENTS=10 RPS_PER_CLIENT=100 RATE=$((CLIENTS * RPS_PER_CLIENT))
PROXY_CORE=0 LOAD_CORE=1
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[run-mtls %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v h2load >/dev/null || need+=(nghttp2-client)
if ((${#need[@]})); then log "installing ${need[*]}"; apt-get install -y "${need[@]}" >/dev/null; fi
for t in taskset python3 curl dotnet openssl; do command -v "$t" >/dev/null || die "$t is required"; done
(($(nproc) >= 2)) || die "needs at least 2 cores"

WORK=$(mktemp -d /tmp/meshproxy-mtls-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; die "nothing listens on $1"; }

# --- build ---------------------------------------------------------------------------------------
log "publishing the sidecar (Release)"
dotnet publish -c Release -r linux-x64 -m:1 -v q "$ROOT/src/MeshProxy.Sidecar" -o "$WORK/sidecar" >/dev/null # as shipped: Native AOT

# --- certificates: one root, two SVIDs (what both paths use) ---------------------------------------
PKI="$WORK/pki"; mkdir -p "$PKI"
cat >"$PKI/ca.cnf" <<'EOF'
[ req ]
distinguished_name = dn
[ dn ]
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
EOF
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/root.key" 2>/dev/null
openssl req -x509 -new -key "$PKI/root.key" -subj "/O=cluster.local/CN=bench root" -days 30 -config "$PKI/ca.cnf" -extensions v3_ca -out "$PKI/root.pem"
for sa in store billing; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$sa.key" 2>/dev/null
    openssl req -new -key "$PKI/$sa.key" -subj "/O=bench/CN=$sa" -out "$PKI/$sa.csr" -config "$PKI/ca.cnf"
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=critical,URI:spiffe://cluster.local/ns/bench/sa/%s\n' "$sa" >"$PKI/$sa.ext"
    openssl x509 -req -in "$PKI/$sa.csr" -CA "$PKI/root.pem" -CAkey "$PKI/root.key" -CAcreateserial -days 7 -extfile "$PKI/$sa.ext" -out "$PKI/$sa.pem" 2>/dev/null
    cat "$PKI/$sa.pem" "$PKI/$sa.key" >"$PKI/$sa-haproxy.pem"
done

# --- backend -------------------------------------------------------------------------------------
BACKEND=$(free_port)
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 >"$WORK/index.html"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$BACKEND; root $WORK; }
}
EOF
taskset -c $LOAD_CORE nginx -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)
wait_port "$BACKEND"

# --- meshproxy path ------------------------------------------------------------------------------
M_IN=$(free_port) M_OUT=$(free_port)
cat >"$WORK/billing.yaml" <<EOF
apiVersion: meshproxy.io/v1alpha1
kind: Sidecar
metadata: { name: billing, namespace: bench }
spec:
  workload: { serviceAccount: billing }
  app: { port: $BACKEND, protocol: HTTP }
  listeners: { outbound: 0, inbound: $M_IN, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
  tls: { certificateChainFile: $PKI/billing.pem, privateKeyFile: $PKI/billing.key, trustBundleFile: $PKI/root.pem }
EOF
cat >"$WORK/store.yaml" <<EOF
apiVersion: meshproxy.io/v1alpha1
kind: Sidecar
metadata: { name: store, namespace: bench }
spec:
  workload: { serviceAccount: store }
  app: { port: 1, protocol: HTTP }
  listeners: { outbound: $M_OUT, inbound: 0, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
  tls: { certificateChainFile: $PKI/store.pem, privateKeyFile: $PKI/store.key, trustBundleFile: $PKI/root.pem }
---
apiVersion: meshproxy.io/v1alpha1
kind: Service
metadata: { name: backend, namespace: bench }
spec:
  ports: [{ port: 80, targetPort: $M_IN, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, port: $M_IN, serviceAccount: billing }]
EOF
export Logging__LogLevel__Default=Warning
taskset -c $PROXY_CORE "$WORK/sidecar/meshproxy-sidecar" --config "$WORK/billing.yaml" >"$WORK/billing.log" 2>&1 & M_IN_PID=$!; PIDS+=($M_IN_PID)
taskset -c $PROXY_CORE "$WORK/sidecar/meshproxy-sidecar" --config "$WORK/store.yaml" >"$WORK/store.log" 2>&1 & M_OUT_PID=$!; PIDS+=($M_OUT_PID)
wait_port "$M_IN"; wait_port "$M_OUT"

# --- haproxy path --------------------------------------------------------------------------------
H_IN=$(free_port) H_OUT=$(free_port)
cat >"$WORK/haproxy-in.cfg" <<EOF
global
    nbthread 1
    ssl-default-bind-options ssl-min-ver TLSv1.2
    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305
defaults
    mode http
    timeout connect 10s
    timeout client 130s
    timeout server 90s
    http-reuse always
frontend inbound
    bind 127.0.0.1:$H_IN ssl crt $PKI/billing-haproxy.pem ca-file $PKI/root.pem verify required alpn h2,http/1.1
    default_backend app
backend app
    server app 127.0.0.1:$BACKEND
EOF
cat >"$WORK/haproxy-out.cfg" <<EOF
global
    nbthread 1
    ssl-default-server-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 10s
    timeout client 130s
    timeout server 90s
    http-reuse always
frontend outbound
    bind 127.0.0.1:$H_OUT
    default_backend mesh
backend mesh
    server billing 127.0.0.1:$H_IN ssl crt $PKI/store-haproxy.pem ca-file $PKI/root.pem verify required alpn http/1.1
EOF
taskset -c $PROXY_CORE haproxy -db -f "$WORK/haproxy-in.cfg" >"$WORK/haproxy-in.log" 2>&1 & H_IN_PID=$!; PIDS+=($H_IN_PID)
taskset -c $PROXY_CORE haproxy -db -f "$WORK/haproxy-out.cfg" >"$WORK/haproxy-out.log" 2>&1 & H_OUT_PID=$!; PIDS+=($H_OUT_PID)
wait_port "$H_IN"; wait_port "$H_OUT"

for url in "http://127.0.0.1:$M_OUT/index.html" "http://127.0.0.1:$H_OUT/index.html"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: backend' "$url")
    [[ $code == 200 ]] || die "$url answered $code (logs in $WORK)"
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# p99 (ms) and achieved req/s from an h2load per-request log (start_us, status, duration_us).
p99_of() {
    python3 - "$1" <<'EOF'
import sys
rows = [l.split('\t') for l in open(sys.argv[1]) if l.strip()]
d = sorted(int(r[2]) for r in rows)
bad = sum(1 for r in rows if r[1] != '200')
print(f"{d[min(len(d) - 1, int(len(d) * 0.99))] / 1000:.3f} {len(d)} {bad}")
EOF
}

# Fixed-rate run against $1 ($2: proxy pids to account CPU for). Prints "p99_ms requests non200 cpu_percent".
fixed_rate() {
    local url=$1; shift
    timeout $((DUR + WARM + 30)) taskset -c $LOAD_CORE h2load --h1 -c $CLIENTS --rps $RPS_PER_CLIENT -D $WARM -H ':authority: backend' "$url" >/dev/null 2>&1 || true
    local before=0 after=0 pid
    for pid in "$@"; do before=$((before + $(cpu_ticks "$pid"))); done
    local t0; t0=$(date +%s.%N)
    timeout $((DUR + WARM + 30)) taskset -c $LOAD_CORE h2load --h1 -c $CLIENTS --rps $RPS_PER_CLIENT -D $DUR -H ':authority: backend' --log-file="$WORK/h2load.log" "$url" >"$WORK/h2load.out" 2>&1 || true
    local t1; t1=$(date +%s.%N)
    for pid in "$@"; do after=$((after + $(cpu_ticks "$pid"))); done
    local stats; stats=$(p99_of "$WORK/h2load.log")
    local cpu; cpu=$(python3 -c "print(f'{100 * ($after - $before) / $CLK_TCK / ($t1 - $t0):.1f}')")
    echo "$stats $cpu"
    rm -f "$WORK/h2load.log"
}

# Full mTLS handshakes per second the inbound proxy completes (two s_time clients in parallel).
handshakes() {
    local port=$1 total=0 i clients=()
    for i in 1 2; do
        taskset -c $LOAD_CORE openssl s_time -connect "127.0.0.1:$port" -new -time $HS_DUR -cert "$PKI/store.pem" -key "$PKI/store.key" -CAfile "$PKI/root.pem" >"$WORK/stime-$i.out" 2>&1 &
        clients+=($!)
    done
    for i in "${clients[@]}"; do wait "$i" || true; done
    for i in 1 2; do
        n=$(sed -n 's/^\([0-9]*\) connections in [0-9.]* real seconds.*/\1/p' "$WORK/stime-$i.out" | head -1)
        total=$((total + ${n:-0}))
    done
    python3 -c "print(f'{$total / $HS_DUR:.0f}')"
}

log "direct: $RATE req/s"
read -r D_P99 D_N D_BAD D_CPU < <(fixed_rate "http://127.0.0.1:$BACKEND/index.html")
log "meshproxy two-hop mTLS: $RATE req/s"
read -r M_P99 M_N M_BAD M_CPU < <(fixed_rate "http://127.0.0.1:$M_OUT/index.html" $M_OUT_PID $M_IN_PID)
log "haproxy two-hop mTLS: $RATE req/s"
read -r H_P99 H_N H_BAD H_CPU < <(fixed_rate "http://127.0.0.1:$H_OUT/index.html" $H_OUT_PID $H_IN_PID)
log "new mTLS handshakes/s on the inbound proxy"
M_HS=$(handshakes "$M_IN")
H_HS=$(handshakes "$H_IN")

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
added() { python3 -c "print(f'{$1 - $2:.2f}')"; }
TABLE=$(cat <<EOF
| path | p99 at $RATE req/s (ms) | added p99 (ms) | requests (non-200) | CPU of both proxies, % of one core per 1000 req/s | new mTLS handshakes/s (inbound) |
|---|---|---|---|---|---|
| direct to nginx | $D_P99 | - | $D_N ($D_BAD) | - | - |
| MeshProxy, two sidecars | $M_P99 | $(added "$M_P99" "$D_P99") | $M_N ($M_BAD) | $M_CPU | $M_HS |
| haproxy 2.6, two instances | $H_P99 | $(added "$H_P99" "$D_P99") | $H_N ($H_BAD) | $H_CPU | $H_HS |
EOF
)
echo "$TABLE"
echo "load average (1/5/15 min) at the end: $LOAD"

((WRITE)) || exit 0
SECTION=$(cat <<EOF
## Mutual TLS two-hop path

client -> outbound proxy -> mTLS -> inbound proxy -> nginx (1 KiB file), each path built twice with the same
ECDSA P-256 SVIDs (spiffe://cluster.local/ns/bench/sa/store and .../billing, one openssl-made root): two
MeshProxy sidecars (store: outbound, originating mTLS; billing: inbound, STRICT), and two haproxy 2.6 processes
(\`ssl crt ... ca-file ... verify required\` on the outbound server line and on the inbound bind line; haproxy
checks the chain only, not the SPIFFE ID, so it does less work per handshake than the sidecars). Both proxies
of a path on core 0, nginx and the load generator on core 1. Fixed rate: \`h2load --h1 -c $CLIENTS --rps $RPS_PER_CLIENT -D $DUR\`
after a ${WARM} s warm-up, p99 from h2load's per-request log; CPU from /proc/<pid>/stat of both proxy processes;
handshakes: two \`openssl s_time -new -time $HS_DUR\` clients with the caller's certificate against the inbound proxy
(full handshakes, no resumption; s_time's own client cost is on core 1).

Command: \`$COMMAND_LINE\` ($(date -u +%Y-%m-%d), $(nproc) cores, load average $LOAD: the machine was shared)

$TABLE
EOF
)
python3 - "$RESULTS" "$SECTION" <<'EOF'
import re, sys, os
path, section = sys.argv[1], sys.argv[2].rstrip() + "\n"
text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
pattern = re.compile(r"^## Mutual TLS two-hop path\n.*?(?=^## |\Z)", re.S | re.M)
text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
open(path, "w").write(text)
EOF
log "written to $RESULTS"
