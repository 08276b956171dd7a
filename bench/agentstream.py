"""Agent token streams (``bench/run agentstream``, issue 20): S concurrent agent answers, each
watched by W = 3 WebSockets, on Emergence and on a Node ``ws`` relay doing the same job.

- The fake provider, ``emergence load fake-provider`` (``--agent-harness node``:
  ``bench/peers/fake_provider.mjs``, the same wire format and pacing): an OpenAI-compatible fake
  (Chat Completions, ``stream: true``) that streams each answer at 30-80 tokens/s, 3 tokens per chunk, for ``--agent-answer-secs``
  seconds, each chunk's text carrying ``[seq/total@emit_us]`` (CLOCK_MONOTONIC microseconds).
- Emergence runs with one agent on that fake (a settings file: ``[providers] openai_base_url``,
  ``[limits] agent_streams_per_user = 0``, the other limits off as in every scenario).
- ``bench/peers/agent_relay.mjs``: the peer, a Node relay that calls the same fake per answer and
  forwards each delta to the thread's subscribers in the same frames.
- The watchers, ``emergence load agentstream`` (``--agent-harness node``:
  ``bench/peers/stream_watchers.mjs``, the same counts): every thread gets W sockets, then one
  ``send`` naming the agent per thread, all at once.

Per step S (a fresh server each time): chunk latency p50/p99 (provider emit -> watcher receipt),
lost and duplicated chunks (per socket and answer: the announced total against the distinct
sequence numbers received), server CPU seconds (utime+stime of /proc/PID/stat) per 1,000 tokens
delivered to watchers, RSS growth per running answer (peak RSS while streaming minus RSS with every
socket connected, over S), and, to show they are not the bottleneck, the fake's pacing lateness
and the watchers' own CPU. A step passes with p99 <= 100 ms and nothing lost, duplicated or
missing; each step runs the systems alternately (3 runs, median; 1 with --quick), and the
ramp stops for a system after its first failed step. Standard library only.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from common import http_json

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
TOKENS_PER_CHUNK = 3
TICK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True, file=sys.stderr)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


def percentile(hist: dict, q: float) -> float | None:
    """hist: 0.1 ms bucket -> count."""
    items = sorted((int(k), v) for k, v in hist.items())
    n = sum(v for _, v in items)
    if not n:
        return None
    seen = 0
    for k, v in items:
        seen += v
        if seen >= q * n:
            return k / 10.0
    return items[-1][0] / 10.0


def settings_file(work: Path, provider_url: str) -> Path:
    path = work / "agentstream.toml"
    path.write_text(f"""[providers]
openai_base_url = "{provider_url}"
ollama_url = ""
local_urls = []
discovery_interval_ms = 0
context_tokens = 200

[limits]
agent_streams_per_user = 0

