"""The hostile-input suite: everything from outside is hostile, and none of it may break what
is served.

One version is published by the real nightly job; then the real HTTP server (`recsys serve`)
takes adversarial ids, numbers and shapes on every endpoint, poison entries reach the events
stream behind the server's back, and the nightly runs again on input files full of bad rows,
then once more on a sliver. After it all: no answer was a 5xx or held a traceback, the
current version is the first one or a valid successor, and every warm user of the current
version still gets `source: cache`.
"""

from __future__ import annotations

import json
import random
import shutil
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.conftest import recsys_serve

NS = "hostile"
WRITE_KEY = "hostile-suite-write-key-0123456789"
ADMIN_KEY = "hostile-suite-admin-key-0123456789"

# Ids that are legal but look like key separators, glob patterns, hash tags or markup.
NASTY_LEGAL_IDS = ["*[^:shards", "u1:shards", "*", "?", "[a-z]", "[", "]", "\\", "\\*", "a*b",
                   ":", "::", "u:1", "v:x:u:y", "{tag}", "{", "%2A", "%", "../../etc/passwd",
                   "recsys:current", "NS:v:*:shards", "-1", "0", "1e3", "nan", "null", "true",
                   "名前", "🙂", "\u202eevil", "a b", "x" * 256]
# Ids no endpoint may accept, and that must get a 4xx, not a 5xx.
BAD_IDS = ["\ud800", "\udfff", "a\ud800b", "x" * 100_000, "x" * 257]
# Ids that may be refused or accepted (controls, blanks), as long as the answer is no 5xx.
ODD_IDS = ["", " ", "\x00", "a\x00b", "\n", "\t\r"]
BAD_NUMBERS = [float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 1e39, 10**30,
               -(10**30), 2**63, 2**64, True, False, -1, 1e20, 9.3e18, -1e30, "1e20",
               "99999999999999999999", "-1e30", "NaN", "Infinity", [1, 2], {"a": 1}, None]


