#!/bin/bash
# CPU time (user + system, from /proc) and context switches of a running sidecar per request, over n
# closed-loop HTTP/1.1 GETs of the outbound listener (Host: backend) from h2load pinned to core 1.
# Used for the resilience A/B in benchmarks/RESULTS.md ("Resilience cost: instructions and CPU time").
# usage: benchmarks/cpu-per-request.sh <sidecar pid> <outbound port> <requests>
pid=$1 port=$2 n=$3
snap() { local c=0 t; for t in /proc/$pid/task/*; do c=$((c + $(awk '/ctxt_switches/ {s+=$2} END {print s}' $t/status 2>/dev/null || echo 0))); done; set -- $(sed 's/.*) //' /proc/$pid/stat); echo "$c $((${12} + ${13}))"; }
read c0 t0 < <(snap)
taskset -c 1 h2load --h1 -n $n -c 16 -H ':authority: backend' http://127.0.0.1:$port/1k 2>&1 | grep -q "status codes: $n 2xx" || echo "non-200!" >&2
read c1 t1 < <(snap)
python3 -c "print(f'{($c1-$c0)/$n:.3f} ctx/req  {($t1-$t0)*10000/$n:.1f} us cpu/req')"
