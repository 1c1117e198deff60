"""The event stream and per-user histories: what POST /events writes, what the nightly drains.

`append` stores a batch of events in one Lua step: each goes to the stream NS:events (which
infra/events_log.py drains into Parquet for the next training), its item to the user's
recent history NS:hist:USER (which the functions read with the user's list,
lists.ServedLists.read_user) and its weight to the item's trending counter of the current
5-minute bucket (trending.py, GET /trending). Event ids seen within a TTL (NS:eid:ID) are
skipped, so a client may resend a batch. The drain side reads the stream through the consumer
group `nightly`: ensure_group, claim, read, ack. Keys: keys.py.
"""

from __future__ import annotations

import copy
import json
import time

import redis

from infra.redis.keys import Namespaced
from infra.redis.trending import KEEP_S, bucket_at

# Per event n (ARGV[4 + n], JSON [event_id or "", user_id, item_id, field, value, ...]; its
# history key KEYS[2n], its dedup key KEYS[2n + 1]; KEYS[1] the stream): skip it if its id was
# seen within the TTL, else XADD it, push the item on the user's history and add its weight
# (1 without one; none for a weight <= 0) to the item in the trending counter KEYS[#KEYS]
# (trending.py), which expires ARGV[4] seconds later. Every key is declared (in a Redis
# Cluster they share one slot: keys.py). ARGV[3] is the JSON array of the events' positions in
# the caller's batch, for the errors. Redis does not undo a script's
# writes when it fails part way, so every entry is decoded and checked, and every key's type
# too, before the first write: a bad batch writes nothing.
_APPEND = """
local at = cjson.decode(ARGV[3])
local function bad(n, why)
  return redis.error_reply('event ' .. at[n - 4] .. ': ' .. why .. '; nothing was stored')
end
local function type_ok(key, want)
  local t = redis.call('TYPE', key)['ok']
  return t == 'none' or t == want
end
if #KEYS ~= 2 + 2 * (#ARGV - 4) then
  return redis.error_reply('expected a stream key, two keys per event and a trending key; '
                           .. 'nothing was stored')
end
if not type_ok(KEYS[1], 'stream') then
  return redis.error_reply(KEYS[1] .. ' is not a stream; nothing was stored')
end
local trend = KEYS[#KEYS]
if not type_ok(trend, 'zset') then
  return redis.error_reply(trend .. ' is not a sorted set; nothing was stored')
end
local events = {}
for n = 5, #ARGV do
  local ok, e = pcall(cjson.decode, ARGV[n])
  if not ok or type(e) ~= 'table' then return bad(n, 'not a JSON array') end
  if #e < 5 or (#e - 3) % 2 ~= 0 then
    return bad(n, 'not [event_id, user_id, item_id, field, value, ...]')
  end
  for f = 1, #e do
    if type(e[f]) ~= 'string' then return bad(n, 'entry ' .. f .. ' is not a string') end
  end
  if not type_ok(KEYS[2 * (n - 4)], 'list') then
    return bad(n, 'the history key of its user is not a list')
  end
  events[#events + 1] = e
end
local out = {}
for i, e in ipairs(events) do
  local fresh = true
  if e[1] ~= '' then
    fresh = redis.call('SET', KEYS[2 * i + 1], '1', 'NX', 'EX', ARGV[2])
  end
  if fresh then
    local fields = {}
    for f = 4, #e do fields[#fields + 1] = e[f] end
    out[#out + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
    redis.call('LPUSH', KEYS[2 * i], e[3])
    redis.call('LTRIM', KEYS[2 * i], 0, tonumber(ARGV[1]) - 1)
    local w = 1
    for f = 4, #e - 1, 2 do
      if e[f] == 'weight' then w = tonumber(e[f + 1]) or 1 end
    end
    if w > 0 then
      redis.call('ZINCRBY', trend, w, e[3])
      redis.call('EXPIRE', trend, tonumber(ARGV[4]))
    end
  else
    out[#out + 1] = false
  end
end
return out
"""


