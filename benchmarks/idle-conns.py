#!/usr/bin/env python3
"""Idle keep-alive connections against one proxy: resident memory before and after (issue 20 item 3).

Opens connections in stages (e.g. 1000, then up to 10000), each sends one HTTP/1.1 GET with keep-alive,
reads the whole response and then stays open and silent. After each stage it waits for the proxy to
settle and reads the proxy's resident size (VmRSS summed over its process tree, so nginx's master and
worker both count). Prints one JSON object: RSS before and at each stage, and how many connections the
proxy had closed by the time of each reading (a reading with closed connections is not an idle figure).

usage: idle-conns.py --port P --pid PID [--host-header H] [--path /1k] [--stages 1000,10000]
                     [--in-flight 64] [--settle 3] [--metrics URL] [--hold-file F]
--metrics: a Prometheus endpoint with dotnet_total_memory_bytes (MeshProxy's stats listener): the managed
heap is read beside RSS, to tell memory held by objects from native and runtime memory.
--hold-file: after each stage's reading, write the stage's JSON line to F and wait until F is deleted, so
that a harness can take a heap snapshot of the proxy with the connections open (run-idle-heap.sh).
Run by benchmarks/run-idle-conns.sh; the file-descriptor limit must allow the largest stage.
"""
import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request


def tree_pids(pid):
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    pids.extend(tree_pids(int(child)))
    except FileNotFoundError:
        pass
    return pids


def rss_kb(pid):
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def managed_bytes(url):
    if not url:
        return None
    with urllib.request.urlopen(url, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("dotnet_total_memory_bytes "):
                return int(float(line.split()[1]))
    return None


class Connection:
    """One downstream connection: one request, one response read in full, then idle until closed."""

    def __init__(self):
        self.reader = None
        self.writer = None
        self.closed = False

    async def open(self, port, request):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise RuntimeError(f"unexpected status line {status!r}")
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
            elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                raise RuntimeError("the proxy answered Connection: close")
        if length is None:
            raise RuntimeError("response without Content-Length (this client reads only fixed-length bodies)")
        await self.reader.readexactly(length)

    async def watch(self):
        # Nothing more is sent; any read completion means the proxy closed (or broke) the connection.
        try:
            await self.reader.read(1)
        except (ConnectionError, OSError):
            pass
        self.closed = True


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--host-header", default="backend")
    ap.add_argument("--path", default="/1k")
    ap.add_argument("--stages", default="1000,10000")
    ap.add_argument("--in-flight", type=int, default=64)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--metrics", default="")
    ap.add_argument("--hold-file", default="")
    args = ap.parse_args()
    stages = [int(s) for s in args.stages.split(",")]
    request = f"GET {args.path} HTTP/1.1\r\nHost: {args.host_header}\r\n\r\n".encode()

    await asyncio.sleep(args.settle)
    result = {"rss_before_kb": rss_kb(args.pid), "managed_before": managed_bytes(args.metrics), "stages": []}
    conns, watchers = [], []
    gate = asyncio.Semaphore(args.in_flight)

    async def one():
        async with gate:
            c = Connection()
            await c.open(args.port, request)
        conns.append(c)
        watchers.append(asyncio.ensure_future(c.watch()))

    for target in stages:
        t0 = time.monotonic()
        await asyncio.gather(*(one() for _ in range(target - len(conns))))
        opened = time.monotonic() - t0
        await asyncio.sleep(args.settle)
        result["stages"].append({
            "connections": len(conns),
            "rss_kb": rss_kb(args.pid),
            "managed": managed_bytes(args.metrics),
            "closed": sum(c.closed for c in conns),
            "open_seconds": round(opened, 2),
        })
        if args.hold_file:
            with open(args.hold_file, "w") as f:
                f.write(json.dumps(result["stages"][-1]) + "\n")
            while os.path.exists(args.hold_file):
                await asyncio.sleep(0.2)
    for c in conns:
        c.writer.close()
    for w in watchers:
        w.cancel()
    print(json.dumps(result))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # one line on stderr for the harness's log, not a traceback
        print(f"idle-conns.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
