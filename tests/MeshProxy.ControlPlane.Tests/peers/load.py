# A steady client in a pod, unaware of the mesh: GETs a URL in a loop, each request on a new connection (so a
# failure is the mesh's, never a keep-alive race of this client's), about 40 a second. Every failure is printed at
# once ({"failure": ...}); a tally of answers by the pod that gave them every 200 ms ({"ok": n, "by": {...}}); on
# SIGTERM it finishes the request in flight and prints the last tally as {"final": {...}}.
import http.client
import json
import signal
import sys
import time
import urllib.parse

url = urllib.parse.urlsplit(sys.argv[1])
stopping = False
ok = 0
failed = 0
by = {}


def stop(*_):
    global stopping
    stopping = True


def tally():
    return {"ok": ok, "failed": failed, "by": by}


signal.signal(signal.SIGTERM, stop)
last = time.monotonic()
while not stopping:
    try:
        connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
        connection.request("GET", url.path or "/")
        response = connection.getresponse()
        body = response.read()
        connection.close()
        if response.status == 200:
            ok += 1
            app = json.loads(body)["app"]
            by[app] = by.get(app, 0) + 1
        else:
            failed += 1
            print(json.dumps({"failure": f"HTTP {response.status}: {body[:300].decode(errors='replace')}"}), flush=True)
    except Exception as e:  # noqa: BLE001 - every failure counts, whatever it is
        failed += 1
        print(json.dumps({"failure": f"{type(e).__name__}: {e}"}), flush=True)
    now = time.monotonic()
    if now - last >= 0.2:
        print(json.dumps(tally()), flush=True)
        last = now
    time.sleep(0.02)

print(json.dumps({"final": tally()}), flush=True)
