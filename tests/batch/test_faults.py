"""A failed or killed nightly run leaves the served version untouched; a rerun publishes."""

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from batch.nightly import run
from infra.redis.lists import ServedLists


@pytest.fixture
def setup_run(tmp_path, redis_client, tiny_dataset):
    path = tmp_path / "interactions.parquet"
    tiny_dataset.interactions.to_parquet(path)
    url = redis_client.connection_pool.connection_kwargs
    redis_url = f"redis://{url['host']}:{url['port']}/0"
    argv = [f"--input={path}", f"--store={tmp_path / 'store'}", f"--redis_url={redis_url}",
            "--model=mf", "--epochs=1", "--dim=4", "--k=5", "--shard_size=30", "--skip_gate",
            "--direct_running_mode=in_memory",
            "--list_max_age_days=0"]  # the same data again: every list is recomputed
    first = run(argv)
    lists = ServedLists(redis_client)
    user = tiny_dataset.interactions["user_id"].iloc[0]
    return argv, lists, first["version"], user


def _assert_still_serving(lists, version, user):
    assert lists.current() == version
    assert lists.get_list(lists.current(), user) is not None


# Slow: three nightly runs. Fast loop: tests/batch/test_stages.py
# test_publish_flips_only_once_every_user_was_written (an incomplete run publishes nothing, a
# rerun does) and tests/infra/redis/test_lists.py (readers see the old or the new version whole).
@pytest.mark.slow
def test_exception_in_one_shard_publishes_nothing(setup_run, monkeypatch):
    argv, lists, old, user = setup_run
    original = ServedLists.write_shard

    def failing(self, version, shard, *args, **kwargs):
        if shard == "2":
            raise ConnectionError("injected failure in shard 2")
        return original(self, version, shard, *args, **kwargs)

    monkeypatch.setattr(ServedLists, "write_shard", failing)
    with pytest.raises(Exception, match="injected failure in shard 2"):
        run(argv)
    _assert_still_serving(lists, old, user)
    assert lists.versions() == [old]
    monkeypatch.undo()
    new = run(argv)["version"]  # the rerun drops the failed keys and publishes
    assert lists.current() == new != old
    assert all(v in (old, new) for v in
               {k.decode().split(":")[2] for k in lists.r.scan_iter("recsys:v:*")})


# Slow: four nightly runs. Fast loop: tests/batch/test_stages.py (an incomplete run publishes
# nothing, a rerun does) and tests/infra/redis/test_lists.py (copy, drop, rollback).
@pytest.mark.slow
def test_failure_while_carrying_lists_over_publishes_nothing(setup_run, monkeypatch):
    argv, lists, old, user = setup_run
    argv = [a for a in argv if not a.startswith("--list_max_age_days")]  # carry over: 7 days
    original = ServedLists.copy_lists

    def failing(self, src, dst, shard, user_ids, *args, **kwargs):
        original(self, src, dst, shard, user_ids[:50], *args, **kwargs)
        raise ConnectionError("injected failure while copying lists")

    monkeypatch.setattr(ServedLists, "copy_lists", failing)
    with pytest.raises(ConnectionError, match="injected failure while copying"):
        run(argv)
    _assert_still_serving(lists, old, user)
    assert lists.versions() == [old]
    monkeypatch.undo()
    new = run(argv)
    assert lists.current() == new["version"] != old
    assert new["users_carried_over"] == new["users_published"]
    assert {k.decode().split(":")[2] for k in lists.r.scan_iter("recsys:v:*")} == {
        old, new["version"]}  # the failed run's copies were dropped
    lists.rollback(old)  # every version keeps its own lists: rollback serves the old bytes
    _assert_still_serving(lists, old, user)
    after = run(argv)
    assert after["lists_carried_from"] == old
    assert lists.r.get(lists.keys.user(after["version"], user)) == lists.r.get(
        lists.keys.user(old, user))


KILLABLE = """
import sys, time
from infra.redis.lists import ServedLists
original = ServedLists.write_shard
def slow(self, version, shard, *args, **kwargs):
    n = original(self, version, shard, *args, **kwargs)
    time.sleep(60)  # killed here, after the first shard's writes
    return n
ServedLists.write_shard = slow
from batch.nightly import run
run(sys.argv[1:])
"""


# Slow: a nightly run in a child process. Fast loop: tests/batch/test_stages.py and
# tests/infra/redis/test_lists.py test_reader_sees_only_complete_old_or_complete_new.
@pytest.mark.slow
def test_process_killed_during_redis_writes_publishes_nothing(setup_run):
    argv, lists, old, user = setup_run
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, *argv],
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        deadline = time.monotonic() + 240
        while not any(lists.r.hlen(k) for k in lists.r.scan_iter("recsys:v:*:shards")
                      if old not in k.decode()):
            assert proc.poll() is None and time.monotonic() < deadline, "no write started"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _assert_still_serving(lists, old, user)
        new = run(argv)["version"]
        assert lists.current() == new != old
    finally:
        if proc.poll() is None:
            proc.kill()


def test_unreachable_redis_fails_before_any_work(tmp_path, tiny_dataset):
    path = tmp_path / "interactions.parquet"
    tiny_dataset.interactions.to_parquet(path)
    with pytest.raises(redis.ConnectionError):
        run([f"--input={path}", f"--store={tmp_path / 'store'}",
             "--redis_url=redis://127.0.0.1:1/0"])
    assert not (tmp_path / "store").exists()
