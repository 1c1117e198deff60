import pandas as pd
import pytest

from models.evaluation import temporal_split
from models.preprocess import Preprocessor, parse_event_weights


def _events():
    return pd.DataFrame({
        "user_id": ["a", "a", "b", "b", "c", "d"],
        "item_id": ["1", "1", "2", "1", "3", "9"],
        "timestamp": [10, 20, 30, 40, 50, 1000],
        "event_type": ["view", "purchase", "click", "view", "view", "view"],
        "weight": [None, None, None, 4.0, None, None],
    })


def test_statistics_and_vocabularies_come_from_the_train_side_only():
    split = temporal_split(_events())
    pre = Preprocessor.fit(split.train)
    assert "9" not in pre.items.index and "d" not in pre.users.index
    train_ts = split.train["timestamp"]
    assert pre.ts_mean == pytest.approx(train_ts.mean())
    assert pre.normalise_timestamps([pre.ts_mean])[0] == pytest.approx(0.0)


def test_pairs_sum_event_weights_like_a_pivot():
    pre = Preprocessor.fit(_events(), parse_event_weights("view=1,click=2,purchase=5"))
    pairs = pre.pairs(_events()).set_index(["u", "i"])
    a, b, i1, i2 = pre.users.index["a"], pre.users.index["b"], pre.items.index["1"], \
        pre.items.index["2"]
    assert pairs.loc[(a, i1), "w"] == 6.0  # view 1 + purchase 5
    assert pairs.loc[(b, i1), "w"] == 4.0  # an explicit weight wins over the type's
    assert pairs.loc[(b, i2), "w"] == 2.0 and pairs.loc[(a, i1), "t"] == 20


@pytest.mark.parametrize("text", ["view", "view=x", "=3"])
def test_bad_event_weights_say_what_is_wrong(text):
    with pytest.raises(ValueError, match="expected NAME=NUMBER"):
        parse_event_weights(text)
