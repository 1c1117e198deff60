"""The report's plot: the primary metric (CTR) of each arm over time, cumulative by day, with
its interval (the `daily` rows of models/experiments/report.py).

    recsys experiment report NAME --store ./artifacts --plot ctr.png
"""

from __future__ import annotations


def plot_daily(report: dict, path: str, metric: str = "ctr") -> None:
    """Writes a PNG of `metric` per arm at each daily look, with its (1 - alpha) band.

    Args:
        report: experiment_report's dict.
        path: the image file to write (its format from the suffix, e.g. .png, .svg).
        metric: a metric of the daily rows (ctr, conversion_rate, value_per_user).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm in report["arms"]:
        rows = [r for r in report["daily"] if r["arm"] == arm and r["metric"] == metric
                and r["value"] is not None]
        if not rows:
            continue
        days = [r["day"] for r in rows]
        line, = ax.plot(days, [r["value"] for r in rows], marker="o", ms=3,
                        label=f"{arm} ({report['arms'][arm]['version']})")
        ax.fill_between(days, [r["ci_low"] for r in rows], [r["ci_high"] for r in rows],
                        color=line.get_color(), alpha=0.2, lw=0)
    coverage = 1 - report["alpha"]
    ax.set_xlabel("day since the start (cumulative)")
    ax.set_ylabel(f"{metric} ({coverage:.0%} interval)")
    winner = report["winner"] or "none yet"
    ax.set_title(f"experiment {report['experiment']}: {metric} per arm (winner: {winner})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
