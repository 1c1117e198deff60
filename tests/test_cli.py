"""Every flag of the main commands is described and has an environment variable."""

import re

import pytest
from click.testing import CliRunner

from infra.cli import main


@pytest.mark.parametrize("command", ["nightly", "serve", "demo", "evaluate", "versions",
                                     "rollback", "generate", "items"])
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
    result = CliRunner().invoke(main, ["generate"], env={
        "RECSYS_GENERATE_OUT": str(out), "RECSYS_GENERATE_USERS": "30",
        "RECSYS_GENERATE_ITEMS": "20"})
    assert result.exit_code == 0, result.output
    import pandas as pd

    assert pd.read_parquet(out / "users.parquet").shape[0] == 30
