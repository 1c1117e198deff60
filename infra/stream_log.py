"""Draining a Redis stream into Parquet files in the artifact store: the machinery that
infra/events_log.py uses for both logs (NS:events and NS:impressions), each described by a
`StreamLog` (folder, schema, entry check, the column written once).

Each batch of stream entries becomes `<prefix>/<first id>_<last id>.parquet` (in a Redis
Cluster, whose events stream per bucket, `<first id>_<last id>.b<bucket>.parquet`: ids are
compared within one stream only), and only once that
file is written and read back are the entries acknowledged and deleted from the stream. A crash
between the two loses nothing: the entries stay pending in the consumer group and the next drain
reads them again. It duplicates nothing either: entries whose stream ids fall in a file already
written are acknowledged without being written again, and a key repeated inside a batch is
written once. An entry may hold several rows (`StreamLog.split`: an impression entry holds a
batch of answers); the file takes whole entries, and a row that fails its check or cannot be
written as a row goes to `<prefix>/dead/<first id>_<last id>.parquet` with its reason and its
entry's stream id (STREAM_DEAD_SCHEMA), the entry's other rows to the file. Drains of a
namespace take turns under a Redis lock (NS:drain:lock, redis-py's Lock with a lease renewed
after every batch), so a report's drain beside the nightly's neither writes an entry twice nor
takes over entries the other is working on.
"""

from __future__ import annotations

import io
import logging
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from infra.parquet import STREAM_DEAD_SCHEMA, parquet_bytes
from infra.redis.event_stream import DrainableStream
from infra.store import ArtifactStore

log = logging.getLogger(__name__)

LOCK_SECONDS = 900  # the drain lock's lease, renewed after every batch


