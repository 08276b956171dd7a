#!/usr/bin/env python3
"""Draw a bench run as SVG charts (standard library only).

    bench/charts.py bench/results/<run>.json [OUTDIR]

writes, next to the run (or into OUTDIR), one SVG per scenario that the run holds:

  <run>-fanout.svg    p99 delivery latency against deliveries/s, one line per system, with
                      the 50 ms target (the fan-out curve: where each system stops keeping up)
  <run>-idle.svg      server memory per idle WebSocket, per system
  <run>-persist.svg   persisted messages/s, SQLite and PostgreSQL, each run and the median
  <run>-static.svg    requests/s for the hashed bundle, per system
  <run>-coldstart.svg exec to first 200 and to ready, median of the runs
  <run>-agentstream.svg chunk p99 latency against concurrent agent answers (3 watchers each), one
                      line per system, with the 100 ms target; failed steps drawn hollow

`bench/bench.py` calls it after every run; docs/performance.md embeds the official run's.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from html import escape
from pathlib import Path

W, H = 720, 400
LEFT, RIGHT, TOP, BOTTOM = 80, 170, 40, 60
COLORS = {
    "emergence": "#2563eb",
    "node-ws": "#16a34a",
    "node-relay": "#16a34a",
    "nginx": "#16a34a",
    "fastapi": "#dc2626",
    "floor": "#6b7280",
    "floor-sweep": "#111827",
    "sqlite": "#2563eb",
    "postgres": "#7c3aed",
}
FALLBACK = ["#0891b2", "#ca8a04", "#db2777", "#4b5563"]


def color(name: str, i: int) -> str:
    return COLORS.get(name, FALLBACK[i % len(FALLBACK)])


def svg(title: str, body: list[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
            f'<rect width="{W}" height="{H}" fill="#ffffff"/>',
            f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
            f"{escape(title)}</text>",
            *body,
            "</svg>",
        ]
    )


def nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def fmt(v: float) -> str:
    if v >= 1_000_000:
        return f"{v / 1_000_000:.3g}M"
    if v >= 1_000:
        return f"{v / 1_000:.3g}k"
    return f"{v:.3g}"


def axes(xlabel: str, ylabel: str, xticks, yticks) -> list[str]:
    """xticks / yticks: [(pixel, label)]."""
    x0, y0, x1, y1 = LEFT, H - BOTTOM, W - RIGHT, TOP
    out = [
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#111"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#111"/>',
        f'<text x="{(x0 + x1) / 2}" y="{H - 18}" text-anchor="middle">{escape(xlabel)}</text>',
        f'<text x="18" y="{(y0 + y1) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {(y0 + y1) / 2})">{escape(ylabel)}</text>',
    ]
    for px, label in xticks:
        out.append(f'<line x1="{px}" y1="{y0}" x2="{px}" y2="{y0 + 5}" stroke="#111"/>')
        out.append(f'<text x="{px}" y="{y0 + 18}" text-anchor="middle">{escape(label)}</text>')
    for py, label in yticks:
        out.append(f'<line x1="{x0 - 5}" y1="{py}" x2="{x1}" y2="{py}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{x0 - 8}" y="{py + 4}" text-anchor="end">{escape(label)}</text>')
    return out


def legend(names: list[str]) -> list[str]:
    out = []
    for i, n in enumerate(names):
        y = TOP + 10 + i * 20
        out.append(f'<rect x="{W - RIGHT + 15}" y="{y - 9}" width="12" height="12" fill="{color(n, i)}"/>')
        out.append(f'<text x="{W - RIGHT + 33}" y="{y + 1}">{escape(n)}</text>')
    return out


def latency_plane(xmax: float, yhi: float, ylo: float = 1.0):
    """Linear x from 0 to `xmax`, log-scale latency y from `ylo` to `yhi` ms: the two mappings
    and their ticks (five x steps, one y tick per decade)."""
    x0, y0, x1, y1 = LEFT, H - BOTTOM, W - RIGHT, TOP

    def px(x):
        return x0 + (x1 - x0) * x / xmax

    def py(y):
        y = min(max(y, ylo), yhi)
        return y0 - (y0 - y1) * (math.log10(y) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo))

    xt = [(px(xmax * i / 5), fmt(xmax * i / 5)) for i in range(6)]
    yt = []
    v = ylo
    while v <= yhi:
        yt.append((py(v), f"{v:g} ms"))
        v *= 10
    return px, py, xt, yt


def fanout(s: dict) -> str | None:
    steps = s.get("steps") or {}
    if not steps:
        return None
    xmax = max((st.get("deliveries_per_sec") or 0 for v in steps.values() for st in v), default=0)
    if not xmax:
        return None  # every run failed: nothing to draw
    xmax = nice_max(xmax)
    # p99 on a log scale from 1 ms to the worst step (at least 1 s).
    worst = max((st.get("p99_ms") or 0 for v in steps.values() for st in v if math.isfinite(st.get("p99_ms") or 0)), default=0)
    px, py, xt, yt = latency_plane(xmax, max(1000.0, nice_max(worst)))
    x0, y0, x1, y1 = LEFT, H - BOTTOM, W - RIGHT, TOP
    body = axes("deliveries per second (1,000 subscribers in one thread)", "p99 latency (log)", xt, yt)
    body.append(f'<line x1="{x0}" y1="{py(50)}" x2="{x1}" y2="{py(50)}" stroke="#9ca3af" stroke-dasharray="6 4"/>')
    body.append(f'<text x="{x1 - 4}" y="{py(50) - 5}" text-anchor="end" fill="#6b7280">50 ms target</text>')
    names = list(steps)
    for i, name in enumerate(names):
        pts = [(st.get("deliveries_per_sec") or 0, st.get("p99_ms")) for st in steps[name]]
        pts = [(x, y) for x, y in pts if y is not None and math.isfinite(y)]
        if not pts:
            continue
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        body.append(f'<polyline points="{path}" fill="none" stroke="{color(name, i)}" stroke-width="2"/>')
        for x, y in pts:
            body.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color(name, i)}"/>')
    body += legend(names)
    return svg("Fan-out: p99 latency against throughput", body)


def bars(title: str, ylabel: str, values: list[tuple[str, float, list[float]]], unit: str) -> str:
    """values: (name, bar value, individual runs drawn as dots)."""
    ymax = nice_max(max([v for _, v, _ in values] + [max(r) for _, _, r in values if r] + [0]))
    x0, y0, x1, y1 = LEFT, H - BOTTOM, W - RIGHT, TOP

    def py(y):
        return y0 - (y0 - y1) * y / ymax

    yt = [(py(ymax * i / 5), fmt(ymax * i / 5)) for i in range(6)]
    slot = (x1 - x0) / max(1, len(values))
    xt = [(x0 + slot * (i + 0.5), n) for i, (n, _, _) in enumerate(values)]
    body = axes("", ylabel, xt, yt)
    for i, (name, v, runs) in enumerate(values):
        cx = x0 + slot * (i + 0.5)
        w = min(80, slot * 0.6)
        body.append(
            f'<rect x="{cx - w / 2:.1f}" y="{py(v):.1f}" width="{w:.1f}" height="{y0 - py(v):.1f}" '
            f'fill="{color(name, i)}" opacity="0.85"/>'
        )
        body.append(f'<text x="{cx:.1f}" y="{py(v) - 6:.1f}" text-anchor="middle">{fmt(v)}{unit}</text>')
        for r in runs:
            body.append(f'<circle cx="{cx:.1f}" cy="{py(r):.1f}" r="3" fill="#111" opacity="0.6"/>')
    return svg(title, body)


def idle(s: dict) -> str | None:
    runs = s.get("runs") or {}
    vals = [(n, r.get("kib_per_connection") or 0, []) for n, r in runs.items() if r.get("kib_per_connection")]
    if not vals:
        return None
    return bars(f"Idle WebSockets: server memory per connection ({s.get('connections', '?')} open)",
                "KiB per connection", vals, " KiB")


def persist(s: dict) -> str | None:
    runs = s.get("runs") or {}
    vals = []
    for backend, rs in runs.items():
        tps = [r.get("throughput_per_sec") or 0 for r in rs if isinstance(r, dict)]
        if tps:
            vals.append((backend, statistics.median(tps), tps))
    if not vals:
        return None
    return bars("Persisted messages per second (median of the runs)", "messages / s", vals, "")


def static(s: dict) -> str | None:
    runs = s.get("runs") or {}
    vals = []
    for name, rs in runs.items():
        rps = [r.get("rps") or 0 for r in rs if isinstance(r, dict)]
        if rps:
            vals.append((name, statistics.median(rps), rps))
    if not vals:
        return None
    return bars("The hashed JS bundle: requests per second (median)", "requests / s", vals, "")


def coldstart(s: dict) -> str | None:
    runs = (s.get("runs") or {}).get("emergence") or []
    first = [r["first_200_ms"] for r in runs if r.get("first_200_ms")]
    ready = [r["ready_ms"] for r in runs if r.get("ready_ms")]
    if not first:
        return None
    vals = [("first 200", statistics.median(first), first), ("ready", statistics.median(ready), ready)]
    return bars("Cold start: exec to first answer and to ready (median)", "milliseconds", vals, " ms")


def agentstream(s: dict) -> str | None:
    steps = {k: [st for st in v if st.get("p99_ms") is not None] for k, v in (s.get("steps") or {}).items()}
    pts_all = [st for v in steps.values() for st in v]
    if not pts_all:
        return None
    xmax = nice_max(max(st["answers"] for st in pts_all))
    px, py, xt, yt = latency_plane(xmax, max(1000.0, nice_max(max(st["p99_ms"] for st in pts_all))))
    x0, y0, x1, y1 = LEFT, H - BOTTOM, W - RIGHT, TOP
    body = axes(f"concurrent agent answers S ({s.get('watchers', 3)} watchers each)", "chunk p99 latency (log)",
                xt, yt)
    lim = s.get("limit_p99_ms", 100)
    body.append(f'<line x1="{x0}" y1="{py(lim)}" x2="{x1}" y2="{py(lim)}" stroke="#9ca3af" stroke-dasharray="6 4"/>')
    body.append(f'<text x="{x1 - 4}" y="{py(lim) - 5}" text-anchor="end" fill="#6b7280">{lim:g} ms target</text>')
    names = list(steps)
    for i, name in enumerate(names):
        pts = [(st["answers"], st["p99_ms"], st.get("ok")) for st in steps[name]]
        if not pts:
            continue
        c = color(name, i)
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _ in pts)
        body.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for x, y, ok in pts:
            fill = c if ok else "#ffffff"
            body.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{fill}" stroke="{c}" stroke-width="2"/>')
    body += legend(names)
    return svg("Agent streams: chunk p99 against concurrent answers", body)


DRAW = {"agentstream": agentstream, "fanout": fanout, "idle": idle, "persist": persist, "static": static, "coldstart": coldstart}


def draw(run: Path, outdir: Path | None = None) -> list[Path]:
    data = json.loads(run.read_text())
    outdir = outdir or run.parent
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, scenario in (data.get("scenarios") or {}).items():
        fn = DRAW.get(name)
        if not fn or not isinstance(scenario, dict):
            continue
        chart = fn(scenario)
        if chart:
            out = outdir / f"{run.stem}-{name}.svg"
            out.write_text(chart)
            written.append(out)
    return written


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in draw(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None):
        print(p)
