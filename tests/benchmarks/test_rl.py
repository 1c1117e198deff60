"""benchmarks.rl at a tiny size: the JSON holds the keys issue 23's acceptance reads."""

import json

import pytest


@pytest.mark.slow
def test_the_rl_benchmark_writes_every_setting_with_intervals(tmp_path):
    from benchmarks import rl

    out = tmp_path / "rl.json"
    rl.main(["--users", "160", "--items", "80", "--rounds", "2", "--seeds", "1",
             "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["train_seconds"] > 0
    assert set(result["guard"]) >= {"windows", "warm", "fresh"}  # chosen on the train side
    assert [s["name"] for s in result["settings"]] == ["setting1", "setting2"]
    for s in result["settings"]:
        for name in ("dqn", "greedy", "random", "oracle"):
            low, high = s[f"{name}_return_ci"]
            assert low <= s[f"{name}_return"] <= high
        assert s["dqn_over_greedy"] == pytest.approx(s["dqn_return"] / s["greedy_return"],
                                                     abs=1e-3)
        assert s["sessions"] == 80  # the scored half, one seed
        low, high = s["dqn_guarded_return_ci"]  # the policy with the guard's warm margin
        assert low <= s["dqn_guarded_return"] <= high
        first = s["off_policy"]["first_step"]
        assert first["exact"] > 0 and first["snips"]["effective_n"] > 0
