"""The serving benchmark's output (benchmarks/serving.py): one table of every kind's figures,
and a latency plot."""

from __future__ import annotations

import numpy as np

from benchmarks.serving_load import PERCENTILES
from benchmarks.serving_metrics import summary_line

COLUMNS = ("kind", "cached req/s", "cached p50/p99 ms", "bare req/s", "bare p50/p99 ms",
           "fresh req/s", "fresh p50/p99 ms", "cold start s", "RSS MB", "heavy modules")


def summary_table(result: dict) -> str:
    """The summary lines: a row per kind, the checks, the served training and the load."""
    rows = [COLUMNS]
    for kind, r in result["kinds"].items():
        c, b, f = r["cached"], r["bare"], r["fresh"]
        rows.append((kind, f"{c['rps']:,.0f}", f"{c['p50_ms']:.1f} / {c['p99_ms']:.1f}",
                     f"{b['rps']:,.0f}", f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f}",
                     f"{f['rps']:.0f}", f"{f['p50_ms']:.1f} / {f['p99_ms']:.1f}",
                     f"{r['cold_start_s']:.2f}", f"{r['server']['rss_mb']:.0f}",
                     ",".join(r["server"]["heavy_modules_mapped"]) or "none"))
    widths = [max(len(str(row[n])) for row in rows) for n in range(len(COLUMNS))]
    lines = [" | ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    for kind, r in result["kinds"].items():
        checks = r["checks"]
        flags = " ".join(f"{k}={'yes' if v else 'NO'}" for k, v in checks.items()
                         if k.endswith("_ok"))
        f, e = r["fresh"], r["cached_experiment"]
        lines.append(f"{kind}: cached with an experiment running (50/50, current vs a second "
                     f"version): {e['rps']:,.0f} req/s, p50/p99 {e['p50_ms']:.1f} / "
                     f"{e['p99_ms']:.1f} ms, ratio_to_cached {e['ratio_to_cached']}")
        lines.append(summary_line(kind, r["metrics"]))
        if "similar" in r:  # benchmarks/serving_similar.py
            s = r["similar"]
            lines.append(f"{kind}: similar (cached neighbours, k=10): {s['rps']:,.0f} req/s, "
                         f"p50/p99 {s['p50_ms']:.1f} / {s['p99_ms']:.1f} ms; similar/bare req/s "
                         f"{checks['similar_rps_over_bare']}, p99 "
                         f"{checks['similar_p99_over_bare']}")
        lines.append(f"{kind}: {flags}; cached/bare req/s {checks['cached_rps_over_bare']}; "
                     f"fresh errors {f['errors']}, sources {f['sources']}; cold starts "
                     f"{r['cold_starts_s']} s; load average "
                     f"{r['load_average']['before'][0]:.2f} -> "
                     f"{r['load_average']['after'][0]:.2f}")
    if "served" in result["kinds"]:
        b = result["kinds"]["served"]["bundle"]
        lines.append(f"served bundle: {b['users']:,} users x {b['items']:,} items, "
                     f"{b['events']:,} events, config {b['config']}; trained in "
                     f"{b.get('train_seconds', '?')} s, exported in "
                     f"{b.get('export_seconds', '?')} s, {b['bundle_mb']} MB; lists "
                     f"{b['lists_ms_per_user']} ms per user")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    """Per kind: the fresh path's latency histogram, and the latency percentiles of the
    cached, bare and fresh paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = result["kinds"]
    fig, axes = plt.subplots(len(kinds), 2, figsize=(12, 4.5 * len(kinds)), squeeze=False)
    for (kind, r), (left, right) in zip(kinds.items(), axes, strict=True):
        fresh = r["fresh"]
        left.hist(fresh["latencies_ms"], bins=60, color="tab:green")
        left.axvline(fresh["p99_ms"], color="k", ls="--", label=f"p99 {fresh['p99_ms']:.1f} ms")
        left.set(title=f"{kind}: fresh (on demand) at {result['settings']['fresh_rate']:g} "
                       f"req/s, {result['settings']['items']:,} items",
                 xlabel="latency (ms)", ylabel="requests")
        left.legend()
        for name, color in (("bare", "tab:gray"), ("cached", "tab:blue"),
                            ("cached_experiment", "tab:purple")):
            rounds = r[name]["rounds"]
            mid = sorted(rounds, key=lambda x: x["rps"])[len(rounds) // 2]
            qs = sorted(mid["percentiles"])
            right.plot(qs, [mid["percentiles"][q] for q in qs], "o-", color=color,
                       label=f"{name}: {r[name]['rps']:,.0f} req/s (wrk, median round)")
        qs = list(PERCENTILES)
        right.plot(qs, np.percentile(fresh["latencies_ms"], qs), "o-", color="tab:green",
                   label=f"fresh: {fresh['rps']:.0f} req/s (open loop)")
        right.set(title=f"{kind}: latency by percentile", xlabel="percentile",
                  ylabel="latency (ms)", yscale="log")
        right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
