#!/usr/bin/env bash
# The local mesh on this machine: two sample apps (store, billing), each with its MeshProxy sidecar,
# calling each other through them over loopback. Builds what it needs, starts everything, makes the
# calls and prints each outcome, then stays up (Ctrl-C stops it all). --once: exit after the calls.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
once=false; [ "${1:-}" = "--once" ] && once=true

command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
out="$root/.mesh/bin"; logs="$root/.mesh/logs"; mkdir -p "$out" "$logs"
echo "building (Release)..."
dotnet build "$root/src/MeshProxy.Sidecar" -c Release -o "$out/sidecar" -v q -nologo >/dev/null
dotnet build "$root/samples/MeshProxy.Samples.App" -c Release -o "$out/app" -v q -nologo >/dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
start() { local name=$1; shift; "$@" >"$logs/$name.log" 2>&1 & pids+=($!); }
wait_for() { for _ in $(seq 1 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "timed out waiting for $1 (logs in $logs)"; exit 1; }

# Each app's outbound calls go to its own sidecar, used as an explicit HTTP proxy (in a pod, iptables
# capture does this without the app knowing).
start store-app dotnet "$out/app/meshproxy-sample-app.dll" store 18001 http://127.0.0.1:15001
start billing-app dotnet "$out/app/meshproxy-sample-app.dll" billing 18002 http://127.0.0.1:16001
start store-sidecar dotnet "$out/sidecar/meshproxy-sidecar.dll" --config "$here/store.yaml"
start billing-sidecar dotnet "$out/sidecar/meshproxy-sidecar.dll" --config "$here/billing.yaml"
for url in http://127.0.0.1:15020/ready http://127.0.0.1:16020/ready http://127.0.0.1:18001/ http://127.0.0.1:18002/; do wait_for "$url"; done

call() {
  local what=$1 url=$2
  local code body
  body=$(curl -s -w '\n%{http_code}' "$url"); code=${body##*$'\n'}; body=${body%$'\n'*}
  printf '%-44s -> %s %s\n' "$what" "$code" "$(echo "$body" | head -c 160 | tr '\n' ' ')"
}
echo
echo "calls (app -> its sidecar -> the other sidecar -> the other app):"
call "store calls billing /hello" http://127.0.0.1:18001/call/billing/hello
call "billing calls store /" http://127.0.0.1:18002/call/store/
call "store calls an unknown service" http://127.0.0.1:18001/call/payments/charges
echo
cat <<INFO
the mesh is up:
  store   app :18001   sidecar outbound :15001 inbound :15006 admin :15000 stats :15020
  billing app :18002   sidecar outbound :16001 inbound :16006 admin :16000 stats :16020
  config dump   curl -s 127.0.0.1:15000/config_dump
  readiness     curl -s 127.0.0.1:15020/ready
  logs          $logs
INFO
$once && exit 0
echo "Ctrl-C stops everything."
wait