def _encode_event(n: int, event: dict) -> bytes:
    """One _APPEND argument: UTF-8 JSON [event_id or "", user_id, item_id, field, value, ...].

    Raises:
        ValueError: `event <n>: ...` when the event lacks an id or holds text that UTF-8
            cannot encode (lone surrogates).
    """
    try:
        fields = [str(x) for k, v in event.items() if v is not None for x in (k, v)]
        row = [str(event.get("event_id") or ""), str(event["user_id"]), str(event["item_id"]),
               *fields]
        return json.dumps(row, ensure_ascii=False).encode("utf-8")
    except KeyError as e:
        raise ValueError(f"event {n}: missing field {e.args[0]!r}; nothing was stored") from None
    except AttributeError:
        raise ValueError(f"event {n}: not an object of fields; nothing was stored") from None
    except UnicodeEncodeError as e:
        raise ValueError(f"event {n}: text that is not valid Unicode ({e.reason}, e.g. a lone "
                         "surrogate); nothing was stored") from None


class DrainableStream(Namespaced):
    """A Redis stream drained through a consumer group (infra/events_log.py): ensure_group,
    claim, read, ack. Subclasses name the stream (`stream`): NS:events here, NS:impressions in
    impressions.py.

    Contract: an entry leaves the stream only when a consumer acknowledges it (ack), and an
    entry read but not acknowledged stays pending for the next reader (claim).
    """

    stream: str

    def parts(self) -> list[tuple[str, DrainableStream]]:
        """What a drain reads, as (file tag, stream): ("", self) for one stream; a stream
        sharded over a cluster's buckets (EventStream) gives one per shard, tagged "b<i>"."""
        return [("", self)]

    def ensure_group(self, group: str) -> None:
        """Creates the consumer group (from the stream's start) unless it exists."""
        try:
            self.r.xgroup_create(self.stream, group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def last_id(self) -> str:
        """The id of the newest entry in the stream ("0-0" when it is empty)."""
        newest = self.r.xrevrange(self.stream, count=1)
        return newest[0][0].decode() if newest else "0-0"

    def read(self, group: str, consumer: str, count: int,
             after: str = ">") -> list[tuple[str, dict | None]]:
        """Entries for `consumer`: new ones (after=">") or its own pending ones after an id.

        Returns:
            [(stream id, {field: value} or None for an entry deleted while pending)], oldest
            first.
        """
        reply = self.r.xreadgroup(group, consumer, {self.stream: after}, count=count)
        entries = reply[0][1] if reply else []
        # surrogateescape: bytes that are not UTF-8 (written to the stream by hand) reach the
        # drain's validator, which dead-letters them, instead of stalling every drain.
        return [(i.decode(), None if f is None else {k.decode(errors="surrogateescape"):
                                                    v.decode(errors="surrogateescape")
                                                    for k, v in f.items()})
                for i, f in entries]

    def claim(self, group: str, consumer: str, count: int) -> int:
        """Moves every pending entry of other consumers of `group` to `consumer`."""
        claimed, start = 0, "0-0"
        while True:
            start, entries, *_ = self.r.xautoclaim(self.stream, group, consumer, 0,
                                                   start_id=start, count=count)
            claimed += len(entries)
            if start in (b"0-0", "0-0"):
                return claimed

    def ack(self, group: str, ids: list[str]) -> None:
        """Acknowledges entries and deletes them from the stream, in one transaction."""
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(self.stream, group, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.execute()


class EventStream(DrainableStream):
    """The stream of ingested events and each user's recent items.

    Contract: a batch is appended whole or not at all; an event id is stored once within the
    dedup TTL; draining as DrainableStream.
    """

    def __init__(self, client: redis.Redis, namespace: str = "recsys"):
        super().__init__(client, namespace)
        self.stream = self.keys.events
        self._append = self.r.register_script(_APPEND)

    def parts(self) -> list[tuple[str, DrainableStream]]:
        """One (tag, stream) per event stream: NS:events alone, or each bucket's in a cluster."""
        if len(self.keys.event_streams) == 1:
            return [("", self)]
        views = []
        for i, name in enumerate(self.keys.event_streams):
            view = copy.copy(self)
            view.stream = name
            views.append((f"b{i}", view))
        return views

    # Ingesting (POST /events) ---------------------------------------------------------------
    def append(self, events: list[dict], history_len: int = 50,
               dedup_ttl: int = 86_400) -> list[str | None]:
        """Adds events to the durable stream and to each user's recent history, atomically.

        All or nothing: every event is encoded and checked before the first write, in Python
        and again in the script, so a batch that fails stores none of its events.

        An event whose `event_id` was already ingested within `dedup_ttl` seconds is skipped,
        so a client may resend a batch it is unsure about. Events without an id are always
        added.

        Args:
            events: dicts with at least `user_id` and `item_id`; every non-None field is
                stored as text.
            history_len: history entries kept per user (>= 1).
            dedup_ttl: seconds an event id is remembered (>= 1).

        Returns:
            Per event, its stream id, or None for a skipped duplicate.

        Raises:
            ValueError: an event cannot be stored as given (a missing `user_id`/`item_id`,
                text that is not valid Unicode such as a lone surrogate "\\udfff"); the
                message starts with `event <index>:` (0-based). Nothing was stored.
            redis.ResponseError: the script refused the batch (a malformed entry, a key of
                the wrong type); nothing was stored.
            redis.ConnectionError, redis.TimeoutError: the reply was lost; the batch may or
                may not be stored (all or nothing). Resending is safe for events with an
                `event_id`: stored ones are skipped as duplicates.

        In a Redis Cluster the events go to their users' buckets (keys.py), one script per
        bucket: each event is still stored whole (stream, history, dedup key) or not at all
        and a resent one is skipped, but a batch over several buckets is all or nothing per
        bucket should Redis fail between two of them (resend it: the stored are skipped).
        """
        if not events:
            return []
        if int(history_len) < 1 or int(dedup_ttl) < 1:
            raise ValueError(f"history_len={history_len}, dedup_ttl={dedup_ttl}: use >= 1")
        args = [_encode_event(n, e) for n, e in enumerate(events)]
        trend_bucket = bucket_at(time.time())  # trending.py: when the events are stored
        groups: dict[int, list[int]] = {}  # bucket -> positions (one group on one server)
        for n, e in enumerate(events):
            groups.setdefault(self.keys.bucket(str(e["user_id"])), []).append(n)
        if len(groups) > 1:
            self._check_histories(events)
        out: list[str | None] = [None] * len(events)
        for bucket, at in groups.items():
            keys = [self.keys.event_streams[bucket]]
            for n in at:
                user, eid = str(events[n]["user_id"]), str(events[n].get("event_id") or "")
                keys += [self.keys.hist(user), self.keys.event_id(user, eid) if eid
                         else self.keys.hist(user)]
            keys.append(self.keys.trend(str(events[at[0]]["user_id"]), trend_bucket))
            stored = self._append(keys=keys, args=[history_len, dedup_ttl, json.dumps(at),
                                                   KEEP_S, *(args[n] for n in at)])
            for n, x in zip(at, stored, strict=True):
                out[n] = x.decode() if x is not None else None
        return out

    def _check_histories(self, events: list[dict]) -> None:
        """Refuses a batch over several buckets (a cluster) before any of them is stored when
        a user's history key is not a list (each bucket's script checks again)."""
        pipe = self.r.pipeline(transaction=False)
        for e in events:
            pipe.type(self.keys.hist(str(e["user_id"])))
        for n, t in enumerate(pipe.execute()):
            if t not in (b"none", b"list", "none", "list"):
                raise redis.ResponseError(f"event {n}: the history key of its user is not a "
                                          "list; nothing was stored")

    def history(self, user_id: str, n: int = 50) -> list[str]:
        """The user's `n` most recent item ids, oldest first."""
        return [x.decode() for x in self.r.lrange(self.keys.hist(user_id), 0, n - 1)][::-1]
