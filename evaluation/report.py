"""The reports of an offline evaluation: report.md (what the figures mean, which model to
ship, one table row per model) and a plot of NDCG@10 against long-tail coverage, each written
to a temporary name and then renamed."""

from __future__ import annotations

import os

from models.evaluation import N_FRESH_HISTORY
from models.kinds import KINDS

METRIC_COLUMNS = (
    ("warm NDCG@10", lambda m: m["warm"]["ndcg@10"]),
    ("fresh NDCG@10", lambda m: m["fresh"]["ndcg@10"]),
    ("all NDCG@10", lambda m: m["all"]["ndcg@10"]),
    ("all NDCG@10 95% CI", lambda m: m["all"]["ndcg@10_ci"]),
    ("warm Recall@20", lambda m: m["warm"]["recall@20"]),
    ("fresh Recall@20", lambda m: m["fresh"]["recall@20"]),
    ("all Recall@20", lambda m: m["all"]["recall@20"]),
    ("all Recall@20 95% CI", lambda m: m["all"]["recall@20_ci"]),
    ("warm HR@10", lambda m: m["warm"]["hr@10"]),
    ("fresh HR@10", lambda m: m["fresh"]["hr@10"]),
    ("all HR@10", lambda m: m["all"]["hr@10"]),
    ("coverage@10", lambda m: m["coverage@10"]),
    ("long-tail cov.@10", lambda m: m["longtail_coverage@10"]),
    ("train s", lambda m: m["train_seconds"]),
)


def write_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown_report(report: dict) -> str:
    """A markdown page: what the split and the segments are, which model to ship, and one
    table row per model."""
    lines = [
        f"# {report['dataset']}: {report['protocol']}",
        "",
        *reading_guide(report),
        "",
        *ship_advice(report["models"]),
        "",
        "| model | " + " | ".join(name for name, _ in METRIC_COLUMNS) + " |",
        "|---|" + "---|" * len(METRIC_COLUMNS),
    ]
    for name, metrics in report["models"].items():
        cells = [_fmt(get(metrics)) for _, get in METRIC_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reading_guide(report: dict) -> list[str]:
    """What the cutoff, warm, fresh and all are, with this run's counts: a markdown list."""
    cases = report["cases"]
    return [
        f"- **Cutoff** {report['cutoff']}: the 0.8-quantile of the event timestamps. Every model "
        f"trains on the {report['train_events']:,} events before it and is scored on the "
        f"{report['test_events']:,} after it.",
        f"- **warm**: {cases['warm']:,} users seen before the cutoff, given the list built from "
        "their history (what the nightly precomputes); **fresh**: "
        f"{cases['fresh']:,} users first seen after it, given their first {N_FRESH_HISTORY} "
        "items as events (the on-demand path); **all**: both, each user one case.",
        "- A hit is a recommended item the user then interacted with (history excluded); "
        "95% CI: bootstrap interval over the cases.",
    ]


def ship_advice(models: dict[str, dict]) -> list[str]:
    """Which model to ship: the best on all NDCG@10, said with its 95% CI and whether that
    interval leaves the others behind; and the best the nightly can ship (`--model`)."""
    scored = {n: m for n, m in models.items() if m["all"]["ndcg@10"] is not None}
    if not scored:
        return ["**Ship**: no model could be scored (no case on the test side)."]
    ranked = sorted(scored, key=lambda n: -scored[n]["all"]["ndcg@10"])
    best = ranked[0]
    low = (scored[best]["all"]["ndcg@10_ci"] or [None])[0]
    tied = [n for n in ranked[1:] if low is None or _upper(scored[n]) >= low]
    line = f"**Ship {best}**: best on all NDCG@10, {_with_ci(best, scored[best])}"
    if len(ranked) == 1:
        line += " (the only model evaluated)."
    elif not tied:
        line += (f"; its interval is above every other model's (next: "
                 f"{_with_ci(ranked[1], scored[ranked[1]])}).")
    else:
        cheapest = min([best, *tied], key=lambda n: scored[n]["train_seconds"])
        line += (f"; its interval overlaps {', '.join(_with_ci(n, scored[n]) for n in tied)}: "
                 "on this data the difference may be noise")
        line += (f", and {cheapest} trains fastest ({scored[cheapest]['train_seconds']:.1f} s)."
                 if cheapest != best else ".")
    lines = [line]
    shippable = [n for n in ranked if n in KINDS]
    if best not in KINDS:
        lines.append(
            f"`recsys nightly --model` serves {', '.join(sorted(KINDS))}: "
            + (f"of those, {_with_ci(shippable[0], scored[shippable[0]])} is best here."
               if shippable else "none of them was evaluated here (add them to --models)."))
    return lines


def _upper(metrics: dict) -> float:
    ci = metrics["all"]["ndcg@10_ci"]
    return metrics["all"]["ndcg@10"] if ci is None else ci[1]


def _with_ci(name: str, metrics: dict) -> str:
    ci = metrics["all"]["ndcg@10_ci"]
    return f"{name} {_fmt(metrics['all']['ndcg@10'])}" + (f" {_fmt(ci)}" if ci else "")


def plot_ndcg_vs_longtail(report: dict, path: str) -> None:
    """Scatter of all-cases NDCG@10 against long-tail coverage@10, one labelled point a model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, m in report["models"].items():
        x, y = m["longtail_coverage@10"], m["all"]["ndcg@10"]
        ax.scatter([x], [y])
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("long-tail coverage@10")
    ax.set_ylabel("NDCG@10 (all cases)")
    ax.set_title(f"{report['dataset']}: {report['protocol']}, cutoff {report['cutoff']}")
    ax.grid(alpha=0.3)
    ax.margins(x=0.3, y=0.2)
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
