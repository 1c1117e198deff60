"""The JSON file behind a `--*-config FILE` flag of the nightly (--graphsage-config,
--dqn-config): read once, bounded, every failure a ValueError naming the flag."""

from __future__ import annotations

import json


def read_config_file(path: str, where: str, what: str, example: str) -> object:
    """The parsed JSON of `path` (any type: the caller checks it is an object of its fields).

    Args:
        where: the flag, first in every message (e.g. "--dqn_config").
        what: the config class the file overrides, for the message (e.g. "DQNConfig").
        example: a small valid object, for the message (e.g. '{"rounds": 20}').

    Raises:
        ValueError: the file cannot be read (or is not UTF-8), or is not JSON.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(1 << 20)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: cannot read {path!r} ({getattr(e, 'strerror', None) or e})"
                         f"; pass a JSON file of {what} fields, e.g. {example}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: {path!r} is not JSON ({e.msg} at line {e.lineno}); pass "
                         f"an object such as {example}") from None
