"""The deployed twin of the dashboard and the rules: Cloud Monitoring over Google Managed
Prometheus, which answers the same PromQL (metric names as exported).

`python -m infra.monitoring` writes two files that terraform/modules/monitoring reads:

- dashboard.json: a `google_monitoring_dashboard` body (mosaic layout, one collapsible group
  per panels.Row, a line chart or a scorecard per panel, each query a `prometheusQuery`);
- alerts.json: one entry per alerts.ALERTS for `google_monitoring_alert_policy` with a
  `condition_prometheus_query_language` (query, duration, severity, runbook text).
"""

from __future__ import annotations

import json

from infra.monitoring.alerts import ALERTS, GROUP, Alert
from infra.monitoring.panels import ROWS, Panel

COLUMNS = 48  # the mosaic layout's width
TILE_HEIGHT, TILES_PER_ROW = 16, 4
SEVERITY = {"page": "CRITICAL", "ticket": "WARNING"}  # Cloud Monitoring's policy severities


def _widget(panel: Panel) -> dict:
    if panel.kind == "stat":
        if len(panel.queries) != 1:
            raise ValueError(f"stat panel {panel.title!r}: a scorecard shows one query")
        return {"title": panel.title,
                "scorecard": {"timeSeriesQuery": {"prometheusQuery": panel.queries[0].expr}}}
    data_sets = [{"timeSeriesQuery": {"prometheusQuery": q.expr}, "plotType": "LINE"}
                 for q in panel.queries]
    return {"title": panel.title, "xyChart": {"dataSets": data_sets,
                                              "yAxis": {"scale": "LINEAR"}}}


def dashboard() -> dict:
    """The Cloud Monitoring dashboard (without displayName: Terraform names it per environment)."""
    tiles, y = [], 0
    for row in ROWS:
        per_row = min(len(row.panels), TILES_PER_ROW)
        width = COLUMNS // per_row
        lines = -(-len(row.panels) // per_row)
        tiles.append({"xPos": 0, "yPos": y, "width": COLUMNS, "height": lines * TILE_HEIGHT,
                      "widget": {"title": row.title, "collapsibleGroup": {"collapsed": False}}})
        for i, panel in enumerate(row.panels):
            tiles.append({"xPos": (i % per_row) * width,
                          "yPos": y + (i // per_row) * TILE_HEIGHT,
                          "width": width, "height": TILE_HEIGHT, "widget": _widget(panel)})
        y += lines * TILE_HEIGHT
    return {"mosaicLayout": {"columns": COLUMNS, "tiles": tiles}}


def _documentation(a: Alert) -> str:
    return (f"{a.description}\n\nWhat to do: {a.runbook_url} (section {a.name}).\n\n"
            f"Query: `{a.expr}`")


def policies() -> dict:
    """Alert name -> what terraform/modules/monitoring needs to create its policy."""
    return {a.name: {"summary": a.summary,
                     "query": a.expr,
                     "duration": f"{a.hold_seconds}s",
                     "severity": SEVERITY[a.severity],
                     "labels": {"severity": a.severity},
                     "rule_group": GROUP,
                     "documentation": _documentation(a)}
            for a in ALERTS}


def to_text(document: dict) -> str:
    """The committed form: indented, keys sorted, one final newline."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def queries(document: dict) -> list[tuple[str, str]]:
    """(widget title, PromQL) of every chart and scorecard of a dashboard body."""
    found = []
    for tile in document["mosaicLayout"]["tiles"]:
        widget = tile["widget"]
        sets = widget.get("xyChart", {}).get("dataSets", [])
        sets += [widget["scorecard"]] if "scorecard" in widget else []
        found += [(widget["title"], s["timeSeriesQuery"]["prometheusQuery"]) for s in sets]
    return found