[[agent]]
id = "bench"
name = "Bench"
system_prompt = "You answer benchmarks."
provider = "openai"
model = "fake-stream"
max_tokens = 4096
""")
    return path


def emergence_threads(url: str, s: int) -> tuple[str, list[str]]:
    name = f"w{uuid.uuid4().hex[:12]}"
    token = http_json("POST", f"{url}/api/auth/register", {"username": name, "password": "bench-password-1"}, timeout=30)["token"]

    def make(i):
        return http_json("POST", f"{url}/api/threads", {"title": f"answer {i}", "agents": ["bench"]}, token, timeout=30)["id"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return token, list(pool.map(make, range(s)))


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"watchers exited with {proc.returncode}: {proc.stderr.read()[-1500:]}")
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if r:
            line = proc.stdout.readline()
            if line:
                return line.strip()
    raise RuntimeError("watchers: no answer in time")


def step(bench, system, fake, s: int, answer_secs: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="agentstream-"))
    with system:
        system.start(timeout=60)
        if system.name == "emergence":
            token, threads = emergence_threads(system.url, s)
        else:
            token, threads = "none", [str(uuid.uuid4()) for _ in range(s)]
        cfg = {"ws_url": system.url.replace("http://", "ws://") + "/ws", "token": token, "threads": threads,
               "watchers": bench.args.agent_watchers, "workers": bench.args.agent_client_workers,
               "agent": "bench", "timeout_secs": answer_secs * 3 + 30, "connect_concurrency": 128,
               "tokens_per_chunk": TOKENS_PER_CHUNK}
        proc = subprocess.Popen(watcher_command(bench, system, cfg, work), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            ready = read_line(proc, 180)
            if ready != "READY":
                raise RuntimeError(f"watchers said {ready!r}")
            time.sleep(1.0)
            urllib.request.urlopen(urllib.request.Request(fake.url + "/stats/reset", method="POST"), timeout=5)
            rss0 = system.rss_kib()
            cpu0, fcpu0, t0 = cpu_seconds(system.pid), cpu_seconds(fake.pid), time.monotonic()
            ccpu0 = cpu_seconds(proc.pid)
            peak = [rss0]
            stop = threading.Event()

            def sample():
                while not stop.wait(0.2):
                    v = system.rss_kib()
                    if v:
                        peak[0] = max(peak[0], v)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            read_line(proc, 30)  # GO
            done = read_line(proc, cfg["timeout_secs"] + 60)
            stop.set()
            sampler.join()
            cpu1, fcpu1, t1 = cpu_seconds(system.pid), cpu_seconds(fake.pid), time.monotonic()
            # The watchers' CPU over the same window as the others' (the process is a zombie
            # once it printed DONE and exited: read it before reaping).
            try:
                ccpu1 = cpu_seconds(proc.pid)
            except (FileNotFoundError, IndexError, ValueError):
                ccpu1 = ccpu0 + r_cpu_fallback(done)
            fstats = json.loads(urllib.request.urlopen(fake.url + "/stats", timeout=5).read())
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    r = json.loads(done.split(" ", 1)[1])
    hist = r.pop("hist")
    cpu = cpu1 - cpu0
    tokens = r["tokens"]
    expected_chunks = fstats["chunks"] * cfg["watchers"]
    out = {
        "answers": s, "watchers": cfg["watchers"], "sockets": r["sockets"], "seconds": round(t1 - t0, 2),
        "p50_ms": percentile(hist, 0.50), "p99_ms": percentile(hist, 0.99), "max_ms": percentile(hist, 1.0),
        "chunks_emitted": fstats["chunks"], "chunks_delivered": r["chunks"], "chunks_expected": expected_chunks,
        "lost": r["lost"] + max(0, expected_chunks - r["chunks"] - r["lost"]), "duplicates": r["duplicates"],
        "offset_gaps": r["gaps"], "streams_missing": r["streams_missing"], "streams_ended": r["streams_ended"],
        "tokens_delivered": tokens, "tokens_per_sec": round(tokens / max(1e-9, t1 - t0)),
        "server_cpu_seconds": round(cpu, 2),
        "cpu_seconds_per_1k_tokens": round(1000 * cpu / tokens, 5) if tokens else None,
        "rss_kib_connected": rss0, "rss_kib_peak": peak[0],
        "rss_kib_per_answer": round((peak[0] - rss0) / s, 1) if rss0 else None,
        "fake": {"cpu_seconds": round(fcpu1 - fcpu0, 2), "lateness_p99_ms": fstats["lateness_p99_ms"],
                 "lateness_max_ms": fstats["lateness_max_ms"], "requests": fstats["requests"],
                 "aborted": fstats["aborted"]},
        "client": {"cpu_seconds": round(ccpu1 - ccpu0, 2), "loop_delay_max_ms": round(r["loop_delay_max_ms"], 1),
                   "connect_errors": r["connect_errors"], "errors": r["errors"]},
        "load_average": os.getloadavg()[0],
    }
    # Cores the server and the load harness (fake provider + watchers) used during the step: on a
    # 2-core machine, a harness near 1 core means the server had the rest.
    secs = max(1e-9, t1 - t0)
    out["server_cores"] = round(cpu / secs, 2)
    out["harness_cores"] = round((out["fake"]["cpu_seconds"] + out["client"]["cpu_seconds"]) / secs, 2)
    out["harness"] = bench.args.agent_harness
    out["ok"] = (out["p99_ms"] is not None and out["p99_ms"] <= 100.0 and out["lost"] == 0
                 and out["duplicates"] == 0 and out["streams_missing"] == 0 and r["connect_errors"] == 0)
    return out


def r_cpu_fallback(done: str) -> float:
    """The watchers' own CPU figure, when their process could not be read any more."""
    return float(json.loads(done.split(" ", 1)[1]).get("client_cpu_seconds", 0.0))


