"""terraform/modules/monitoring (python-hcl2, no Terraform binary; see test_wiring.py): the
Cloud Monitoring dashboard and one PromQL alert policy per Prometheus rule, read from the JSON
files `python -m infra.monitoring` generates, wired in the root with its notification channels.

    .venv-tf/bin/python -m pytest tests/terraform -q      # .ci/terraform-checks sets it up

Only the standard library and python-hcl2 here (the checks' venv has no project package):
tests/infra/test_monitoring.py checks that the JSON matches the code.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.terraform.test_wiring import REPO, TERRAFORM, _scalar, _unquote, blocks, load_dir

MODULE = TERRAFORM / "modules" / "monitoring"
RULES = REPO / "infra" / "monitoring" / "recsys.rules.yml"


def _resources(document: dict, kind: str) -> dict[str, dict]:
    found = {}
    for entry in document.get("resource", []):
        for resource_kind, named in entry.items():
            if _unquote(resource_kind) == kind:
                found.update({_unquote(name): body for name, body in named.items()})
    return found


def _one(value):
    """A nested block's body (python-hcl2 gives a list of one dict)."""
    value = _scalar(value)
    return value[0] if isinstance(value, list) else value


@pytest.fixture(scope="module")
def module():
    return load_dir(MODULE)


@pytest.fixture(scope="module")
def policies() -> dict:
    return json.loads((MODULE / "alerts.json").read_text())


def test_the_root_calls_the_module_with_its_notification_channels():
    call = blocks(load_dir(TERRAFORM), "module")["monitoring"]
    assert _scalar(call["source"]) == "./modules/monitoring"
    assert _scalar(call["notification_channels"]) == "${var.alert_notification_channels}"
    variable = blocks(load_dir(TERRAFORM), "variable")["alert_notification_channels"]
    assert _scalar(variable["type"]) == "${list(string)}"


def test_one_policy_per_generated_alert_with_a_promql_condition(module):
    policy = _resources(module, "google_monitoring_alert_policy")["main"]
    assert _scalar(policy["for_each"]) == "${local.alerts}"
    assert _scalar(policy["notification_channels"]) == "${var.notification_channels}"
    condition = _one(_one(policy["conditions"])["condition_prometheus_query_language"])
    assert _scalar(condition["query"]) == "${each.value.query}"
    assert _scalar(condition["duration"]) == "${each.value.duration}"
    assert "alerts.json" in str(module["locals"])


def test_the_dashboard_is_the_generated_json(module):
    dashboard = _resources(module, "google_monitoring_dashboard")["main"]
    assert "local.dashboard" in _scalar(dashboard["dashboard_json"])
    assert "dashboard.json" in str(module["locals"])


def test_every_prometheus_rule_has_a_policy(policies):
    rules = re.findall(r"(?m)^  - alert: (\w+)$", RULES.read_text())
    assert rules, f"{RULES} names no alert"
    assert sorted(policies) == sorted(rules)
    for name, policy in policies.items():
        assert re.fullmatch(r"\d+s", policy["duration"]), name
        assert policy["severity"] in ("CRITICAL", "WARNING"), name
        assert f"docs/OPERATIONS.md#{name.lower()}" in policy["documentation"], name


def test_the_dashboard_tiles_fit_the_grid_without_overlapping():
    layout = json.loads((MODULE / "dashboard.json").read_text())["mosaicLayout"]
    tiles = [t for t in layout["tiles"] if "collapsibleGroup" not in t["widget"]]
    cells = set()
    for tile in tiles:
        assert tile["xPos"] + tile["width"] <= layout["columns"], tile["widget"]["title"]
        area = {(x, y) for x in range(tile["xPos"], tile["xPos"] + tile["width"])
                for y in range(tile["yPos"], tile["yPos"] + tile["height"])}
        assert not area & cells, f"{tile['widget']['title']} overlaps another tile"
        cells |= area
    queries = [s["timeSeriesQuery"]["prometheusQuery"] for t in tiles
               for s in t["widget"].get("xyChart", {}).get("dataSets", [])
               + ([t["widget"]["scorecard"]] if "scorecard" in t["widget"] else [])]
    assert queries and all("recsys_" in q for q in queries)
