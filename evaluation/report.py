"""The reports of an offline evaluation: report.md (one table row per model) and a plot of
NDCG@10 against long-tail coverage, each written to a temporary name and then renamed."""

from __future__ import annotations

import os

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
    """A markdown page: the split, the case counts and one table row per model."""
    lines = [
        f"# {report['dataset']}: {report['protocol']}",
        "",
        f"Cutoff {report['cutoff']}; train {report['train_events']:,} events, test "
        f"{report['test_events']:,}; {report['cases']['warm']} warm cases, "
        f"{report['cases']['fresh']} fresh cases.",
        "",
        "| model | " + " | ".join(name for name, _ in METRIC_COLUMNS) + " |",
        "|---|" + "---|" * len(METRIC_COLUMNS),
    ]
    for name, metrics in report["models"].items():
        cells = [_fmt(get(metrics)) for _, get in METRIC_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
