"""Drains the ingested events (NS:events) and the served answers (NS:impressions) into Parquet.

    python -c "from infra.events_log import drain_events; from infra.store import open_store;
    from infra.redis.event_stream import EventStream; print(drain_events(
    EventStream.from_url('redis://...'), open_store('./artifacts')))"

The nightly job calls `drain_events` before it reads its input: each batch of stream entries
becomes `events/<first id>_<last id>.parquet` in the interactions schema (docs/SCHEMA.md) plus
the events' `recommendation_id` and `value`, acknowledged in Redis only once the file is written
and read back (infra/stream_log.py: nothing lost, nothing twice, one drain at a time).
`read_events_log` reads the files back, dropping any event id seen twice. No entry can stall
the drain: one that fails validation (models/rows.py: the rules of `POST /events`) or cannot be
written as a row goes to `events/dead/<first id>_<last id>.parquet` with its reason.

`drain_impressions` does the same for the impression stream (infra/redis/impressions.py) into
`impressions/<first id>_<last id>.parquet` (IMPRESSIONS_SCHEMA; one row per answer of each
entry's batch, or per single-answer entry of the format before batches; each recommendation id
once; bad rows to `impressions/dead/`, the other rows of their batch to the file), and
`read_impressions_log` reads them back; the nightly drains both, `recsys experiment report`
too. One machinery serves both streams (`StreamLog` says what differs: folder, schema, entry
check, how an entry splits into rows, the id written once).
"""

from __future__ import annotations

import json
import math

import pyarrow as pa

from infra.redis.event_stream import EventStream
from infra.redis.impressions import FIELDS, MAX_ROWS, ROWS, ImpressionStream, is_batch
from infra.store import ArtifactStore
from infra.stream_log import StreamLog, drain, read_log
from models.rows import VERSION_RE, clean_id, validate_interaction

EVENTS_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("item_id", pa.string()), ("timestamp", pa.int64()),
    ("event_type", pa.string()), ("weight", pa.float64()), ("event_id", pa.string()),
    ("recommendation_id", pa.string()), ("value", pa.float64()), ("stream_id", pa.string())])
# infra/redis/impressions.py's FIELDS, typed; experiment and arm are "" outside an experiment.
IMPRESSIONS_SCHEMA = pa.schema([
    ("recommendation_id", pa.string()), ("user_id", pa.string()), ("experiment", pa.string()),
    ("arm", pa.string()), ("version", pa.string()), ("items", pa.list_(pa.string())),
    ("source", pa.string()), ("status", pa.int64()), ("latency_ms", pa.float64()),
    ("ts_ms", pa.int64()), ("stream_id", pa.string())])
MAX_ITEMS = 10_000  # items of one logged answer (an answer holds at most max_k)
MAX_LATENCY_MS = 3_600_000.0
TS_MS_MAX = 4_102_444_800_000  # 2100-01-01 UTC, as models/rows.TS_MAX


def _check_event(sid: str, fields: dict) -> tuple[dict | None, str | None]:
    """One NS:events entry as an events row, or (None, reason)."""
    row, reason = validate_interaction(fields)
    if row is None:
        return None, reason
    extra = {}
    for name in ("event_id", "recommendation_id"):
        extra[name], reason = clean_id(fields.get(name), name)
        if reason and not reason.startswith("missing"):
            return None, reason
    return {"value": None, **row, "event_id": extra["event_id"] or f"stream:{sid}",
            "stream_id": sid, "recommendation_id": extra["recommendation_id"]}, None


def _number(fields: dict, name: str, low: float, high: float, integer: bool):
    """A number of an entry: text (a single-answer entry) or a JSON number (a batch row; an
    integer field takes no fraction, and true/false are no numbers)."""
    value = fields.get(name, "")
    kind = "n integer" if integer else " number"
    if isinstance(value, bool) or not isinstance(value, str | int | float) or (
            integer and isinstance(value, float)):
        return None, f"{name} is not a{kind}"
    try:
        number = int(value) if integer else float(value)
    except (ValueError, OverflowError):
        return None, f"{name} is not a{kind}"
    if not (math.isfinite(number) and low <= number <= high):
        return None, f"{name} out of range [{low:g}, {high:g}]"
    return number, None


def _text(fields: dict, name: str) -> tuple[str | None, str | None]:
    value = fields.get(name, "")
    return (value, None) if isinstance(value, str) else (None, f"{name} is not a string")


