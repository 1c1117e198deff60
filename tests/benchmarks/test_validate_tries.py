"""The extra models of benchmarks.validate_served and validate_loo (`--tower-try`, `--mf-try`):
each try's overrides on its own config's defaults, parsed before anything is fitted."""

import pytest

from benchmarks.validate_served import mf_config, standalone_tries
from models.mf import MFConfig
from models.retrieval import MFRecommender
from models.tower_fit import TwoTowerRecommender


def test_mf_try_overrides_mf_defaults_only_in_the_fields_it_names():
    config = mf_config(["dim=64", "l2=0.001", "objective='bpr'"])
    assert (config.dim, config.l2, config.objective) == (64, 0.001, "bpr")
    assert config.epochs == MFConfig().epochs and config.negatives == MFConfig().negatives


def test_standalone_tries_label_each_model_and_make_it_with_its_config():
    made = standalone_tries(["epochs=1"], ["dim=8 negatives=2", ""])
    assert list(made) == ["two_tower[epochs=1]", "mf[dim=8 negatives=2]", "mf[]"]
    tower, mf, plain = (make() for make in made.values())
    assert isinstance(tower, TwoTowerRecommender) and tower.config.epochs == 1
    assert isinstance(mf, MFRecommender)
    assert (mf.config.dim, mf.config.negatives) == (8, 2)
    assert plain.config == MFConfig()
    assert made["mf[dim=8 negatives=2]"]() is not mf  # a fresh, unfitted model per call


def test_a_bad_mf_try_fails_before_any_fit():
    with pytest.raises(TypeError, match="no_such_field"):
        standalone_tries(mf_tries=["no_such_field=1"])
    with pytest.raises(ValueError):
        standalone_tries(mf_tries=["dim=sixty"])
