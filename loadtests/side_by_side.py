#!/usr/bin/env python3
"""Callboard and the Backstage catalog backend side by side: the same generated catalog, the same
questions, one after the other on the same machine, every figure a ratio from one run.

    loadtests/side_by_side.py [--entities 10000] [--stack kafka-postgres-redis|embedded]
                              [--seconds 15] [--connections 16] [--sequential 300]
                              [--peer ../shared/backstage-peer] [--work ~/.cache/callboard/backstage-peer]
                              [--bin-dir DIR] [--skip-backstage RESULTS.json] [--entity-cache N]

Backstage: the catalog backend from npm at the versions `../shared/backstage-peer` pins (copied to
--work, where `npm ci` runs once), on PostgreSQL for the production stack and in-memory SQLite
for the embedded one, fed the peer's `gen.py` catalog through one file location; ready when its
components are all listed with their relations. Callboard: `callboard serve --location` on the
same catalog (Kafka + PostgreSQL + Redis, or embedded), ready when `totalCount` reaches the
catalog's size. Both databases are analyzed after loading only for Backstage: Callboard must keep
its own planner statistics.

Then, for each, in this order:
  * first reads: entity by ref, each entity read once, one connection (p50), before anything else
    has read them;
  * one connection, then `wrk -t1 -c16` for --seconds, per question: entity by ref, components of
    one owner (first 50, with the total), facets of `spec.type`, full-text search (first 20, with
    the total; Backstage searches `metadata.name`, Callboard every text field).
Entities come back whole with their relations on both sides (Backstage's JSON; Callboard's `raw`).
Before timing, the answers are compared: each question's totals must agree.

`--entity-cache 0` turns Callboard's caches off (hot entities and whole answers kept until the
catalog changes), so that every answer comes from the database, as Backstage's always do.

Needs `wrk` (Debian: `apt-get install wrk`), Node.js and npm. Prints a table; writes
`side-by-side.json` into --work.
"""
import argparse
import http.client
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from served import PG, ROOT, binaries, peer_arguments, peer_catalog, production, psql, serve

WRK_SCRIPT = ROOT / "loadtests/wrk/requests.lua"
BACKSTAGE_PORT = 7007