def _check_impression(sid: str, fields: dict) -> tuple[dict | None, str | None]:
    """One impression (a single-answer entry's fields, or a batch row as a dict of FIELDS) as
    an impressions row, or (None, reason)."""
    row = {"stream_id": sid}
    for name in ("recommendation_id", "user_id"):
        row[name], reason = clean_id(fields.get(name), name)
        if reason:
            return None, reason
    for name in ("experiment", "arm", "source"):
        text, reason = _text(fields, name)
        if not reason and text.strip():
            text, reason = clean_id(text, name)
        if reason:
            return None, reason
        row[name] = text.strip()
    row["version"], reason = _text(fields, "version")
    if reason:
        return None, reason
    if row["version"] and not VERSION_RE.fullmatch(row["version"]):
        return None, "malformed version"
    items = fields.get("items", "")
    if isinstance(items, str):  # a single-answer entry: the JSON array as text
        try:
            items = json.loads(items)
        except ValueError:
            return None, "items is not a JSON array"
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        return None, f"items is not a JSON array of at most {MAX_ITEMS} ids"
    row["items"] = []
    for item in items:
        text, reason = clean_id(item, "item_id")
        if reason:
            return None, f"items: {reason}"
        row["items"].append(text)
    for name, low, high, integer in (("status", 100, 599, True),
                                     ("latency_ms", 0, MAX_LATENCY_MS, False),
                                     ("ts_ms", 0, TS_MS_MAX - 1, True)):
        row[name], reason = _number(fields, name, low, high, integer)
        if reason:
            return None, reason
    return row, None


def _split_impressions(fields: dict) -> list[tuple[int | None, object, str | None]]:
    """An NS:impressions entry's records: a batch's rows (each as a dict of FIELDS), or the
    entry itself when it is a single answer's (the format before batches)."""
    if not is_batch(fields):
        return [(None, fields, None)]
    try:
        rows = json.loads(fields[ROWS])
    except (ValueError, RecursionError):
        rows = None
    if not isinstance(rows, list) or len(rows) > MAX_ROWS:
        return [(None, fields, f"{ROWS} is not a JSON array of at most {MAX_ROWS} rows")]
    return [(n, dict(zip(FIELDS, r, strict=True)), None)
            if isinstance(r, list) and len(r) == len(FIELDS)
            else (n, r, f"not a JSON array of the {len(FIELDS)} impression fields")
            for n, r in enumerate(rows)]


EVENTS = StreamLog("events", EVENTS_SCHEMA, _check_event, "event_id", "events")
IMPRESSIONS = StreamLog("impressions", IMPRESSIONS_SCHEMA, _check_impression,
                        "recommendation_id", "impressions", split=_split_impressions,
                        entry_rows=MAX_ROWS)


def drain_events(stream: EventStream, store: ArtifactStore, *, group: str = "nightly",
                 consumer: str = "drain", batch_size: int = 50_000,
                 prefix: str = "events") -> dict:
    """Moves the events ingested so far from the Redis stream into Parquet files.

    Entries added while it runs are left for the next drain. Drains of one namespace take
    turns (the lock NS:drain:lock); each takes over the pending entries of every other
    consumer of `group`, which only a drain that died can have left.

    Args:
        stream: the event stream (its namespace's NS:events).
        store: the artifact store to write `<prefix>/<first id>_<last id>.parquet` to.
        group: the Redis consumer group (created from the stream's start if missing).
        consumer: this drain's consumer name.
        batch_size: stream entries per file (at most).
        prefix: folder of the files in the store.

    Returns:
        {"files": [keys written], "events": rows written, "duplicates": repeated event ids
        skipped, "dead": invalid entries written to <prefix>/dead/, "already_written": entries
        found in an earlier file, "acknowledged": entries acknowledged and deleted}.

    Raises:
        TimeoutError: another drain of the namespace held the lock for 10 minutes.
    """
    return drain(stream, store, EVENTS, group=group, consumer=consumer,
                 batch_size=batch_size, prefix=prefix)


def drain_impressions(stream: ImpressionStream, store: ArtifactStore, *, group: str = "nightly",
                      consumer: str = "drain", batch_size: int = 50_000,
                      prefix: str = "impressions") -> dict:
    """Moves the logged answers from NS:impressions into `<prefix>/<first>_<last>.parquet`
    (IMPRESSIONS_SCHEMA), as `drain_events` does for events: the same guarantees and
    arguments, but `batch_size` counts rows (a file takes whole entries until it holds that
    many, so it may hold one entry's rows more); the stats count rows under "impressions",
    repeated recommendation ids under "duplicates", bad rows under "dead", and entries under
    "acknowledged" and "already_written"."""
    return drain(stream, store, IMPRESSIONS, group=group, consumer=consumer,
                 batch_size=batch_size, prefix=prefix)


def read_events_log(store: ArtifactStore, prefix: str = "events"):
    """All drained events as one pandas DataFrame, each event id once (first file wins).
    Files written before the `value` column existed read it as null."""
    df = read_log(store, EVENTS, prefix)
    return df if "value" in df else df.assign(value=float("nan"))


def read_impressions_log(store: ArtifactStore, prefix: str = "impressions"):
    """All drained impressions (IMPRESSIONS_SCHEMA) as one pandas DataFrame, each
    recommendation id once (first file wins); `items` holds lists of item ids."""
    return read_log(store, IMPRESSIONS, prefix)
