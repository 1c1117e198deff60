"""The monitored system for real, and the dashboard's rows drawn from it (docs/OPERATIONS.md).

    python -m benchmarks.monitoring --out docs/monitoring [--seconds 360 --think 0.2 --json F]

Starts a redis-server, a Pushgateway and two real nightly runs on tiny synthetic data (MF, the
gate on, one dead letter; the second a 50 % canary, so an experiment runs) that push their
metrics; then `recsys serve` with two gunicorn workers, scraped by a real Prometheus with the
Pushgateway (infra/monitoring/recsys.rules.yml loaded). Eight client threads send every kind of
traffic (`drive`): warm users (cache), fresh users with recent items (on_demand) and without
(popular), clicks and purchases carrying a served `recommendation_id`, duplicate resends and
rejected events, and, in the middle, a Redis pause (`CLIENT PAUSE`) that makes /recommend fall
back and /events answer 503. Then each dashboard row is rendered as a PNG
(infra/monitoring/plots.py) and the panels without data are named.
benchmarks/monitoring_system.py starts the system; tests/infra/test_monitoring_e2e.py runs it
and checks it.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import redis

from benchmarks.monitoring_system import (  # noqa: F401 (the test's entry points too)
    ROOT,
    SCRAPE_SECONDS,
    System,
    Tally,
    call,
    monitored_system,
)

log = logging.getLogger(__name__)
THREADS = 8


def _client(system: System, tally: Tally, seed: int, until: float, think: float) -> None:
    """One client thread: a mix of every kind of request until `until`, `think` seconds
    apart."""
    rng, sent_batches, n = random.Random(seed), [], 0
    while time.monotonic() < until:
        n += 1
        user = rng.choice(system.users)
        query = {"user_id": user, "k": 5}
        if n % 5 == 0:  # a fresh user with recent items: on_demand
            query = {"user_id": f"fresh-{seed}-{n}", "k": 5,
                     "events": ",".join(rng.sample(system.items, 3))}
        elif n % 7 == 0:  # a fresh user with nothing: popular
            query = {"user_id": f"new-{seed}-{n}", "k": 5}
        status, answer = call(tally, "recommend",
                              f"{system.url}/recommend?{urllib.parse.urlencode(query)}")
        if status == 200:
            with tally.lock:
                tally.sources[answer["source"]] += 1
        events = []
        if status == 200 and answer.get("items") and n % 3 == 0:
            kind = "purchase" if n % 6 == 0 else "click"
            events.append({"user_id": query["user_id"], "event_type": kind,
                           "item_id": answer["items"][0]["item_id"],
                           "event_id": f"{kind}-{answer['recommendation_id']}",
                           "recommendation_id": answer["recommendation_id"]})
        if n % 37 == 0:  # rejected (under the alert's 10 %): an unknown event type
            events.append({"user_id": user, "item_id": system.items[0],
                           "event_type": "teleport", "event_id": f"bad-{seed}-{n}"})
        if events:
            _post_events(system, tally, events)
            sent_batches.append(events)
        if n % 13 == 0 and sent_batches:  # a resend: duplicates
            _post_events(system, tally, rng.choice(sent_batches))
        if n % 17 == 0:
            call(tally, "health", f"{system.url}/health")
        time.sleep(think)


def _post_events(system: System, tally: Tally, events: list[dict]) -> None:
    status, answer = call(tally, "events", f"{system.url}/events", {"events": events})
    with tally.lock:  # SERVING.md, POST /events: what each answer says of its batch
        tally.events["rejected"] += len(answer.get("rejected") or [])
        if status == 503:
            tally.events["unavailable"] += len(answer.get("event_ids") or [])
        else:
            tally.events["stored"] += answer.get("stored") or 0
            tally.events["duplicate"] += answer.get("duplicates") or 0


def drive(system: System, tally: Tally, seconds: float, outage: float = 3.0,
          think: float = 0.05) -> None:
    """THREADS clients for `seconds`, each waiting `think` seconds between requests; Redis
    pauses for `outage` seconds halfway through.

    Raises:
        RuntimeError: a request got no answer (a connection error, a timeout of 30 s).
    """
    until, failures = time.monotonic() + seconds, []

    def client(seed: int) -> None:
        try:
            _client(system, tally, seed, until, think)
        except Exception as e:  # noqa: BLE001 (a request without an answer: said below)
            failures.append(f"client {seed}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(THREADS)]
    for t in threads:
        t.start()
    time.sleep(seconds / 2)
    log.info("pausing Redis for %.1f s", outage)
    redis.Redis.from_url(system.redis_url).execute_command("CLIENT", "PAUSE",
                                                           int(outage * 1000), "ALL")
    for t in threads:
        t.join()
    if failures:  # every request must get an answer, or "sent" and "answered" differ
        raise RuntimeError(f"requests without an answer: {failures}")


def query(prometheus: str, expr: str) -> list[dict]:
    """An instant query's result; RuntimeError with Prometheus' message on a bad query."""
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            body = json.load(answer)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body.get('error')}")
    return body["data"]["result"]


def scraped_requests(prometheus: str) -> dict[str, int]:
    """sum by (path) of recsys_requests_total: every worker's answers, as Prometheus has them."""
    got = query(prometheus, 'sum by (path) (recsys_requests_total{job="recsys"})')
    return {r["metric"]["path"]: int(float(r["value"][1])) for r in got}


