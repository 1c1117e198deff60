"""The experiment report as `recsys experiment report` prints it: a table per arm, the
differences with their intervals, the sample-ratio check, the guardrails and the verdict.

    python -c "from models.experiments.report_text import report_text; import json;
    print(report_text(json.load(open('report.json'))))"
"""

from __future__ import annotations

from datetime import UTC, datetime

METRICS = ("ctr", "conversion_rate", "value_per_user", "retention_7d")


def _pct(x, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def _num(x, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def _table(rows: list[tuple]) -> list[str]:
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _diff_cells(metric: str, d: dict) -> tuple[str, str]:
    """(difference, interval): rates in percentage points, value per user as is."""
    if d["difference"] is None:
        return "-", "no data"
    if metric == "value_per_user":
        return f"{d['difference']:+.3f}", f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
    return (f"{100 * d['difference']:+.2f} pts",
            f"[{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}]")


def report_text(report: dict) -> str:
    """The readable report (what `recsys experiment report` prints)."""
    days = (report["now_ms"] - report["started_ms"]) / 86_400_000
    cover = f"{1 - report['alpha']:.0%}"
    lines = [f"experiment {report['experiment']}: from {_when(report['started_ms'])} to "
             f"{_when(report['now_ms'])} ({days:.1f} days); control {report['control']}; "
             f"primary metric {report['primary_metric']}", ""]
    rows = [("arm", "version", "share", "users", "impressions", "CTR", "conversion",
             "value/user", "AOV", "retention 7d (users)", "p99 ms", "errors", "fallback")]
    for name, a in report["arms"].items():
        rows.append((name, a["version"], f"{a['allocation'] / 100:g}%", a["users"],
                     a["impressions"], _pct(a["ctr"]), _pct(a["conversion_rate"]),
                     _num(a["value_per_user"], ".3f"), _num(a["aov"]),
                     f"{_pct(a['retention_7d'], 1)} ({a['retention_eligible']})",
                     _num(a["latency_p99_ms"], ".1f"), _pct(a["error_rate"]),
                     _pct(a["fallback_rate"])))
    lines += _table(rows)
    lines += ["", f"differences against {report['control']} ({cover} intervals for one look; "
              "p = always-valid mSPRT p-value, valid at every daily look; significant: "
              f"p < {report['alpha']:g})"]
    rows = [("arm", "metric", "difference", "interval", "p", "significant")]
    for arm, metrics in report["differences"].items():
        for metric in METRICS:
            d = metrics[metric]
            diff, interval = _diff_cells(metric, d)
            rows.append((arm, metric, diff, interval, _num(d["p_value"], ".3g"),
                         "yes" if d["significant"] else "no"))
    lines += _table(rows)
    srm = report["srm"]
    counts = ", ".join(f"{arm} {n}" for arm, n in srm["counts"].items())
    lines += ["", f"sample ratio: users {counts} against the allocations: chi-square p = "
              f"{srm['p_value']:.3g} — " + ("MISMATCH (the assignment or the logging is "
                                            "broken)" if srm["flagged"] else "ok")]
    for arm, g in report["guardrails"].items():
        if arm == report["control"]:
            continue
        lines.append(f"guardrails of {arm}: " + ("hold" if g["ok"] else
                                                 "BREACHED: " + "; ".join(g["breaches"])))
    need = report["sample_size_per_arm"]
    lines.append(f"recommended users per arm for a {report['min_lift']:.0%} CTR lift: "
                 + (str(need) if need else "unknown until the control has clicks"))
    lines += ["", f"verdict: {report['verdict']}"]
    return "\n".join(lines)
