"""models.rules.longtail_slots on a hand-made ranking whose answer is worked out below."""

import numpy as np

from models.rules import longtail_slots


def test_longtail_slots_move_the_best_tail_items_into_the_last_places():
    I = np.array([[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, -1, -1]])
    S = np.array([[6, 5, 4, 3, 2, 1], [4, 3, 2, 1, 0, 0]], np.float32)
    tail = np.array([False, False, False, False, True, True])  # items 4 and 5
    affinity = np.array([[0, 0, 0, 0, 1, 2], [0, 0, 0, 0, 0, 0]], np.float32)
    I2, S2 = longtail_slots(I, S, 1, tail, affinity, top=3)
    assert I2[0].tolist() == [0, 1, 5, 2, 3, 4] and S2[0].tolist() == [6, 5, 1, 4, 3, 2]
    assert I2[1].tolist() == I[1].tolist()  # no tail item to promote: the row stays
