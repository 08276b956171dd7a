"""Persist A/B (``bench/run persist --persist-search-ab``): what maintaining the full-text search
index costs the insert rate (issue 17: within 10 % of the rate without it).

The same binary, in the same minutes, on fresh databases: A has the schema as migrated; B has the
search index objects dropped after the migrations (bench only; no server ever runs without them):
SQLite's triggers that write the FTS5 table; PostgreSQL's generated `search` column (with its GIN
index) and the `created_at` index that search windows use (migration 0015). Runs alternate
A B A B (each backend), `--reps` each (default 3); the report is each side's median and the
index's cost in per cent of B. Standard library only.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

from common import log, median

# What B drops: every object that exists, found by name (so the switch follows the schema).
SQLITE_DROP = ["DROP TRIGGER IF EXISTS messages_search_insert",
               "DROP TRIGGER IF EXISTS messages_search_delete"]
POSTGRES_DROP = ("DROP INDEX IF EXISTS messages_created; DROP INDEX IF EXISTS messages_created_brin; "
                 "ALTER TABLE messages DROP COLUMN IF EXISTS search;")


def migrate(bench, server) -> None:
    p = subprocess.run([str(bench.bin), "migrate"], env=server.env, cwd=server.cwd,
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"emergence migrate failed: {p.stderr.strip()[-1000:]}")


def system(bench, pg_admin_url: str, backend: str, indexed: bool, databases: list[str]):
    """A server on a fresh database of `backend`, with or without the search index."""
    if backend == "sqlite":
        s = bench.emergence()
    else:
        name = "emergence_bench_ab_" + os.urandom(4).hex()
        if not bench.pg_admin(f"CREATE DATABASE {name}"):
            return None
        databases.append(name)
        s = bench.emergence(database_url=pg_admin_url.rsplit("/", 1)[0] + "/" + name)
    if not indexed:
        migrate(bench, s)
        if backend == "sqlite":
            db = sqlite3.connect(Path(s.cwd) / "emergence.db")
            for sql in SQLITE_DROP:
                db.execute(sql)
            db.commit()
            db.close()
        else:
            subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-qc", POSTGRES_DROP, s.env["DATABASE_URL"]],
                           check=True, capture_output=True, text=True)
    return s.start()


def scenario(bench, pg_admin_url: str) -> dict:
    reps = bench.reps
    out: dict = {"senders": bench.args.persist_senders, "window": bench.args.persist_window,
                 "seconds_per_run": 3 if bench.quick else 10, "runs": {}, "backends": {}}
    databases: list[str] = []
    servers = []
    try:
        for backend in ("sqlite", "postgres"):
            a = system(bench, pg_admin_url, backend, True, databases)
            if a is None:
                out["postgres"] = "skipped: PostgreSQL not reachable"
                continue
            servers.append(a)
            b = system(bench, pg_admin_url, backend, False, databases)
            servers.append(b)
            for rep in range(reps):
                for side, s in (("indexed", a), ("no_index", b)):
                    r = bench.persist_run(s)
                    key = f"{backend} {side}"
                    out["runs"].setdefault(key, []).append(r)
                    log(f"persist A/B {key} run {rep + 1}: {r['throughput_per_sec']:.0f} msgs/s "
                        f"(ack p99 {r['latency_ms']['p99']:.1f} ms, load {r['load_average']:.2f})")
            with_index = median([r["throughput_per_sec"] for r in out["runs"][f"{backend} indexed"]])
            without = median([r["throughput_per_sec"] for r in out["runs"][f"{backend} no_index"]])
            out["backends"][backend] = {"indexed_msgs_per_sec": with_index,
                                        "no_index_msgs_per_sec": without,
                                        "index_cost_percent": round(100 * (1 - with_index / without), 1)}
            log(f"persist A/B {backend}: {with_index:.0f} msgs/s indexed, {without:.0f} without "
                f"({out['backends'][backend]['index_cost_percent']} %)")
            a.stop()
            b.stop()
    finally:
        for s in servers:
            s.stop()
        for name in databases:
            bench.pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    out["median_msgs_per_sec"] = {k: median([r["throughput_per_sec"] for r in v])
                                  for k, v in out["runs"].items()}
    # The report's (5) rows: the schema as migrated (A).
    for backend, b in out["backends"].items():
        out["median_msgs_per_sec"][backend] = b["indexed_msgs_per_sec"]
    return out
