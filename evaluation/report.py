"""The reports of an offline evaluation: report.md (what the figures mean, which model to
ship, one table row per model, the candidate pools' recall; with several datasets a section
each, then a summary) and a plot of NDCG@10 against long-tail coverage, each written to a
temporary name and then renamed."""

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


# Leave-one-out with sampled negatives: one segment, every user.
LOO_COLUMNS = (
    ("HR@10", lambda m: m["all"]["hr@10"]),
    ("HR@10 95% CI", lambda m: m["all"]["hr@10_ci"]),
    ("NDCG@10", lambda m: m["all"]["ndcg@10"]),
    ("NDCG@10 95% CI", lambda m: m["all"]["ndcg@10_ci"]),
    ("mean rank", lambda m: m["all"]["mean_rank"]),
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
    """A markdown page: per dataset what the split and the segments are, which model to ship,
    one table row per model and the candidate pools' recall; with several datasets
    (`run_evaluation`'s {"datasets", "summary"}) a section each, then the summary."""
    if "datasets" not in report:
        lines = [f"# {report['dataset']}: {report['protocol']}", "", *dataset_section(report)]
    else:
        lines = [f"# {len(report['datasets'])} datasets: {report['protocol']}", ""]
        for n, one in enumerate(report["datasets"], 1):
            lines += [f"## {n}. {one['dataset']}", "", *dataset_section(one), ""]
        lines += ["## Summary", "", *summary_table(report["summary"])]
    return "\n".join(lines) + "\n"


def dataset_section(report: dict) -> list[str]:
    """One dataset's guide, advice, metrics table and pool recall table (markdown lines)."""
    if report["protocol"] == "loo-sampled":
        lines = [*loo_guide(report), "", *metrics_table(report["models"], LOO_COLUMNS,
                                                            ("hr@10", "ndcg@10"))]
    else:
        lines = [*reading_guide(report), "", *ship_advice(report["models"]), "",
                 *metrics_table(report["models"], METRIC_COLUMNS, ("ndcg@10",))]
    if report.get("pool_recall"):
        lines += ["", *pool_table(report["pool_recall"])]
    lines += [pool_effect_line(n, m["pool"]) for n, m in report["models"].items() if m.get("pool")]
    return lines


def pool_effect_line(name: str, pool: dict) -> str:
    """What a LOO-S run says of a model's scores outside its candidate pool (one sentence)."""
    return (f"\n{name}: the held-out item is in its pool for {_fmt(pool['positive_in_pool'])} "
            f"of the users, HR@10 {_fmt(pool['hr@10_in_pool'])} for them and "
            f"{_fmt(pool['hr@10_out_of_pool'])} for the others; of "
            f"{_fmt(pool['negatives_out_of_pool'])} negatives per user outside its pool, "
            f"{_fmt(pool['out_of_pool_at_or_above'])} score at or above the held-out item.")


def metrics_table(models: dict[str, dict], columns, ratios: tuple[str, ...]) -> list[str]:
    """One row per model; with popularity among them, each `ratios` metric (of "all") over
    popularity's too."""
    pop = models.get("popularity")
    extra = [(f"all {r.upper()} / popularity's",
              lambda m, r=r: _ratio(m["all"][r], pop["all"][r])) for r in ratios] if pop else []
    cols = [*columns[:-1], *extra, columns[-1]]
    lines = ["| model | " + " | ".join(name for name, _ in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for name, metrics in models.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(get(metrics)) for _, get in cols) + " |")
    return lines


def _ratio(value, base):
    return None if value is None or not base else value / base


def loo_guide(report: dict) -> list[str]:
    """What the leave-one-out protocol measured, with this run's counts: a markdown list."""
    return [
        f"- **Leave-one-out, sampled negatives**: each of {report['cases']['all']:,} users' "
        f"latest item is held out and ranked among {report['negatives']} items they never "
        f"touched, drawn from the {report['train_catalog']:,}-item train catalog (the same "
        f"draw for every model); every model trains on the other {report['train_events']:,} "
        "events and scores the candidates it is given.",
        "- HR@10: the held-out item ranks in the top 10; NDCG@10 = 1 / log2(rank + 1) there; "
        "ties count against it. Coverage: the items in any user's top 10 of their candidates.",
        "- This protocol leaks time and samples the competition: it places our figures beside "
        "published ones (NCF); choose models on the temporal holdout (`--protocol th`).",
    ]


def pool_table(recall: dict[str, dict]) -> list[str]:
    """Share of the truth items reaching each candidate source, per model and segment."""
    lines = ["Candidate pools: share of the truth items that reach each source's candidates "
             "(\"pool\": their union), the most any ranking of them can find.", "",
             "| model | source | warm | fresh | all |", "|---|---|---|---|---|"]
    for name, segments in recall.items():
        for source in segments["all"]:
            lines.append(f"| {name} | {source} | " + " | ".join(
                _fmt(segments[s][source]) for s in ("warm", "fresh", "all")) + " |")
    return lines


def summarize(reports: list[dict]) -> dict:
    """Each model's headline figures on every dataset, over popularity's, and on how many
    datasets it beats popularity.

    Returns:
        {"datasets": [name...], "metrics": [...], "models": {model: [{metric: value,
        metric + "/popularity": ratio} per dataset]}, "above_popularity": {model: count}}.
    """
    metrics = ["ndcg@10", "hr@10", "coverage@10", "longtail_coverage@10"]
    models: dict[str, list[dict]] = {}
    above: dict[str, int] = {}
    for report in reports:
        pop = report["models"].get("popularity")
        for name, m in report["models"].items():
            row = {k: m["all"].get(k) if k in m["all"] else m.get(k) for k in metrics}
            if pop is not None:
                for k in ("ndcg@10", "hr@10"):
                    row[f"{k}/popularity"] = _ratio(row[k], pop["all"][k])
                beats = all(row[k] is not None and row[k] > pop["all"][k]
                            for k in ("ndcg@10", "hr@10")) and name != "popularity"
                above[name] = above.get(name, 0) + int(beats)
            models.setdefault(name, []).append(row)
    return {"datasets": [r["dataset"] for r in reports], "metrics": metrics, "models": models,
            "above_popularity": above}


def summary_table(summary: dict) -> list[str]:
    """A row per model: all HR@10 and NDCG@10 (× popularity's), coverage@10 and long-tail
    coverage@10 per dataset, and on how many datasets it beats popularity on both NDCG@10 and
    HR@10."""
    names = summary["datasets"]
    lines = ["| model | " + " | ".join(
        f"{n}. {d} HR@10 (× pop.) | {n}. NDCG@10 (× pop.) | {n}. coverage@10 | "
        f"{n}. long-tail cov.@10" for n, d in enumerate(names, 1)) + " | above popularity |",
        "|---|" + "---|" * (4 * len(names) + 1)]
    for model, rows in summary["models"].items():
        cells = []
        for row in rows:
            for metric in ("hr@10", "ndcg@10"):
                ratio = row.get(f"{metric}/popularity")
                cells.append(_fmt(row[metric]) + (f" ({ratio:.2f}×)" if ratio else ""))
            cells += [_fmt(row["coverage@10"]), _fmt(row["longtail_coverage@10"])]
        count = summary["above_popularity"].get(model)
        cells.append("–" if count is None or model == "popularity"
                     else f"{count} of {len(rows)}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


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
    when = f", cutoff {report['cutoff']}" if "cutoff" in report else ""
    ax.set_title(f"{report['dataset']}: {report['protocol']}{when}")
    ax.grid(alpha=0.3)
    ax.margins(x=0.3, y=0.2)
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
