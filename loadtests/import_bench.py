#!/usr/bin/env python3
"""Events appended per second for a 100,000-entity import, on each event log.

    loadtests/import_bench.py [--documents 100000] [--runs 3] [--adapters embedded,kafka]

Builds the release binaries, writes a generated catalog (callboard-testkit's catalog-gen), then
imports it into a fresh embedded log and a fresh set of Kafka topics (the broker scripts/kafka
starts) several times, timing the whole `callboard import` process (start-up, reading the log,
scanning, validating, appending, durable acknowledgement). Prints each run and the median.
"""
import argparse
import os
import pathlib
import re
import statistics
import subprocess
import tempfile
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--adapters", default="embedded,kafka")
    args = parser.parse_args()

    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache/callboard/target"))
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "callboard", "-p", "callboard-testkit"],
                   cwd=ROOT, env=env, check=True)
    bin_dir = pathlib.Path(env["CARGO_TARGET_DIR"]) / "release"
    with tempfile.TemporaryDirectory() as work:
        catalog = pathlib.Path(work) / "catalog"
        subprocess.run([bin_dir / "catalog-gen", catalog, str(args.documents)], check=True)
        for adapter in args.adapters.split(","):
            if adapter == "kafka":
                brokers = subprocess.run([ROOT / "scripts/kafka"], capture_output=True, text=True, check=True).stdout.strip()
            rates, seconds = [], []
            for run in range(1, args.runs + 1):
                if adapter == "embedded":
                    target = ["--data-dir", str(pathlib.Path(work) / f"data-{run}")]
                else:
                    target = ["--kafka", brokers, "--topic-prefix", f"bench-{uuid.uuid4().hex[:8]}."]
                started = time.perf_counter()
                out = subprocess.run([bin_dir / "callboard", "import", "--quiet", *target, catalog],
                                     capture_output=True, text=True, check=True).stdout
                elapsed = time.perf_counter() - started
                events = int(re.search(r"(\d+) events", out).group(1))
                rates.append(events / elapsed)
                seconds.append(elapsed)
                print(f"{adapter} run {run}: {events} events in {elapsed:.2f} s = {events / elapsed:,.0f} events/s")
            print(f"{adapter} median: {statistics.median(seconds):.2f} s, {statistics.median(rates):,.0f} events/s")


if __name__ == "__main__":
    main()
