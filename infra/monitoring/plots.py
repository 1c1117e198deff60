"""The dashboard's panels as PNG plots, drawn from a Prometheus server's range queries.

Where no Grafana runs (the docs, a test run), the same rows and queries (panels.ROWS) render
as one PNG per row, a subplot per panel:

    python -m infra.monitoring.plots --prometheus http://localhost:9090 --out plots/ \
        --minutes 30

Each query goes through /api/v1/query_range; a Prometheus error (a bad query) raises with
Prometheus' own message. Legends follow Grafana's `{{label}}` templates.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from infra.monitoring.panels import ROWS, Panel

log = logging.getLogger(__name__)
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class PrometheusError(RuntimeError):
    """Prometheus refused a query (its message included)."""


def query_range(url: str, expr: str, start: float, end: float, step: float,
                timeout: float = 30) -> list[dict]:
    """The `matrix` result of one range query: [{"metric": labels, "values": [[t, "v"]...]}].

    Raises:
        PrometheusError: the server answered with an error (e.g. a PromQL parse error).
    """
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query_range?{params}",
                                    timeout=timeout) as answer:
            body = json.load(answer)
    except urllib.error.HTTPError as e:  # 400/422 carry Prometheus' JSON error
        body = json.load(e)
    if body.get("status") != "success":
        raise PrometheusError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


def legend(template: str, labels: dict) -> str:
    """Grafana's legend template filled with a series' labels (`__auto`/empty: the labels)."""
    if template and template != "__auto":
        return LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), template)
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"


def _draw(ax, panel: Panel, series: list[tuple[str, list, list]]) -> None:
    ax.set_title(panel.title, fontsize=9)
    if not series:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    if panel.kind == "stat":
        name, _, values = series[0]
        finite = [v for v in values if math.isfinite(v)]
        text = f"{finite[-1]:.4g}" if finite else "NaN"
        unit = {"s": " s", "percentunit": ""}.get(panel.unit, "")
        ax.text(0.5, 0.5, text + unit, ha="center", va="center", fontsize=20,
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    for name, times, values in series:
        ax.plot(times, values, label=name, linewidth=1, marker="." if len(values) < 3 else None)
    if panel.unit == "percentunit":  # decimals as the range needs (not "1% 1% 1%")
        from matplotlib.ticker import PercentFormatter

        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    elif panel.unit in ("s", "reqps"):
        ax.set_ylabel({"s": "seconds", "reqps": "per second"}[panel.unit], fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="best")


def render(url: str, out: Path, start: float, end: float, step: float | None = None
           ) -> dict[str, list[str]]:
    """Writes `<out>/<n>-<row>.png` per dashboard row.

    Returns:
        Row file name -> titles of its panels that had no data (empty lists: all had data).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = step or max(1.0, (end - start) / 200)
    out.mkdir(parents=True, exist_ok=True)
    empty: dict[str, list[str]] = {}
    for n, row in enumerate(ROWS, 1):
        columns = min(len(row.panels), 4)
        lines = -(-len(row.panels) // columns)
        fig, axes = plt.subplots(lines, columns, figsize=(4 * columns, 3 * lines),
                                 squeeze=False)
        name = f"{n}-{re.sub(r'[^a-z0-9]+', '-', row.title.lower()).strip('-')}.png"
        empty[name] = []
        for ax, panel in zip(axes.flat, row.panels, strict=False):
            series = []
            for q in panel.queries:
                for result in query_range(url, q.expr, start, end, step):
                    times = [float(t) - end for t, _ in result["values"]]
                    values = [float(v) for _, v in result["values"]]
                    series.append((legend(q.legend, result["metric"]), times, values))
            if not series:
                empty[name].append(panel.title)
            _draw(ax, panel, series)
        for ax in list(axes.flat)[len(row.panels):]:
            ax.set_axis_off()
        fig.suptitle(f"{row.title} (x: seconds before the end)", fontsize=11)
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        log.info("wrote %s", out / name)
    return empty


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.monitoring.plots",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--minutes", type=float, default=30.0, help="time range, ending now")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    end = time.time()
    try:
        empty = render(args.prometheus, args.out, end - args.minutes * 60, end)
    except (OSError, ValueError, PrometheusError) as e:  # ValueError: an answer not JSON
        print(f"Error: {e}", file=sys.stderr)
        return 1
    for name, titles in empty.items():
        if titles:
            print(f"{name}: no data for {', '.join(titles)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
