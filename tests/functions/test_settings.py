"""The functions' settings from the environment (functions/settings.py); the refusals of
settings that cannot mean what they say are in test_hostile_requests.py."""

import pytest

from functions.settings import Settings

NAMES = ("REDIS_URL", "RECSYS_STORE", "RECSYS_NAMESPACE", "RECSYS_API_KEY", "RECSYS_ADMIN_KEY",
         "RECSYS_RECOMMEND_KEY", "RECSYS_CURSOR_SECRET", "RECSYS_MAX_K", "RECSYS_POINTER_TTL_S")


@pytest.fixture
def env(monkeypatch):
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_and_the_admin_key_falls_back_to_the_write_key(env):
    s = Settings.from_env()
    assert (s.redis_url, s.store, s.namespace) == ("redis://localhost:6379/0", "./artifacts",
                                                   "recsys")
    assert (s.api_key, s.admin_key, s.recommend_key, s.max_k) == (None, None, None, 100)
    env.setenv("RECSYS_API_KEY", "write-key-0123456789")
    env.setenv("RECSYS_MAX_K", "7")
    env.setenv("RECSYS_POINTER_TTL_S", "0.5")
    s = Settings.from_env()
    assert (s.admin_key, s.max_k, s.pointer_ttl) == ("write-key-0123456789", 7, 0.5)


@pytest.mark.parametrize("name,value,words", [
    ("RECSYS_MAX_K", "0", ["RECSYS_MAX_K", "at least 1"]),
    ("RECSYS_POINTER_TTL_S", "soon", ["RECSYS_POINTER_TTL_S", "not a number"]),
])
def test_a_number_out_of_range_names_the_variable_and_its_default(env, name, value, words):
    env.setenv(name, value)
    with pytest.raises(ValueError) as e:
        Settings.from_env()
    assert all(w in str(e.value) for w in [*words, "default"]), str(e.value)