def watcher_command(bench, system, cfg: dict, work: Path) -> list[str]:
    """The watchers: `emergence load agentstream` (rust) or the Node script, both speaking
    READY / go / GO / DONE <json> on stdin and stdout."""
    if bench.args.agent_harness == "node":
        (work / "watchers.json").write_text(json.dumps(cfg))
        return ["node", str(PEERS / "stream_watchers.mjs"), str(work / "watchers.json")]
    (work / "threads.txt").write_text("\n".join(cfg["threads"]) + "\n")
    cmd = [str(bench.load_bin), "load", "agentstream", "--url", system.url, "--thread-list", str(work / "threads.txt"),
           "--watchers", str(cfg["watchers"]), "--agent", cfg["agent"], "--timeout", str(cfg["timeout_secs"]),
           "--tokens-per-chunk", str(cfg["tokens_per_chunk"]), "--threads", str(cfg["workers"]),
           "--connect-concurrency", str(cfg["connect_concurrency"]), "--stdin-go"]
    if system.name == "emergence":
        cmd += ["--token", cfg["token"]]
    return cmd


def fake_command(bench, port: int, answer_secs: float) -> list[str]:
    if bench.args.agent_harness == "node":
        return ["node", str(PEERS / "fake_provider.mjs")]
    return [str(bench.load_bin), "load", "fake-provider", "--listen", f"127.0.0.1:{port}",
            "--answer-secs", str(answer_secs), "--tokens-per-chunk", str(TOKENS_PER_CHUNK)]


def scenario(bench, server_cls) -> dict:
    answer_secs = bench.args.agent_answer_secs or (5.0 if bench.quick else 10.0)
    steps = [int(x) for x in bench.args.agent_streams.split(",")]
    work = Path(tempfile.mkdtemp(prefix="agentstream-cfg-"))
    fport = free_port()
    fake = server_cls("fake-provider", fake_command(bench, fport, answer_secs), fport,
                      {"PORT": str(fport), "HOST": "127.0.0.1", "ANSWER_SECS": str(answer_secs),
                       "TOKENS_PER_CHUNK": str(TOKENS_PER_CHUNK)})
    provider_url = f"http://127.0.0.1:{fport}/v1"
    config = settings_file(work, provider_url)

    def emergence():
        return bench.emergence(extra_env={"EMERGENCE_CONFIG": str(config), "EMERGENCE_OLLAMA_URL": "off"})

    def relay():
        port = free_port()
        return server_cls("node-relay", ["node", str(PEERS / "agent_relay.mjs")], port,
                          {"PORT": str(port), "HOST": "127.0.0.1", "PROVIDER_URL": provider_url})

    makers = {"emergence": emergence}
    if not bench.args.emergence_only:
        makers["node-relay"] = relay
    out: dict = {"answer_seconds": answer_secs, "watchers": bench.args.agent_watchers,
                 "tokens_per_chunk": TOKENS_PER_CHUNK, "pace_tokens_per_sec": [30, 80], "limit_p99_ms": 100,
                 "client_workers": bench.args.agent_client_workers, "harness": bench.args.agent_harness,
                 "steps": {n: [] for n in makers},
                 "largest_ok": {}, "at_largest_ok": {}}
    active = list(makers)
    with fake:
        fake.start()
        for s in steps:
            runs: dict = {name: [] for name in active}
            for rep in range(bench.reps):  # alternated: A B A B A B
                for name in active:
                    try:
                        r = step(bench, makers[name](), fake, s, answer_secs)
                    except Exception as e:  # a system that falls over fails the step
                        log(f"agentstream {name} S={s}: {e}")
                        r = {"answers": s, "ok": False, "error": str(e)[-500:], "p99_ms": None}
                    runs[name].append(r)
                    if r.get("p99_ms") is not None:
                        log(f"agentstream {name} S={s} run {rep + 1}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                            f"lost {r['lost']}, dup {r['duplicates']}, {r['tokens_per_sec']} tok/s, "
                            f"CPU {r['cpu_seconds_per_1k_tokens']} s/1k tok, {r['rss_kib_per_answer']} KiB/answer, "
                            f"fake late p99 {r['fake']['lateness_p99_ms']} ms, server {r['server_cores']} cores, "
                            f"harness {r['harness_cores']} cores -> {'ok' if r['ok'] else 'FAIL'}")
                    time.sleep(1)
            for name in list(active):
                st = summarize(s, runs[name])
                out["steps"][name].append(st)
                if st["ok"]:
                    out["largest_ok"][name] = s
                    out["at_largest_ok"][name] = {k: st.get(k) for k in (
                        "p50_ms", "p99_ms", "tokens_per_sec", "cpu_seconds_per_1k_tokens", "rss_kib_per_answer")}
                else:
                    active.remove(name)
            if not active:
                break
    return out