class Client:
    """One keep-alive connection."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, line: str) -> tuple[int, bytes]:
        method, path, body = "GET", line, None
        if line.startswith("POST "):
            method, path, body = line.split(" ", 2)
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                headers = {"Content-Type": "application/json"} if body else {}
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                if self.conn:
                    self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise RuntimeError("unreachable")


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def sequential(client: Client, lines: list[str], count: int, check) -> dict:
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        line = lines[i % len(lines)]
        t = time.perf_counter()
        status, body = client.request(line)
        latencies.append((time.perf_counter() - t) * 1000)
        if status != 200:
            raise SystemExit(f"{line[:120]}: HTTP {status}: {body[:300]!r}")
        check(body)
        if time.perf_counter() - started > 40:
            break
    wall = time.perf_counter() - started
    return {"requests": len(latencies), "rps": round(len(latencies) / wall, 1),
            "p50_ms": round(percentile(latencies, 50), 2), "p99_ms": round(percentile(latencies, 99), 2)}


def wrk(port: int, lines: list[str], seconds: int, connections: int, work: pathlib.Path, name: str) -> dict:
    requests = work / f"{name}.requests"
    requests.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", WRK_SCRIPT,
                          f"http://127.0.0.1:{port}", "--", requests], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result = json.loads(line[len("WRKJSON "):])
            if result["non2xx"] or result["errors"]:
                raise SystemExit(f"{name}: {result['non2xx']} non-2xx answers, {result['errors']} socket errors")
            return result
    raise SystemExit(f"wrk printed no summary: {out.stdout[-500:]} {out.stderr[-500:]}")


# Seconds both systems are left alone after loading, before any question: what runs right after a
# load (Backstage's stitching; Callboard's other projections and its table maintenance) finishes,
# so that the questions measure a catalog at rest, as users mostly find it.
SETTLE = 10


def settle(base: str) -> None:
    """Waits until every projection has caught up (`/readyz`), then SETTLE seconds."""
    while True:
        try:
            if urllib.request.urlopen(base + "/readyz", timeout=5).status == 200:
                break
        except OSError:
            pass
        time.sleep(0.2)
    time.sleep(SETTLE)


# The questions, as each system is asked them.

def backstage_questions(expected: dict, rnd: random.Random) -> dict[str, list[str]]:
    components, groups, words = expected["components"], expected["groups"], expected["search_words"]
    return {
        "by_ref": [f"/api/catalog/entities/by-name/component/default/{rnd.choice(components)}" for _ in range(2000)],
        "owner_filter": ["/api/catalog/entities/by-query?filter=" + urllib.parse.quote(
            f"kind=component,spec.owner=group:default/{rnd.choice(groups)}", safe="=,") + "&limit=50"
            for _ in range(500)],
        "facets": ["/api/catalog/entity-facets?facet=spec.type"],
        "search": [f"/api/catalog/entities/by-query?fullTextFilterTerm={w}&fullTextFilterFields=metadata.name&limit=20"
                   for w in words],
    }


def graphql(query: str, **variables) -> str:
    return "POST /graphql " + json.dumps({"query": query, "variables": variables}, separators=(",", ":"))


def callboard_questions(expected: dict, rnd: random.Random) -> dict[str, list[str]]:
    components, groups, words = expected["components"], expected["groups"], expected["search_words"]
    by_ref = "query($r:String!){entity(ref:$r){raw}}"
    owner = "query($f:[EntityFilter!]){entities(filter:$f,first:50){totalCount nodes{raw}}}"
    search = "query($q:String!){entities(search:$q,first:20){totalCount nodes{raw}}}"
    return {
        "by_ref": [graphql(by_ref, r=f"component:default/{rnd.choice(components)}") for _ in range(2000)],
        "owner_filter": [graphql(owner, f=[{"all": ["kind=component", f"spec.owner=group:default/{rnd.choice(groups)}"]}])
                         for _ in range(500)],
        "facets": [graphql('{facets(field:"spec.type"){value count}}')],
        "search": [graphql(search, q=w) for w in words],
    }


def first_reads(expected: dict, rnd: random.Random, count: int, backstage: bool) -> list[str]:
    names = rnd.sample(expected["components"], min(count, len(expected["components"])))
    if backstage:
        return [f"/api/catalog/entities/by-name/component/default/{n}" for n in names]
    return [graphql("query($r:String!){entity(ref:$r){raw}}", r=f"component:default/{n}") for n in names]


def totals(system: str, body: bytes) -> tuple:
    """What must agree between the two systems for one answer: counts, never timings."""
    answer = json.loads(body)
    if system == "backstage":
        if "items" in answer:
            return ("list", answer.get("totalItems"), len(answer["items"]))
        if "facets" in answer:
            return ("facets", sorted((f["value"], f["count"]) for f in answer["facets"]["spec.type"]))
        return ("entity", answer["metadata"]["name"], len(answer.get("relations", [])))
    if answer.get("errors"):
        raise SystemExit(f"GraphQL errors: {answer['errors']}")
    data = answer["data"]
    if "entities" in data:
        return ("list", data["entities"]["totalCount"], len(data["entities"]["nodes"]))
    if "facets" in data:
        return ("facets", sorted((f["value"], f["count"]) for f in data["facets"]))
    raw = data["entity"]["raw"]
    return ("entity", raw["metadata"]["name"], len(raw.get("relations", [])))


def measure(system: str, port: int, questions: dict, first: list[str], args, work: pathlib.Path) -> dict:
    client = Client(port)
    check = lambda body: totals(system, body)  # noqa: E731 — a reply that does not parse fails the run
    result = {"first_read": sequential(client, first, len(first), check)}
    print(f"[{system}] first reads: {result['first_read']}", flush=True)
    for name, lines in questions.items():
        for line in lines[:5]:
            client.request(line)
        one = sequential(client, lines, args.sequential, check)
        many = wrk(port, lines, args.seconds, args.connections, work, f"{system}-{name}")
        result[name] = {"one_connection": one, "wrk": many}
        print(f"[{system}] {name}: one connection {one}; wrk -c{args.connections} {many}", flush=True)
    return result


def answers(system: str, port: int, questions: dict) -> dict:
    """The first few answers to each question, reduced to what must agree."""
    client = Client(port)
    out = {}
    for name, lines in questions.items():
        out[name] = [totals(system, client.request(line)[1]) for line in lines[:20]]
    return out


def peer_folder(peer: pathlib.Path, work: pathlib.Path) -> pathlib.Path:
    """The peer harness copied to `work` (../shared is read-only), its node_modules installed."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ["package.json", "package-lock.json", "index.js", "gen.py", "app-config.yaml",
                 "app-config.postgres.yaml"]:
        if not (work / name).exists() or (peer / name).read_bytes() != (work / name).read_bytes():
            shutil.copy(peer / name, work / name)
    if not (work / "node_modules/@backstage/plugin-catalog-backend").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=work, check=True)
    return work


