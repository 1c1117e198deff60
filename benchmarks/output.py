"""What every benchmark does with its figures: print them and write them as JSON (--json)."""

from __future__ import annotations

import json


def write_json(result, path: str | None) -> None:
    """Writes `result` as indented JSON, newline-terminated, to `path` when one is given."""
    if path:
        with open(path, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")


def emit(result, path: str | None) -> None:
    """Prints `result` as indented JSON (the benchmark's output) and writes it to `path`."""
    print(json.dumps(result, indent=1))  # noqa: T201 - the benchmark's output
    write_json(result, path)