def summarize(s: int, runs: list[dict]) -> dict:
    """One step from its runs: the median of each figure, losses summed; it passes when the median
    p99 is within the limit and no run lost, repeated or missed anything."""
    good = [r for r in runs if r.get("p99_ms") is not None]
    if not good:
        return {"answers": s, "ok": False, "error": runs[0].get("error", "no run"), "p99_ms": None, "runs": runs}

    def med(key, sub=None):
        vals = [(r[sub] if sub else r).get(key) for r in good]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    st = {"answers": s, "runs": runs}
    digits = {"p50_ms": 1, "p99_ms": 1, "max_ms": 1, "tokens_per_sec": 0, "cpu_seconds_per_1k_tokens": 5,
              "rss_kib_per_answer": 1, "server_cores": 2, "harness_cores": 2, "load_average": 2}
    for k, d in digits.items():
        v = med(k)
        st[k] = None if v is None else round(v, d)
    st["fake"] = {"lateness_p99_ms": med("lateness_p99_ms", "fake")}
    st["client_loop_delay_max_ms"] = max(r["client"]["loop_delay_max_ms"] for r in good)
    for k in ("lost", "duplicates", "streams_missing"):
        st[k] = sum(r[k] for r in good)
    st["ok"] = (len(good) == len(runs) and st["p99_ms"] <= 100.0 and st["lost"] == 0 and st["duplicates"] == 0
                and st["streams_missing"] == 0 and all(r["client"]["connect_errors"] == 0 for r in good))
    return st


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_ms(v) -> str:
    return "n/a" if v is None else f"{v * 1000:.1f}"


def markdown(a: dict) -> list[str]:
    """The per-step table of the results markdown."""
    lines = ["", f"(7) agent streams: S concurrent answers of {a['answer_seconds']:g} s at "
                 f"{a['pace_tokens_per_sec'][0]}-{a['pace_tokens_per_sec'][1]} tokens/s "
                 f"({a['tokens_per_chunk']} tokens per chunk), {a['watchers']} watcher sockets each; latency from "
                 "the provider's emit to the watcher's receipt. A step passes with p99 ≤ "
                 f"{a['limit_p99_ms']} ms and nothing lost.", "",
             "| system | S | p50 ms | p99 ms | lost | dup | tokens/s delivered | server CPU ms / 1k tokens | "
             "RSS KiB / answer | server cores | harness cores | fake late p99 ms | ok |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, steps in a["steps"].items():
        for st in steps:
            if st.get("error"):
                lines.append(f"| {name} | {st['answers']} | error: {st['error'][:120]} ||||||||||| ✗ |")
                continue
            lines.append(f"| {name} | {st['answers']} | {st['p50_ms']} | {st['p99_ms']} | {st['lost']} | "
                         f"{st['duplicates']} | {round(st['tokens_per_sec']):,} | {cpu_ms(st['cpu_seconds_per_1k_tokens'])} | "
                         f"{st['rss_kib_per_answer']} | {st['server_cores']} | {st['harness_cores']} | "
                         f"{st['fake']['lateness_p99_ms']} | {'yes' if st['ok'] else '✗'} |")
    lines += ["", "Largest S passing: " + ", ".join(f"{k} {v:,}" for k, v in a["largest_ok"].items()) + "."]
    return lines
