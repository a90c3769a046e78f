#!/usr/bin/env bash
# Installs what the test suite drives as real peers, on a fresh Debian machine of this kind:
# nginx and haproxy (backends and peer proxies), curl, openssl and sslscan (TLS), iptables and iproute2
# (network namespaces and transparent capture), prometheus and promtool (metrics), nghttp2 and wrk
# (HTTP/2 and load), Node packages for gRPC and WebSocket peers, clang and zlib headers (the Native AOT
# sidecar the suite runs), afl++ and the SharpFuzz tool (the fuzz targets' smoke runs). Idempotent: skips
# what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in nginx:nginx-light haproxy:haproxy curl:curl openssl:openssl sslscan:sslscan iptables:iptables ip:iproute2 \
            prometheus:prometheus promtool:prometheus h2load:nghttp2-client wrk:wrk node:nodejs clang:clang afl-fuzz:afl++; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
# The Native AOT sidecar the suite runs links against zlib.
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts these services on install where it can; the tests start their own.
  for svc in nginx haproxy prometheus; do pkill -x "$svc" 2>/dev/null || true; done
fi

# SharpFuzz.CommandLine (instruments the fuzz targets' assemblies), pinned in .config/dotnet-tools.json.
dotnet tool restore >/dev/null

if [ ! -d tests/peers/node_modules/@grpc/grpc-js ] || [ ! -d tests/peers/node_modules/jose ] || [ tests/peers/package-lock.json -nt tests/peers/node_modules ]; then
  echo "setup: npm ci in tests/peers"
  (cd tests/peers && npm ci --no-audit --no-fund --loglevel=error)
fi