def _bad_as_id(value) -> bool:
    """True for a JSON value no id field may take (numbers become their integer text)."""
    if isinstance(value, bool) or value is None or not isinstance(value, str | int | float):
        return True
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf")) or len(
            str(int(value))) > 256
    return len(str(value)) > 256


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _request(url: str, body: bytes | None = None, headers: dict | None = None,
             method: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, body, headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _json_body(value) -> bytes:
    # ensure_ascii escapes lone surrogates as \udxxx, as a hostile client would send them
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


def _big_post(url: str, path: str, size: int, key: str | None, chunked: bool) -> int:
    """POSTs `size` bytes of a JSON string, with a Content-Length or chunked; the status."""
    import http.client

    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/json")
        if key:
            conn.putheader("X-API-Key", key)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        else:
            conn.putheader("Content-Length", str(15 + (size >> 20 << 20)))
        conn.endheaders()
        block = b"x" * (1 << 20)
        try:
            conn.send(b'{"user_id": "' if not chunked else b"d\r\n" + b'{"user_id": "' + b"\r\n")
            for _ in range(size >> 20):
                conn.send(block if not chunked else b"%x\r\n" % len(block) + block + b"\r\n")
            conn.send(b'"}' if not chunked else b"2\r\n\"}\r\n0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before reading it all: read what it said
        try:
            return conn.getresponse().status
        except (ConnectionResetError, http.client.RemoteDisconnected):
            return -1
    finally:
        conn.close()


class Calls:
    """Sends requests and records every answer that breaks the rules."""

    def __init__(self, url: str):
        self.url, self.broken, self.count = url, [], 0

    def send(self, path: str, body=None, *, raw: bytes | None = None, key: str | None = None,
             method: str | None = None, expect_4xx: bool = False) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["X-API-Key"] = key
        data = raw if raw is not None else (None if body is None else _json_body(body))
        status, text = _request(self.url + path, data, headers, method)
        self.count += 1
        what = (f"{method or ('POST' if data is not None else 'GET')} {path[:80]} "
                f"{(data or b'')[:60]!r} -> {status}")
        if status >= 500:
            self.broken.append(f"{what}: 5xx {text[:200]!r}")
        if b"Traceback" in text or b'File "/' in text:
            self.broken.append(f"{what}: traceback in body {text[:200]!r}")
        if expect_4xx and not 400 <= status < 500:
            self.broken.append(f"{what}: expected a 4xx")
        if 400 <= status < 500:
            try:
                answer = json.loads(text)
            except ValueError:
                self.broken.append(f"{what}: 4xx body is not JSON {text[:200]!r}")
            else:
                if not isinstance(answer, dict) or not ("error" in answer
                                                        or "rejected" in answer):
                    self.broken.append(f"{what}: 4xx body does not say what is wrong")
        return status, text


def _nightly(args: list[str]) -> dict:
    from batch.nightly import run

    return run(args)


@pytest.fixture(scope="module")
def world(tmp_path_factory, redis_url):
    """A published version in namespace `hostile` of db 2 and `recsys serve` in front of it."""
    import redis

    from models.synthetic import generate

    redis_url = redis_url.rsplit("/", 1)[0] + "/2"
    redis.Redis.from_url(redis_url).flushdb()  # a rerun on a REDIS_URL server starts afresh
    root = tmp_path_factory.mktemp("hostile")
    data = generate(n_users=150, n_items=60, seed=15, events_per_user=15)
    base = root / "interactions.parquet"
    data.interactions.to_parquet(base)
    store = str(root / "artifacts")
    common = [f"--store={store}", f"--redis_url={redis_url}", f"--namespace={NS}",
              "--model=mf", "--epochs=3",
              "--dim=8", "--k=20", "--shard_size=50", "--skip_gate",
              "--runner=FnApiRunner", "--direct_num_workers=1",
              "--direct_running_mode=in_memory"]
    first = _nightly([f"--input={base}", *common])

    log = root / "server.log"
    env = {"REDIS_URL": redis_url, "RECSYS_STORE": store, "RECSYS_NAMESPACE": NS,
           "RECSYS_API_KEY": WRITE_KEY, "RECSYS_ADMIN_KEY": ADMIN_KEY,
           "RECSYS_POINTER_TTL_S": "0", "WORKERS": "1", "THREADS": "4",
           "RECSYS_RECOMMEND_KEY": None}
    with recsys_serve(env, log) as (url, _):
        yield {"url": url, "redis_url": redis_url, "store": store, "root": root, "base": base,
               "common": common, "first": first, "data": data, "log": log}


def _warm_users(store: str, version: str) -> list[str]:
    from infra.store import open_store

    return json.loads(open_store(store).get_bytes(f"bundles/{version}/user_ids.json"))


def _every_warm_user_gets_the_cache(calls: Calls, store: str, version: str) -> list[str]:
    """The warm users of `version` whose answer is not their cached list."""
    misses = []
    for user in _warm_users(store, version):
        status, text = calls.send("/recommend?" + urllib.parse.urlencode(
            {"user_id": user, "k": 5}))
        if status != 200 or json.loads(text)["source"] != "cache":
            misses.append(user)
    return misses


def _hostile_http(calls: Calls, warm: str) -> None:
    """Every endpoint, every adversarial id, number and shape."""
    rng = random.Random(15)
    for user in NASTY_LEGAL_IDS:
        calls.send("/recommend?" + urllib.parse.urlencode({"user_id": user, "k": 3}))
        calls.send("/recommend", {"user_id": user, "k": 3, "exclude": [user],
                                  "category": [user], "events": [user]})
    for bad in BAD_IDS + ODD_IDS:
        refused = bad in BAD_IDS
        calls.send("/recommend", {"user_id": bad}, expect_4xx=refused or not bad.strip())
        calls.send("/recommend", {"user_id": warm, "exclude": [bad, "1"]}, expect_4xx=refused)
        calls.send("/events", {"events": [{"user_id": bad, "item_id": "1"}]}, key=WRITE_KEY,
                   expect_4xx=refused or not bad.strip())
        calls.send("/admin/items", {"unavailable": [bad]}, key=ADMIN_KEY, expect_4xx=refused)
    for number in BAD_NUMBERS:
        calls.send("/recommend", {"user_id": warm, "k": number}, expect_4xx=number is not None)
        calls.send("/recommend", {"user_id": number}, expect_4xx=_bad_as_id(number))
        for field in ("timestamp", "weight", "user_id", "item_id"):
            event = {"user_id": "hostile-n", "item_id": "1", field: number}
            bad = _bad_as_id(number) if field.endswith("_id") else number is not None
            calls.send("/events", {"events": [event]}, key=WRITE_KEY, expect_4xx=bad)
    for depth in (10, 1_000, 5_000, 100_000):
        nested = _nested(depth).encode()
        calls.send("/recommend", raw=b'{"user_id": "a", "features": ' + nested + b"}",
                   expect_4xx=True)
        calls.send("/events", raw=b'{"events": ' + nested + b"}", key=WRITE_KEY,
                   expect_4xx=True)
        calls.send("/admin/items", raw=b'{"unavailable": ' + nested + b"}", key=ADMIN_KEY,
                   expect_4xx=True)
    for shape in [b"", b"null", b"[]", b"{", b"\xff\xfe", b'"text"', b"1e999", b"[1, 2]",
                  b'{"user_id": {"a": 1}}', b'{"events": {"a": 1}}', b'{"events": [1, "a"]}',
                  b'{"events": [[]]}', b'{"unavailable": 5}', b'{"categories": [1]}',
                  b'{"user_id": "a\\ud800"}', b'{"user_id": "a", "cursor": {"j": 1}}']:
        for path, key in (("/recommend", None), ("/events", WRITE_KEY),
                          ("/admin/items", ADMIN_KEY)):
            calls.send(path, raw=shape, key=key, expect_4xx=True)
    for path, key in (("/recommend", None), ("/events", WRITE_KEY), ("/admin/items", ADMIN_KEY)):
        for chunked in (False, True):
            status = _big_post(calls.url, path, 48 << 20, key, chunked)
            if status != 413:
                calls.broken.append(f"{path}: a 48 MB body (chunked={chunked}) got {status}, "
                                    "not 413")
    # Cursors: forged, nested, altered, another user's.
    status, text = calls.send("/recommend?" + urllib.parse.urlencode({"user_id": warm, "k": 2}))
    cursor = json.loads(text)["next_cursor"]
    assert status == 200 and cursor
    import base64
    import zlib

    old_style = "s" + base64.urlsafe_b64encode(
        f"{zlib.crc32(warm.encode()):08x}\x1e1\x1e2".encode()).decode().rstrip("=")
    nested = "j" + base64.urlsafe_b64encode(_nested(5_000).encode()).decode().rstrip("=")
    flipped = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    for bad in [old_style, nested, flipped, cursor + "x", "x" * 100_000, "\ud800", "j", "s"]:
        calls.send("/recommend", {"user_id": warm, "cursor": bad}, expect_4xx=True)
    calls.send("/recommend", {"user_id": warm + "-other", "cursor": cursor}, expect_4xx=True)
    status, text = calls.send("/recommend", {"user_id": warm, "k": 2, "cursor": cursor})
    assert status == 200, text
    # Keys: none, wrong, near-miss; methods nobody serves.
    for key in (None, "", "x", WRITE_KEY[:-1], WRITE_KEY + "x", " " + WRITE_KEY[1:], ADMIN_KEY):
        calls.send("/events", {"events": [{"user_id": "k", "item_id": "1"}]}, key=key,
                   expect_4xx=True)
    calls.send("/admin/items", {"unavailable": ["1"]}, key=WRITE_KEY, expect_4xx=True)
    for method in ("PUT", "DELETE", "PATCH"):
        for path in ("/recommend", "/events", "/admin/items"):
            calls.send(path, {}, method=method, key=ADMIN_KEY, expect_4xx=True)
    # Random ids from a pool of separators, globs, unicode, controls and surrogates.
    pool = "*?[]^\\:{}%/ .\x00\x1f\x7f\u200b\u202e名🙂\ud800\udfff" + "abc019"
    for _ in range(150):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(1, 40)))
        calls.send("/recommend", {"user_id": text, "k": rng.randint(-5, 200)})
        calls.send("/events", {"events": [{"user_id": text, "item_id": text[::-1] or "1"}]},
                   key=WRITE_KEY)


