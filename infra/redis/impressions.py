"""The impression stream: what /recommend answered, a batch of answers per entry, drained like
the events.

The functions add what they served in batches (`add_rows`, or `add` for dicts): one `XADD` per
batch of up to MAX_ROWS, so writing costs a round trip and a stream entry per batch, not per
answer. infra/events_log.py drains NS:impressions into Parquet in the artifact store through
the consumer group, as it drains NS:events (DrainableStream: nothing lost, nothing twice), one
row per answer; events that carry an answer's `recommendation_id` attribute to its impression
(docs/EXPERIMENTS.md).

An entry has one field, `rows`: a JSON array of rows, each a JSON array of FIELDS' values in
their order: recommendation_id (32 hex characters), user_id, experiment and arm ("" outside an
experiment), version ("" when none served), items (an array of the item ids in position order,
position 1 first), source (cache | on_demand | popular | fallback, or "error" for an answer
without items), status (the HTTP status, an integer), latency_ms (a number), ts_ms (epoch
milliseconds when the answer was made, an integer). A batch holds at most MAX_ROWS rows.

Entries written before batches (one answer per entry, FIELDS as the entry's fields, all text,
`items` a JSON array) are still drained: `is_batch` tells the two apart. Keys: keys.py.
"""

from __future__ import annotations

import json

import redis

from infra.redis.event_stream import DrainableStream

FIELDS = ("recommendation_id", "user_id", "experiment", "arm", "version", "items", "source",
          "status", "latency_ms", "ts_ms")
ROWS = "rows"  # the field of a batch entry
MAX_ROWS = 1_000  # rows of one entry at most (a drain sizes its reads by it)
_dumps = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode


def is_batch(fields: dict) -> bool:
    """True for a batch entry (`rows`), False for a single answer's entry of the old format."""
    return ROWS in fields


def row(record: dict) -> list:
    """One impression (a dict with FIELDS) as a batch row: FIELDS' values in their order,
    None as "" and `items` as a list.

    Raises:
        ValueError: a field of FIELDS is missing.
    """
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"impression without {', '.join(missing)}")
    values = ["" if record[f] is None else record[f] for f in FIELDS]
    values[FIELDS.index("items")] = list(record["items"])
    return values


class ImpressionStream(DrainableStream):
    """NS:impressions: what the functions served, for experiments' reports.

    Contract: `add_rows` (and `add`) appends its whole batch (all or none), one entry per
    MAX_ROWS rows; draining as DrainableStream. The stream is never trimmed: only an
    acknowledged drain removes entries.
    """

    def __init__(self, client: redis.Redis, namespace: str = "recsys"):
        super().__init__(client, namespace)
        self.stream = self.keys.impressions

    def add_rows(self, rows: list) -> list[str]:
        """Appends impressions given as rows (sequences of FIELDS' values in their order) in
        one round trip: one entry per MAX_ROWS rows (one MULTI when more than one); their
        stream ids (none for no rows).

        Raises:
            ValueError: a row of another length, or a value JSON cannot hold (nothing was
                written).
            redis.RedisError: Redis failed; with a lost reply, the batch may be stored.
        """
        if any(len(r) != len(FIELDS) for r in rows):
            raise ValueError(f"an impression row without its {len(FIELDS)} values (FIELDS)")
        try:  # ASCII JSON: a lone surrogate is escaped, never refused by Redis
            payloads = [_dumps(rows[lo:lo + MAX_ROWS]) for lo in range(0, len(rows), MAX_ROWS)]
        except (TypeError, ValueError) as e:
            raise ValueError(f"an impression JSON cannot hold: {e}") from None
        return self._xadd(payloads)

    def add_encoded(self, rows: list[str]) -> list[str]:
        """`add_rows` of rows already encoded, each the JSON text of one row (the writer
        encodes each answer's as it queues it: functions/impression_log.record); they are
        joined into the entries' arrays as they are."""
        return self._xadd(["[" + ",".join(rows[lo:lo + MAX_ROWS]) + "]"
                           for lo in range(0, len(rows), MAX_ROWS)])

    def _xadd(self, payloads: list[str]) -> list[str]:
        if len(payloads) == 1:
            ids = [self.r.xadd(self.stream, {ROWS: payloads[0]})]
        elif payloads:
            pipe = self.r.pipeline(transaction=True)
            for payload in payloads:
                pipe.xadd(self.stream, {ROWS: payload})
            ids = pipe.execute()
        else:
            ids = []
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    def add(self, records: list[dict]) -> list[str]:
        """Appends impressions (dicts with FIELDS): `add_rows` of their rows.

        Raises:
            ValueError: a record lacks a field, or as `add_rows` (nothing was written).
            redis.RedisError: as `add_rows`.
        """
        return self.add_rows([row(r) for r in records])
