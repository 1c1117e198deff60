"""infra/monitoring: the generated artifacts match the code, every name comes from the catalogue,
and promtool accepts the rules and passes their unit tests (each alert firing and not firing).

promtool comes with Debian's `prometheus` package (.ci/run installs it); without it the promtool
tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from infra.monitoring import __main__ as generate
from infra.monitoring import alert_tests, alerts, catalogue, cloud_monitoring, grafana, panels
from tests.conftest import in_ci

HERE = generate.HERE
SERIES = re.compile(r"\b(recsys_[a-z_]+)\b")
QUOTED = re.compile(r'"[^"]*"')  # label values such as job="recsys_nightly" are not names


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found: apt-get install prometheus (.ci/run does)"
        if in_ci():
            pytest.fail(f"{message} (CI=true: a missing promtool fails instead of skipping)")
        pytest.skip(message)
    return path


def test_generated_files_are_the_code_s():
    stale = [str(p.relative_to(generate.ROOT)) for p in generate.stale()]
    assert not stale, f"{stale} differ from the code: run `python -m infra.monitoring`"


def test_check_mode_names_a_hand_edited_file(tmp_path, monkeypatch, capsys):
    copy = tmp_path / "recsys.rules.yml"
    copy.write_text(generate.artifacts()[HERE / "recsys.rules.yml"].replace("26 * 3600", "1"))
    real = generate.artifacts
    monkeypatch.setattr(generate, "artifacts", lambda: {
        (copy if path.name == "recsys.rules.yml" else path): text
        for path, text in real().items()})
    monkeypatch.setattr(generate, "ROOT", tmp_path.parent)

    assert generate.main(["--check"]) == 1
    assert f"{tmp_path.name}/recsys.rules.yml is out of date" in capsys.readouterr().err


def test_every_metric_named_anywhere_is_in_the_catalogue():
    exported = {s for m in catalogue.METRICS for s in catalogue.exported_series(m)}
    texts = [e for _, e in panels.all_queries()] + [a.expr for a in alerts.ALERTS]
    texts += [series for s in alert_tests.SCENARIOS for series, _ in s.series]
    named = {name for text in texts for name in SERIES.findall(QUOTED.sub("", text))}
    unknown = sorted(named - exported)
    assert not unknown, f"names not in infra/monitoring/catalogue.py: {unknown}"


def test_every_metric_of_the_catalogue_has_a_panel():
    shown = {name for _, expr in panels.all_queries() for name in SERIES.findall(expr)}
    unseen = [m.name for m in catalogue.METRICS
              if not set(catalogue.exported_series(m)) & shown]
    assert not unseen, f"metrics no panel shows: {unseen}"


def test_the_served_metrics_of_functions_metrics_keep_their_names_and_labels():
    # functions/metrics.py's names before the prometheus_client migration: dashboards and
    # scrapers that read them keep working.
    legacy = {"recsys_request_seconds": ("histogram", ("path", "source")),
              "recsys_recommendations_total": ("counter", ("source",)),
              "recsys_cache_lookups_total": ("counter", ("result",)),
              "recsys_fallbacks_total": ("counter", ("reason",)),
              "recsys_events_total": ("counter", ("result",))}
    assert {n: (catalogue.metric(n).kind, catalogue.metric(n).labels) for n in legacy} == legacy


def test_an_unknown_metric_name_is_refused_with_the_known_ones():
    with pytest.raises(KeyError, match="recsys_requests_total"):
        panels.m("recsys_request_total")
    with pytest.raises(ValueError, match="_total"):
        catalogue.Metric("recsys_things", "counter", "Things.")


def test_both_dashboards_hold_every_panel_query():
    expected = panels.all_queries()
    grafana_doc = json.loads((HERE / "recsys.dashboard.json").read_text())
    cloud_doc = json.loads((generate.TERRAFORM / "dashboard.json").read_text())

    assert grafana.queries(grafana_doc) == expected
    assert cloud_monitoring.queries(cloud_doc) == expected
    rows = [p["title"] for p in grafana_doc["panels"] if p["type"] == "row"]
    assert rows == ["Traffic and latency", "Sources and fallbacks", "Events", "The nightly",
                    "Versions and experiments", "Quality"]


def test_rules_and_policies_carry_every_alert_with_its_runbook():
    rules = yaml.safe_load((HERE / "recsys.rules.yml").read_text())["groups"][0]["rules"]
    policies = json.loads((generate.TERRAFORM / "alerts.json").read_text())
    names = [a.name for a in alerts.ALERTS]

    assert [r["alert"] for r in rules] == names
    assert sorted(policies) == sorted(names)
    assert {"RecsysNoPublish", "RecsysRecommendLatencyHigh", "RecsysFallbackRatioHigh",
            "RecsysEventsRejectedHigh", "RecsysIngestionLagHigh", "RecsysGateFailed",
            "RecsysNightlyFailed"} <= set(names)
    for rule in rules:
        assert rule["annotations"]["runbook_url"] == f"docs/OPERATIONS.md#{rule['alert'].lower()}"
        assert policies[rule["alert"]]["query"] == rule["expr"]
    operations = (generate.ROOT / "docs" / "OPERATIONS.md").read_text()
    missing = [n for n in names if f"\n### {n}\n" not in operations]
    assert not missing, f"docs/OPERATIONS.md has no section for {missing}"
    unlisted = [m.name for m in catalogue.METRICS if f"| `{m.name}` |" not in operations]
    assert not unlisted, f"docs/OPERATIONS.md's metric table lacks {unlisted}"


def test_every_alert_is_shown_firing_and_not_firing():
    assert alert_tests.uncovered() == []


def test_promtool_checks_the_rules():
    result = subprocess.run([promtool(), "check", "rules", "recsys.rules.yml"], cwd=HERE,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts.ALERTS)} rules found" in result.stdout


def test_promtool_runs_the_unit_tests_of_the_rules():
    result = subprocess.run([promtool(), "test", "rules", "recsys.test.yml"], cwd=HERE,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_fails_a_rule_that_no_longer_fires(tmp_path):
    # The unit tests can fail: a threshold moved past the scenario's figure breaks them.
    rules = (HERE / "recsys.rules.yml").read_text().replace("> 0.05", "> 0.5")
    (tmp_path / "recsys.rules.yml").write_text(rules)
    shutil.copy(HERE / "recsys.test.yml", tmp_path)
    result = subprocess.run([promtool(), "test", "rules", "recsys.test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "RecsysFallbackRatioHigh" in result.stdout + result.stderr