def _hostile_item_endpoints(calls: Calls, warm: str, item: str) -> None:
    """/similar, /trending and explain=true: adversarial ids, numbers, shapes and cursors."""
    for nasty in NASTY_LEGAL_IDS:  # unknown items: a 404; as filters: a 400 or an answer
        calls.send("/similar?" + urllib.parse.urlencode({"item_id": nasty, "k": 3}))
        calls.send("/similar", {"item_id": item, "k": 3, "exclude": [nasty]})
        calls.send("/similar", {"item_id": item, "category": [nasty]}, expect_4xx=True)
        calls.send("/trending?" + urllib.parse.urlencode({"window": nasty}), expect_4xx=True)
        calls.send("/trending", {"exclude": [nasty], "k": 3})
    for bad in BAD_IDS + ODD_IDS:
        calls.send("/similar", {"item_id": bad}, expect_4xx=True)
        calls.send("/trending", {"window": bad}, expect_4xx=bool(bad.strip()))
    for number in BAD_NUMBERS:
        calls.send("/similar", {"item_id": item, "k": number}, expect_4xx=number is not None)
        calls.send("/similar", {"item_id": number}, expect_4xx=True)  # no such item or no id
        calls.send("/trending", {"k": number}, expect_4xx=number is not None)
        calls.send("/recommend", {"user_id": warm, "explain": number},
                   expect_4xx=number is not None and not isinstance(number, bool))
    for shape in [b"", b"null", b"[]", b"{", b"\xff\xfe", b'"text"', b"1e999", b"[1, 2]",
                  b'{"item_id": {"a": 1}}', b'{"item_id": "a\\ud800"}',
                  b'{"item_id": "1", "cursor": {"j": 1}}', b'{"window": ["1h"]}']:
        calls.send("/similar", raw=shape, expect_4xx=True)
        calls.send("/trending", raw=shape)
    status, text = calls.send("/similar?" + urllib.parse.urlencode({"item_id": item, "k": 2}))
    cursor = json.loads(text)["next_cursor"]
    assert status == 200 and cursor, text
    for bad in [cursor[:-3] + "AAA", cursor + "x", "x" * 100_000, "\ud800", "j", "s"]:
        calls.send("/similar", {"item_id": item, "cursor": bad}, expect_4xx=True)
    calls.send("/recommend", {"user_id": warm, "cursor": cursor}, expect_4xx=True)
    for method in ("PUT", "DELETE", "PATCH"):
        for path in ("/similar", "/trending"):
            calls.send(path, {}, method=method, expect_4xx=True)
    calls.send("/recommend?" + urllib.parse.urlencode({"user_id": warm, "explain": "maybe"}),
               expect_4xx=True)


