"""An experiment's data: drain both streams into the store, then read both logs as DataFrames.

    python -c "import redis; from infra.experiment_data import load; from infra.store import
    open_store; print(load(redis.Redis(), 'recsys', open_store('./artifacts')).drained)"

`recsys experiment report` and `recsys canary check` read what models/experiments/report.py
needs through `load`: the impressions (infra/redis/impressions.py, drained into
<store>/impressions/) and the events (NS:events, drained into <store>/events/). Draining first
makes the report current to the last answer served; it is idempotent and safe beside the
nightly job (the drains take turns under NS:drain:lock and each entry is written once,
infra/stream_log.py), and the nightly reads every file of the events log whoever drained it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
import redis

from infra.events_log import (
    drain_events,
    drain_impressions,
    read_events_log,
    read_impressions_log,
)
from infra.redis.event_stream import EventStream
from infra.redis.impressions import ImpressionStream
from infra.store import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentData:
    """The logs a report reads.

    Attributes:
        impressions: IMPRESSIONS_SCHEMA rows (infra/events_log.py), each recommendation id once.
        events: EVENTS_SCHEMA rows, each event id once (`timestamp` in epoch seconds).
        drained: {"impressions": drain stats, "events": drain stats}, or None when not drained.
    """

    impressions: pd.DataFrame
    events: pd.DataFrame
    drained: dict | None


def load(client: redis.Redis, namespace: str, store: ArtifactStore, *,
         drain: bool = True, experiment: str | None = None) -> ExperimentData:
    """Drains NS:impressions and NS:events into `store` (unless `drain` is False), then reads
    both logs.

    Args:
        client: the Redis of the namespace.
        namespace: the key prefix (NS).
        store: the artifact store the nightly job uses (--store).
        drain: False reads only what earlier drains wrote.
        experiment: keep only this experiment's impressions (and the events of its users).

    Raises:
        redis.RedisError: Redis unreachable while draining (nothing was acknowledged).
        TimeoutError: another drain kept the lock for 10 minutes.
        OSError: the store failed (what was drained before stays written and acknowledged).
    """
    drained = None
    if drain:
        drained = {"impressions": drain_impressions(ImpressionStream(client, namespace), store),
                   "events": drain_events(EventStream(client, namespace), store)}
    impressions, events = read_impressions_log(store), read_events_log(store)
    if experiment is not None:
        impressions = impressions[impressions["experiment"] == experiment]
        events = events[events["user_id"].isin(set(impressions["user_id"]))]
    log.info("experiment data: %d impressions, %d events", len(impressions), len(events))
    return ExperimentData(impressions.reset_index(drop=True), events.reset_index(drop=True),
                          drained)
