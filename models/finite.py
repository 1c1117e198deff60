"""Refusing non-finite numbers: a trained model or an export check with a NaN or an infinity
is an error, never a result (one weight past float32's range, ~3.4e38, turns every parameter
it touches into NaN and a NaN model serves empty lists)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class NonFiniteError(ValueError):
    """A model's parameters, inputs or outputs hold NaN or infinity; nothing was exported."""


def count_non_finite(a) -> int:
    """Number of NaN or infinite entries of a numeric array (0 for integer arrays)."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.inexact):
        return 0
    return int(a.size - np.count_nonzero(np.isfinite(a)))


def require_finite(arrays: Mapping[str, object], model: str, check: str) -> None:
    """Raises NonFiniteError naming every array of `arrays` with a NaN or an infinity.

    Args:
        arrays: name -> array (anything np.asarray takes).
        model: the model's name, e.g. "MF", for the message.
        check: what to look at to fix it, for the message.
    """
    bad = {name: (n, np.asarray(a).size) for name, a in arrays.items()
           if (n := count_non_finite(a))}
    if bad:
        what = ", ".join(f"{name} ({n} of {size})" for name, (n, size) in bad.items())
        raise NonFiniteError(f"{model}: non-finite (NaN or inf) values in {what}; nothing was "
                             f"exported. Check {check}")


def max_abs_diff(got, ref, what: str) -> float:
    """max |got - ref| of two arrays of the same shape; NaN or inf on either side raises.

    Plain `np.abs(got - ref).max()` is NaN when a side is, and `nan > atol` is False: a parity
    check built on it passes an all-NaN model.

    Raises:
        NonFiniteError: naming `what` and the side that is not finite.
    """
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    for side, a in (("the converted model", got), ("the reference", ref)):
        if n := count_non_finite(a):
            raise NonFiniteError(f"{what}: {side} returned {n} non-finite value(s) of {a.size}; "
                                 "the model holds NaN or inf (check the input's weights and "
                                 "values, and the training loss)")
    return float(np.max(np.abs(got - ref), initial=0.0))
