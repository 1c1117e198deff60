"""Experiments' assignment: which arm a user is in, from a hash of (salt, user id) alone.

An experiment has a name, arms (each a published version or `current`, the version being
served) with allocations in basis points summing to 10,000, and a salt. A user's bucket is
BLAKE2b(salt, user id) mod 10,000 and the arms own consecutive ranges of buckets in their
order: sticky, stateless, the same in every process and on every machine (no `hash()`, whose
seed changes per process), fresh users included. A new salt reshuffles everyone; the same
salt with a larger share for an arm keeps every user of the other arms where they were,
except those the grown range takes over.

Every field is hostile input: names, salts and user ids follow the id rules of models/rows.py,
versions the version rule (`VERSION_RE`, as Redis keys), allocations are integers; a bad
field is a ValueError that names it. Plain Python, no NumPy: the functions import it.

    python -c "from models.experiments.assignment import experiment as e; x = e('t',
    [{'name': 'a', 'version': 'current', 'allocation': 5000},
     {'name': 'b', 'version': 'v2', 'allocation': 5000}], 's1'); print(x.arm_for('u1'))"
"""

from __future__ import annotations

import bisect
import hashlib
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from models.rows import VERSION_RE, clean_id

BASIS_POINTS = 10_000
CURRENT = "current"  # the arm serves whatever version the pointer names
MAX_ARMS = 20


@dataclass(frozen=True)
class Arm:
    """One arm: its name, the version it serves (or `current`), its share in basis points."""

    name: str
    version: str
    allocation: int


@dataclass(frozen=True)
class Experiment:
    """A checked experiment; build it with `experiment(...)` or `Experiment.from_dict`."""

    name: str
    arms: tuple[Arm, ...]
    salt: str

    def __post_init__(self):
        check(self)

    def bucket(self, user_id) -> int:
        """The user's bucket in 0..9999 (ValueError naming `user_id` if it is not an id)."""
        return bucket(self.salt, _text(user_id, "user_id"))

    def arm_for(self, user_id) -> Arm:
        """The user's arm."""
        return self.arms[bisect.bisect_right(_bounds(self.arms), self.bucket(user_id))]

    def to_dict(self) -> dict:
        """The JSON-ready form `from_dict` reads back."""
        return {"name": self.name, "salt": self.salt,
                "arms": [{"name": a.name, "version": a.version, "allocation": a.allocation}
                         for a in self.arms]}

    @classmethod
    def from_dict(cls, data) -> Experiment:
        """An experiment from its dict form (a request body, a stored definition)."""
        if not isinstance(data, Mapping):
            raise ValueError("experiment must be an object with name, arms and salt")
        unknown = sorted(str(k) for k in data if k not in ("name", "arms", "salt"))
        if unknown:
            raise ValueError(f"experiment has unknown fields {unknown}: use name, arms, salt")
        return experiment(data.get("name"), data.get("arms"), data.get("salt"))


def bucket(salt: str, user_id: str) -> int:
    """BLAKE2b-64 of `salt`, a NUL, `user_id` (UTF-8), mod 10,000.

    The NUL keeps ("a", "bc") and ("ab", "c") apart; ids and salts cannot hold one (models.rows
    refuses control characters). The modulo bias of 2**64 mod 10,000 is below 1e-15.
    """
    digest = hashlib.blake2b(f"{salt}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BASIS_POINTS


def experiment(name, arms, salt) -> Experiment:
    """A checked Experiment from raw values (as a request or a file gives them).

    Args:
        name: the experiment's name (an id by models/rows.py rules).
        arms: a list of {"name", "version", "allocation"} mappings (or Arm), at least two,
            with distinct names; allocations are integer basis points summing to 10,000.
        salt: any id-like text; experiments with different salts assign independently.

    Raises:
        ValueError: naming the first bad field, e.g. "arms[1].allocation must be an integer".
    """
    if isinstance(arms, (str, bytes)) or not isinstance(arms, Iterable) or isinstance(
            arms, Mapping):
        raise ValueError("arms must be a list of {name, version, allocation}")
    arms = list(arms)
    if len(arms) > MAX_ARMS:
        raise ValueError(f"arms: at most {MAX_ARMS} arms")
    return Experiment(_text(name, "name"), tuple(_arm(a, i) for i, a in enumerate(arms)),
                      _text(salt, "salt"))


def check(exp: Experiment) -> None:
    """Raises ValueError naming the field if `exp` breaks a rule (see `experiment`)."""
    _text(exp.name, "name")
    _text(exp.salt, "salt")
    if not isinstance(exp.arms, tuple) or len(exp.arms) < 2:
        raise ValueError("arms: an experiment needs at least two arms")
    seen = set()
    for i, arm in enumerate(exp.arms):
        if not isinstance(arm, Arm):
            raise ValueError(f"arms[{i}] must be an Arm")
        _arm(vars(arm), i)
        if arm.name in seen:
            raise ValueError(f"arms[{i}].name {arm.name!r} is used twice")
        seen.add(arm.name)
    total = sum(arm.allocation for arm in exp.arms)
    if total != BASIS_POINTS:
        raise ValueError(f"arms: allocations sum to {total}, not {BASIS_POINTS} basis points")


def _arm(raw, i: int) -> Arm:
    if isinstance(raw, Arm):
        raw = vars(raw)
    if not isinstance(raw, Mapping):
        raise ValueError(f"arms[{i}] must be an object with name, version and allocation")
    unknown = sorted(str(k) for k in raw if k not in ("name", "version", "allocation"))
    if unknown:
        raise ValueError(f"arms[{i}] has unknown fields {unknown}: use name, version, allocation")
    name = _text(raw.get("name"), f"arms[{i}].name")
    version = raw.get("version")
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise ValueError(f"arms[{i}].version must be {CURRENT!r} or a version name (1-64 "
                         "letters, digits, '.', '_' or '-'; see `recsys versions`), "
                         f"not {str(version)[:80]!r}")
    allocation = raw.get("allocation")
    if isinstance(allocation, bool) or not isinstance(allocation, numbers.Integral):
        raise ValueError(f"arms[{i}].allocation must be an integer number of basis points "
                         "(1% = 100)")
    if not 0 <= allocation <= BASIS_POINTS:
        raise ValueError(f"arms[{i}].allocation must be between 0 and {BASIS_POINTS}")
    return Arm(name, version, int(allocation))


def _text(value, field: str) -> str:
    text, reason = clean_id(value, field)
    if reason:
        raise ValueError(reason)
    return text


def _bounds(arms: tuple[Arm, ...]) -> list[int]:
    """The exclusive upper bucket of every arm but the last (whose range ends at 10,000)."""
    bounds, total = [], 0
    for arm in arms[:-1]:
        total += arm.allocation
        bounds.append(total)
    return bounds
