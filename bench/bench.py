#!/usr/bin/env python3
"""Emergence benchmark driver (run through ``bench/run``, which installs and builds first).

Runs the comparisons of docs/performance.md side by side on this machine, alternating the
systems run by run (A B C A B C ...), and prints absolute figures, ratios and targets. Every
server is started on a free 127.0.0.1 port and stopped afterwards; all load stays on loopback
and every run is bounded in time.

Scenarios (pick any, or ``all``):
  static     (1) the hashed JS bundle over keep-alive (brotli), wrk: Emergence, nginx, FastAPI
  fanout     (2) 1,000 subscribers in one thread, rising send rate until p99 > 50 ms:
                 Emergence, Node ws, FastAPI, and two loopback floors (`emergence load floor-room`:
                 one write per delivery and nothing else; with `--sweep 0`: every socket's backlog in
                 one write from a sweeper per core, and nothing else)
  idle       (3) 10,000 idle authenticated WebSockets: server RSS per connection
  coldstart  (4) exec to first 200 on /readyz, fresh SQLite data dir, 20 runs
  persist    (5) persisted messages/s from many senders, SQLite and PostgreSQL
  crosscheck     one fan-out run measured by both `emergence load` and k6
  profile        strace -c and perf of the Emergence server under fan-out (not in `all`)
  search         1,000,000 messages in 10,000 threads, search latency on both backends (not in
                 `all`; bench/search.py)
  agentstream    S concurrent agent answers streamed to 3 watchers each, S rising, Emergence and
                 a Node relay (not in `all`: about 5 minutes here, up to 30 if every step
                 passes; bench/agentstream.py)
  documents      indexing pages/s and retrieval p95 with 10,000 documents, full text and hybrid
                 with a real embeddings model (not in `all`; bench/documents.py)

Results: bench/results/<timestamp>.json (every run) and .md (the table).
Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from report import machine, render_markdown, table_rows

from common import (
    BENCH,
    ROOT,
    DIST,
    RESULTS,
    VENV,
    SCENARIOS,
    EXTRA,
    NO_LIMITS,
    PG_ADMIN,
    log,
    free_port,
    median,
    http_get,
    http_json,
    Server,
)


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = Path(args.bin)
        # The load generator: the server binary unless told otherwise (a same-minute A/B of two
        # servers drives both with one load generator).
        self.load_bin = Path(args.load_bin or args.bin)
        self.quick = args.quick
        self.reps = args.reps or (1 if args.quick else 3)
        self.results: dict = {"scenarios": {}}
        self.started: list[Server] = []

    # -- systems ---------------------------------------------------------------------------

    def emergence(self, database_url: str | None = None, extra_env: dict | None = None) -> Server:
        work = Path(tempfile.mkdtemp(prefix="emergence-bench-"))
        port = free_port()
        env = {**NO_LIMITS, "EMERGENCE_HOST": "127.0.0.1", "EMERGENCE_LOG": "warn",
               "DATABASE_URL": database_url or f"sqlite://{work}/emergence.db",
               "EMERGENCE_CONFIG": "", "EMERGENCE_BROKER_URL": "", **(extra_env or {})}
        return Server("emergence", [str(self.bin), "serve", "--port", str(port)], port, env,
                      cwd=work, workdir=work)

    def nginx(self) -> Server:
        prefix = Path(tempfile.mkdtemp(prefix="nginx-bench-"))
        os.chmod(prefix, 0o755)
        port = free_port()
        module = Path("/usr/lib/nginx/modules/ngx_http_brotli_static_module.so")
        conf = (BENCH / "nginx.conf.in").read_text()
        conf = (conf.replace("@MODULES@", f"load_module {module};" if module.exists() else "")
                .replace("@BROTLI@", "brotli_static on;" if module.exists() else "")
                .replace("@PREFIX@", str(prefix)).replace("@PORT@", str(port))
                .replace("@DIST@", str(DIST)))
        (prefix / "nginx.conf").write_text(conf)
        return Server("nginx", ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                      port, workdir=prefix)

    def node(self) -> Server:
        port = free_port()
        return Server("node-ws", ["node", str(BENCH / "peers" / "node_ws_server.mjs")], port,
                      {"PORT": str(port), "HOST": "127.0.0.1"})

    def fastapi(self) -> Server:
        port = free_port()
        return Server("fastapi", [str(VENV / "bin" / "uvicorn"), "fastapi_app:app", "--app-dir",
                                  str(BENCH / "peers"), "--host", "127.0.0.1", "--port", str(port),
                                  "--log-level", "warning", "--no-access-log"],
                      port, {"WEB_DIST": str(DIST)})

    def floor(self) -> Server:
        """The loopback floor: `emergence load floor-room`, one write per delivery, nothing else."""
        port = free_port()
        return Server("floor", [str(self.load_bin), "load", "floor-room", "--listen", f"127.0.0.1:{port}"],
                      port, {})

    def sweep_floor(self) -> Server:
        """The coalescing floor: `emergence load floor-room --sweep 0`, every socket's queued frames
        in one write by one sweeper per core, nothing else (what perfect coalescing allows here)."""
        port = free_port()
        return Server("floor-sweep", [str(self.load_bin), "load", "floor-room", "--sweep", "0",
                                      "--listen", f"127.0.0.1:{port}"], port, {})

    # -- load tools ------------------------------------------------------------------------

    def load(self, url: str, *extra: str, timeout: float = 300) -> dict:
        cmd = [str(self.load_bin), "load", "--url", url, "--json", *extra]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"emergence load failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
        report = json.loads(p.stdout)
        report["load_average"] = os.getloadavg()[0]  # other tenants of the machine, for the record
        if p.stderr.strip():
            report["stderr"] = p.stderr.strip()[-500:]
        return report

    def wrk(self, url: str, seconds: float, conns: int, headers: dict) -> dict:
        cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
        for k, v in headers.items():
            cmd += ["-H", f"{k}: {v}"]
        p = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 60)
        out = p.stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        lat = {}
        for q in ("50", "90", "99"):
            m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
            if m:
                v = float(m.group(1))
                lat[f"p{q}_ms"] = v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
        errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        sock = re.search(r"Socket errors: (.*)", out)
        return {"rps": rps, **lat, "load_average": os.getloadavg()[0], "non2xx": int(errors.group(1)) if errors else 0,
                "socket_errors": sock.group(1) if sock else None}

    # -- scenarios -------------------------------------------------------------------------

    def scenario_static(self) -> dict:
        index = (DIST / "index.html").read_text()
        bundle = re.search(r'src="(/assets/index-[^"]+\.js)"', index).group(1)
        secs = 3 if self.quick else 10
        conns = 64
        accept = {"Accept-Encoding": "br, gzip"}
        systems = [self.emergence()] + ([] if self.args.emergence_only else [self.nginx(), self.fastapi()])
        out: dict = {"bundle": bundle, "wrk": f"wrk -t1 -c{conns} -d{secs}s", "headers": accept,
                     "served": {}, "runs": {s.name: [] for s in systems}}
        try:
            for s in systems:
                s.start()
                status, headers, body = http_get(s.url + bundle, accept)
                lower = {k.lower(): v for k, v in headers.items()}
                out["served"][s.name] = {"status": status, "bytes": len(body),
                                         "content_encoding": lower.get("content-encoding", "identity"),
                                         "cache_control": lower.get("cache-control")}
            for rep in range(self.reps):
                for s in systems:
                    r = self.wrk(s.url + bundle, secs, conns, accept)
                    log(f"static {s.name} run {rep + 1}: {r['rps']:.0f} req/s")
                    out["runs"][s.name].append(r)
        finally:
            for s in systems:
                s.stop()
        out["median_rps"] = {k: median([r["rps"] for r in v]) for k, v in out["runs"].items()}
        out["median_p99_ms"] = {k: median([r.get("p99_ms") for r in v]) for k, v in out["runs"].items()}
        return out

    def fanout_run(self, s: Server, rate: float, secs: float, clients: int) -> dict:
        protocol = "emergence" if s.name == "emergence" else "broadcast"
        r = self.load(s.url, "--mode", "fanout", "--protocol", protocol, "--clients", str(clients),
                      "--senders", "1", "--rate", str(rate), "--duration", str(secs),
                      "--grace", "5", "--threads", str(self.args.load_threads),
                      "--connect-concurrency", "64")
        expected = max(1, r["sent"] * max(1, r["connected"] - r["senders"]))
        r["missing_fraction"] = r["undelivered"] / expected
        return r

    @staticmethod
    def fanout_ok(runs: list[dict], limit_ms: float = 50.0) -> tuple[bool, float | None]:
        """A step passes when the median run keeps p99 within `limit_ms` and loses nothing."""
        p99 = median([r["latency_ms"]["p99"] for r in runs])
        missing = median([r["missing_fraction"] for r in runs])
        unsent = median([r["unsent"] / max(1, r.get("sent", 0) + r["unsent"]) for r in runs])
        ok = p99 is not None and p99 <= limit_ms and missing <= 0.001 and unsent <= 0.001
        return ok, p99

    def scenario_fanout(self) -> dict:
        clients = self.args.fanout_clients
        secs = 3 if self.quick else 5
        rates = [float(x) for x in self.args.rates.split(",")]
        systems = [self.emergence()] + ([] if self.args.emergence_only else [self.node(), self.fastapi()])
        if not self.args.emergence_only and not self.args.no_floor:
            systems += [self.floor(), self.sweep_floor()]
        out: dict = {"clients": clients, "seconds_per_run": secs, "senders": 1, "rates": rates,
                     "steps": {s.name: [] for s in systems}, "last_ok": {}, "first_fail": {},
                     "settled": [], "capacity": {}}
        active = list(systems)
        try:
            for s in systems:
                s.start()
            for rate in rates:
                if not active:
                    break
                runs: dict = {s.name: [] for s in active}
                for rep in range(self.reps):
                    for s in active:
                        try:
                            r = self.fanout_run(s, rate, secs, clients)
                        except Exception as e:  # a peer that falls over is a failed step
                            log(f"fanout {s.name} @{rate}: {e}")
                            r = {"error": str(e)[-300:], "latency_ms": {"p99": float("inf")},
                                 "missing_fraction": 1.0, "unsent": 0, "throughput_per_sec": 0}
                        runs[s.name].append(r)
                        log(f"fanout {s.name} @{rate:g} msg/s run {rep + 1}: "
                            f"{r['throughput_per_sec']:.0f} deliveries/s, p99 {r['latency_ms']['p99']:.1f} ms, "
                            f"missing {r['missing_fraction']:.4f}")
                        time.sleep(1)
                for s in list(active):
                    ok, p99 = self.fanout_ok(runs[s.name])
                    keeps_up, _ = self.fanout_ok(runs[s.name], limit_ms=1000.0)
                    step = {"rate": rate, "ok": ok, "keeps_up": keeps_up, "p99_ms": p99,
                            "deliveries_per_sec": median([r["throughput_per_sec"] for r in runs[s.name]]),
                            "p50_ms": median([r["latency_ms"].get("p50") for r in runs[s.name]]),
                            "runs": runs[s.name]}
                    out["steps"][s.name].append(step)
                    # The target figure is the highest step that keeps p99 within 50 ms below the
                    # first two failing steps in a row: one noisy step on a shared VM does not end
                    # a peer's ramp at a rate it holds on the next step. The ramp goes on (for
                    # context) until the system stops keeping up: p99 over 1 s or losses.
                    if s.name not in out["settled"]:
                        if ok:
                            out["last_ok"][s.name] = step
                            out["first_fail"].pop(s.name, None)
                        elif s.name in out["first_fail"]:
                            out["settled"].append(s.name)
                        else:
                            out["first_fail"][s.name] = step
                    if keeps_up:
                        out["capacity"][s.name] = step
                    else:
                        active.remove(s)
        finally:
            for s in systems:
                s.stop()
        out["deliveries_at_50ms"] = {s.name: (out["last_ok"].get(s.name) or {}).get("deliveries_per_sec", 0)
                                     for s in systems}
        out["peak_deliveries"] = {s.name: max([st["deliveries_per_sec"] or 0 for st in out["steps"][s.name]] or [0])
                                  for s in systems}
        out["deliveries_keeping_up"] = {s.name: (out["capacity"].get(s.name) or {}).get("deliveries_per_sec", 0)
                                        for s in systems}
        # Strip the bulky per-run histograms from the summary copy.
        return out

    def scenario_idle(self) -> dict:
        n = self.args.idle_clients
        hold = 5 if self.quick else 15
        systems = [self.emergence()]
        if not (self.args.idle_emergence_only or self.args.emergence_only):
            systems += [self.node(), self.fastapi()]
        out: dict = {"connections": n, "hold_seconds": hold, "runs": {}}
        for s in systems:
            with s:
                s.start()
                http_get(s.url + "/readyz")
                time.sleep(1)
                before = s.rss_kib()
                samples: list[int] = []
                stop = threading.Event()

                def sample():
                    while not stop.is_set():
                        v = s.rss_kib()
                        if v:
                            samples.append(v)
                        time.sleep(0.2)

                t = threading.Thread(target=sample, daemon=True)
                t.start()
                protocol = "emergence" if s.name == "emergence" else "broadcast"
                try:
                    r = self.load(s.url, "--mode", "idle", "--protocol", protocol, "--clients", str(n),
                                  "--duration", str(hold), "--threads", str(self.args.load_threads),
                                  "--connect-concurrency", "256", timeout=600)
                finally:
                    stop.set()
                    t.join()
                time.sleep(1)
                after = s.rss_kib()
                peak = max(samples) if samples else None
                per = ((peak - before) / max(1, r["open_at_end"])) if peak and before else None
                out["runs"][s.name] = {"rss_before_kib": before, "rss_peak_kib": peak, "rss_after_close_kib": after,
                                       "connected": r["connected"], "open_at_end": r["open_at_end"],
                                       "connect_failures": r["connect_failures"], "connect_ms": r["connect_ms"],
                                       "kib_per_connection": per}
                log(f"idle {s.name}: {r['open_at_end']} open, RSS {before} -> {peak} KiB, "
                    f"{per if per is None else round(per, 2)} KiB/connection")
        return out

    def coldstart_once(self, s: Server) -> dict:
        """Exec to first 200 on /readyz (and to status "ready"), polling as fast as loopback allows."""
        req = f"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        logdir = RESULTS / "tmp"
        logdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen(s.cmd, env=s.env, cwd=s.cwd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        s.proc = proc
        first200 = ready = None
        deadline = t0 + 30
        try:
            while time.perf_counter() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", s.port), timeout=1) as c:
                        c.sendall(req)
                        data = b""
                        while chunk := c.recv(4096):
                            data += chunk
                    now = time.perf_counter()
                    if data.startswith(b"HTTP/1.1 200"):
                        if first200 is None:
                            first200 = now - t0
                        if b'"degraded"' not in data:
                            ready = now - t0
                            break
                except OSError:
                    pass
                if proc.poll() is not None:
                    break
                time.sleep(0.0002)
        finally:
            s.stop()
        return {"first_200_ms": first200 and first200 * 1000, "ready_ms": ready and ready * 1000}

    def scenario_coldstart(self) -> dict:
        reps = 5 if self.quick else 20
        out: dict = {"repetitions": reps, "runs": {}}
        makers = [("emergence", self.emergence, reps)]
        if not (self.args.coldstart_emergence_only or self.args.emergence_only):
            peer_reps = 3 if self.quick else 5
            makers += [("nginx", self.nginx, peer_reps), ("node-ws", self.node, peer_reps),
                       ("fastapi", self.fastapi, peer_reps)]
        for name, make, n in makers:
            out["runs"][name] = [self.coldstart_once(make()) for _ in range(n)]
        out["median_first_200_ms"] = {k: median([r["first_200_ms"] for r in v]) for k, v in out["runs"].items()}
        out["median_ready_ms"] = {k: median([r["ready_ms"] for r in v]) for k, v in out["runs"].items()}
        for k in out["runs"]:
            log(f"coldstart {k}: first 200 median {out['median_first_200_ms'][k]:.1f} ms, "
                f"ready median {out['median_ready_ms'][k] or float('nan'):.1f} ms")
        return out

    def pg_admin(self, sql: str, timeout: float = 60) -> bool:
        if not shutil.which("psql"):
            return False
        p = subprocess.run(["psql", PG_ADMIN, "-v", "ON_ERROR_STOP=1", "-qc", sql],
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            log(f"psql: {p.stderr.strip()}")
        return p.returncode == 0

    def scenario_persist(self) -> dict:
        if self.args.persist_search_ab:
            import persist_ab  # noqa: PLC0415 (bench/persist_ab.py, next to this file)
            return persist_ab.scenario(self, PG_ADMIN)
        senders = self.args.persist_senders
        window = self.args.persist_window
        secs = 3 if self.quick else 10
        out: dict = {"senders": senders, "window": window, "seconds_per_run": secs, "runs": {}}
        pg_name = "emergence_bench_" + os.urandom(4).hex()
        systems = [("sqlite", self.emergence())]
        if self.pg_admin(f"CREATE DATABASE {pg_name}"):
            pg_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + pg_name
            systems.append(("postgres", self.emergence(database_url=pg_url)))
            out["postgres_database"] = pg_name
        else:
            out["postgres"] = "skipped: PostgreSQL at 127.0.0.1:5432 (user postgres) not reachable"
        try:
            for _, s in systems:
                s.start()
            for rep in range(self.reps):
                for label, s in systems:
                    r = self.persist_run(s)
                    out["runs"].setdefault(label, []).append(r)
                    log(f"persist {label} run {rep + 1}: {r['throughput_per_sec']:.0f} msgs/s "
                        f"(ack p99 {r['latency_ms']['p99']:.1f} ms, errors {r['errors']})")
        finally:
            for _, s in systems:
                s.stop()
            if "postgres_database" in out:
                self.pg_admin(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
        out["median_msgs_per_sec"] = {k: median([r["throughput_per_sec"] for r in v])
                                      for k, v in out["runs"].items()}
        return out

    def persist_run(self, s: Server) -> dict:
        """One `emergence load --mode persist` run against a started server."""
        secs = 3 if self.quick else 10
        return self.load(s.url, "--mode", "persist", "--senders", str(self.args.persist_senders),
                         "--window", str(self.args.persist_window), "--duration", str(secs),
                         "--threads", str(self.args.load_threads))

    def scenario_search(self) -> dict:
        import search  # noqa: PLC0415 (bench/search.py, next to this file)
        return search.scenario(self, PG_ADMIN)

    def scenario_agentstream(self) -> dict:
        import agentstream  # noqa: PLC0415 (bench/agentstream.py, next to this file)
        return agentstream.scenario(self, Server)

    def scenario_documents(self) -> dict:
        import documents  # noqa: PLC0415 (bench/documents.py, next to this file)
        return documents.scenario(self)

    def scenario_crosscheck(self) -> dict:
        """The same fan-out measured by `emergence load` alone and by k6 subscribers."""
        k6 = VENV / "bin" / "k6"
        if not k6.exists():
            return {"skipped": "k6 not installed"}
        subs, rate, secs = (100, 20, 5) if self.quick else (200, 20, 10)
        out: dict = {"subscribers": subs, "rate": rate, "seconds": secs}
        with self.emergence() as s:
            s.start()
            own = self.load(s.url, "--mode", "fanout", "--clients", str(subs), "--rate", str(rate),
                            "--duration", str(secs), "--threads", str(self.args.load_threads))
            out["emergence_load"] = {"deliveries_per_sec": own["throughput_per_sec"],
                                     "latency_ms": own["latency_ms"]}
            name = "k6_" + os.urandom(3).hex()
            reg = http_json("POST", s.url + "/api/auth/register", {"username": name, "password": "k6-password"})
            token = reg["token"]
            thread = http_json("POST", s.url + "/api/threads", {"title": "k6 cross-check"}, token)["id"]
            summary = RESULTS / "tmp" / f"k6-{name}.json"
            hold_ms = int((secs + 8) * 1000)
            env = {**os.environ, "WS_URL": f"ws://127.0.0.1:{s.port}/ws?token={token}", "THREAD": thread,
                   "VUS": str(subs), "HOLD_MS": str(hold_ms), "K6_NO_USAGE_REPORT": "true"}
            k6p = subprocess.Popen([str(k6), "run", "--quiet", "--no-color", "--summary-export", str(summary),
                                    str(BENCH / "k6" / "subscribers.js")], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                time.sleep(5)  # k6 starts and its subscribers connect
                sender = self.load(s.url, "--mode", "fanout", "--clients", "0", "--rate", str(rate),
                                   "--duration", str(secs), "--token", token, "--thread", thread,
                                   "--threads", "1")
                _, err = k6p.communicate(timeout=hold_ms / 1000 + 60)
            finally:
                if k6p.poll() is None:
                    k6p.kill()
            data = json.loads(summary.read_text())
            lat = data["metrics"].get("delivery_latency", {})
            count = data["metrics"].get("deliveries", {}).get("count", 0)
            out["k6"] = {"deliveries": count, "expected": sender["sent"] * subs,
                         "deliveries_per_sec": count / secs,
                         "latency_ms": {"p50": lat.get("med"), "p90": lat.get("p(90)"), "p99": lat.get("p(99)"),
                                        "max": lat.get("max")},
                         "stderr": (err or "")[-500:]}
        log(f"crosscheck: emergence load p50 {out['emergence_load']['latency_ms']['p50']:.2f} ms "
            f"p99 {out['emergence_load']['latency_ms']['p99']:.2f} ms; "
            f"k6 p50 {out['k6']['latency_ms']['p50']} ms p99 {out['k6']['latency_ms']['p99']} ms")
        return out

    def scenario_profile(self) -> dict:
        """Where the Emergence server's time goes: `strace -c -f` syscall counts and a `perf` CPU
        profile of the server process, under fan-out and under persist (SQLite, PostgreSQL)."""
        tmp = RESULTS / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        clients, rate, secs = self.args.fanout_clients, self.args.profile_rate, 8
        out: dict = {"fanout": {"clients": clients, "rate": rate, "seconds": secs}}

        def fanout(s):
            return self.fanout_run(s, rate, secs, clients)

        def persist(s):
            return self.load(s.url, "--mode", "persist", "--senders", str(self.args.persist_senders), "--window",
                             str(self.args.persist_window), "--duration", str(secs), "--threads",
                             str(self.args.load_threads), "--token", s.token, "--thread", s.thread)

        def prepare(s):
            # Register before the profiler attaches: password hashing (argon2) is setup, not load.
            name = "prof_" + os.urandom(3).hex()
            s.token = http_json("POST", s.url + "/api/auth/register",
                                {"username": name, "password": "profile-password"})["token"]
            s.thread = http_json("POST", s.url + "/api/threads", {"title": "profile"}, s.token)["id"]

        def summary(r):
            return {"throughput_per_sec": r["throughput_per_sec"], "latency_ms": r["latency_ms"],
                    "sent": r["sent"], "delivered": r.get("delivered"), "persisted": r.get("persisted")}

        def under(tool, s, work):
            if tool == "strace":
                if not shutil.which("strace"):
                    return None
                path = tmp / f"strace-{s.pid}.txt"
                cmd = ["strace", "-c", "-f", "-o", str(path), "-p", str(s.pid)]
            else:
                if not shutil.which("perf"):
                    return None
                path = tmp / f"perf-{s.pid}.data"
                cmd = ["perf", "record", "-F", "499", "-g", "-o", str(path), "-p", str(s.pid)]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            try:
                r = work(s)
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=60)
            if tool == "strace":
                return {"load": summary(r), "syscalls": path.read_text()[-5000:]}
            rep = subprocess.run(["perf", "report", "-i", str(path), "--no-children", "--stdio", "--sort", "sym",
                                  "-g", "none", "--percent-limit", "0.8"],
                                 capture_output=True, text=True, timeout=600)
            top = [l for l in rep.stdout.splitlines() if l.strip() and not l.startswith("#")]
            split = subprocess.run(["perf", "report", "-i", str(path), "--no-children", "--stdio", "--sort", "dso",
                                    "-g", "none"], capture_output=True, text=True, timeout=600)
            dso = [l.strip() for l in split.stdout.splitlines() if l.strip() and not l.startswith("#")]
            path.unlink(missing_ok=True)
            return {"load": summary(r), "by_dso": dso[:4],
                    "top_symbols": "\n".join(top[:45]) or rep.stderr.strip()[-1000:]}

        index = (DIST / "index.html").read_text()
        bundle = re.search(r'src="(/assets/index-[^"]+\.js)"', index).group(1)

        def static(s):
            r = self.wrk(s.url + bundle, secs, 64, {"Accept-Encoding": "br, gzip"})
            return {"throughput_per_sec": r["rps"], "latency_ms": {"p99": r.get("p99_ms")}, "sent": None}

        with self.emergence() as s:
            s.start()
            out["static"] = {"strace": under("strace", s, static), "perf": under("perf", s, static)}
            out["fanout"]["strace"] = under("strace", s, fanout)
            out["fanout"]["perf"] = under("perf", s, fanout)
            prepare(s)
            out["persist_sqlite"] = {"strace": under("strace", s, persist), "perf": under("perf", s, persist)}
        pg_name = "emergence_bench_" + os.urandom(4).hex()
        if self.pg_admin(f"CREATE DATABASE {pg_name}"):
            try:
                with self.emergence(database_url=PG_ADMIN.rsplit("/", 1)[0] + "/" + pg_name) as s:
                    s.start()
                    prepare(s)
                    out["persist_postgres"] = {"strace": under("strace", s, persist), "perf": under("perf", s, persist)}
            finally:
                self.pg_admin(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
        for k, v in out.items():
            for tool in ("strace", "perf"):
                if v.get(tool):
                    log(f"profile {k} under {tool}: {v[tool]['load']['throughput_per_sec']:.0f}/s")
        return out

    # -- driver ----------------------------------------------------------------------------

    def run(self, names: list[str]) -> None:
        self.results["machine"] = machine()
        self.results["started"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.results["quick"] = self.quick
        self.results["repetitions"] = self.reps
        self.results["binary"] = str(self.bin)
        for name in names:
            log(f"scenario {name} (load average {os.getloadavg()[0]:.2f})")
            t = time.monotonic()
            try:
                res = getattr(self, f"scenario_{name}")()
            except Exception as e:
                log(f"scenario {name} failed: {e}")
                res = {"failed": str(e)}
            res["elapsed_seconds"] = round(time.monotonic() - t, 1)
            res["load_average_after"] = os.getloadavg()
            self.results["scenarios"][name] = res
        self.results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.report()

    def report(self) -> None:
        RESULTS.mkdir(exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        rows = table_rows(self.results["scenarios"])
        md = render_markdown(self.results, rows)
        (RESULTS / f"{stamp}.json").write_text(json.dumps(self.results, indent=1, default=str))
        (RESULTS / f"{stamp}.md").write_text(md)
        print(md)
        log(f"wrote bench/results/{stamp}.json and .md")
        # The charts of the run, next to it (bench/charts.py; docs/performance.md embeds them).
        sys.path.insert(0, str(BENCH))
        import charts  # noqa: E402 (standard library only, like this file)

        for chart in charts.draw(RESULTS / f"{stamp}.json"):
            log(f"wrote {chart.relative_to(ROOT)}")


# ------------------------------------------------------------------------------------------
# Reporting



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", default=["all"], help=f"all, or some of {SCENARIOS + EXTRA}")
    ap.add_argument("--quick", action="store_true", help="one short run per point (a smoke test)")
    ap.add_argument("--reps", type=int, help="runs per point (default 3, quick 1)")
    ap.add_argument("--bin", default=os.environ.get("EMERGENCE_BIN", str(ROOT / "target" / "release" / "emergence")))
    ap.add_argument("--load-bin", default=os.environ.get("EMERGENCE_LOAD_BIN"),
                    help="binary whose `load` drives the scenarios (default: --bin)")
    ap.add_argument("--emergence-only", action="store_true",
                    help="skip the peers (nginx, node, FastAPI) in every scenario (for A/B runs)")
    ap.add_argument("--load-threads", type=int, default=2, help="worker threads of `emergence load`")
    ap.add_argument("--fanout-clients", type=int, default=1000)
    ap.add_argument("--no-floor", action="store_true",
                    help="fanout: leave out the loopback floors (`emergence load floor-room`, and its `--sweep`)")
    ap.add_argument("--rates", default="10,20,30,50,75,100,150,200,250,300,400,500,750,1000,1500,2000",
                    help="fan-out send rates to ramp through (msg/s)")
    ap.add_argument("--idle-clients", type=int, default=10000)
    ap.add_argument("--idle-emergence-only", action="store_true")
    ap.add_argument("--coldstart-emergence-only", action="store_true")
    ap.add_argument("--persist-senders", type=int, default=32)
    ap.add_argument("--persist-window", type=int, default=64)
    ap.add_argument("--persist-search-ab", action="store_true",
                    help="persist: A/B of the same binary with and without the search index "
                         "(bench only: the B databases have it dropped; bench/persist_ab.py)")
    ap.add_argument("--search-cache", help="search: keep/reuse the seeded corpus here (iteration only)")
    ap.add_argument("--search-queries", type=int, help="search: queries per user (default 630, quick 150)")
    ap.add_argument("--search-backends", default="sqlite,postgres", help="search: backends to run")
    ap.add_argument("--profile-rate", type=float, default=100.0)
    ap.add_argument("--agent-streams", default="100,250,500,750,1000,1500,2000,3000",
                    help="concurrent agent answers to step through (agentstream)")
    ap.add_argument("--agent-watchers", type=int, default=3, help="sockets watching each answer")
    ap.add_argument("--agent-client-workers", type=int, default=2, help="worker threads of the watchers")
    ap.add_argument("--agent-harness", choices=["rust", "node"], default="rust",
                    help="watchers and fake provider: `emergence load agentstream` / `load fake-provider`, "
                         "or bench/peers/stream_watchers.mjs / fake_provider.mjs")
    ap.add_argument("--agent-answer-secs", type=float, help="length of each answer (default 10, quick 5)")
    args = ap.parse_args()
    names: list[str] = []
    for n in args.scenarios:
        if n == "all":
            names += SCENARIOS
        elif n in SCENARIOS + EXTRA:
            names.append(n)
        else:
            ap.error(f"unknown scenario {n!r}")
    if not Path(args.bin).exists():
        ap.error(f"no binary at {args.bin} (bench/run builds it)")
    Bench(args).run(list(dict.fromkeys(names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
