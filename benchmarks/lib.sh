# Shared by the benchmark harnesses (run-load.sh, run-idle-conns.sh, run-gc-settings.sh): process
# control, free ports, and per-process-tree CPU, memory and context-switch readings from /proc.
# The sourcing script defines log, die and KEEP, then calls bench_init.

bench_init() { # bench_init <prefix>: the scratch directory WORK, PIDS, and cleanup as the EXIT trap
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 755 "$WORK" # nginx workers drop to an unprivileged user and must read the payload
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if ((KEEP)); then log "scratch kept in $WORK"; else rm -rf "$WORK"; fi
}

start() { # start <name> <core> <cmd...>: runs in the background pinned to <core>; sets LAST_PID
    local name=$1 core=$2; shift 2
    taskset -c "$core" "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

stop() { # stop <pid>: TERM, wait, drop from PIDS
    local pid=$1 p keep=()
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

free_ports() { # free_ports <n>: n ports the kernel considers free right now
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
EOF
}

wait_http() { # wait_http <url> [host]: until a 200, at most 20 s
    local url=$1 host=${2:-} code
    for _ in $(seq 200); do
        code=$(curl -s -o /dev/null -w '%{http_code}' ${host:+-H "Host: $host"} "$url" || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    die "no 200 from $url${host:+ (Host: $host)}; see $WORK/*.log"
}

tree_pids() { # the process and all its descendants
    local pid=$1 child
    echo "$pid"
    for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do tree_pids "$child"; done
}

cpu_ticks() { # utime+stime over the process tree (all threads are counted in each process's line)
    local total=0 pid f
    for pid in $(tree_pids "$1"); do
        # fields 14 and 15 after the ")" that ends the command name
        f=$(sed 's/.*) //' /proc/"$pid"/stat 2>/dev/null) || continue
        set -- $f
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

ctx_snapshot() { # "<tid> <voluntary+involuntary context switches>" for every thread in the process tree
    local pid t
    for pid in $(tree_pids "$1"); do
        for t in /proc/"$pid"/task/*; do
            awk -v tid="${t##*/}" '/ctxt_switches/ { n += $2 } END { if (NR) print tid, n }' "$t/status" 2>/dev/null || true
        done
    done
}

ctx_delta() { # ctx_delta <before file> <after file>: switches made in between by threads alive at the end
    # (a thread that exits in between takes its last switches with it: a small undercount)
    awk 'NR == FNR { before[$1] = $2; next } { d += $2 - ($1 in before ? before[$1] : 0) } END { print d + 0 }' "$1" "$2"
}

mem_kb() { # mem_kb <pid> <VmRSS|VmHWM>: summed over the process tree
    local total=0 pid v
    for pid in $(tree_pids "$1"); do
        v=$(awk -v k="$2:" '$1 == k { print $2 }' /proc/"$pid"/status 2>/dev/null) || continue
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

now() { date +%s.%N; }

# --- configurations -----------------------------------------------------------------------------
# The same backend and proxies for every harness; <max> sizes their connection tables (and their
# file-descriptor limits), which the idle-connection run needs far above the load runs' 4096.

fd_budget() { # fd_budget <max>: two descriptors per connection (client and server side), capped at ulimit -n
    local want=$((2 * $1 + 64)) have; have=$(ulimit -n)
    echo $((want < have ? want : have))
}

write_backend() { # write_backend <dir> <port> <h2 port> <max>: nginx, one worker, a static 1 KiB file /1k
    local dir=$1 port=$2 h2=$3 max=$4
    mkdir -p "$dir/www"
    head -c 1024 /dev/zero | tr '\0' 'x' >"$dir/www/1k"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $(fd_budget "$max");
daemon off;
pid $dir/nginx.pid;
events { worker_connections $max; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    # sendfile with HTTP/2 frames stalls responses ~40 ms (delayed ACK); a 1 KiB body gains nothing from it.
    sendfile off;
    open_file_cache max=16;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port backlog=4096;
        listen 127.0.0.1:$h2 http2 backlog=4096;
        root $dir/www;
    }
}
EOF
}

write_nginx_proxy() { # write_nginx_proxy <dir> <port> <h2 port> <backend port> <max>: HTTP/1.1 to the backend over a keep-alive pool
    local dir=$1 port=$2 h2=$3 backend=$4 max=$5
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $(fd_budget "$max");
daemon off;
pid $dir/nginx.pid;
events { worker_connections $max; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    upstream backend {
        server 127.0.0.1:$backend;
        keepalive 128;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$port backlog=4096;
        listen 127.0.0.1:$h2 http2 backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

write_haproxy() { # write_haproxy <file> <port> <h2 port> <backend port> <max>: HTTP mode, one thread, server connections reused
    local file=$1 port=$2 h2=$3 backend=$4 max=$5
    # haproxy refuses to start when it cannot raise its descriptor limit to two per connection (client
    # and server side) unless strict-limits is off: then it warns. Idle client connections share a few
    # server connections, so one descriptor each is what they really take.
    cat >"$file" <<EOF
global
    no strict-limits
    nbthread 1
    maxconn $max
defaults
    mode http
    maxconn $max
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:$port
    bind 127.0.0.1:$h2 proto h2
    default_backend be
backend be
    server backend 127.0.0.1:$backend
EOF
}

write_mesh_config() { # write_mesh_config <file> <backend port> <outbound> <inbound> <service>
    # A workload whose app is the backend (inbound), and a Service whose endpoint is the backend (outbound).
    local file=$1 backend=$2 out=$3 in=$4 service=$5
    cat >"$file" <<EOF
apiVersion: meshproxy.io/v1alpha1
kind: Sidecar
metadata: { name: bench, namespace: bench }
spec:
  workload: { serviceAccount: bench }
  app: { port: $backend, protocol: HTTP }
  listeners: { outbound: $out, inbound: $in, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
  drainDuration: 1s
---
apiVersion: meshproxy.io/v1alpha1
kind: Service
metadata: { name: $service, namespace: bench }
spec:
  ports: [{ port: 80, protocol: HTTP }]
  endpoints:
    - { address: 127.0.0.1, port: $backend }
EOF
}
