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
import pathlib
import subprocess
import tempfile
import time

from served import JS, binaries, more_files, node_modules, production, psql, serve


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

    bin_dir = binaries(args.bin_dir)
    node_modules()
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
            log_args, store_args, database = production("apibench")
            log_args = ["--data-dir", str(work / "data"), *log_args]
        try:
            started = time.perf_counter()
            subprocess.run([bin_dir / "callboard", "import", "--quiet", *log_args, catalog], check=True,
                           capture_output=True)
            print(f"imported in {time.perf_counter() - started:.1f} s")
            cache_args = [] if args.entity_cache is None else ["--entity-cache", str(args.entity_cache)]
            server, base = serve(bin_dir, [*log_args, *store_args, *cache_args])
            try:
                print(f"queryable after {time.perf_counter() - started:.1f} s; serving {base}/graphql")
                subprocess.run(["node", JS / "load.mjs", f"{base}/graphql", "--rate", str(args.rate),
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