def _poison_the_stream(redis_url: str) -> int:
    """Entries that reach the stream behind the server's validation (an older function
    version, a hand-run script): the drain must dead-letter them and go on."""
    import redis

    r = redis.Redis.from_url(redis_url)
    poison = [{"user_id": "p1", "item_id": "1", "timestamp": "1e20"},
              {"user_id": "p2", "item_id": "1", "timestamp": "-1e30"},
              {"user_id": "p3", "item_id": "1", "timestamp": "99999999999999999999"},
              {"user_id": "p4", "item_id": "1", "timestamp": "1700000000", "weight": "1e39"},
              {"user_id": "p5", "item_id": "1", "timestamp": "True"},
              {"user_id": "x" * 100_000, "item_id": "1", "timestamp": "1700000000"},
              {"item_id": "1"}, {"junk": "1"}]
    for fields in poison:
        r.xadd(f"{NS}:events", fields)
    return len(poison)


def _hostile_input_files(root, base) -> list:
    """A CSV with malformed lines and bad values beside the good input, and a Parquet file
    whose ids are lists and whose timestamps are booleans."""
    import pandas as pd

    good = pd.read_parquet(base).iloc[:5]
    lines = ["user_id,item_id,timestamp,event_type,weight"]
    lines += [f"{r.user_id},{r.item_id},{r.timestamp},view,1" for r in good.itertuples()]
    lines += ["u-bad,1,1700000000,view,1,EXTRA,FIELDS", "only-one-field",
              "u-ts1,1,1e20,view,1", "u-ts2,1,99999999999999999999,view,1",
              "u-ts3,1,-1e30,view,1", "u-ts4,1,9.3e18,view,1", "u-ts5,1,true,view,1",
              "u-w1,1,1700000000,view,1e39", "u-w2,1,1700000000,view,nan",
              "u-w3,1,1700000000,view,inf", "u-w4,1,1700000000,view,-1",
              f"{'x' * 100_000},1,1700000000,view,1", ",1,1700000000,view,1",
              '"*[^:shards",1,1700000000,view,1', '"u1:shards",2,1700000000,view,1']
    csv = root / "hostile.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    odd = pd.DataFrame({"user_id": [[1, 2], [3]], "item_id": ["1", "2"],
                        "timestamp": [True, False]})
    parquet = root / "odd.parquet"
    odd.to_parquet(parquet)
    return [csv, parquet]


