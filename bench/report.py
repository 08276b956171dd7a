"""The bench's report: the machine it ran on, the results table (ours vs the peers, with the targets)
and the markdown written next to the JSON in bench/results/. Used by bench.py."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv"

def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":")[1].strip()
    except OSError:
        pass

    def version(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except Exception:
            return None

    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "kernel": platform.release(),
            "nofile": subprocess.run(["sh", "-c", "ulimit -n"], capture_output=True, text=True).stdout.strip(),
            "versions": {"nginx": version(["nginx", "-v"]), "wrk": version(["wrk", "-v"]),
                         "node": version(["node", "--version"]),
                         "python": platform.python_version(),
                         "uvicorn": version([str(VENV / "bin" / "uvicorn"), "--version"]),
                         "k6": version([str(VENV / "bin" / "k6"), "version"])}}


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float) and v != v:
        return "n/a"
    if abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s + unit


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def table_rows(sc: dict) -> list[dict]:
    rows = []

    def add(scenario, measure, ours, peer, theirs, r, target, met, unit=""):
        rows.append({"scenario": scenario, "measure": measure, "emergence": fmt(ours, unit),
                     "peer": peer, "peer_value": fmt(theirs, unit) if peer else "",
                     "ratio": (fmt(r) + "×") if r is not None else "", "target": target,
                     "met": "n/a" if met is None else ("yes" if met else "**no**")})

    s = sc.get("static")
    if s and "median_rps" in s:
        m = s["median_rps"]
        for peer, label, want in (("nginx", "nginx", 1.0), ("fastapi", "FastAPI", 20.0)):
            r = ratio(m.get("emergence"), m.get(peer))
            add("(1) JS bundle, keep-alive", "req/s", m.get("emergence"), label, m.get(peer), r,
                f"≥ {want:g}× {label}", None if r is None else r >= want)
    f = sc.get("fanout")
    if f and "deliveries_at_50ms" in f:
        d = f["deliveries_at_50ms"]
        for peer, label, want in (("node-ws", "Node ws", 3.0), ("fastapi", "FastAPI", 15.0)):
            r = ratio(d.get("emergence"), d.get(peer)) if d.get(peer) else None
            # A peer that never kept p99 under 50 ms leaves no ratio to judge: at the lowest
            # rate that is as likely the machine's noise as the peer (FastAPI missed by 2 ms at
            # 10 msg/s and kept 41 ms at 20 on 12-03), so it is "n/a", not a win.
            met = r >= want if r is not None else None
            add("(2) fan-out, 1,000 subscribers", "deliveries/s at p99 ≤ 50 ms", d.get("emergence"), label,
                d.get(peer), r, f"≥ {want:g}× {label}", met)
        if d.get("floor") is not None:
            add("(2) context: the machine", "deliveries/s at p99 ≤ 50 ms", d.get("emergence"),
                "loopback floor (1 write per delivery)", d.get("floor"), ratio(d.get("emergence"), d.get("floor")),
                "(context)", None)
        if d.get("floor-sweep") is not None:
            add("(2) context: the machine", "deliveries/s at p99 ≤ 50 ms", d.get("emergence"),
                "coalescing floor (a sweeper per core)", d.get("floor-sweep"),
                ratio(d.get("emergence"), d.get("floor-sweep")), "(context)", None)
        cap = f.get("deliveries_keeping_up") or {}
        for peer, label in (("node-ws", "Node ws"), ("fastapi", "FastAPI"), ("floor", "loopback floor"),
                            ("floor-sweep", "coalescing floor")):
            if cap.get(peer) is not None:
                add("(2) context", "deliveries/s still keeping up (p99 ≤ 1 s, no loss)", cap.get("emergence"), label,
                    cap.get(peer), ratio(cap.get("emergence"), cap.get(peer)), "(context)", None)
    i = sc.get("idle")
    if i and "runs" in i and "emergence" in i["runs"]:
        e = i["runs"]["emergence"]
        per = e.get("kib_per_connection")
        add("(3) 10,000 idle WebSockets", "RSS KiB per connection", per, "", None, None, "≤ 8 KiB",
            None if per is None else per <= 8.0)
        for peer, label in (("node-ws", "Node ws"), ("fastapi", "FastAPI")):
            if peer in i["runs"]:
                pv = i["runs"][peer].get("kib_per_connection")
                add("(3) context", "RSS KiB per connection", per, label, pv, ratio(pv, per), "(context)", None)
    c = sc.get("coldstart")
    if c and "median_first_200_ms" in c:
        v = c["median_first_200_ms"].get("emergence")
        add("(4) cold start, fresh SQLite", "ms exec → first 200 /readyz (median)", v, "", None, None, "≤ 20 ms",
            None if v is None else v <= 20.0)
        rv = c["median_ready_ms"].get("emergence")
        add("(4) cold start, fresh SQLite", "ms exec → /readyz \"ready\" (db up)", rv, "", None, None, "(context)",
            None)
    p = sc.get("persist")
    if p and "median_msgs_per_sec" in p:
        m = p["median_msgs_per_sec"]
        for label, want in (("sqlite", 50_000), ("postgres", 20_000)):
            v = m.get(label)
            add(f"(5) persisted msgs/s, {label}", f"{p['senders']} senders × window {p['window']}", v, "", None,
                None, f"≥ {want:,}", None if v is None else v >= want)
    a = sc.get("agentstream")
    if a and "largest_ok" in a:
        big, at = a["largest_ok"], a.get("at_largest_ok") or {}
        e = big.get("emergence", 0)
        n = big.get("node-relay")
        add(f"(7) agent streams × {a['watchers']} watchers", "largest S with p99 ≤ 100 ms, nothing lost", e,
            "Node relay" if n is not None else "", n, ratio(e, n) if n else None, "≥ 2,000", e >= 2000)
        ec = (at.get("emergence") or {}).get("cpu_seconds_per_1k_tokens")
        nc = (at.get("node-relay") or {}).get("cpu_seconds_per_1k_tokens")
        ms = (lambda v: None if v is None else v * 1000)  # noqa: E731
        add("(7) context", "server CPU ms per 1,000 delivered tokens (at the largest S)", ms(ec),
            "Node relay" if nc is not None else "", ms(nc), ratio(nc, ec), "(context)", None)
        em = (at.get("emergence") or {}).get("rss_kib_per_answer")
        add("(7) context", "RSS KiB per running answer (at the largest S)", em, "", None, None, "(context)", None)
    q = sc.get("search")
    for label, b in ((q or {}).get("backends") or {}).items():
        for who in ("everything", "typical"):
            v = b[who]["all"]["p95_ms"]
            add(f"(6) search, {q['messages']:,} messages, {label}",
                f"p95 ms, member of {b[who]['threads_readable']:,} threads", v, "", None, None, "≤ 50 ms",
                v <= 50.0)
    return rows


def render_markdown(results: dict, rows: list[dict]) -> str:
    m = results["machine"]
    lines = [f"# Emergence bench {results['started']}", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM, Linux {m['kernel']}, "
             f"`ulimit -n` {m['nofile']}. Repetitions per point: {results['repetitions']} (median)"
             f"{' — QUICK run' if results['quick'] else ''}.", "",
             "| scenario | measure | Emergence | peer | peer value | ratio | target | met |",
             "|---|---|---:|---|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['measure']} | {r['emergence']} | {r['peer']} | {r['peer_value']} | "
                     f"{r['ratio']} | {r['target']} | {r['met']} |")
    sc = results["scenarios"]
    if "static" in sc and "served" in sc["static"]:
        lines += ["", f"(1) `{sc['static'].get('wrk')}` with `Accept-Encoding: br, gzip` on "
                      f"`{sc['static'].get('bundle')}`. What each system served:", ""]
        lines += ["| system | median req/s | p99 ms | bytes | content-encoding |", "|---|---:|---:|---:|---|"]
        for k, v in sc["static"]["served"].items():
            lines.append(f"| {k} | {fmt(sc['static']['median_rps'].get(k))} | "
                         f"{fmt(sc['static']['median_p99_ms'].get(k))} | {v['bytes']} | {v['content_encoding']} |")
    if "fanout" in sc and "steps" in sc["fanout"]:
        f = sc["fanout"]
        lines += ["", f"(2) {f['clients']} subscribers, 1 sender, {f['seconds_per_run']} s per run; "
                      "deliveries/s and p99 delivery latency (from the scheduled send time) per send rate:", ""]
        rates = sorted({st["rate"] for v in f["steps"].values() for st in v})
        lines.append("| msg/s | " + " | ".join(f"{k} deliveries/s | {k} p99 ms" for k in f["steps"]) + " |")
        lines.append("|---:|" + "---:|---:|" * len(f["steps"]))
        for rate in rates:
            cells = []
            for k, steps in f["steps"].items():
                st = next((x for x in steps if x["rate"] == rate), None)
                if st is None:
                    cells += ["", ""]
                else:
                    p99 = fmt(st["p99_ms"]) + ("" if st["ok"] else " ✗") + ("" if st.get("keeps_up", True) else " ✗✗")
                    cells += [fmt(st["deliveries_per_sec"]), p99]
            lines.append(f"| {rate:g} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("✗: p99 over 50 ms; ✗✗: no longer keeping up (p99 over 1 s, or deliveries lost). "
                     "Highest rate still keeping up: " +
                     ", ".join(f"{k} {fmt(v)} deliveries/s" for k, v in f["deliveries_keeping_up"].items()) +
                     ". Peak deliveries/s seen (any latency): " +
                     ", ".join(f"{k} {fmt(v)}" for k, v in f["peak_deliveries"].items()) + ".")
    if "idle" in sc and "runs" in sc["idle"]:
        lines += ["", "(3) idle connections (RSS of the server process tree, KiB):", "",
                  "| system | open | before | peak | after close | KiB/connection |", "|---|---:|---:|---:|---:|---:|"]
        for k, v in sc["idle"]["runs"].items():
            lines.append(f"| {k} | {v['open_at_end']} | {v['rss_before_kib']} | {v['rss_peak_kib']} | "
                         f"{v['rss_after_close_kib']} | {fmt(v['kib_per_connection'])} |")
    if "coldstart" in sc and "runs" in sc["coldstart"]:
        lines += ["", "(4) cold start (ms, median of the runs; Emergence's /readyz answers 503 \"starting\" "
                      "until its first database attempt has ended, then 200 \"ready\"):", "",
                  "| system | runs | first 200 | ready |", "|---|---:|---:|---:|"]
        c = sc["coldstart"]
        for k, v in c["runs"].items():
            lines.append(f"| {k} | {len(v)} | {fmt(c['median_first_200_ms'][k])} | {fmt(c['median_ready_ms'][k])} |")
    if "persist" in sc and "runs" in sc["persist"]:
        lines += ["", "(5) persist runs (msgs/s; ack latency p99 ms):", ""]
        for k, v in sc["persist"]["runs"].items():
            lines.append(f"- {k}: " + ", ".join(f"{fmt(r['throughput_per_sec'])} (p99 {fmt(r['latency_ms']['p99'])})"
                                                  for r in v))
    for label, b in (sc.get("search") or {}).get("backends", {}).items():
        lines += ["", f"(6) search on {label} (seeded in {b['seed_seconds']} s, {b['database_mib']} MiB): "
                      "p50 / p95 / p99 ms (mean hits per page)", "",
                  "| user | query | p50 | p95 | p99 | hits |", "|---|---|---:|---:|---:|---:|"]
        for who in ("everything", "typical"):
            for kind, v in b[who]["by_kind"].items():
                lines.append(f"| {who} | {kind} | {v['p50_ms']} | {v['p95_ms']} | {v['p99_ms']} | {v['mean_hits']} |")
    if "agentstream" in sc and "steps" in sc["agentstream"]:
        import agentstream  # noqa: PLC0415 (bench/agentstream.py, next to this file)
        lines += agentstream.markdown(sc["agentstream"])
    d = sc.get("documents") or {}
    if "indexing" in d:
        i, r = d["indexing"], d.get("retrieval") or {}
        lines += ["", f"(7) documents ({d['model']}): indexing {i['documents']} PDFs, {i['pages']} pages: "
                      f"{i['pages_per_sec']} pages/s full text ({i['indexed_seconds']} s), "
                      f"{i['pages_per_sec_with_embeddings']} pages/s with embeddings ({i['embedded_seconds']} s)."]
        for label in ("full_text", "hybrid"):
            if label in r:
                v = r[label]
                lines.append(f"- retrieval, {r['documents']:,} documents in one thread, {label}: "
                             f"p50 {v['p50_ms']} ms, p95 {v['p95_ms']} ms, p99 {v['p99_ms']} ms ({v['n']} questions)")
    if "crosscheck" in sc and "k6" in sc["crosscheck"]:
        x = sc["crosscheck"]
        lines += ["", f"Cross-check, {x['subscribers']} subscribers at {x['rate']} msg/s: "
                      f"`emergence load` p50 {fmt(x['emergence_load']['latency_ms']['p50'])} ms, "
                      f"p99 {fmt(x['emergence_load']['latency_ms']['p99'])} ms, "
                      f"{fmt(x['emergence_load']['deliveries_per_sec'])} deliveries/s; "
                      f"k6 p50 {fmt(x['k6']['latency_ms']['p50'])} ms, p99 {fmt(x['k6']['latency_ms']['p99'])} ms, "
                      f"{x['k6']['deliveries']} of {x['k6']['expected']} deliveries."]
    prof = sc.get("profile") or {}
    for phase, v in prof.items():
        if not isinstance(v, dict):
            continue
        for tool in ("strace", "perf"):
            t = v.get(tool)
            if not t:
                continue
            split = f" CPU samples by object: {'; '.join(t['by_dso'])}." if t.get("by_dso") else ""
            lines += ["", f"Profile: {phase} under {tool} ({fmt(t['load']['throughput_per_sec'])}/s during the run)."
                          f"{split}", "", "```", (t.get("syscalls") or t.get("top_symbols") or "").strip(), "```"]
    for k, v in sc.items():
        if "failed" in v:
            lines += ["", f"Scenario {k} FAILED: {v['failed']}"]
        if "skipped" in v:
            lines += ["", f"Scenario {k} skipped: {v['skipped']}"]
    return "\n".join(lines) + "\n"
