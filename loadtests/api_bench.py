#!/usr/bin/env python3
"""API load: entity by ref, filtered list, search, facets, graph at depth 3, a mutation and 1,000
subscribers, against `callboard serve` on Kafka + PostgreSQL + Redis (or embedded).

    loadtests/api_bench.py [--documents 100000] [--catalog DIR] [--stack kafka-postgres-redis|embedded]
                           [--rate 500] [--seconds 20] [--subscribers 1000] [--entity-cache N]
                           [--bin-dir DIR]   # another build's binaries, to compare builds

Builds the release binaries, imports a generated catalog into a fresh log, starts `callboard serve`
(every role; a fresh PostgreSQL database and topic prefix, Redis for the graph cache), waits until
/readyz says the projections have caught up, then runs loadtests/js/load.mjs, which prints one JSON
line per scenario with latency percentiles. The load generator runs on the same two cores.
"""
import argparse
import os
import pathlib
import resource
import subprocess
import tempfile
import time
import urllib.request
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
PG = os.environ.get("CALLBOARD_BENCH_PG", "postgres://postgres@127.0.0.1:5432")


def more_files() -> None:
    # A thousand WebSocket connections need more descriptors than the usual 1,024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))


def psql(sql: str) -> None:
    subprocess.run(["psql", "-q", f"{PG}/postgres", "-c", sql], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--catalog", type=pathlib.Path)
    parser.add_argument("--stack", default="kafka-postgres-redis")
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--entity-cache", type=int, default=None,
                        help="hot entities the server caches (serve's default when unset; 0 measures the database path)")
    parser.add_argument("--bin-dir", type=pathlib.Path,
                        help="use the binaries in this folder (callboard, catalog-gen) instead of building them")
    args = parser.parse_args()

    bin_dir = args.bin_dir
    if bin_dir is None:
        env = dict(os.environ)
        env.setdefault("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache/callboard/target"))
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "callboard", "-p", "callboard-testkit"],
                       cwd=ROOT, env=env, check=True)
        bin_dir = pathlib.Path(env["CARGO_TARGET_DIR"]) / "release"
    js = ROOT / "loadtests/js"
    if not (js / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(js), "--no-audit", "--no-fund"], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        catalog = args.catalog
        if catalog is None:
            catalog = work / "catalog"
            subprocess.run([bin_dir / "catalog-gen", catalog, str(args.documents)], check=True)
        log_args = ["--data-dir", str(work / "data")]
        store_args: list[str] = []
        database = None
        if args.stack == "kafka-postgres-redis":
            brokers = subprocess.run([ROOT / "scripts/kafka"], capture_output=True, text=True, check=True).stdout.strip()
            tag = uuid.uuid4().hex[:8]
            database = f"callboard_api_{tag}"
            psql(f"create database {database}")
            log_args += ["--kafka", brokers, "--topic-prefix", f"apibench-{tag}."]
            store_args = ["--database-url", f"{PG}/{database}?sslmode=disable", "--redis-url", "redis://127.0.0.1:6379"]
        try:
            started = time.perf_counter()
            subprocess.run([bin_dir / "callboard", "import", "--quiet", *log_args, catalog], check=True,
                           capture_output=True)
            print(f"imported in {time.perf_counter() - started:.1f} s")
            cache_args = [] if args.entity_cache is None else ["--entity-cache", str(args.entity_cache)]
            server = subprocess.Popen([bin_dir / "callboard", "serve", *log_args, *store_args, *cache_args,
                                       "--listen", "127.0.0.1:0"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                      preexec_fn=more_files, env={**os.environ, "CALLBOARD_LOG": "warn"})
            try:
                line = server.stdout.readline()
                url = line.split("http://", 1)[1].split()[0]
                base = "http://" + url.rsplit("/graphql", 1)[0]
                while True:
                    try:
                        if urllib.request.urlopen(base + "/readyz", timeout=5).status == 200:
                            break
                    except Exception:
                        pass
                    time.sleep(0.5)
                print(f"queryable after {time.perf_counter() - started:.1f} s; serving {base}/graphql")
                subprocess.run(["node", js / "load.mjs", f"{base}/graphql", "--rate", str(args.rate),
                                "--seconds", str(args.seconds), "--subscribers", str(args.subscribers)],
                               check=True, preexec_fn=more_files)
            finally:
                server.terminate()
                server.wait()
        finally:
            if database:
                psql(f"drop database if exists {database} with (force)")


if __name__ == "__main__":
    main()