def test_hostile_input_never_breaks_what_is_served(world):
    import redis

    from infra.redis.lists import ServedLists
    from infra.store import open_store

    calls = Calls(world["url"])
    lists = ServedLists(redis.Redis.from_url(world["redis_url"]), NS)
    first = world["first"]["version"]
    assert lists.current() == first
    warm = _warm_users(world["store"], first)[0]

    # Events with nasty but legal ids (among them the ids that wiped the lists once).
    events = [{"user_id": u, "item_id": str(i), "event_type": "view", "event_id": f"n{n}-{i}"}
              for n, u in enumerate(NASTY_LEGAL_IDS) for i in (1, 2, 3)]
    status, text = calls.send("/events", {"events": events}, key=WRITE_KEY)
    assert status == 200 and json.loads(text)["stored"] == len(events), text
    _hostile_http(calls, warm)
    item = json.loads(open_store(world["store"]).get_bytes(f"bundles/{first}/item_ids.json"))[0]
    _hostile_item_endpoints(calls, warm, item)
    poisoned = _poison_the_stream(world["redis_url"])
    (world["root"] / "broken.txt").write_text("\n".join(calls.broken), encoding="utf-8")
    assert calls.broken == [], "\n".join(calls.broken[:30])
    assert lists.current() == first
    assert _every_warm_user_gets_the_cache(calls, world["store"], first) == []

    # The nightly on hostile files and the poisoned stream: bad rows dead-lettered, a valid
    # version published, the users with nasty ids among its warm users.
    folder = world["root"] / "second"
    folder.mkdir()
    _hostile_input_files(folder, world["base"])
    shutil.copy(world["base"], folder / "base.parquet")  # a folder of part files: all read
    second = _nightly([f"--input={folder}", *world["common"]])
    assert lists.current() == second["version"] != first
    reasons = second["dead_letters"]
    assert sum(reasons.values()) == 15, reasons  # every bad line and row of the two files
    assert sum(n for r, n in reasons.items() if r.startswith("malformed CSV line")) == 2
    assert sum(n for r, n in reasons.items() if r.startswith("timestamp")) == 4, reasons
    assert second["events_drained"]["dead"] >= poisoned, second["events_drained"]
    served = set(_warm_users(world["store"], second["version"]))
    assert {"*[^:shards", "u1:shards", "[", "\\"} <= served
    assert not {"u-bad", "u-ts1", "u-ts4", "u-ts5", "u-w1", "p1", "p4"} & served

    # Its items' neighbours were published with it (the flip checked their count).
    item = json.loads(open_store(world["store"]).get_bytes(
        f"bundles/{second['version']}/item_ids.json"))[-1]
    status, text = calls.send("/similar?" + urllib.parse.urlencode({"item_id": item}))
    assert status == 200 and json.loads(text)["source"] == "cache", text
    assert second["similar_items"] == len(json.loads(open_store(world["store"]).get_bytes(
        f"bundles/{second['version']}/item_ids.json")))

    # What the next run does first (drop the failed runs' keys) keeps every served list.
    lists.drop_unpublished()
    assert _every_warm_user_gets_the_cache(calls, world["store"], second["version"]) == []

    # A sliver of the data is refused; the version served stays whole.
    sliver = world["root"] / "sliver.parquet"
    world["data"].interactions.iloc[:10].to_parquet(sliver)
    with pytest.raises(Exception, match="(?i)shrink|sliver|cases|fewer"):
        _nightly([f"--input={sliver}", "--no_drain_events", *world["common"]])
    assert lists.current() == second["version"]
    assert _every_warm_user_gets_the_cache(calls, world["store"], second["version"]) == []
    assert calls.broken == [], "\n".join(calls.broken[:30])
    assert calls.count > 700
