#!/usr/bin/env bash
# The whole test suite: installs what the tests need, builds, runs every test project, and ends with
# one line "N passed, N failed". Extra arguments go to `dotnet test` (for example --filter ...).
set -uo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

results=$(mktemp -d)
dotnet build MeshProxy.sln -c Debug -v q -nologo || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

# The sidecar as it ships (Native AOT): the tests that start the sidecar as a process, and the local mesh
# test, run this binary. MESHPROXY_SIDECAR_BINARY set by the caller wins (e.g. a trimmed JIT publish).
if [ -z "${MESHPROXY_SIDECAR_BINARY:-}" ]; then
  aot="$PWD/.mesh/test-sidecar"
  echo "publishing the Native AOT sidecar into $aot"
  dotnet publish src/MeshProxy.Sidecar -c Release -r linux-x64 -o "$aot" -v q -nologo >"$results/publish.log" 2>&1 \
    || { tail -30 "$results/publish.log"; echo "publish failed"; echo "0 passed, 1 failed"; exit 1; }
  export MESHPROXY_SIDECAR_BINARY="$aot/meshproxy-sidecar"
fi
dotnet test MeshProxy.sln --no-build -c Debug --logger "trx" --results-directory "$results" "$@"
status=$?

# Sum the TRX counters of every test assembly.
read -r passed failed < <(python3 - "$results" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
passed = failed = 0
for path in glob.glob(sys.argv[1] + "/*.trx"):
    c = ET.parse(path).getroot().find(".//t:ResultSummary/t:Counters", ns)
    passed += int(c.get("passed", 0))
    failed += int(c.get("failed", 0)) + int(c.get("error", 0)) + int(c.get("timeout", 0)) + int(c.get("aborted", 0))
print(passed, failed)
PY
)
rm -rf "$results"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # a crashed test host counts as a failure

# Fuzz smoke: each fuzz target under afl-fuzz for a few seconds (tests/MeshProxy.Fuzz/run.sh), one test each;
# a crash fails it and is printed, and so does a missing afl-fuzz. FUZZ_SMOKE_SECONDS=0 leaves them out.
fuzz_seconds=${FUZZ_SMOKE_SECONDS:-10}
if [ "$fuzz_seconds" -gt 0 ]; then
  targets=$(tests/MeshProxy.Fuzz/bin/Debug/net10.0/MeshProxy.Fuzz --list) || { echo "fuzz: the harness does not run"; targets=""; failed=$((failed + 1)); }
  for target in $targets; do
    if FUZZ_CONFIGURATION=Debug FUZZ_NO_BUILD=1 bash tests/MeshProxy.Fuzz/run.sh "$target" "$fuzz_seconds"; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
    fi
  done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
