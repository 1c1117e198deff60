"""Unit tests of the alerts as input series and expectations, for `promtool test rules`.

Each scenario feeds series (promtool's expanding notation: `0+100x60` is 0, 100, ... 6000, one
value a minute) and says, at given times, whether an alert fires and with which labels. They
are written by hand here; `python -m infra.monitoring` renders them into
infra/monitoring/recsys.test.yml, adding the annotations promtool compares (from alerts.py), so
the runbook text is not copied twice. Every alert has a time it fires and a time it does not
(`uncovered` lists the ones that lack either; a test keeps it empty).

Most scenarios run a healthy first hour, then the problem from minute 61.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.monitoring.alerts import ALERTS, alert


@dataclass(frozen=True)
class Check:
    at: str  # eval_time, e.g. "90m"
    alert: str
    fires: bool
    labels: dict = field(default_factory=dict)  # labels the expression keeps (not severity)


@dataclass(frozen=True)
class Scenario:
    name: str
    series: tuple[tuple[str, str], ...]
    checks: tuple[Check, ...]


NIGHTLY = '{job="recsys_nightly"}'


def _bucket(le: str) -> str:
    return f'recsys_request_seconds_bucket{{path="recommend",source="cache",le="{le}"}}'


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("a publish at time 0, then none for over 26 hours", (
        (f"recsys_nightly_last_publish_timestamp_seconds{NIGHTLY}", "0x1700"),
    ), (
        Check("25h", "RecsysNoPublish", False),    # time() - 0 = 25 h
        Check("27h", "RecsysNoPublish", True),     # 27 h > 26 h, for more than 10 min
    )),
    Scenario("no nightly metrics at all", (
        ("recsys_requests_total{path=\"health\",code=\"200\"}", "0+1x30"),
    ), (
        Check("5m", "RecsysNoPublish", False),     # absent, but not yet for 10 minutes
        Check("20m", "RecsysNoPublish", True),
    )),
    Scenario("a good night, then a failed one whose candidate lost to popularity", (
        (f"recsys_nightly_success{NIGHTLY}", "1x60 0x60"),
        ('recsys_nightly_gate_ndcg{job="recsys_nightly",model="candidate"}', "0.30x60 0.10x60"),
        ('recsys_nightly_gate_ndcg{job="recsys_nightly",model="popularity"}', "0.20x120"),
    ), (
        Check("30m", "RecsysNightlyFailed", False),
        Check("90m", "RecsysNightlyFailed", True),
        Check("30m", "RecsysGateFailed", False),
        Check("90m", "RecsysGateFailed", True),
    )),
    # 100 answers a minute; first all within 0.1 s, then 10% between 0.25 and 0.5 s (p99 ~0.475).
    Scenario("/recommend gets slow", (
        (_bucket("0.1"), "0+100x60 6090+90x60"),
        (_bucket("0.25"), "0+100x60 6090+90x60"),
        (_bucket("0.5"), "0+100x121"),
        (_bucket("+Inf"), "0+100x121"),
    ), (
        Check("40m", "RecsysRecommendLatencyHigh", False),
        Check("90m", "RecsysRecommendLatencyHigh", True, {"path": "recommend"}),
    )),
    # 100 answers a minute; fallbacks 1 a minute (1%), then 10 (10%).
    Scenario("fallbacks rise", (
        ('recsys_recommendations_total{source="cache"}', "0+100x120"),
        ('recsys_fallbacks_total{reason="redis_down"}', "0+1x60 70+10x60"),
    ), (
        Check("40m", "RecsysFallbackRatioHigh", False),
        Check("90m", "RecsysFallbackRatioHigh", True),
    )),
    # 100 stored a minute; rejected 1 a minute, then 50; unavailable 0, then 5 a minute.
    Scenario("clients post bad events, then Redis refuses them", (
        ('recsys_events_total{result="stored"}', "0+100x120"),
        ('recsys_events_total{result="rejected"}', "0+1x60 110+50x60"),
        ('recsys_events_total{result="unavailable"}', "0x60 5+5x60"),
    ), (
        Check("40m", "RecsysEventsRejectedHigh", False),
        Check("90m", "RecsysEventsRejectedHigh", True),
        Check("40m", "RecsysEventsUnavailable", False),
        Check("90m", "RecsysEventsUnavailable", True),
    )),
    Scenario("the drain stops", (
        ("recsys_ingestion_lag_seconds", "3600x60 100000x60"),
        ("recsys_impressions_dropped_total", "0x60 1+1x60"),
    ), (
        Check("40m", "RecsysIngestionLagHigh", False),
        Check("90m", "RecsysIngestionLagHigh", True),
        Check("40m", "RecsysImpressionsDropped", False),
        Check("100m", "RecsysImpressionsDropped", True),
    )),
)


def uncovered() -> list[str]:
    """Alerts without a check where they fire and one where they do not."""
    seen = {(c.alert, c.fires) for s in SCENARIOS for c in s.checks}
    return [a.name for a in ALERTS if (a.name, True) not in seen or (a.name, False) not in seen]


def _expected(check: Check) -> list[dict]:
    if not check.fires:
        return []
    a = alert(check.alert)
    return [{"exp_labels": {**check.labels, "severity": a.severity},
             "exp_annotations": {"summary": a.summary, "description": a.description,
                                 "runbook_url": a.runbook_url}}]


def promtool_document(rule_file: str = "recsys.rules.yml") -> dict:
    """The promtool unit test file as a YAML-ready dict."""
    tests = [{"name": s.name,
              "interval": "1m",
              "input_series": [{"series": series, "values": values} for series, values in s.series],
              "alert_rule_test": [{"eval_time": c.at, "alertname": c.alert,
                                   "exp_alerts": _expected(c)} for c in s.checks]}
             for s in SCENARIOS]
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}

