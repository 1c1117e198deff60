"""The impression stream: one entry per /recommend answer, drained like the events.

The functions add what they served (`add`, a batch of records in one pipelined round trip);
infra/events_log.py drains NS:impressions into Parquet in the artifact store through the
consumer group, as it drains NS:events (DrainableStream: nothing lost, nothing twice); events
that carry an answer's `recommendation_id` attribute to its impression (docs/EXPERIMENTS.md).

An entry's fields, all text (FIELDS): recommendation_id (32 hex characters), user_id,
experiment and arm ("" outside an experiment), version, items (a JSON array of the item ids
in position order, position 1 first), source (cache | on_demand | popular | fallback, or
"error" for an answer without items), status (the HTTP status), latency_ms, ts_ms (epoch
milliseconds when the answer was made). Keys: keys.py.
"""

from __future__ import annotations

import json

import redis

from infra.redis.event_stream import DrainableStream

FIELDS = ("recommendation_id", "user_id", "experiment", "arm", "version", "items", "source",
          "status", "latency_ms", "ts_ms")


def encode(record: dict) -> dict[str, str]:
    """One impression as stream fields (FIELDS, all text; `items` a JSON array).

    Raises:
        ValueError: a field of FIELDS is missing.
    """
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"impression without {', '.join(missing)}")
    out = {f: "" if record[f] is None else str(record[f]) for f in FIELDS if f != "items"}
    out["items"] = json.dumps(list(record["items"]), ensure_ascii=False)
    return out


class ImpressionStream(DrainableStream):
    """NS:impressions: what the functions served, for experiments' reports.

    Contract: `add` appends every record of its batch in one MULTI (all or none); draining as
    DrainableStream. The stream is never trimmed: only an acknowledged drain removes entries.
    """

    def __init__(self, client: redis.Redis, namespace: str = "recsys"):
        super().__init__(client, namespace)
        self.stream = self.keys.impressions

    def add(self, records: list[dict]) -> list[str]:
        """Appends impressions (dicts with FIELDS) in one round trip; their stream ids.

        Raises:
            ValueError: a record lacks a field (nothing was written).
            redis.RedisError: Redis failed; with a lost reply, the batch may be stored.
        """
        if not records:
            return []
        encoded = [encode(r) for r in records]
        pipe = self.r.pipeline(transaction=True)
        for fields in encoded:
            pipe.xadd(self.stream, fields)
        return [i.decode() if isinstance(i, bytes) else i for i in pipe.execute()]
