"""Drains the ingested events (Redis stream NS:events) into Parquet files in the artifact store.

    python -c "from infra.events_log import drain_events; from infra.store import open_store;
    from infra.redis.event_stream import EventStream; print(drain_events(
    EventStream.from_url('redis://...'), open_store('./artifacts')))"

The nightly job calls `drain_events` before it reads its input. Each batch of stream entries
becomes `events/<first id>_<last id>.parquet` in the interactions schema (docs/SCHEMA.md), and
only once that file is written and read back are the entries acknowledged and deleted from the
stream. A crash between the two loses nothing: the entries stay pending in the consumer group and
the next drain reads them again. It duplicates nothing either: entries whose stream ids fall in a
file already written are acknowledged without being written again, and event ids repeated
inside a batch are written once. `read_events_log` reads the files back, dropping any event id
seen twice.

No entry can stall the drain: one that fails validation (models/rows.py: the rules of
`POST /events`, docs/SCHEMA.md) or cannot be written as a row goes to
`events/dead/<first id>_<last id>.parquet` with its reason, and is acknowledged with its batch.
"""

from __future__ import annotations

import io
import logging
from bisect import bisect_right

import pyarrow as pa
import pyarrow.parquet as pq

from infra.parquet import STREAM_DEAD_SCHEMA, parquet_bytes
from infra.redis.event_stream import EventStream
from infra.store import ArtifactStore
from models.rows import clean_id, validate_interaction

log = logging.getLogger(__name__)

EVENTS_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("item_id", pa.string()), ("timestamp", pa.int64()),
    ("event_type", pa.string()), ("weight", pa.float64()), ("event_id", pa.string()),
    ("recommendation_id", pa.string()), ("stream_id", pa.string())])


