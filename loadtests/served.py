"""What the scripts that load `callboard serve` share: the release binaries, a production stack's
arguments (a fresh topic prefix and database), starting the server and waiting until it is ready."""
import json
import os
import pathlib
import resource
import subprocess
import sys
import time
import urllib.request
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
PG = os.environ.get("CALLBOARD_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
JS = ROOT / "loadtests/js"


def more_files() -> None:
    """Many WebSocket connections need more descriptors than the usual 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))


def psql(sql: str) -> None:
    subprocess.run(["psql", "-q", f"{PG}/postgres", "-c", sql], check=True, capture_output=True)


def binaries(bin_dir: pathlib.Path | None) -> pathlib.Path:
    """`bin_dir`, or the release build of `callboard` and `catalog-gen` (built first)."""
    if bin_dir is not None:
        return bin_dir
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache/callboard/target"))
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "callboard", "-p", "callboard-testkit"],
                   cwd=ROOT, env=env, check=True)
    return pathlib.Path(env["CARGO_TARGET_DIR"]) / "release"


def node_modules() -> None:
    if not (JS / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(JS), "--no-audit", "--no-fund"], check=True)


def production(tag_prefix: str) -> tuple[list[str], list[str], str]:
    """Log and store arguments for Kafka + PostgreSQL + Redis under a fresh topic prefix and
    database (created here; drop it with `psql` when done), and the database's name."""
    brokers = subprocess.run([ROOT / "scripts/kafka"], capture_output=True, text=True, check=True).stdout.strip()
    tag = uuid.uuid4().hex[:8]
    database = f"callboard_{tag_prefix}_{tag}"
    psql(f"create database {database}")
    log_args = ["--kafka", brokers, "--topic-prefix", f"{tag_prefix}-{tag}."]
    store_args = ["--database-url", f"{PG}/{database}?sslmode=disable", "--redis-url", "redis://127.0.0.1:6379"]
    return log_args, store_args, database


def serve(bin_dir: pathlib.Path, args: list[str]) -> tuple[subprocess.Popen, str]:
    """Starts `callboard serve` with `args` on a free port; returns it and its base URL once
    /readyz says the projections have caught up."""
    server = subprocess.Popen([bin_dir / "callboard", "serve", *args, "--listen", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              preexec_fn=more_files, env={**os.environ, "CALLBOARD_LOG": "warn"})
    line = server.stdout.readline()
    base = "http://" + line.split("http://", 1)[1].split()[0].rsplit("/graphql", 1)[0]
    while True:
        try:
            if urllib.request.urlopen(base + "/readyz", timeout=5).status == 200:
                return server, base
        except Exception:
            pass
        time.sleep(0.5)


def peer_arguments(parser, entities: int, stack: str) -> None:
    """The arguments of the scripts that run the Backstage peer harness's workload: its size, the
    stack, the harness (`../shared/backstage-peer`, read-only), the folder it is copied to and
    its catalogs generated in, and another build's binaries."""
    parser.add_argument("--entities", type=int, default=entities)
    parser.add_argument("--stack", default=stack, choices=["embedded", "kafka-postgres-redis"])
    parser.add_argument("--peer", type=pathlib.Path, default=ROOT.parent / "shared/backstage-peer")
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path.home() / ".cache/callboard/backstage-peer")
    parser.add_argument("--bin-dir", type=pathlib.Path,
                        help="use the binaries in this folder instead of building them")
    parser.add_argument("--entity-cache", type=int, help="Callboard's cache size (0: every answer from the database)")


def peer_catalog(work: pathlib.Path, entities: int) -> tuple[pathlib.Path, dict]:
    """The peer's `gen.py` catalog of `entities` in `work` (generated once), and its expected.json."""
    catalog = work / f"catalog-data/n{entities}"
    if not (catalog / "expected.json").exists():
        subprocess.run([sys.executable, "gen.py", str(entities)], cwd=work, check=True, capture_output=True)
    return catalog, json.loads((catalog / "expected.json").read_text())

