"""Summarise an A/B run of bench/ab: one row per figure, old and new medians and the ratio."""
import datetime as dt
import json
import os
import statistics
import sys
from pathlib import Path

# (label, path into scenarios, True when higher is better)
FIGURES = [
    ("static: bundle req/s", ("static", "median_rps", "emergence"), True),
    ("static: p99 ms", ("static", "median_p99_ms", "emergence"), False),
    ("fan-out: deliveries/s with p99 <= 50 ms", ("fanout", "deliveries_at_50ms", "emergence"), True),
    ("fan-out: peak deliveries/s", ("fanout", "peak_deliveries", "emergence"), True),
    ("fan-out: deliveries/s keeping up", ("fanout", "deliveries_keeping_up", "emergence"), True),
    ("idle: KiB per connection", ("idle", "runs", "emergence", "kib_per_connection"), False),
    ("cold start: first 200 ms", ("coldstart", "median_first_200_ms", "emergence"), False),
    ("cold start: ready ms", ("coldstart", "median_ready_ms", "emergence"), False),
    ("persist SQLite msgs/s", ("persist", "median_msgs_per_sec", "sqlite"), True),
    ("persist PostgreSQL msgs/s", ("persist", "median_msgs_per_sec", "postgres"), True),
    ("cross-check: own p99 ms", ("crosscheck", "emergence_load", "latency_ms", "p99"), False),
]


def dig(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d if isinstance(d, (int, float)) else None


def main() -> int:
    old_bin, new_bin, *runs = sys.argv[1:]
    sides: dict[str, list[dict]] = {"old": [], "new": []}
    for r in runs:
        side, path = r.split("=", 1)
        sides[side].append(json.loads(Path(path).read_text())["scenarios"])
    lines = [f"# Same-minute A/B over every scenario: old `{old_bin}` vs new `{new_bin}`", "",
             "Order old, new, new, old; one repetition per point each; peers skipped; one load generator "
             f"(`{os.environ.get('AB_LOAD_BIN') or new_bin}`) for both. Figures are the median of each side's runs.", "",
             "| figure | old | new | new/old | worse by |", "|---|---:|---:|---:|---:|"]
    worst = 0.0
    for label, path, higher in FIGURES:
        o = [v for v in (dig(s, path) for s in sides["old"]) if v is not None]
        n = [v for v in (dig(s, path) for s in sides["new"]) if v is not None]
        if not o or not n:
            lines.append(f"| {label} | {o or '-'} | {n or '-'} | - | - |")
            continue
        mo, mn = statistics.median(o), statistics.median(n)
        ratio = mn / mo if mo else float("nan")
        worse = (1 - ratio) if higher else (ratio - 1)
        worst = max(worst, worse)
        lines.append(f"| {label} | {mo:,.2f} | {mn:,.2f} | {ratio:.3f} | {max(0.0, worse) * 100:.1f} % |")
    lines += ["", f"Worst regression: {worst * 100:.1f} %.", "", "Runs: " + ", ".join(runs)]
    md = "\n".join(lines) + "\n"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(__file__).parent / "results" / f"{stamp}-ab-all.md"
    out.write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
