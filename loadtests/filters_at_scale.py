#!/usr/bin/env python3
"""Filtered lists, search and facets under a filter at a fixed rate, on a large catalog: the
latency a catalog page sees on every click, with a different question each time (so that answers
kept from earlier questions rarely help), through `callboard serve`.

    loadtests/filters_at_scale.py [--entities 100000] [--stack embedded|kafka-postgres-redis]
                                  [--rate 100] [--seconds 20] [--entity-cache N]
                                  [--peer ../shared/backstage-peer] [--work ~/.cache/callboard/backstage-peer]
                                  [--bin-dir DIR]

The catalog is the Backstage workload's (`gen.py` of the peer harness: 3,000 groups at 100,000
entities). Requests start on schedule (open loop) whether or not earlier ones have finished, from
a pool of client threads; each scenario prints p50, p90, p99 and the slowest, and fails the run on
any error. `--entity-cache 0` turns every cache off and measures the database path alone.
"""
import argparse
import concurrent.futures
import http.client
import json
import pathlib
import random
import shutil
import tempfile
import threading
import time
import urllib.request

from served import binaries, peer_arguments, peer_catalog, production, psql, serve

SETTLE = 10
local = threading.local()


def ask(port: int, query: str, variables: dict) -> float:
    if getattr(local, "conn", None) is None:
        local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"query": query, "variables": variables})
    started = time.perf_counter()
    local.conn.request("POST", "/graphql", body, {"Content-Type": "application/json"})
    response = local.conn.getresponse()
    answer = json.loads(response.read())
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200 or answer.get("errors"):
        raise RuntimeError(f"{response.status}: {answer.get('errors')}")
    return elapsed


def open_loop(port: int, rate: int, seconds: int, question) -> dict:
    total = rate * seconds
    latencies: list[float] = []
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        futures = []
        for i in range(total):
            due = started + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            query, variables = question(i)
            futures.append(pool.submit(ask, port, query, variables))
        for future in futures:
            latencies.append(future.result())
    latencies.sort()
    pick = lambda p: round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)  # noqa: E731
    return {"requests": total, "p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99),
            "max_ms": round(latencies[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    peer_arguments(parser, entities=100_000, stack="embedded")
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()

    bin_dir = binaries(args.bin_dir)
    args.work.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.peer / "gen.py", args.work / "gen.py")
    catalog, expected = peer_catalog(args.work, args.entities)
    groups, words = expected["groups"], expected["search_words"]
    # Search-as-you-type: whole words and their first letters, from the workload's vocabulary.
    vocabulary = sorted({part for name in expected["components"][:5000] for part in name.split("-")
                         if part.isalpha()})
    typed = [w[:n] for w in vocabulary for n in (3, 4, len(w))] + words

    data = pathlib.Path(tempfile.mkdtemp(dir=args.work))
    log_args, store_args, database = ["--data-dir", str(data)], [], None
    if args.stack == "kafka-postgres-redis":
        log_args, store_args, database = production("filters")
        log_args = ["--data-dir", str(data), *log_args]
    cache = [] if args.entity_cache is None else ["--entity-cache", str(args.entity_cache)]
    started = time.perf_counter()
    server, base = serve(bin_dir, [*log_args, *store_args, *cache, "--location", str(catalog / "catalog-info.yaml")])
    try:
        port = int(base.rsplit(":", 1)[1])
        count = json.dumps({"query": "{entities{totalCount}}"}).encode()
        while True:
            request = urllib.request.Request(base + "/graphql", count, {"Content-Type": "application/json"})
            if json.load(urllib.request.urlopen(request))["data"]["entities"]["totalCount"] >= expected["expected_total_with_locations"]:
                break
            time.sleep(0.5)
        print(f"queryable after {time.perf_counter() - started:.1f} s", flush=True)
        while urllib.request.urlopen(base + "/readyz").status != 200:
            time.sleep(0.5)
        time.sleep(SETTLE)
        rnd = random.Random(5)
        owner = "query($f:[EntityFilter!]){entities(filter:$f,first:20){totalCount nodes{ref title owner{ref}}}}"
        search = "query($q:String!){entities(search:$q,first:20){totalCount nodes{ref title}}}"
        facets = "query($f:[EntityFilter!]){facets(field:\"spec.lifecycle\",filter:$f){value count}}"
        scenarios = {
            "owner filter (components of one owner, first 20, total, owners)":
                lambda i: (owner, {"f": [{"all": ["kind=component", f"spec.owner=group:default/{rnd.choice(groups)}"]}]}),
            "search (as you type, first 20, total)":
                lambda i: (search, {"q": rnd.choice(typed)}),
            "facets under a filter (spec.lifecycle of one owner's components)":
                lambda i: (facets, {"f": [{"all": ["kind=component", f"spec.owner=group:default/{rnd.choice(groups)}"]}]}),
            "facets under a broad filter (spec.lifecycle of one type's components)":
                lambda i: (facets, {"f": [{"all": ["kind=component", f"spec.type={rnd.choice(['service', 'website', 'library'])}"]}]}),
        }
        print(f"{args.entities} entities, {args.stack}, {args.rate} requests/s for {args.seconds} s each"
              f"{'' if args.entity_cache is None else f', entity cache {args.entity_cache}'}")
        for name, question in scenarios.items():
            print(f"{name}: {open_loop(port, args.rate, args.seconds, question)}", flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)
        if database:
            psql(f"drop database if exists {database} with (force)")


if __name__ == "__main__":
    main()
