"""The experiments simulator, tiny: its keys, and figures that follow from its known truth."""

import json

import pytest

from benchmarks.experiments import click_probabilities, main

KEYS = {"aa_runs", "aa_false_positive_rate", "ab_runs", "ab_power", "srm_runs",
        "srm_detection_rate"}


def test_tiny_run_writes_the_keys_and_sane_figures(tmp_path, capsys):
    path = tmp_path / "experiments.json"
    report = main(["--aa-runs", "40", "--ab-runs", "40", "--srm-runs", "40", "--days", "5",
                   "--lift", "0.5", "--users-per-arm", "3000", "--world-users", "300",
                   "--world-items", "100", "--quiet", "--json", str(path)])
    assert json.loads(path.read_text()) == report
    assert KEYS <= set(report)
    assert (report["aa_runs"], report["ab_runs"], report["srm_runs"]) == (40, 40, 40)
    assert report["aa_false_positive_rate"] <= 0.2
    assert report["ab_power"] >= 0.9  # +50% CTR on 3,000 users per arm: found every time
    assert report["ab_stopped_for_the_worse_arm"] == 0
    assert 0 <= report["srm_detection_rate"] <= 1
    assert report["users_per_arm"] == 3000
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["A/A", "A/B", "SRM"]


def test_click_probabilities_have_the_asked_mean_and_follow_the_tastes():
    p = click_probabilities(500, 100, ctr=0.1, seed=0)
    assert p.shape == (500,) and abs(p.mean() - 0.1) < 1e-6
    assert p.std() > 0.01  # users differ: the truth's affinities, not one rate


@pytest.mark.parametrize("args", [["--days", "0"], ["--ctr", "1.5"], ["--lift", "-0.1"],
                                  ["--users-per-arm", "3", "--days", "14"]])
def test_bad_flags_are_one_error(args, capsys):
    with pytest.raises(SystemExit) as err:
        main([*args, "--quiet"])
    assert err.value.code == 2 and "error:" in capsys.readouterr().err
