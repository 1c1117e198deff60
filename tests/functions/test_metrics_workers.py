"""/metrics of a real `recsys serve` with 2 gunicorn workers (functions/metrics.py, multiprocess
mode): the workers' figures add up, whichever worker answers the scrape (each worker's
answers within FLUSH_S); the scrape-time gauges
(served version, its age, ingestion lag) and the attribution of events to versions; Redis going
down takes the lag away without breaking the page."""

import contextlib
import json
import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from functions.metrics import FLUSH_S
from infra.redis_server import local_redis
from tests.conftest import recsys_serve

KEY = "secret"


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def _post_events(url: str, events: list[dict]) -> dict:
    request = urllib.request.Request(f"{url}/events", json.dumps({"events": events}).encode(),
                                     {"Content-Type": "application/json", "X-API-Key": KEY})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def _scrape(url: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one scrape."""
    status, body = _get(f"{url}/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def _sum(page: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in page.items()
               if n == name and labels.items() <= dict(ls).items())


def _worker_files(pid: int) -> dict[int, str]:
    """The counter file of each gunicorn worker of `pid`, found in the workers' memory maps."""
    children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    files = {}
    for child in map(int, children):
        for line in open(f"/proc/{child}/maps").read().splitlines():
            if line.endswith(f"/counter_{child}.db"):
                files[child] = line.split()[-1]
    return files


def _requests_of(path: str) -> float:
    families = MultiProcessCollector.merge([path], accumulate=False)
    return sum(s.value for f in families for s in f.samples if s.name == "recsys_requests_total")


def _copy_namespace(source_url: str, target_url: str, namespace: str) -> None:
    """Every key of `namespace` copied (DUMP/RESTORE) to another server."""
    src, dst = redis.Redis.from_url(source_url), redis.Redis.from_url(target_url)
    for key in src.scan_iter(f"{namespace}:*", count=1000):
        dst.restore(key, 0, src.dump(key), replace=True)


@pytest.mark.slow
def test_two_workers_add_up_and_the_scrape_time_gauges_follow_redis(published, served_env,
                                                                    warm_user, tmp_path):
    store, source_url, summary = published
    version = summary["version"]
    with contextlib.ExitStack() as redis_up:
        url = redis_up.enter_context(local_redis())
        _copy_namespace(source_url, url, "pub")
        r = redis.Redis.from_url(url)
        r.delete("pub:events")
        hour_ago_ms = int((time.time() - 3600) * 1000)
        r.xadd("pub:events", {"user_id": "old"}, id=f"{hour_ago_ms}-0")  # pending since an hour
        env = {**served_env, "REDIS_URL": url, "WORKERS": "2", "THREADS": "4",
               "RECSYS_POINTER_TTL_S": "1"}
        with recsys_serve(env, tmp_path / "serve.log") as (base, proc):
            sent, files = 0, {}
            with ThreadPoolExecutor(8) as pool:
                for _ in range(10):  # until both workers have answered some
                    got = list(pool.map(lambda _: _get(f"{base}/recommend?user_id={warm_user}"
                                                       "&k=3")[0], range(100)))
                    assert got == [200] * 100
                    sent += len(got)
                    time.sleep(2 * FLUSH_S)  # a worker maps its file at its first flush
                    files = _worker_files(proc.pid)
                    if len(files) == 2 and all(_requests_of(f) for f in files.values()):
                        break
            assert len(files) == 2 and all(_requests_of(f) > 0 for f in files.values())
            time.sleep(2 * FLUSH_S)  # each worker writes its answers' metrics every FLUSH_S
            pages = [_scrape(base) for _ in range(6)]  # answered by either worker
            totals = {_sum(p, "recsys_requests_total", path="recommend") for p in pages}
            assert totals == {sent}, (totals, sent)
            page = pages[-1]
            assert _sum(page, "recsys_requests_total", path="recommend", code="200") == sent
            assert _sum(page, "recsys_request_seconds_count", path="recommend") == sent
            assert _sum(page, "recsys_requests_total", path="health") >= 1  # the start's probe
            assert _sum(page, "recsys_served_version_info", version=version) == 1
            assert 0 <= _sum(page, "recsys_served_version_age_seconds") < 24 * 3600
            lag = _sum(page, "recsys_ingestion_lag_seconds")
            assert 3600 <= lag < 3700

            # Events carrying an answer's recommendation_id count for its version.
            rid = json.loads(_get(f"{base}/recommend?user_id={warm_user}&k=3")[1])[
                "recommendation_id"]
            stored = _post_events(base, [
                {"user_id": warm_user, "item_id": "1", "event_type": "click",
                 "recommendation_id": rid, "event_id": f"w-{n}"} for n in range(3)] + [
                {"user_id": warm_user, "item_id": "1", "event_type": "click",
                 "recommendation_id": "0" * 32, "event_id": "w-forged"}])
            assert stored["stored"] == 4
            page = _scrape(base)
            assert _sum(page, "recsys_attributed_events_total", version=version,
                        event_type="click") == 3
            assert _sum(page, "recsys_attributed_events_total", version="unknown") == 1
            assert _sum(page, "recsys_events_total", result="stored") == 4

            redis_up.close()  # Redis goes down: no lag, but the page still answers
            time.sleep(1.5)
            for _ in range(4):
                page = _scrape(base)
                assert not any(n == "recsys_ingestion_lag_seconds" for n, _ in page)
                assert _sum(page, "recsys_served_version_info", version=version) == 1
            assert _sum(_scrape(base), "recsys_requests_total", path="recommend") == sent + 1
            folder = os.path.dirname(next(iter(files.values())))
            assert os.path.isdir(folder)
    assert not os.path.exists(folder), "recsys serve left its metrics folder behind"
