"""latent_world gives the truth generate draws from: the same users and items, same seed."""

import numpy as np

from models.synthetic import AGE_BUCKETS, generate, latent_world


def test_latent_world_is_the_truth_behind_generate():
    data, world = generate(60, 40, seed=5), latent_world(60, 40, seed=5)
    assert list(data.users["age_bucket"]) == list(AGE_BUCKETS[world.age])
    assert list(data.items["tags"]) == world.tags
    assert world.user_vec.shape == (60, 8) and world.item_vec.shape == (40, 8)
    np.testing.assert_allclose(np.linalg.norm(world.user_vec, axis=1), 1.0)
    assert not np.allclose(latent_world(60, 40, seed=6).user_vec, world.user_vec)
