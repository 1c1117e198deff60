"""Prometheus metrics of one function instance, in the text exposition format (`GET /metrics`).

Written here rather than taken from prometheus_client so the functions add no dependency and
the cached path pays one lock per observation. Each process keeps its own values, as an
instance of Cloud Run does; with several gunicorn workers a scrape reads the worker that
answers it, so run one worker with threads where the numbers must add up (docs/SERVING.md).

    recsys_request_seconds{path,source}      histogram of handler latency
    recsys_recommendations_total{source}     answers of /recommend by source
    recsys_cache_lookups_total{result}       nightly-list lookups: hit / miss
    recsys_cache_hit_ratio                   hits / lookups since the process started
    recsys_fallbacks_total{reason}           degraded answers (redis_down, ...)
    recsys_events_total{result}              events stored / duplicate / rejected / unavailable
    recsys_impressions_total{version,arm}    /recommend answers with a recommendation_id, by the
                                             version that served them and arm (`current`
                                             outside an experiment)
    recsys_experiment_requests_total{experiment,arm}  answers inside a running experiment
    recsys_impressions_dropped_total         impressions the writer dropped (queue full while
                                             Redis was down, or refused): impression_log.py
"""

from __future__ import annotations

import threading
from bisect import bisect_left

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)) + "}"


class Counter:
    def __init__(self, name: str, doc: str, labels: tuple[str, ...] = ()):
        self.name, self.doc, self.label_names = name, doc, labels
        self._values: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} counter"]
        for labels, v in sorted(self._values.items()):
            out.append(f"{self.name}{_labels(self.label_names, labels)} {v:g}")
        return out


class Histogram:
    def __init__(self, name: str, doc: str, labels: tuple[str, ...] = (),
                 buckets: tuple[float, ...] = BUCKETS):
        self.name, self.doc, self.label_names, self.buckets = name, doc, labels, buckets
        self._series: dict[tuple, list] = {}  # labels -> [bucket counts..., +Inf, sum]
        self._lock = threading.Lock()

    def observe(self, seconds: float, *labels: str) -> None:
        slot = bisect_left(self.buckets, seconds)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0] * (len(self.buckets) + 1) + [0.0]
            series[slot] += 1
            series[-1] += seconds

    def count(self, *labels: str) -> int:
        series = self._series.get(labels)
        return sum(series[:-1]) if series else 0

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} histogram"]
        names = (*self.label_names, "le")
        for labels, series in sorted(self._series.items()):
            running = 0
            for le, n in zip((*self.buckets, "+Inf"), series[:-1], strict=True):
                running += n
                out.append(f"{self.name}_bucket{_labels(names, (*labels, le))} {running}")
            out.append(f"{self.name}_count{_labels(self.label_names, labels)} {running}")
            out.append(f"{self.name}_sum{_labels(self.label_names, labels)} {series[-1]:.6f}")
        return out


REQUEST_SECONDS = Histogram("recsys_request_seconds", "Handler latency in seconds.",
                            ("path", "source"))
RECOMMENDATIONS = Counter("recsys_recommendations_total", "Answers of /recommend by source.",
                          ("source",))
CACHE_LOOKUPS = Counter("recsys_cache_lookups_total", "Nightly-list lookups by result.",
                        ("result",))
FALLBACKS = Counter("recsys_fallbacks_total", "Degraded answers by reason.", ("reason",))
EVENTS = Counter("recsys_events_total", "Posted events by result.", ("result",))
IMPRESSIONS = Counter("recsys_impressions_total", "Recommendation lists served with a "
                      "recommendation_id, by version and arm (arm `current` outside "
                      "experiments).", ("version", "arm"))
EXPERIMENT_REQUESTS = Counter("recsys_experiment_requests_total", "Answers of /recommend inside "
                              "a running experiment, by experiment and arm.",
                              ("experiment", "arm"))
IMPRESSIONS_DROPPED = Counter("recsys_impressions_dropped_total", "Impressions not recorded "
                              "(the impression stream refused or failed them).")


def render() -> str:
    """All metrics in Prometheus' text format (version 0.0.4)."""
    hits, misses = CACHE_LOOKUPS.value("hit"), CACHE_LOOKUPS.value("miss")
    ratio = hits / (hits + misses) if hits + misses else 0.0
    lines = []
    for metric in (REQUEST_SECONDS, RECOMMENDATIONS, CACHE_LOOKUPS, FALLBACKS, EVENTS,
                   IMPRESSIONS, EXPERIMENT_REQUESTS, IMPRESSIONS_DROPPED):
        lines += metric.render()
    lines += ["# HELP recsys_cache_hit_ratio Cache hits / lookups since the process started.",
              "# TYPE recsys_cache_hit_ratio gauge", f"recsys_cache_hit_ratio {ratio:.6f}"]
    return "\n".join(lines) + "\n"
