"""The Prometheus text exposition of one instance (functions/metrics.py), on fresh metrics."""

from functions import metrics
from functions.metrics import Counter, Histogram


def test_counter_sums_per_label_set_and_escapes_label_values():
    c = Counter("t_total", "Things.", ("kind",))
    c.inc("a")
    c.inc("a", amount=2.5)
    c.inc('q"\\\n')
    assert (c.value("a"), c.value('q"\\\n'), c.value("none")) == (3.5, 1.0, 0.0)
    assert c.render() == ["# HELP t_total Things.", "# TYPE t_total counter",
                          't_total{kind="a"} 3.5', 't_total{kind="q\\"\\\\\\n"} 1']


def test_histogram_buckets_are_cumulative_with_count_and_sum():
    h = Histogram("t_seconds", "Latency.", ("path",), buckets=(0.01, 0.1))
    for seconds in (0.005, 0.01, 0.05, 3.0):  # le is inclusive: 0.01 falls in the first
        h.observe(seconds, "p")
    assert h.count("p") == 4 and h.count("other") == 0
    assert h.render()[2:] == ['t_seconds_bucket{path="p",le="0.01"} 2',
                              't_seconds_bucket{path="p",le="0.1"} 3',
                              't_seconds_bucket{path="p",le="+Inf"} 4',
                              't_seconds_count{path="p"} 4',
                              't_seconds_sum{path="p"} 3.065000']


def test_render_has_every_metric_and_the_hit_ratio_of_the_lookups(monkeypatch):
    lookups = Counter("recsys_cache_lookups_total", "Nightly-list lookups by result.",
                      ("result",))
    monkeypatch.setattr(metrics, "CACHE_LOOKUPS", lookups)
    assert "recsys_cache_hit_ratio 0.000000" in metrics.render()  # no lookup yet
    for result in ("hit", "hit", "hit", "miss"):
        lookups.inc(result)
    text = metrics.render()
    assert text.endswith("recsys_cache_hit_ratio 0.750000\n")
    for name in ("recsys_request_seconds", "recsys_recommendations_total",
                 "recsys_cache_lookups_total", "recsys_fallbacks_total", "recsys_events_total"):
        assert f"# TYPE {name} " in text