def _sid(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _written_ranges(store: ArtifactStore, prefix: str) -> list[tuple[tuple, tuple]]:
    """The stream-id ranges of the batch files already in the store, sorted."""
    ranges = []
    for key in store.list(prefix):
        name = key[len(prefix) + 1:]
        if "/" in name or not name.endswith(".parquet"):
            continue
        first, _, last = name.removesuffix(".parquet").partition("_")
        try:
            ranges.append((_sid(first), _sid(last)))
        except ValueError:
            continue
    return sorted(ranges)


def _covered(sid: tuple, ranges: list, starts: list) -> bool:
    n = bisect_right(starts, sid) - 1
    return n >= 0 and ranges[n][0] <= sid <= ranges[n][1]


def _check_entry(sid: str, fields: dict) -> tuple[dict | None, str | None]:
    """One stream entry as an events row, or (None, reason)."""
    try:
        row, reason = validate_interaction(fields)
        if row is None:
            return None, reason
        extra = {}
        for name in ("event_id", "recommendation_id"):
            extra[name], reason = clean_id(fields.get(name), name)
            if reason and not reason.startswith("missing"):
                return None, reason
        return {**row, "event_id": extra["event_id"] or f"stream:{sid}", "stream_id": sid,
                "recommendation_id": extra["recommendation_id"]}, None
    except Exception as e:  # no entry may stop the drain
        return None, f"invalid entry ({type(e).__name__})"


def _writable(rows: list[dict], dead: list[dict], schema: pa.Schema) -> list[dict]:
    """The rows Parquet can hold; any other goes to `dead` (the whole batch is tried first)."""
    try:
        pa.Table.from_pylist(rows, schema=schema)
        return rows
    except Exception:  # find the rows at fault below
        pass
    ok = []
    for row in rows:
        try:
            pa.Table.from_pylist([row], schema=schema)
            ok.append(row)
        except Exception as e:  # this row cannot be stored as it is
            dead.append({"stream_id": row["stream_id"],
                         "reason": f"cannot be written as a row ({type(e).__name__})",
                         "row": _repr(row)})
    return ok


def _repr(value) -> str:
    """Text any Parquet file can hold: repr escapes lone surrogates and control characters."""
    try:
        return repr(value)
    except Exception as e:  # a __repr__ that raises
        return f"<unprintable {type(value).__name__}: {type(e).__name__}>"


def _put_durably(store: ArtifactStore, key: str, data: bytes) -> None:
    store.put_bytes(key, data)
    if store.get_bytes(key) != data:
        raise OSError(f"{key}: the file read back differs from the one written")


def _write_batch(store: ArtifactStore, prefix: str, entries: list, stats: dict) -> None:
    """Writes one batch's valid events (and dead letters, if any) under its id range."""
    rows, dead, ids = [], [], set()
    for sid, fields in entries:
        row, reason = _check_entry(sid, fields)
        if row is None:
            dead.append({"stream_id": sid, "reason": reason, "row": _repr(fields)})
            continue
        if row["event_id"] in ids:
            stats["duplicates"] += 1
            continue
        ids.add(row["event_id"])
        rows.append(row)
    rows = _writable(rows, dead, EVENTS_SCHEMA)
    batch = f"{entries[0][0]}_{entries[-1][0]}"
    if dead:
        _put_durably(store, f"{prefix}/dead/{batch}.parquet",
                     parquet_bytes(dead, STREAM_DEAD_SCHEMA))
        stats["dead"] += len(dead)
    _put_durably(store, f"{prefix}/{batch}.parquet", parquet_bytes(rows, EVENTS_SCHEMA))
    stats["files"].append(f"{prefix}/{batch}.parquet")
    stats["events"] += len(rows)


def drain_events(stream: EventStream, store: ArtifactStore, *, group: str = "nightly",
                 consumer: str = "drain", batch_size: int = 50_000,
                 prefix: str = "events") -> dict:
    """Moves the events ingested so far from the Redis stream into Parquet files.

    Entries added while it runs are left for the next drain. Run one drain at a time: it takes
    over the pending entries of every other consumer of `group`.

    Args:
        stream: the event stream (its namespace's NS:events).
        store: the artifact store to write `<prefix>/<first id>_<last id>.parquet` to.
        group: the Redis consumer group (created from the stream's start if missing).
        consumer: this drain's consumer name.
        batch_size: stream entries per file.
        prefix: folder of the files in the store.

    Returns:
        {"files": [keys written], "events": rows written, "duplicates": repeated event ids
        skipped, "dead": invalid entries written to <prefix>/dead/, "already_written": entries
        found in an earlier file, "acknowledged": entries acknowledged and deleted}.
    """
    stream.ensure_group(group)
    stream.claim(group, consumer, batch_size)
    until = _sid(stream.last_id())
    ranges = _written_ranges(store, prefix)
    starts = [r[0] for r in ranges]
    stats = {"files": [], "events": 0, "duplicates": 0, "dead": 0, "already_written": 0,
             "acknowledged": 0}
    after = "0-0"  # first this consumer's pending entries (an earlier drain died), then new ones
    while True:
        entries = stream.read(group, consumer, batch_size, after)
        if not entries and after != ">":
            after = ">"
            continue
        if after != ">":
            after = entries[-1][0]
        keep = [(sid, f) for sid, f in entries if _sid(sid) <= until]
        # Entries deleted while pending, or in a file of an earlier drain: acknowledge only.
        fresh = [(sid, f) for sid, f in keep if f is not None
                 and not _covered(_sid(sid), ranges, starts)]
        stats["already_written"] += sum(f is not None for _, f in keep) - len(fresh)
        if fresh:
            _write_batch(store, prefix, fresh, stats)
        if keep:
            stream.ack(group, [sid for sid, _ in keep])
            stats["acknowledged"] += len(keep)
        if after == ">" and (len(keep) < len(entries) or len(entries) < batch_size):
            break  # newer entries stay pending for the next drain
    log.info("drained events: %s", {k: v for k, v in stats.items() if k != "files"})
    return stats


def read_events_log(store: ArtifactStore, prefix: str = "events"):
    """All drained events as one pandas DataFrame, each event id once (first file wins)."""
    import pandas as pd

    keys = [k for k in store.list(prefix) if k.endswith(".parquet")
            and "/" not in k[len(prefix) + 1:]]
    if not keys:
        return EVENTS_SCHEMA.empty_table().to_pandas()
    frames = [pq.read_table(io.BytesIO(store.get_bytes(k))).to_pandas() for k in sorted(keys)]
    return pd.concat(frames, ignore_index=True).drop_duplicates("event_id", keep="first")
