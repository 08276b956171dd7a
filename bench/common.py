"""What every bench scenario shares: paths, the load-test settings, small helpers (ports, medians,
HTTP, RSS) and `Server`, one system under test run as a child process. Used by bench.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DIST = ROOT / "web" / "dist"
RESULTS = BENCH / "results"
VENV = BENCH / ".venv"

SCENARIOS = ["static", "fanout", "idle", "coldstart", "persist", "crosscheck"]
EXTRA = ["profile", "search", "agentstream", "documents"]

# Load-test settings for Emergence: the contract's "0 turns that limit off".
NO_LIMITS = {
    "EMERGENCE_AUTH_RATE_PER_MIN": "0",
    "EMERGENCE_REGISTRATION": "open",
    "EMERGENCE_SEND_RATE_PER_SEC": "0",
    "EMERGENCE_WS_CONNECT_RATE_PER_MIN": "0",
    "EMERGENCE_THREAD_RATE_PER_MIN": "0",
    "EMERGENCE_MEMBER_RATE_PER_MIN": "0",
    "EMERGENCE_WS_PER_USER": "0",
    "EMERGENCE_WS_PER_IP": "0",
}

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgres://postgres@127.0.0.1:5432/postgres")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def http_get(url: str, headers: dict | None = None, timeout: float = 5.0):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, dict(r.headers), r.read()


def http_json(method: str, url: str, body=None, token: str | None = None, timeout: float = 10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_rss_kib(pid: int) -> int | None:
    """VmRSS of a process and its children (nginx workers, uvicorn)."""
    total = rss_kib(pid)
    if total is None:
        return None
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    for k in kids:
        total += tree_rss_kib(int(k)) or 0
    return total


# ------------------------------------------------------------------------------------------
# Servers


class Server:
    """One system under test, started on a free port and stopped afterwards."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict | None = None,
                 cwd: Path | None = None, ready_path: str = "/readyz", workdir: Path | None = None):
        self.name, self.cmd, self.port = name, cmd, port
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.ready_path = ready_path
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.logfile = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "Server":
        logdir = RESULTS / "tmp"
        logdir.mkdir(parents=True, exist_ok=True)
        self.logfile = open(logdir / f"{self.name}-{self.port}.log", "wb")
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=self.logfile,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.logfile.name}")
            try:
                status, _, body = http_get(self.url + self.ready_path, timeout=1)
                if status == 200 and b"degraded" not in body:
                    return self
            except Exception:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready within {timeout}s; see {self.logfile.name}")

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    def rss_kib(self) -> int | None:
        return tree_rss_kib(self.pid) if self.proc else None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.logfile:
            self.logfile.close()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
