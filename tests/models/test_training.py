"""The shared training loop (models/training.py): early stopping keeps the best epoch's weights
and respects its patience, a loss that turns NaN stops the fit and raises naming the model,
and FusedAdam steps as keras.optimizers.Adam does."""

import logging

import keras
import numpy as np
import pytest

from models.finite import NonFiniteError
from models.training import FusedAdam, fit_early_stopping

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 3)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)


class Batches(keras.utils.PyDataset):
    """Fixed (x, y) batches of 8 rows, in order (each epoch sees the same four)."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // 8

    def __getitem__(self, i):
        return self.x[8 * i:8 * i + 8], self.y[8 * i:8 * i + 8]


def tiny_net(optimizer=None, weights=None) -> keras.Model:
    """3 -> 4 (ReLU) -> 1, mean squared error; `weights` (get_weights()) to start from."""
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                            keras.layers.Dense(1)])
    if weights is not None:
        net.set_weights(weights)
    net.compile(optimizer=optimizer or FusedAdam(0.05), loss="mse", jit_compile=False)
    return net


class Figures:
    """A validate function: returns figures[n] after epoch n + 1 and keeps that epoch's weights."""

    def __init__(self, figures: list[float]):
        self.figures, self.weights = figures, []

    def __call__(self, net) -> float:
        self.weights.append(net.get_weights())
        return self.figures[len(self.weights) - 1]


def same(a: list[np.ndarray], b: list[np.ndarray], atol: float = 0.0) -> bool:
    return all(np.allclose(x, y, rtol=0, atol=atol) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("patience", [1, 2])
def test_early_stopping_waits_patience_epochs_and_restores_the_best_epochs_weights(patience):
    # The figure peaks after epoch 3: training goes on `patience` more epochs, then stops.
    validate = Figures([0.1, 0.5, 0.9, 0.3, 0.2, 0.1, 0.05, 0.0])
    net = tiny_net()
    scores, kept = fit_early_stopping(net, Batches(X, Y), 8, validate, patience, "tiny net",
                                      "the inputs")
    assert scores == validate.figures[:3 + patience] and kept == 3
    assert len(validate.weights) == 3 + patience
    assert same(net.get_weights(), validate.weights[2])  # epoch 3's, not the last epoch's
    assert not same(validate.weights[2], validate.weights[-1], atol=1e-4)


def test_the_best_epoch_is_restored_when_the_epochs_run_out_first():
    validate = Figures([0.2, 0.6, 0.4])  # patience 5 never runs out in 3 epochs
    net = tiny_net()
    scores, kept = fit_early_stopping(net, Batches(X, Y), 3, validate, 5, "tiny net", "x")
    assert (scores, kept) == ([0.2, 0.6, 0.4], 2)
    assert same(net.get_weights(), validate.weights[1])


def test_min_epochs_keeps_a_noisy_first_peak_from_stopping_the_fit():
    # Alone, the first epoch's 0.9 would stop the fit after epoch 3 and be kept (the two-tower
    # on ml-100k: its validation window's noise); with min_epochs 3 the epochs before 3 are
    # not scored, epoch 4's 0.6 is the best and patience 2 runs out after epoch 6.
    figures = [0.9, 0.5, 0.4, 0.6, 0.3, 0.2, 0.1, 0.0]
    assert fit_early_stopping(tiny_net(), Batches(X, Y), 8, Figures(figures), 2, "tiny net",
                              "x") == (figures[:3], 1)
    validate = Figures(figures)
    net = tiny_net()
    scores, kept = fit_early_stopping(net, Batches(X, Y), 8, validate, 2, "tiny net", "x",
                                      min_epochs=3)
    assert (scores, kept) == (figures[:6], 4)
    assert same(net.get_weights(), validate.weights[3])
    # more min_epochs than epochs: every epoch runs and the last is kept
    short = Figures(figures)
    assert fit_early_stopping(tiny_net(), Batches(X, Y), 2, short, 2, "tiny net", "x",
                              min_epochs=5) == (figures[:2], 2)


def test_without_validate_every_epoch_runs_and_the_last_weights_stay():
    net = tiny_net()
    start = net.get_weights()
    assert fit_early_stopping(net, Batches(X, Y), 2, None, 0, "tiny net", "x") == ([], 2)
    assert int(net.optimizer.iterations) == 2 * 4
    assert not same(net.get_weights(), start, atol=1e-4)
    untouched = tiny_net()
    assert fit_early_stopping(untouched, Batches(X, Y), 0, None, 0, "tiny net", "x") == ([], 0)
    assert same(untouched.get_weights(), start)


def test_a_nan_loss_stops_at_its_batch_logs_and_raises_naming_the_model(caplog, capsys):
    y = Y.copy()
    y[9] = np.nan  # the second batch (rows 8-15): the loss is NaN from its step on
    net = tiny_net()
    with caplog.at_level(logging.WARNING, logger="models.training"), \
            pytest.raises(NonFiniteError, match=r"^tiny net: the training loss is nan at "
                                                r"epoch 1; nothing was exported\. Check the "
                                                r"inputs$"):
        fit_early_stopping(net, Batches(X, y), 3, Figures([0.1] * 3), 2, "tiny net",
                           "the inputs")
    assert int(net.optimizer.iterations) == 2  # stopped at that batch: no later step ran
    assert [r.getMessage() for r in caplog.records] == [
        "tiny net: the training loss is nan at epoch 1, batch 1; stopping the training"]
    assert capsys.readouterr().out == ""  # logged, not printed (keras' TerminateOnNaN prints)


def test_fused_adam_steps_as_keras_adam():
    # The same gradients into both optimizers, step by step, beside Adam in float64 (Kingma &
    # Ba, epsilon outside the square root as Keras has it). Through fit, the gradients would
    # drift apart with the weights. Keras' own float32 steps wander ~2e-6 from the float64 ones
    # in 12 steps, the fused kernel's ~5e-7.
    start = tiny_net().get_weights()
    fused, plain = (tiny_net(opt, start) for opt in (FusedAdam(0.05),
                                                     keras.optimizers.Adam(0.05)))
    exact = [w.astype(np.float64) for w in start]
    m, v = [np.zeros_like(w) for w in exact], [np.zeros_like(w) for w in exact]
    rng = np.random.default_rng(1)
    for t in range(1, 13):
        grads = [rng.normal(scale=10.0 ** (t % 3 - 1), size=w.shape).astype(np.float32)
                 for w in start]
        for net in (fused, plain):
            net.optimizer.apply(grads, net.trainable_variables)
        alpha = 0.05 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        for w, m_w, v_w, g in zip(exact, m, v, grads, strict=True):
            m_w += 0.1 * (g - m_w)
            v_w += 0.001 * (g.astype(np.float64) ** 2 - v_w)
            w -= alpha * m_w / (np.sqrt(v_w) + 1e-7)
        for got, want, ref in zip(fused.get_weights(), plain.get_weights(), exact, strict=True):
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6, err_msg=f"step {t}")
            np.testing.assert_allclose(got, want, rtol=0, atol=5e-6, err_msg=f"step {t}")
    assert int(fused.optimizer.iterations) == 12
    assert not same(fused.get_weights(), start, atol=0.1)  # 12 steps of ~0.05 moved them
