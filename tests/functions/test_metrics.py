"""The functions' metrics (functions/metrics.py) in one process: the catalogue's names, the
recorder and its switch, recommendation ids carrying their version, the scrape-time gauges."""

import re
import time

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from functions import metrics
from infra.monitoring.catalogue import METRICS
from infra.redis_server import free_port
from tests.functions.conftest import make_app

KEY = {"X-API-Key": "secret"}


def _page(app) -> dict:
    """GET /metrics parsed by prometheus_client's own parser: {family name: family}."""
    r = app.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    return {f.name: f for f in text_string_to_metric_families(r.get_data(as_text=True))}


def _value(families: dict, name: str, **labels) -> float | None:
    for family in families.values():
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


@pytest.fixture(scope="module")
def app(served_env):
    return make_app(served_env).test_client()


def test_the_page_holds_every_catalogue_metric_of_the_functions_and_no_ratio(app, published):
    families = _page(app)
    names = {m.name.removesuffix("_total"): m for m in METRICS if m.exporter == "functions"}
    kept = {n for n in names if names[n].name not in metrics.SCRAPED}
    for name in kept:  # every kept family is declared, with the catalogue's type
        assert families[name].type == names[name].kind, name
    # Nothing else of ours: the hit ratio is PromQL's now (the dashboard computes it).
    assert {n for n in families if n.startswith("recsys_")} <= set(names)
    assert "recsys_cache_hit_ratio" not in app.get("/metrics").get_data(as_text=True)
    version = published[2]["version"]
    assert _value(families, "recsys_served_version_info", version=version) == 1
    age = _value(families, "recsys_served_version_age_seconds")
    assert age is not None and 0 <= age < 24 * 3600
    assert _value(families, "recsys_ingestion_lag_seconds") is not None


def test_a_request_is_counted_by_path_code_and_source(app, warm_user):
    def now():
        f = _page(app)
        return (_value(f, "recsys_requests_total", path="recommend", code="200") or 0,
                _value(f, "recsys_requests_total", path="recommend", code="400") or 0,
                _value(f, "recsys_request_seconds_count", path="recommend", source="cache") or 0,
                _value(f, "recsys_cache_lookups_total", result="hit") or 0,
                _value(f, "recsys_recommendations_total", source="cache") or 0)

    before = now()
    assert app.get(f"/recommend?user_id={warm_user}&k=2").status_code == 200
    assert app.get("/recommend?k=2").status_code == 400
    assert [a - b for a, b in zip(now(), before, strict=True)] == [1, 1, 1, 1, 1]


def test_recommendation_ids_name_their_version_and_forged_ones_map_to_unknown():
    rid = metrics.new_recommendation_id("20260101T000000-abc")
    assert re.fullmatch(r"[0-9a-f]{32}", rid) and rid != metrics.new_recommendation_id("x")
    tags = metrics.VersionTags()
    published = {"20260101T000000-abc", "20260102T000000-def"}
    assert tags.version_of(rid, published) == "20260101T000000-abc"
    assert tags.version_of("0" * 32, published) == "unknown"  # forged
    assert tags.version_of(rid, {"20260102T000000-def"}) == "unknown"  # expired
    assert tags.version_of(rid[:-1], published) == tags.version_of("", published) == "unknown"


def test_events_carrying_an_answers_id_are_attributed_to_its_version(app, warm_user, published):
    version = published[2]["version"]
    rid = app.get(f"/recommend?user_id={warm_user}&k=2").get_json()["recommendation_id"]

    def attributed(v, t):
        return _value(_page(app), "recsys_attributed_events_total", version=v, event_type=t) or 0

    before = attributed(version, "click"), attributed("unknown", "purchase")
    events = [{"user_id": warm_user, "item_id": "1", "event_type": "click",
               "recommendation_id": rid, "event_id": f"att-{time.time_ns()}"},
              {"user_id": warm_user, "item_id": "1", "event_type": "purchase",
               "recommendation_id": "f" * 32, "event_id": f"att-{time.time_ns()}-2"},
              {"user_id": warm_user, "item_id": "2", "event_type": "click"}]  # no id: not counted
    assert app.post("/events", json={"events": events}, headers=KEY).get_json()["stored"] == 3
    app.post("/events", json={"events": events[:1]}, headers=KEY)  # a duplicate: not again
    assert (attributed(version, "click") - before[0],
            attributed("unknown", "purchase") - before[1]) == (1, 1)


