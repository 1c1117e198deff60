"""The nightly job's one declaration of its flags (batch/options.py)."""

import argparse
import dataclasses

import pytest

from batch.options import NightlyConfig, add_argparse_args, to_argv

REQUIRED = {"input": "in.parquet", "redis_url": "redis://h:1/0"}


def parse(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser()
    add_argparse_args(parser)
    return vars(parser.parse_args(argv))


def test_a_config_survives_its_flags():
    """to_argv (what `recsys nightly` hands the job) gives the parser back every value,
    booleans and absent optional tables included."""
    config = NightlyConfig(**REQUIRED, store="s3://b/p", shard_size=17, l2=0.5, users="u.csv",
                           force_publish=True, served_config='{"n_tower": 5}')
    assert NightlyConfig.from_flags(parse(to_argv(dataclasses.asdict(config)))) == config
    assert "--items" not in " ".join(to_argv(dataclasses.asdict(config)))
    assert "--skip_gate" not in to_argv(dataclasses.asdict(config))


def test_defaults_are_the_libraries(monkeypatch):
    """The MF flags default to MFConfig's values, the gate's to what batch/gate.py decides
    with when called without them."""
    import inspect

    from batch import gate
    from models.mf import MFConfig

    config = NightlyConfig.from_flags(parse(["--input=x", "--redis_url=r"]))
    assert (config.dim, config.epochs, config.l2) == (MFConfig.dim, MFConfig.epochs, MFConfig.l2)
    assert config.gate_min_cases == inspect.signature(gate.decide).parameters[
        "min_cases"].default
    assert config.max_shrink == inspect.signature(gate.shrink_check).parameters[
        "max_shrink"].default
    assert config.store == "./artifacts"


def test_redis_url_comes_from_the_environment_and_missing_flags_are_named(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://env:6379/0")
    assert NightlyConfig.from_flags(parse(["--input=x"])).redis_url == "redis://env:6379/0"
    monkeypatch.delenv("REDIS_URL")
    with pytest.raises(ValueError, match=r"missing required flag\(s\) \['--input', "
                                         r"'--redis-url'\]"):
        NightlyConfig.from_flags(parse([]))


@pytest.mark.parametrize("flag, message", [
    ("--list_max_age_days=-1", "number of days >= 0"),
    ("--max_shrink=1.5", r"share in \[0, 1\]"),
    ("--gate_min_cases=0", "--skip-gate skips the evaluation"),
    ("--shard_size=0", "number of users >= 1"),
])
def test_out_of_range_flags_fail_when_the_config_is_built(flag, message):
    with pytest.raises(ValueError, match=message):
        NightlyConfig.from_flags(parse(["--input=x", "--redis_url=r", flag]))



def test_the_job_takes_both_spellings_of_a_flag():
    """Its messages name the dashed one (`recsys nightly`'s): `python -m batch.nightly`
    takes it as well as its own underscored one."""
    dashed = parse(["--input=x", "--redis-url=r", "--max-shrink=0.3", "--gate-min-cases=7",
                    "--skip-gate"])
    underscored = parse(["--input=x", "--redis_url=r", "--max_shrink=0.3", "--gate_min_cases=7",
                         "--skip_gate"])
    assert dashed == underscored
    config = NightlyConfig.from_flags(dashed)
    assert (config.redis_url, config.max_shrink, config.gate_min_cases, config.skip_gate) == (
        "r", 0.3, 7, True)
