"""The one training loop of the Keras networks (the two towers, the ranker's members):
`keras.Model.fit` over a `keras.utils.PyDataset` of per-epoch batches, with early stopping
on a validation figure the caller computes (an NDCG@10 of the model's own rankings).

    validate(net) -> float     put in each epoch's logs as "val_ndcg" by `ValidationScore`
    EarlyStopping(monitor="val_ndcg", mode="max", restore_best_weights=True)
    StopOnNonFinite(what)      stops at a NaN or inf loss; fit_early_stopping then raises

Each network brings its own `train_step` (its loss) and is compiled with `FusedAdam`, a
`keras.optimizers.Adam` that applies its update with TensorFlow's fused kernel. Imports
Keras: the training modules import this one when they train.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from models.finite import NonFiniteError

log = logging.getLogger(__name__)

MONITOR = "val_ndcg"


def fit_early_stopping(net, batches, epochs: int, validate: Callable[[object], float] | None,
                       patience: int, what: str, check: str,
                       min_epochs: int = 1) -> tuple[list[float], int]:
    """Trains `net` (a compiled keras.Model) on `batches` for at most `epochs` epochs.

    With `validate`, its figure is computed after each epoch, training stops after `patience`
    epochs without a better one, and the weights of the best epoch are restored; the epochs
    before `min_epochs` are neither kept nor counted (EarlyStopping's `start_from_epoch`), so
    that a noisy figure cannot stop the fit after its first epochs.

    Args:
        net: the compiled network; its `train_step` returns {"loss": ...}.
        batches: a keras.utils.PyDataset drawing each epoch's batches.
        epochs: most epochs.
        validate: net -> the validation figure (higher is better), or None.
        patience: epochs without a better figure before stopping.
        min_epochs: fewest epochs of the weights kept (capped at `epochs`).
        what, check: the model's name and what to check, for the non-finite error.

    Returns:
        (validation figure per epoch trained, empty without `validate`; epochs of the
        weights kept).

    Raises:
        NonFiniteError: the training loss became NaN or inf (`StopOnNonFinite` stops the
            fit at that batch: later steps would spread the NaN).
    """
    if epochs <= 0 or len(batches) == 0:  # epochs over no examples leave the weights as they are
        return [], max(epochs, 0)
    # the optimizer's slots made before the step is traced: made inside it, on the first call,
    # they make tf.function trace the step twice (a Keras Adam step takes ~1 s to trace)
    net.optimizer.build(net.trainable_variables)
    stop = StopOnNonFinite(what)
    callbacks = [stop]
    early = None
    if validate is not None:
        early = keras.callbacks.EarlyStopping(
            monitor=MONITOR, mode="max", patience=patience, restore_best_weights=True,
            start_from_epoch=min(max(min_epochs, 1), epochs) - 1)
        callbacks = [ValidationScore(validate), early, *callbacks]
    history = net.fit(batches, epochs=epochs, verbose=0, shuffle=False, callbacks=callbacks)
    losses = history.history.get("loss", [])
    bad = [n for n, x in enumerate(losses) if not math.isfinite(x)]
    if stop.at is not None or bad:
        loss, epoch = stop.at[:2] if stop.at is not None else (losses[bad[0]], bad[0] + 1)
        raise NonFiniteError(f"{what}: the training loss is {loss} at epoch {epoch}; nothing "
                             f"was exported. Check {check}")
    scores = history.history.get(MONITOR, [])
    return scores, (early.best_epoch + 1 if early is not None else len(losses))


class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam (its slots, step counter and hyperparameters) whose update of
    each variable is TensorFlow's fused kernel, one op (ResourceApplyAdam) instead of about
    a dozen: the same numbers to float32 rounding (tests/models/test_training.py checks both
    against Adam in float64), and on the MovieLens 100K towers a step traced in 0.45 s instead
    of 1.26 s and an epoch of 73 steps in 0.96 s instead of 1.24 s (each fit traces its own
    step; the ranker's steps are tiny and many). Sparse gradients are applied densely."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        i = self._get_variable_index(variable)
        t = tf.cast(self.iterations + 1, variable.dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[i].value.handle,
            v=self._velocities[i].value.handle, beta1_power=tf.pow(self.beta_1, t),
            beta2_power=tf.pow(self.beta_2, t), lr=tf.cast(learning_rate, variable.dtype),
            beta1=self.beta_1, beta2=self.beta_2, epsilon=self.epsilon,
            grad=tf.convert_to_tensor(gradient))


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops the fit at the first batch whose loss is NaN or inf and logs where (a warning).

    Attributes:
        at: (loss, epoch, batch), epoch counted from 1, of that batch; None while finite.
    """

    def __init__(self, what: str):
        super().__init__()
        self.what, self.at, self._epoch = what, None, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)) or self.at is not None:
            return
        self.at = (float(loss), self._epoch + 1, batch)
        log.warning("%s: the training loss is %s at epoch %d, batch %d; stopping the training",
                    self.what, *self.at)
        self.model.stop_training = True


class ValidationScore(keras.callbacks.Callback):
    """Puts `validate(model)` into each epoch's logs as "val_ndcg", for EarlyStopping."""

    def __init__(self, validate: Callable[[keras.Model], float]):
        super().__init__()
        self.validate = validate

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[MONITOR] = float(self.validate(self.model))


class EpochBatches(keras.utils.PyDataset):
    """Batches in an order drawn anew for each epoch (`draw`, once per epoch: the batches
    Keras reads before the first epoch to learn their shapes come from the first epoch's
    order, so that a fit draws from its random generators as a plain loop would)."""

    def __init__(self):
        super().__init__()
        self._order, self._running = None, False

    def draw(self) -> np.ndarray:
        """This epoch's order (rows of whatever the subclass batches)."""
        raise NotImplementedError

    @property
    def order(self) -> np.ndarray:
        if self._order is None:
            self._order = self.draw()
        return self._order

    def on_epoch_begin(self):
        self._running = True

    def on_epoch_end(self):
        if self._running:
            self._order, self._running = None, False
