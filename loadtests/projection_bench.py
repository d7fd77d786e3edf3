#!/usr/bin/env python3
"""Files to queryable, and replay, on each stack.

    loadtests/projection_bench.py [--documents 100000] [--runs 3] [--stacks embedded,kafka-postgres]
    loadtests/projection_bench.py --replay-only --documents 1000000 --runs 1
    loadtests/projection_bench.py --no-replay --stacks embedded --runs 4 --bin-dir A --bin-dir B   # compare builds
    loadtests/projection_bench.py --projections catalog ...   # only the catalog, as builds before the activity feed

Builds the release binaries and writes a generated catalog (callboard-testkit's catalog-gen). Then,
for each stack and run, into a fresh log and a fresh read model:

* files -> queryable: a projector (`callboard project`, exporting metrics) is started, then
  `callboard import` reads the catalog; the clock runs from the start of the import until the
  catalog projection has applied every event the import appended (read from its /metrics, polled
  every 20 ms): every entity answers queries. When the projector runs other projections too (the
  activity feed), when each of them caught up is printed beside it. This is the time from "here are my files" to "every entity answers queries".
* replay: `callboard replay` rebuilds the read model from the start of the log into fresh tables
  and switches over; timed as a whole process.

Each run's files are deleted when it ends, and before each timed step the script waits for the
kernel to finish writing earlier steps' files back (`sync`): a step pays for its own writes only.

Stacks: `embedded` (SQLite log and read model in a data directory) and `kafka-postgres` (the broker
scripts/kafka starts, PostgreSQL on 127.0.0.1:5432 with a fresh database per run).
"""
import argparse
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("CALLBOARD_BENCH_PG_ADMIN", "postgres://postgres@127.0.0.1:5432/postgres")


def psql(sql: str) -> None:
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", PG_ADMIN, "-c", sql], check=True, capture_output=True)


