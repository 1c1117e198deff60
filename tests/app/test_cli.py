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
