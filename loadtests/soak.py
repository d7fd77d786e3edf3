#!/usr/bin/env python3
"""Soak: `callboard serve` under thirty minutes of mixed reads, writes and subscriptions at a fixed
rate, sampling its resident memory and open connections; memory must be flat.

    loadtests/soak.py [--minutes 30] [--documents 10000] [--stack embedded|kafka-postgres-redis]
                      [--reads 50] [--writes 5] [--subscribers 50] [--churn 5]
                      [--bin-dir DIR] [--out DIR]

Builds the release binaries (unless --bin-dir), generates a catalog, starts `serve --location` on
it (fresh log and read model), waits until /readyz says ready, then runs loadtests/js/soak.mjs.
Every 10 s it samples the server's RSS (VmRSS) and its open TCP connections (socket descriptors in
/proc/PID/fd). It writes samples.csv, load.jsonl and soak.svg (RSS and connections over time) to
--out (default: a temporary folder, printed) and prints a summary: RSS after warm-up, at the end,
and the slope of a least-squares line through the samples after the first five minutes.
"""
import argparse
import json
import pathlib
import subprocess
import tempfile
import threading
import time

from served import JS, binaries, more_files, node_modules, production, psql, serve


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sockets(pid: int) -> int:
    count = 0
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def slope_per_10min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per ten minutes."""
    n = len(samples)
    if n < 2:
        return float("nan")
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    var = sum((t - mx) ** 2 for t, _ in samples)
    cov = sum((t - mx) * (v - my) for t, v in samples)
    return cov / var * 600 if var else float("nan")


def svg(samples: list[tuple[float, float, int]], path: pathlib.Path, title: str) -> None:
    """Two stacked line charts (RSS in MiB, open sockets) over minutes, as plain SVG."""
    width, height, pad = 720, 170, 48
    minutes = [t / 60 for t, _, _ in samples]
    series = [("resident memory (MiB)", [r for _, r, _ in samples], "#1f77b4"),
              ("open sockets", [c for _, _, c in samples], "#d62728")]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{2 * height + 30}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="{pad}" y="14" font-size="13">{title}</text>']
    tmax = max(minutes[-1], 1)
    for row, (label, values, colour) in enumerate(series):
        top = 24 + row * height
        vmax = max(max(values) * 1.15, 1)
        x = lambda m: pad + (width - pad - 10) * m / tmax
        y = lambda v: top + height - 24 - (height - 40) * v / vmax
        parts.append(f'<text x="{pad}" y="{top + 12}">{label}</text>')
        parts.append(f'<line x1="{pad}" y1="{y(0):.1f}" x2="{width - 10}" y2="{y(0):.1f}" stroke="#999"/>')
        parts.append(f'<line x1="{pad}" y1="{y(0):.1f}" x2="{pad}" y2="{top + 16}" stroke="#999"/>')
        for frac in (0, 0.5, 1):
            v = vmax / 1.15 * frac
            parts.append(f'<text x="{pad - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        for m in range(0, int(tmax) + 1, max(1, int(tmax) // 6)):
            parts.append(f'<text x="{x(m):.1f}" y="{y(0) + 14:.1f}" text-anchor="middle">{m} min</text>')
        points = " ".join(f"{x(m):.1f},{y(v):.1f}" for m, v in zip(minutes, values))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--stack", default="embedded", choices=["embedded", "kafka-postgres-redis"])
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--writes", type=int, default=5)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--churn", type=int, default=5, help="replace one subscriber every N seconds")
    parser.add_argument("--bin-dir", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()

    bin_dir = binaries(args.bin_dir)
    node_modules()
    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="callboard-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        catalog = work / "catalog"
        subprocess.run([bin_dir / "catalog-gen", catalog, str(args.documents)], check=True, capture_output=True)
        serve_args = ["--data-dir", str(work / "data"), "--location", str(catalog)]
        database = None
        if args.stack == "kafka-postgres-redis":
            log_args, store_args, database = production("soak")
            serve_args += log_args + store_args
        server, base = serve(bin_dir, serve_args)
        try:
            print(f"serving {base}/graphql; soaking for {args.minutes} minutes; samples in {out}", flush=True)
            samples: list[tuple[float, float, int]] = []
            done = threading.Event()
            started = time.monotonic()

            def sample() -> None:
                while not done.is_set():
                    samples.append((time.monotonic() - started, rss_mib(server.pid), sockets(server.pid)))
                    done.wait(10)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            with open(out / "load.jsonl", "w") as load:
                subprocess.run(["node", JS / "soak.mjs", f"{base}/graphql", "--seconds", str(int(args.minutes * 60)),
                                "--reads", str(args.reads), "--writes", str(args.writes),
                                "--subscribers", str(args.subscribers), "--churn", str(args.churn)],
                               check=True, stdout=load, preexec_fn=more_files)
            samples.append((time.monotonic() - started, rss_mib(server.pid), sockets(server.pid)))
            done.set()
            sampler.join()
        finally:
            server.terminate()
            server.wait()
            if database:
                psql(f"drop database if exists {database} with (force)")

    with open(out / "samples.csv", "w") as csv:
        csv.write("seconds,rss_mib,sockets\n")
        for t, r, c in samples:
            csv.write(f"{t:.0f},{r:.1f},{c}\n")
    warm = [(t, r) for t, r, _ in samples if t >= 300] or [(t, r) for t, r, _ in samples]
    loads = [json.loads(line) for line in (out / "load.jsonl").read_text().splitlines() if line.startswith("{")]
    requests = sum(l["requests"] for l in loads)
    errors = sum(l["errors"] for l in loads)
    title = (f"callboard serve ({args.stack}, {args.documents:,} documents): {args.reads} reads/s, "
             f"{args.writes} writes/s, {args.subscribers} subscribers (one replaced every {args.churn} s)")
    svg(samples, out / "soak.svg", title)
    print(json.dumps({
        "minutes": round(samples[-1][0] / 60, 1),
        "requests": requests,
        "errors": errors,
        "rss_mib_at_5_min": round(warm[0][1], 1),
        "rss_mib_at_end": round(samples[-1][1], 1),
        "rss_mib_max": round(max(r for _, r, _ in samples), 1),
        "rss_slope_mib_per_10_min_after_5_min": round(slope_per_10min(warm), 2),
        "sockets_min_max": [min(c for *_, c in samples), max(c for *_, c in samples)],
        "p99_ms_per_window": [l["p99_ms"] for l in loads],
        "out": str(out),
    }))


if __name__ == "__main__":
    main()
