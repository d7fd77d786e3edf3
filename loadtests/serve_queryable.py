#!/usr/bin/env python3
"""Files to queryable through `callboard serve` (the path users run), embedded: starts `serve
--location CATALOG` on a fresh data directory and prints the seconds from start until GraphQL's
`totalCount` reaches --expect (and the server's peak RSS), then stops it.

    loadtests/serve_queryable.py --bin path/to/callboard --catalog DIR --expect 100001

Run it a few times per build, builds interleaved, and quote medians (issue 18 compares this with
`projection_bench.py`, which runs `import` beside `project`)."""
import argparse
import json
import pathlib
import subprocess
import tempfile
import time
import urllib.request


def total(url: str) -> int:
    body = json.dumps({"query": "{ entities { totalCount } }"}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        answer = json.load(urllib.request.urlopen(request, timeout=5))
        return answer["data"]["entities"]["totalCount"] or 0
    except Exception:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", type=pathlib.Path, required=True)
    parser.add_argument("--catalog", type=pathlib.Path, required=True)
    parser.add_argument("--expect", type=int, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        server = subprocess.Popen([args.bin, "serve", "--data-dir", tmp, "--location", args.catalog,
                                   "--listen", "127.0.0.1:0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  env={"CALLBOARD_LOG": "warn", "PATH": "/usr/bin:/bin"})
        try:
            url = "http://" + server.stdout.readline().split("http://", 1)[1].split()[0]
            while total(url) < args.expect:
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            peak = next(line.split()[1] for line in pathlib.Path(f"/proc/{server.pid}/status").read_text().splitlines()
                        if line.startswith("VmHWM:"))
            print(f"queryable after {elapsed:.2f} s; peak RSS {int(peak) // 1024} MiB")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