def settle(prometheus: str, tally: Tally, timeout: float = 60) -> dict[str, int]:
    """Waits until Prometheus' request counts equal the clients' (or `timeout`), then two more
    scrapes (rates need them); returns the last counts."""
    deadline = time.monotonic() + timeout
    while (got := scraped_requests(prometheus)) != dict(tally.requests):
        if time.monotonic() > deadline:
            break
        time.sleep(SCRAPE_SECONDS / 2)
    time.sleep(2 * SCRAPE_SECONDS + 0.5)
    return got


def panels_without_data(prometheus: str) -> list[tuple[str, str]]:
    """(title, expression) of every dashboard query (infra/monitoring/panels.py) that returns
    nothing now."""
    from infra.monitoring.panels import all_queries

    return [(title, expr) for title, expr in all_queries() if not query(prometheus, expr)]


def worker_pids_with_counters(serve_pid: int) -> list[int]:
    """The gunicorn workers (children of `recsys serve`) that map a prometheus_client counter
    file of their own (multiprocess mode: counter_<pid>.db), i.e. that counted something."""
    children = Path(f"/proc/{serve_pid}/task/{serve_pid}/children").read_text().split()
    return [int(pid) for pid in children
            if f"counter_{pid}.db" in Path(f"/proc/{pid}/maps").read_text()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.monitoring",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "monitoring",
                        help="folder for the PNG files (default docs/monitoring)")
    parser.add_argument("--seconds", type=float, default=360.0,
                        help="traffic duration (the panels' rates are over 5 minutes)")
    parser.add_argument("--think", type=float, default=0.2,
                        help="seconds each of the 8 clients waits between requests")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from infra.monitoring.plots import render

    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="recsys-monitoring-") as tmp, \
            monitored_system(Path(tmp), tally) as system:
        started = time.time()
        time.sleep(5 * SCRAPE_SECONDS)  # a few scrapes before the traffic
        drive(system, tally, args.seconds, think=args.think)
        scraped = settle(system.prometheus, tally)
        empty = panels_without_data(system.prometheus)
        render(system.prometheus, args.out, started, time.time(), step=SCRAPE_SECONDS)
    figures = {"sent": dict(tally.requests), "scraped": scraped,
               "sources": dict(tally.sources), "events": dict(tally.events),
               "panels_without_data": [title for title, _ in empty]}
    print(json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0 if scraped == dict(tally.requests) and not empty else 1


if __name__ == "__main__":
    sys.exit(main())