def applied(metrics_url: str) -> dict[str, float]:
    """Events applied so far, per projection (a build with one projection has no label: the catalog)."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("callboard_projector_events_total"):
            label = re.search(r'projection="([^"]+)"', line)
            name = label.group(1) if label else "catalog"
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def projections(bin_dir: pathlib.Path, wanted: str | None) -> tuple[list[str], list[str]]:
    """The projections a build runs (those `wanted`, when it can choose) and the arguments that choose them."""
    help_text = subprocess.run([bin_dir / "callboard", "project", "--help"], capture_output=True, text=True).stdout
    if "--projections" not in help_text:
        return ["catalog"], []
    names = (wanted or "catalog,activity").split(",")
    return names, ["--projections", ",".join(names)]


class Stack:
    def __init__(self, name: str, work: pathlib.Path, run: int, brokers: str | None):
        self.name = name
        self.data_dir = work / f"data-{name}-{run}"
        self.args = ["--data-dir", str(self.data_dir)]
        self.database = None
        if name == "kafka-postgres":
            tag = uuid.uuid4().hex[:8]
            self.database = f"callboard_bench_{tag}"
            psql(f"create database {self.database}")
            self.args += ["--kafka", brokers, "--topic-prefix", f"bench-{tag}.",
                          "--database-url", f"postgres://postgres@127.0.0.1:5432/{self.database}?sslmode=disable"]

    def drop(self) -> None:
        if self.database:
            psql(f"drop database if exists {self.database} with (force)")
        # Deleted, not left for the end: the kernel would otherwise still be writing a run's
        # files back to disk while the next run is timed.
        shutil.rmtree(self.data_dir, ignore_errors=True)


def quiesce() -> None:
    """Lets the kernel finish writing what earlier steps wrote before the clock starts, so each
    timed step pays for its own writes and not for the step before it."""
    os.sync()


def import_args(stack: Stack) -> list[str]:
    # `import` takes the log options only.
    return [a for a in stack.args if not a.startswith("postgres://") and a != "--database-url"]


def files_to_queryable(bin_dir: pathlib.Path, stack: Stack, catalog: pathlib.Path,
                       wanted: str | None) -> tuple[float, int]:
    names, choose = projections(bin_dir, wanted)
    projector = subprocess.Popen([bin_dir / "callboard", "project", *stack.args, *choose,
                                  "--metrics-listen", "127.0.0.1:0"],
                                 stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        metrics_url = None
        for line in projector.stderr:
            found = re.search(r"metrics on (http://\S+)", line)
            if found:
                metrics_url = found.group(1)
                break
        if metrics_url is None:
            raise SystemExit("the projector did not start")
        # Keep draining its stderr so it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in projector.stderr], daemon=True).start()
        quiesce()
        started = time.perf_counter()
        out = subprocess.run([bin_dir / "callboard", "import", "--quiet", *import_args(stack), catalog],
                             capture_output=True, text=True, check=True).stdout
        imported = time.perf_counter() - started
        events = int(re.search(r"(\d+) events", out).group(1))
        # Location events (one per registered location) are projected too. Queryable is the moment
        # the catalog has applied them all; other projections (the activity feed) are timed too.
        caught_up: dict[str, float] = {}
        while len(caught_up) < len(names):
            if projector.poll() is not None:
                raise SystemExit(f"the projector exited with {projector.returncode}")
            counts = applied(metrics_url)
            for name in names:
                if name not in caught_up and counts.get(name, 0.0) >= events + 1:
                    caught_up[name] = time.perf_counter() - started
            time.sleep(0.02)
        others = ", ".join(f"{name} caught up at {at:.2f} s" for name, at in caught_up.items() if name != "catalog")
        print(f"  import alone took {imported:.2f} s" + (f"; {others}" if others else ""), flush=True)
        return caught_up.get("catalog", max(caught_up.values())), events
    finally:
        projector.terminate()
        projector.wait()


def replay(bin_dir: pathlib.Path, stack: Stack, wanted: str | None) -> tuple[float, str]:
    _, choose = projections(bin_dir, wanted)
    quiesce()
    started = time.perf_counter()
    out = subprocess.run([bin_dir / "callboard", "replay", "--quiet", *stack.args, *choose],
                         capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - started, out.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stacks", default="embedded,kafka-postgres")
    parser.add_argument("--replay-only", action="store_true",
                        help="import without a projector (untimed), then time the replay")
    parser.add_argument("--catalog", type=pathlib.Path, help="reuse a catalog written by catalog-gen")
    parser.add_argument("--no-replay", action="store_true", help="time files to queryable only")
    parser.add_argument("--bin-dir", type=pathlib.Path, action="append",
                        help="use the binaries in this folder instead of building them; given several "
                             "times, each run measures every folder in turn (ABBA order), to compare "
                             "builds on a machine whose speed drifts")
    parser.add_argument("--projections", help="the projections to run, for builds that choose (default: all; "
                                              "`catalog` compares with builds that had only the catalog)")
    args = parser.parse_args()

    bin_dirs = args.bin_dir
    if not bin_dirs:
        env = dict(os.environ)
        env.setdefault("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache/callboard/target"))
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "callboard", "-p", "callboard-testkit"],
                       cwd=ROOT, env=env, check=True)
        bin_dirs = [pathlib.Path(env["CARGO_TARGET_DIR"]) / "release"]
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        catalog = args.catalog
        if catalog is None:
            catalog = work / "catalog"
            subprocess.run([bin_dirs[0] / "catalog-gen", catalog, str(args.documents)], check=True)
        brokers = None
        if "kafka-postgres" in args.stacks:
            brokers = subprocess.run([ROOT / "scripts/kafka"], capture_output=True, text=True, check=True).stdout.strip()
        for name in args.stacks.split(","):
            queryable = {d: [] for d in bin_dirs}
            replays = {d: [] for d in bin_dirs}
            for run in range(1, args.runs + 1):
                for bin_dir in (bin_dirs if run % 2 else list(reversed(bin_dirs))):
                    label = name if len(bin_dirs) == 1 else f"{name} [{bin_dir}]"
                    stack = Stack(name, work, run, brokers)
                    try:
                        if args.replay_only:
                            subprocess.run([bin_dir / "callboard", "import", "--quiet", *import_args(stack), catalog],
                                           capture_output=True, check=True)
                        else:
                            elapsed, events = files_to_queryable(bin_dir, stack, catalog, args.projections)
                            queryable[bin_dir].append(elapsed)
                            print(f"{label} run {run}: {events} events from files to queryable in {elapsed:.2f} s",
                                  flush=True)
                        if args.no_replay:
                            continue
                        elapsed, out = replay(bin_dir, stack, args.projections)
                        replays[bin_dir].append(elapsed)
                        print(f"{label} run {run}: replay took {elapsed:.2f} s ({out})", flush=True)
                    finally:
                        stack.drop()
            for bin_dir in bin_dirs:
                label = name if len(bin_dirs) == 1 else f"{name} [{bin_dir}]"
                if queryable[bin_dir]:
                    print(f"{label} median files to queryable: {statistics.median(queryable[bin_dir]):.2f} s")
                if replays[bin_dir]:
                    print(f"{label} median replay: {statistics.median(replays[bin_dir]):.2f} s")


if __name__ == "__main__":
    main()