def run_backstage(peer: pathlib.Path, catalog: pathlib.Path, expected: dict, stack: str, args,
                  work: pathlib.Path) -> tuple[dict, dict]:
    config = ["--config", "app-config.yaml"]
    if stack == "kafka-postgres-redis":
        config += ["--config", "app-config.postgres.yaml"]
        psql("do $$ begin if not exists (select from pg_roles where rolname = 'backstage_bench') then "
             "create role backstage_bench login password 'backstage_bench' createdb; end if; end $$")
        psql("drop database if exists bsbench_plugin_catalog")
    env = {**os.environ, "CATALOG_LOCATION": str(catalog / "catalog-info.yaml")}
    log = open(work / "backstage.log", "w")
    started = time.perf_counter()
    node = subprocess.Popen(["node", "index.js", *config], cwd=peer, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        client = Client(BACKSTAGE_PORT)
        want = expected["counts"]["Component"]
        while True:
            time.sleep(1)
            if node.poll() is not None:
                raise SystemExit(f"the Backstage backend exited ({node.returncode}); see {work / 'backstage.log'}")
            try:
                status, body = client.request("/api/catalog/entities/by-query?filter=kind=component,relations.ownedBy&limit=1")
            except OSError:
                continue
            if status == 200 and json.loads(body).get("totalItems") == want:
                samples = [client.request(f"/api/catalog/entities/by-name/component/default/{s}")
                           for s in expected["sample_components"]]
                if all(s == 200 and json.loads(b).get("relations") for s, b in samples):
                    break
        ingest = time.perf_counter() - started
        print(f"[backstage] queryable with relations after {ingest:.1f} s", flush=True)
        time.sleep(SETTLE)
        if stack == "kafka-postgres-redis":
            subprocess.run(["psql", "-q", f"{PG}/bsbench_plugin_catalog", "-c", "analyze"], check=True)
        rnd = random.Random(7)
        first = first_reads(expected, random.Random(11), args.sequential, True)
        questions = backstage_questions(expected, rnd)
        agreed = answers("backstage", BACKSTAGE_PORT, questions)
        result = measure("backstage", BACKSTAGE_PORT, questions, first, args, work)
        result["ingest_s"] = round(ingest, 1)
        return result, agreed
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()


def run_callboard(bin_dir: pathlib.Path, catalog: pathlib.Path, expected: dict, stack: str, args,
                  work: pathlib.Path) -> tuple[dict, dict]:
    data = pathlib.Path(tempfile.mkdtemp(dir=work))
    log_args, store_args, database = ["--data-dir", str(data)], [], None
    if stack == "kafka-postgres-redis":
        log_args, store_args, database = production("sidebyside")
        log_args = ["--data-dir", str(data), *log_args]
    started = time.perf_counter()
    cache = [] if args.entity_cache is None else ["--entity-cache", str(args.entity_cache)]
    server, base = serve(bin_dir, [*log_args, *store_args, *cache, "--location", str(catalog / "catalog-info.yaml")])
    try:
        port = int(base.rsplit(":", 1)[1])
        client = Client(port)
        want = expected["expected_total_with_locations"]
        count = graphql("{entities{totalCount}}")
        while json.loads(client.request(count)[1])["data"]["entities"]["totalCount"] < want:
            time.sleep(0.2)
        ingest = time.perf_counter() - started
        print(f"[callboard] queryable with relations after {ingest:.1f} s", flush=True)
        settle(base)
        rnd = random.Random(7)
        first = first_reads(expected, random.Random(11), args.sequential, False)
        questions = callboard_questions(expected, rnd)
        # First reads come first: nothing has read those entities yet.
        result = {"first_read": sequential(client, first, len(first), lambda body: totals("callboard", body))}
        print(f"[callboard] first reads: {result['first_read']}", flush=True)
        agreed = answers("callboard", port, questions)
        rest = measure("callboard", port, questions, first[:1], args, work)
        rest.pop("first_read")
        result.update(rest)
        result["ingest_s"] = round(ingest, 1)
        return result, agreed
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)
        if database:
            psql(f"drop database if exists {database} with (force)")


