#!/usr/bin/env bash
# Fuzzes one parser of untrusted input with afl-fuzz for a bounded time:
#   tests/MeshProxy.Fuzz/run.sh TARGET [SECONDS]      (targets: path clienthello inbound yaml origdst jwt response preamble; default 3600 s)
# Builds the harness (FUZZ_CONFIGURATION, default Release; FUZZ_NO_BUILD=1 uses the existing build), copies
# it to bin/CONFIG/instrumented and instruments the copies of our assemblies and YamlDotNet with SharpFuzz
# (once per build), then runs afl-fuzz on the seeds in corpus/TARGET. Findings stay in FUZZ_OUT (default
# tests/MeshProxy.Fuzz/findings/TARGET, replaced on each run). Every crash afl-fuzz saved is replayed by the
# plain build; those it reproduces are printed (the exception, the input as a C# string and as hex).
# Last line: "fuzz TARGET: E executions in S s (R/s), C crashes, H hangs, P inputs in the queue".
# Exit 0: no reproducible crash; 1: crashes (or nothing was executed); 2: could not fuzz (afl-fuzz missing, build failed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${1:?usage: run.sh TARGET [SECONDS]}
seconds=${2:-3600}
config=${FUZZ_CONFIGURATION:-Release}
out=${FUZZ_OUT:-$here/findings/$target}

if ! command -v afl-fuzz >/dev/null 2>&1; then
  echo "fuzz $target: FAILED: afl-fuzz is not installed (Debian package afl++; bash tests/setup.sh installs it)"
  exit 2
fi

cd "$root"
if [ "${FUZZ_NO_BUILD:-}" != 1 ]; then
  dotnet build tests/MeshProxy.Fuzz -c "$config" -v q -nologo >/dev/null || { echo "fuzz $target: FAILED: build"; exit 2; }
fi
bin="$here/bin/$config/net10.0"
[ -f "$bin/MeshProxy.Fuzz.dll" ] || { echo "fuzz $target: FAILED: no build in $bin"; exit 2; }
[ -d "$bin/corpus/$target" ] || { echo "fuzz $target: FAILED: unknown target (no $bin/corpus/$target)"; exit 2; }

# Instrumentation rewrites assemblies in place, so it works on a copy, redone when the build is newer.
inst="$here/bin/$config/instrumented"
if [ ! -f "$inst/.instrumented" ] || [ -n "$(find "$bin" -name '*.dll' -newer "$inst/.instrumented" -print -quit)" ]; then
  rm -rf "$inst" && mkdir -p "$inst" && cp -a "$bin/." "$inst/"
  dotnet tool restore >/dev/null
  # Our assemblies (the parsers) and YamlDotNet (coverage of its scanner steers the YAML target); not the
  # harness itself, not SharpFuzz, not the framework.
  for dll in "$inst"/MeshProxy.*.dll "$inst"/meshproxy-*.dll "$inst"/YamlDotNet.dll; do
    case "$(basename "$dll")" in MeshProxy.Fuzz.dll) continue ;; esac
    dotnet sharpfuzz "$dll" >/dev/null || { echo "fuzz $target: FAILED: instrumenting $dll"; exit 2; }
  done
  touch "$inst/.instrumented"
fi

# afl-fuzz reads seeds from one flat folder.
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
find "$bin/corpus/$target" -type f | while read -r f; do cp "$f" "$seeds/$(echo "${f#"$bin/corpus/$target/"}" | tr / _)"; done

rm -rf "$out" && mkdir -p "$out"
# The dotnet host is not an afl-instrumented binary (SharpFuzz speaks the fork-server protocol itself);
# the machine is shared (no core pinning, no CPU governor or core_pattern demands); no terminal UI.
# -t: a generous per-input limit for a JIT-compiled child on a loaded machine; longer is a hang.
AFL_SKIP_BIN_CHECK=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
AFL_NO_UI=1 AFL_FAST_CAL=1 \
  afl-fuzz -i "$seeds" -o "$out" -V "$seconds" -t 10000+ -m none -- "$inst/MeshProxy.Fuzz" "$target" >"$out/afl.log" 2>&1 || {
    echo "fuzz $target: FAILED: afl-fuzz did not run; the end of $out/afl.log:"
    tail -n 30 "$out/afl.log"
    exit 2
  }

stat() { sed -n "s/^$1 *: *//p" "$out/default/fuzzer_stats"; }
execs=$(stat execs_done)
runtime=$(stat run_time)
crashes=$(stat saved_crashes)
hangs=$(stat saved_hangs)
queue=$(stat corpus_count)
rate=$(( execs / (runtime > 0 ? runtime : 1) ))

# The judge of a crash is the plain (uninstrumented) build replaying it: a crash it does not reproduce came
# from the fuzzing machinery (SharpFuzz's child process), not from the target, and is listed, not failed.
status=0
reproduced=0
if [ "${crashes:-0}" -gt 0 ]; then
  while read -r crash; do
    if ! replay=$("$bin/MeshProxy.Fuzz" "$target" "$crash" 2>&1); then
      reproduced=$((reproduced + 1))
      [ "$reproduced" -le 3 ] && echo "$replay"
    fi
  done < <(find "$out/default/crashes" -name 'id:*' | sort | head -n 50)
  echo "fuzz $target: afl-fuzz saved $crashes crashing inputs in $out/default/crashes, $reproduced reproduced by the plain build"
  [ "$reproduced" -gt 0 ] && status=1
fi
if [ "${hangs:-0}" -gt 0 ]; then
  echo "fuzz $target: $hangs inputs ran past the time limit (not counted as a failure: a loaded machine can cause it); see $out/default/hangs"
fi
if [ "${execs:-0}" -eq 0 ]; then
  status=1
  echo "fuzz $target: FAILED: afl-fuzz executed nothing"
fi
echo "fuzz $target: $execs executions in $runtime s ($rate/s), $reproduced crashes, $hangs hangs, $queue inputs in the queue"
exit $status