def test_switched_off_nothing_is_recorded_and_the_page_says_so(served_env, warm_user):
    off = make_app({**served_env, "RECSYS_METRICS": "0"}).test_client()
    labels = {"path": "recommend", "code": "200"}
    before = metrics.sample("recsys_requests_total", labels) or 0
    assert off.get(f"/recommend?user_id={warm_user}&k=2").status_code == 200
    assert (metrics.sample("recsys_requests_total", labels) or 0) == before
    r = off.get("/metrics")
    assert r.status_code == 200 and "RECSYS_METRICS=0" in r.get_data(as_text=True)


def test_recorder_switch_and_a_bad_switch_value(served_env):
    labels = {"reason": "test_switch"}
    metrics.Recorder(on=False).fallback("test_switch")
    assert metrics.sample("recsys_fallbacks_total", labels) is None
    metrics.Recorder().fallback("test_switch")
    assert metrics.sample("recsys_fallbacks_total", labels) == 1
    with pytest.raises(ValueError, match="RECSYS_METRICS"):
        make_app({**served_env, "RECSYS_METRICS": "maybe"})


def test_with_redis_down_the_page_answers_without_the_lag(served_env):
    down = make_app({**served_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                     "RECSYS_REDIS_TIMEOUT_S": "0.2"}).test_client()
    families = _page(down)  # nothing could be loaded either: no version gauges
    assert "recsys_requests" in families and "recsys_ingestion_lag_seconds" not in families
    assert "recsys_served_version_info" not in families


def test_ingestion_lag_is_the_age_of_the_oldest_undrained_event(app, served_env, published):
    client = redis.Redis.from_url(published[1])
    event = {"user_id": "lag", "item_id": "1", "event_id": f"lag-{time.time_ns()}"}
    assert app.post("/events", json=[event], headers=KEY).status_code == 200
    first_ms = int(client.xrange("pub:events", count=1)[0][0].split(b"-")[0])
    lag = _value(_page(app), "recsys_ingestion_lag_seconds")
    assert lag == pytest.approx(time.time() - first_ms / 1000, abs=5)


def test_queued_answers_are_written_as_their_observations_one_by_one():
    """metrics.flush adds the queued answers up (observe_many: each bucket and the sum
    written once): the same values as prometheus_client's own observe, one by one."""
    from prometheus_client import CollectorRegistry, Histogram

    buckets = (0.001, 0.01, 0.1, 1.0)
    values = [0.0005, 0.001, 0.0011, 0.05, 0.1, 0.7, 3.0, 1e-9, 0.01]
    one, many = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("h", "h", ["p"], buckets=buckets, registry=one)
    h2 = Histogram("h", "h", ["p"], buckets=buckets, registry=many)
    for v in values:
        h1.labels("x").observe(v)
    metrics.observe_many(h2.labels("x"), values)
    samples = [(s.name, s.labels, s.value) for m in one.collect() for s in m.samples
               if not s.name.endswith("_created")]
    assert samples == [(s.name, s.labels, s.value) for m in many.collect() for s in m.samples
                       if not s.name.endswith("_created")]
    assert ("h_bucket", {"p": "x", "le": "0.001"}, 3.0) in samples  # le: v <= bound


def test_an_answer_is_counted_once_flushed_and_the_page_flushes_first(warm_user, served_env):
    app = make_app(served_env).test_client()
    before = metrics.sample("recsys_impressions_total", {"version": "v9", "arm": "B"}) or 0
    metrics.Recorder().recommendation("cache", "v9", "B", "exp9")  # queued
    page = _page(app)  # a scrape writes what this process queued first
    assert _value(page, "recsys_impressions_total", version="v9", arm="B") == before + 1
    assert _value(page, "recsys_experiment_requests_total", experiment="exp9", arm="B") >= 1
    metrics.Recorder().request("recommend", 200, "cache", 0.002)
    deadline = time.monotonic() + 5 * metrics.FLUSH_S  # or the process's thread, within FLUSH_S
    while metrics._pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not metrics._pending
    metrics.Recorder(on=False).request("recommend", 200, "cache", 0.002)
    assert not metrics._pending  # off: nothing queued