def _sid(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _written_ranges(store: ArtifactStore, prefix: str,
                    tag: str = "") -> list[tuple[tuple, tuple]]:
    """The stream-id ranges of the batch files already in the store from the stream tagged
    `tag` ("" for a namespace's only stream; "b<i>" for a cluster's bucket i), sorted."""
    ranges = []
    for key in store.list(prefix):
        name = key[len(prefix) + 1:]
        if "/" in name or not name.endswith(".parquet"):
            continue
        name, _, file_tag = name.removesuffix(".parquet").partition(".")
        if file_tag != tag:
            continue
        first, _, last = name.partition("_")
        try:
            ranges.append((_sid(first), _sid(last)))
        except ValueError:
            continue
    return sorted(ranges)


def _union(ranges: list[tuple[tuple, tuple]]) -> list[tuple[tuple, tuple]]:
    """Sorted ranges merged where they overlap, so that one bisection finds an id's range."""
    out: list[list] = []
    for first, last in ranges:
        if out and first <= out[-1][1]:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return [(first, last) for first, last in out]


def _covered(sid: tuple, ranges: list, starts: list) -> bool:
    n = bisect_right(starts, sid) - 1
    return n >= 0 and ranges[n][0] <= sid <= ranges[n][1]


@dataclass(frozen=True)
class StreamLog:
    """What differs between the drained streams' logs.

    Attributes:
        prefix: the folder of the files in the store (dead letters in <prefix>/dead/).
        schema: the files' schema.
        check: (stream id, record) -> (row, None) or (None, reason), for one record of an
            entry (the entry's fields, unless `split` says otherwise).
        key: the column whose value is written once (a repeat inside a batch is skipped, and
            the reader keeps its first row).
        noun: the stats' count of rows written ("events", "impressions").
        split: an entry's fields -> its records, each (position in the entry or None for the
            whole entry, the record or what stood in its place, None or the reason it is not
            one); None: each entry is one record, its fields.
        entry_rows: the most records one entry holds (a drain reads no more entries at a time
            than could hold batch_size records).
    """

    prefix: str
    schema: pa.Schema
    check: Callable[[str, dict], tuple[dict | None, str | None]]
    key: str
    noun: str
    split: Callable[[dict], list[tuple[int | None, object, str | None]]] | None = None
    entry_rows: int = 1


def _check_entry(spec: StreamLog, sid: str, fields: dict) -> tuple[dict | None, str | None]:
    try:
        return spec.check(sid, fields)
    except Exception as e:  # no entry may stop the drain
        return None, f"invalid entry ({type(e).__name__})"


def _records(spec: StreamLog, sid: str, fields: dict) -> list[tuple]:
    """An entry's records as (stream id, position or None, record, reason or None)."""
    if spec.split is None:
        return [(sid, None, fields, None)]
    try:
        return [(sid, at, record, reason) for at, record, reason in spec.split(fields)]
    except Exception as e:  # no entry may stop the drain
        return [(sid, None, fields, f"invalid entry ({type(e).__name__})")]


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


def _write_batch(store: ArtifactStore, spec: StreamLog, prefix: str, batch: str,
                 records: list[tuple], stats: dict) -> None:
    """Writes one batch's valid rows (and dead letters, if any) as `<prefix>/<batch>.parquet`.

    Args:
        batch: the file's name: `<first id>_<last id>` of its entries (and `.<tag>`).
        records: the entries' records, as `_records` gives them.
    """
    rows, dead, ids = [], [], set()
    for sid, at, record, reason in records:
        row = None
        if reason is None:
            row, reason = _check_entry(spec, sid, record)
        if row is None:
            dead.append({"stream_id": sid, "row": _repr(record),
                         "reason": reason if at is None else f"row {at}: {reason}"})
            continue
        if row[spec.key] in ids:
            stats["duplicates"] += 1
            continue
        ids.add(row[spec.key])
        rows.append(row)
    rows = _writable(rows, dead, spec.schema)
    if dead:
        _put_durably(store, f"{prefix}/dead/{batch}.parquet",
                     parquet_bytes(dead, STREAM_DEAD_SCHEMA))
        stats["dead"] += len(dead)
    _put_durably(store, f"{prefix}/{batch}.parquet", parquet_bytes(rows, spec.schema))
    stats["files"].append(f"{prefix}/{batch}.parquet")
    stats[spec.noun] += len(rows)


def drain(stream: DrainableStream, store: ArtifactStore, spec: StreamLog, *,
          group: str = "nightly", consumer: str = "drain", batch_size: int = 50_000,
          prefix: str | None = None, lock_wait: float = 600.0) -> dict:
    """`drain_events` for any drained stream, `spec` saying what its log holds."""
    prefix = prefix or spec.prefix
    name = stream.keys.drain_lock
    lock = stream.r.lock(name, timeout=LOCK_SECONDS, blocking_timeout=lock_wait)
    if not lock.acquire():
        raise TimeoutError(f"another drain held {name} for {lock_wait:g} s (a nightly job or "
                           "a report draining the streams); retry when it is done")
    try:
        stats = {"files": [], spec.noun: 0, "duplicates": 0, "dead": 0, "already_written": 0,
                 "acknowledged": 0}
        parts = stream.parts()  # a cluster's event streams, one per bucket
        for tag, part in parts if len(parts) > 1 else [("", stream)]:
            _drain(part, store, spec, prefix, group, consumer, batch_size, lock, stats, tag)
    finally:
        try:
            lock.release()
        except Exception as e:  # expired or Redis gone: the lease runs out on its own
            log.warning("drain lock not released: %s", e)
    log.info("drained %s: %s", spec.noun, {k: v for k, v in stats.items() if k != "files"})
    return stats


def _drain(stream, store, spec, prefix, group, consumer, batch_size, lock, stats, tag) -> None:
    stream.ensure_group(group)
    stream.claim(group, consumer, batch_size)
    until = _sid(stream.last_id())
    ranges = _union(_written_ranges(store, prefix, tag))
    starts = [r[0] for r in ranges]
    held, fresh, records = [], [], []  # read, not yet acknowledged: entries, new ones, records
    after = "0-0"  # first this consumer's pending entries (an earlier drain died), then new ones
    while True:
        # A file takes whole entries until it holds batch_size records: read no more entries
        # than could fill it (one at a time near the end, so it overshoots by one entry at most).
        count = max(1, (batch_size - len(records)) // spec.entry_rows)
        entries = stream.read(group, consumer, count, after)
        if not entries and after != ">":
            after = ">"
            continue
        if after != ">":
            after = entries[-1][0]
        keep = [(sid, f) for sid, f in entries if _sid(sid) <= until]
        # Entries deleted while pending, or in a file of an earlier drain: acknowledge only.
        new = [(sid, f) for sid, f in keep if f is not None
               and not _covered(_sid(sid), ranges, starts)]
        stats["already_written"] += sum(f is not None for _, f in keep) - len(new)
        held += [sid for sid, _ in keep]
        fresh += [sid for sid, _ in new]
        for sid, fields in new:
            records += _records(spec, sid, fields)
        done = after == ">" and (len(keep) < len(entries) or len(entries) < count)
        if held and (done or len(held) >= batch_size or len(records) >= batch_size):
            if fresh:  # one file of whole entries, named by their id range
                _write_batch(store, spec, prefix,
                             f"{fresh[0]}_{fresh[-1]}" + (f".{tag}" if tag else ""),
                             records, stats)
            stream.ack(group, held)
            stats["acknowledged"] += len(held)
            held, fresh, records = [], [], []
        lock.extend(LOCK_SECONDS, replace_ttl=True)
        if done:
            return  # newer entries stay pending for the next drain


def read_log(store: ArtifactStore, spec: StreamLog, prefix: str):
    """Every file of the log (not its dead letters) as one DataFrame, each `spec.key` once
    (the first file by name wins).

    Raises:
        OSError: a file is not a Parquet file of the log's columns (named, with the error).
    """
    import pandas as pd

    keys = [k for k in store.list(prefix) if k.endswith(".parquet")
            and "/" not in k[len(prefix) + 1:]]
    if not keys:
        return spec.schema.empty_table().to_pandas()
    frames = []
    for key in sorted(keys):
        try:
            frame = pq.read_table(io.BytesIO(store.get_bytes(key))).to_pandas()
        except (pa.ArrowException, OSError) as e:
            raise OSError(f"{key}: not a readable Parquet file of the {spec.noun} log "
                          f"({type(e).__name__}: {e}); move it out of {prefix}/") from None
        if spec.key not in frame:
            raise OSError(f"{key}: no {spec.key} column, not a file of the {spec.noun} log; "
                          f"move it out of {prefix}/")
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True).drop_duplicates(spec.key, keep="first")
    return df.reset_index(drop=True)