def main() -> None:
    parser = argparse.ArgumentParser()
    peer_arguments(parser, entities=10_000, stack="kafka-postgres-redis")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--skip-backstage", type=pathlib.Path,
                        help="reuse Backstage's figures from an earlier run's side-by-side.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (Debian: apt-get install wrk)")

    bin_dir = binaries(args.bin_dir)
    peer = peer_folder(args.peer, args.work)
    catalog, expected = peer_catalog(peer, args.entities)

    results: dict = {"entities": args.entities, "stack": args.stack, "machine": os.uname().nodename,
                     "cores": os.cpu_count()}
    if args.skip_backstage:
        earlier = json.loads(args.skip_backstage.read_text())
        results["backstage"], backstage_answers = earlier["backstage"], earlier["backstage_answers"]
    else:
        results["backstage"], backstage_answers = run_backstage(peer, catalog, expected, args.stack, args, args.work)
    results["backstage_answers"] = backstage_answers
    results["callboard"], callboard_answers = run_callboard(bin_dir, catalog, expected, args.stack, args, args.work)
    same = lambda answers: json.loads(json.dumps(answers))  # noqa: E731 — tuples and lists alike
    for name in ["owner_filter", "facets"]:
        if same(callboard_answers[name]) != same(backstage_answers[name]):
            raise SystemExit(f"{name}: the answers differ:\n backstage {backstage_answers[name][:5]}\n"
                             f" callboard {callboard_answers[name][:5]}")
    (args.work / "side-by-side.json").write_text(json.dumps(results, indent=1))

    b, c = results["backstage"], results["callboard"]
    cache_note = "" if args.entity_cache is None else f"; Callboard with --entity-cache {args.entity_cache}"
    print(f"\n{args.entities} entities, {args.stack}; wrk -t1 -c{args.connections} -d{args.seconds}s{cache_note}\n")
    print("| figure | Backstage | Callboard | ratio |\n|---|---|---|---|")
    print(f"| files → queryable with relations | {b['ingest_s']} s | {c['ingest_s']} s | "
          f"{b['ingest_s'] / c['ingest_s']:.1f}× |")
    print(f"| first read by ref (one connection, p50) | {b['first_read']['p50_ms']} ms | "
          f"{c['first_read']['p50_ms']} ms | {b['first_read']['p50_ms'] / c['first_read']['p50_ms']:.1f}× |")
    for name in ["by_ref", "owner_filter", "facets", "search"]:
        bw, cw = b[name]["wrk"], c[name]["wrk"]
        bo, co = b[name]["one_connection"], c[name]["one_connection"]
        print(f"| {name}: req/s (p50, p99) | {bw['rps']:.0f} ({bw['p50_ms']}, {bw['p99_ms']} ms) | "
              f"{cw['rps']:.0f} ({cw['p50_ms']}, {cw['p99_ms']} ms) | {cw['rps'] / bw['rps']:.1f}× |")
        print(f"| {name}: one connection p50 | {bo['p50_ms']} ms | {co['p50_ms']} ms | "
              f"{bo['p50_ms'] / co['p50_ms']:.1f}× |")


if __name__ == "__main__":
    main()
