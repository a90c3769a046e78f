#!/usr/bin/env python3
"""Where two callgrind dumps of MeshProxy differ, by .NET method.

callgrind cannot name JIT-compiled code: it files it under "???:0x<address>". The runtime writes
/tmp/perf-<pid>.map (DOTNET_PerfMapEnabled=1: start, size, name of every method it compiles), so
each address can be put back into its method. Self cost (instructions) is summed per method, or per
shared object for native code, and the rows that differ most between the two dumps are printed,
each divided by the number of requests the dump covered.

usage: callgrind-methods.py <off dump> <off perf map> <on dump> <on perf map> <requests> [rows]
"""
import bisect
import re
import sys


def load_map(path):
    starts, ends, names = [], [], []
    for line in open(path, errors="replace"):
        parts = line.rstrip("\n").split(" ", 2)
        if len(parts) == 3:
            start, size = int(parts[0], 16), int(parts[1], 16)
            starts.append(start)
            ends.append(start + size)
            names.append(parts[2])
    order = sorted(range(len(starts)), key=starts.__getitem__)
    return [starts[i] for i in order], [ends[i] for i in order], [names[i] for i in order]


def name_of(fn, perf_map):
    match = re.match(r"(?:\?\?\?:)?0x([0-9a-f]+)$", fn)
    if not match:
        # Native code: the function and its object, e.g. "__memset_avx2_unaligned_erms [libc.so.6]".
        return fn.split(":", 1)[-1]
    address = int(match.group(1), 16)
    starts, ends, names = perf_map
    i = bisect.bisect_right(starts, address) - 1
    if i >= 0 and address < ends[i]:
        return names[i]
    return "(unnamed JIT code or stub)"


def self_costs(path, perf_map):
    ids, costs = {}, {}
    current, skip_next = None, False
    objects = {}
    current_object = ""
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if skip_next:
            skip_next = False  # the inclusive cost of a call: not this function's own
            continue
        if line.startswith("ob="):
            m = re.match(r"ob=\((\d+)\)(?: (.*))?", line)
            if m:
                if m.group(2):
                    objects[m.group(1)] = m.group(2).rsplit("/", 1)[-1]
                current_object = objects.get(m.group(1), "")
            continue
        if line.startswith("fn="):
            m = re.match(r"fn=\((\d+)\)(?: (.*))?", line)
            if m.group(2):
                ids[m.group(1)] = m.group(2)
            name = name_of(ids[m.group(1)], perf_map)
            current = name if name.startswith("(") or "[" in name or current_object in ("", "???") else f"{name} [{current_object}]"
            continue
        if line.startswith("cfn="):
            # A callee's name may be given here first; later "fn=" lines then use only its number.
            m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line)
            if m and m.group(2):
                ids[m.group(1)] = m.group(2)
            continue
        if line.startswith("calls="):
            skip_next = True
            continue
        if current and line[:1].isdigit() or (current and line[:1] in "+-*"):
            parts = line.split()
            if len(parts) >= 2 and parts[-1].isdigit():
                costs[current] = costs.get(current, 0) + int(parts[-1])
    return costs


def main():
    off_dump, off_map, on_dump, on_map, requests = sys.argv[1:6]
    rows = int(sys.argv[6]) if len(sys.argv) > 6 else 30
    requests = int(requests)
    off = self_costs(off_dump, load_map(off_map))
    on = self_costs(on_dump, load_map(on_map))
    total_off, total_on = sum(off.values()) / requests, sum(on.values()) / requests
    print(f"instructions per request: off {total_off:,.0f}, on {total_on:,.0f}, difference {total_on - total_off:+,.0f}")
    names = set(off) | set(on)
    diff = sorted(names, key=lambda n: -abs(on.get(n, 0) - off.get(n, 0)))
    print(f"{'on - off':>9} {'off':>9} {'on':>9}  method (self instructions per request)")
    for name in diff[:rows]:
        a, b = off.get(name, 0) / requests, on.get(name, 0) / requests
        print(f"{b - a:+9,.0f} {a:9,.0f} {b:9,.0f}  {name[:160]}")


if __name__ == "__main__":
    main()
