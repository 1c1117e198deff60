"""Every flag of the main commands is described and has an environment variable."""

import argparse
import re

import pytest
from click.testing import CliRunner

from app.cli import main


@pytest.mark.parametrize("command", ["nightly", "serve", "demo", "evaluate", "versions",
                                     "rollback", "sample-data", "items"])
def test_every_flag_has_help_and_an_env_var(command):
    result = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    cmd = main.commands[command]
    for param in cmd.params:
        if param.param_type_name != "option" or param.name == "help":
            continue
        assert param.help, f"{command} {param.opts} has no help"
        assert param.envvar, f"{command} {param.opts} has no environment variable"
        assert re.search(rf"env var:\s*{param.envvar}", result.output), (command, param.envvar)


def test_env_var_sets_a_flag(tmp_path):
    out = tmp_path / "gen"
    result = CliRunner().invoke(main, ["sample-data", str(out)], env={
        "RECSYS_SAMPLE_USERS": "30", "RECSYS_SAMPLE_ITEMS": "20",
        "RECSYS_SAMPLE_FORMAT": "parquet"})
    assert result.exit_code == 0, result.output
    import pandas as pd

    assert pd.read_parquet(out / "users.parquet").shape[0] == 30


def _job_flags(argv: list[str]) -> dict:
    """What `python -m batch.nightly` reads from these flags: NightlyOptions' values."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from batch.nightly import NightlyOptions

    parser = argparse.ArgumentParser()
    NightlyOptions._add_argparse_args(parser)
    names = {a.dest for a in parser._actions if a.dest != "help"}
    return {name: value for name, value in PipelineOptions(argv).view_as(NightlyOptions)
            .get_all_options(drop_default=False).items() if name in names}


def test_every_nightly_option_is_a_flag_of_recsys_nightly():
    """A flag the job reads but `recsys nightly` does not offer can only be set after `--`
    (the gate's --gate_min_cases and --max_shrink once were)."""
    job = set(_job_flags([]))
    cli = {p.name for p in main.commands["nightly"].params}
    assert sorted(job - cli) == []


def test_recsys_nightly_runs_the_job_with_the_jobs_own_defaults(monkeypatch):
    """The job gets the same values from `recsys nightly` as from `python -m batch.nightly`
    with the same flags: the two once declared --shard-size 2000 and --shard_size 5000."""
    import batch.nightly

    calls = []
    monkeypatch.setattr(batch.nightly, "run", lambda argv: calls.append(argv) or {})
    for name in [p.envvar for p in main.commands["nightly"].params if p.envvar]:
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["nightly", "--input=in.parquet",
                                       "--redis-url=redis://h:1/0"])
    assert result.exit_code == 0, result.output
    direct = _job_flags(["--input=in.parquet", "--redis_url=redis://h:1/0"])
    via_cli = _job_flags(calls[0])
    assert {n: (via_cli[n], direct[n]) for n in direct if via_cli[n] != direct[n]} == {}
    assert via_cli["shard_size"] == 2000  # docs/ARCHITECTURE.md says why


def test_evaluate_refuses_an_unknown_model_before_loading_the_dataset(tmp_path):
    missing = tmp_path / "no-such-folder"
    result = CliRunner().invoke(main, ["evaluate", "--dataset", f"parquet:{missing}",
                                       "--models", "popularity,nope"])

    assert result.exit_code == 2, result.output  # a usage error, not a missing dataset
    assert "unknown model(s) ['nope']" in result.output and "'popularity'" in result.output


def _refusals() -> list[str]:
    """The nightly job's own refusals: bad flags, the shrink check, the quality gate."""
    from batch import gate, stages
    from batch.gate import QualityGateError
    from batch.options import NightlyConfig

    config = NightlyConfig(input="x", redis_url="r")
    served = {"version": "v1", "users_published": 400, "items_with_events": 90,
              "valid_events": 9000}
    calls = [lambda: NightlyConfig.from_flags({}),
             lambda: stages.refuse_shrink(config, {"users": 10, "items_with_events": 90,
                                                   "valid_events": 9000}, served),
             lambda: stages.refuse_unless_forced(gate.GateResult(
                 None, None, None, 3, False, gate._too_few(3, 0.1, 50, None)), False),
             lambda: gate.too_few_cases(None, 0.1, min_cases=0)]
    calls += [lambda v=v: NightlyConfig(input="x", redis_url="r", **v) for v in (
        {"list_max_age_days": -1}, {"max_shrink": 2}, {"gate_min_cases": 0}, {"shard_size": 0})]
    messages = []
    for call in calls:
        with pytest.raises((ValueError, QualityGateError)) as error:
            call()
        messages.append(str(error.value))
    return messages


def test_the_jobs_refusals_name_flags_both_entry_points_take():
    """`python -m batch.nightly` and `recsys nightly` print the same refusal; every flag it
    names is one that both take (the gate once said --max_shrink, which recsys nightly
    refuses, and docs/ARCHITECTURE.md quoted it)."""
    parser = argparse.ArgumentParser()
    from batch.options import add_argparse_args

    add_argparse_args(parser)
    job = set(parser._option_string_actions)
    cli = {o for p in main.commands["nightly"].params for o in p.opts}
    named = {flag for m in _refusals() for flag in re.findall(r"--[a-z][\w-]*", m)} - {"--help"}
    assert {"--max-shrink", "--gate-min-cases", "--force-publish", "--skip-gate"} <= named
    assert sorted(named - job) == [] and sorted(named - cli) == []
