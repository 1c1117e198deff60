"""What the `recsys` command prints: the project's own log lines at `--log-level`, third-party
libraries only when they warn (their start-up chatter never), and one line per error.

Three sources of noise are handled, each where it starts:
- Python loggers of TensorFlow, Beam, Faiss, absl: held at WARNING (or the chosen level if
  higher), the few that repeat what the error line says or warn about nothing held higher.
- Native libraries (TensorFlow's and LiteRT's C++ start-up lines, `cuInit` on a machine without
  a GPU) and the DirectRunner's worker processes (Beam's and Faiss' INFO lines) write to file
  descriptor 2 directly: `TF_CPP_MIN_LOG_LEVEL` before TensorFlow loads, and around the heavy
  commands a filter on the descriptor that drops the lines of `STDERR_NOISE` (workers on
  other runners log where those runners keep logs: untouched).
- Errors: `OneLineErrors`, the `recsys` group, prints an exception as the one line of
  `one_line`.
`--log-level DEBUG` turns all of it off: every library logs, and errors show their traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence

import click

OUR_PACKAGES = ("app", "batch", "evaluation", "functions", "infra", "models", "__main__")
# Third-party loggers held above WARNING: what they say is either the error the CLI prints
# in one line anyway, or a warning that asks nothing of the user.
QUIETER = {
    "apache_beam.runners.common": logging.CRITICAL,  # a DoFn's error, with its traceback
    "apache_beam.options.pipeline_options": logging.ERROR,  # "Discarding unparseable args"
    "apache_beam.runners.portability.local_job_service": logging.ERROR,  # workers' log lines
    "tensorflow": logging.ERROR,  # tf.function retracing, deprecations: nothing to act on
}
# Lines written straight to file descriptor 2 by native code, or by the DirectRunner's worker
# processes in logging's default format (`INFO:name:message`) for the libraries' loggers: the
# SDK harness (`__main__`) and Beam at start and stop, "Discarding unparseable args" (the
# nightly's flags, unknown to a worker), Faiss' loader, Beam's "apitools not found" on root.
# A worker's errors, and any line of the project's loggers, pass.
STDERR_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IWE]\d{4} [\d:.]+ +\d+ \w+\.cc:\d+\]"  # absl's C++ lines: I0000 00:00:17.. 123 x.cc:4]
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate"
    rb"|(DEBUG|INFO|WARNING):(__main__|root|apache_beam[\w.]*|faiss[\w.]*|absl):"
    rb"|ModuleNotFoundError\(\"No module named 'faiss\.swigfaiss_)")  # the loader's 2nd line
_SEGMENT_END = re.compile(rb"(?<=[\r\n])")
_BEAM_STEP = re.compile(r" \[while running '[^']*'\]$")


def configure(level: str) -> None:
    """Logging for one `recsys` run: the project's loggers at `level` (DEBUG, INFO, ...), the
    rest at WARNING or `level` if higher; DEBUG lets every library log at DEBUG."""
    debug = level == "DEBUG"
    # Read by TensorFlow's C++ runtime when it loads: 3 also hides `failed call to cuInit`.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")
    numeric = logging.getLevelName(level)
    third_party = numeric if debug else max(logging.WARNING, numeric)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger().setLevel(third_party)
    for name in OUR_PACKAGES:
        logging.getLogger(name).setLevel(numeric)
    for name, quieter in QUIETER.items():
        logging.getLogger(name).setLevel(numeric if debug else max(quieter, numeric))
    for handler in logging.getLogger().handlers:
        (handler.removeFilter if debug else handler.addFilter)(_not_libraries_on_the_root_logger)


def _not_libraries_on_the_root_logger(record: logging.LogRecord) -> bool:
    """Drops what a library logs through `logging.warning(...)` (the root logger), e.g. Beam's
    "apitools not found" on import; keeps errors and the root records of this project."""
    if record.name != "root" or record.levelno >= logging.ERROR:
        return True
    return "site-packages" not in record.pathname


@contextlib.contextmanager
def stderr_noise_filtered() -> Iterator[None]:
    """File descriptor 2 through a pipe whose reader drops the lines of `STDERR_NOISE` and
    passes every other line on (delayed at most to the line's end). Does nothing when stderr is
    not descriptor 2 (e.g. under click's CliRunner)."""
    try:
        if sys.stderr.fileno() != 2:
            raise OSError
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    real_stderr = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_pump, args=(read_end, real_stderr), daemon=True,
                            name="recsys-stderr-filter")
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # closes this process's write end; the reader sees EOF ...
        pump.join(timeout=5)  # ... unless a worker process still holds the pipe
        os.close(real_stderr)


def _pump(read_end: int, real_stderr: int) -> None:
    """Copies the pipe to the real stderr segment by segment, a segment ending at `\n` or at
    `\r` (a progress bar's redraw passes at once), the segments of `STDERR_NOISE` left out."""
    pending = b""
    try:
        while chunk := os.read(read_end, 1 << 16):
            *segments, pending = _SEGMENT_END.split(pending + chunk)
            _write(real_stderr, segments)
        _write(real_stderr, [pending])
    finally:
        os.close(read_end)


def _write(fd: int, segments: list[bytes]) -> None:
    kept = b"".join(s for s in segments if not STDERR_NOISE.match(s))
    with contextlib.suppress(OSError):  # keep reading: a full pipe would block the writers
        os.write(fd, kept)


class OneLineErrors(click.Group):
    """A click group whose commands' exceptions become click's one `Error: ...` line and exit
    status 1, unless `--log-level DEBUG` asked for the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:
            if ctx.params.get("log_level") == "DEBUG":
                raise
            raise click.ClickException(one_line(error)) from None


def one_line(error: BaseException) -> str:
    """The line the CLI prints for `error`: its message without Beam's step suffix; from a
    message that holds a traceback (a worker's, relayed by Beam), its last line; the type and
    how to see the traceback for errors that are not about the input or the environment."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = lines[-1] if any("Traceback (most recent call last)" in x for x in lines) else (
        " ".join(lines))
    message = _BEAM_STEP.sub("", message) or type(error).__name__
    if type(error).__module__.split(".")[0] == "redis":
        return (f"Redis error ({message}); check --redis-url (REDIS_URL) and that Redis is "
                "reachable from here")
    if isinstance(error, (ValueError, OSError, RuntimeError)):
        return message
    return f"{type(error).__name__}: {message} (--log-level DEBUG shows the traceback)"


def versions_table(rows: Sequence[dict]) -> str:
    """`recsys versions`' table: one line per version (`*` the served one) from its summary.

    Args:
        rows: {"version", "current", "summary" (a run summary or None)} per version.
    """
    header = ("", "version", "created (UTC)", "model", "users", "items", "events", "gate NDCG",
              "seconds")
    lines = [header] + [_version_cells(r["version"], r["current"], r["summary"] or {})
                        for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(w) if i < 4 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
                     .rstrip() for line in lines)
    return text if rows else text + "\n(no published version)"


def _version_cells(version: str, current: bool, summary: dict) -> tuple[str, ...]:
    def count(key: str) -> str:
        return f"{summary[key]:,}" if isinstance(summary.get(key), int) else "–"

    stamp = re.match(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z", version)
    created = "{}-{}-{} {}:{}:{}".format(*stamp.groups()) if stamp else "–"
    gate = summary.get("gate") or {}
    gate_cell = ("skipped" if summary else "–") if not gate else (
        f"{gate['ndcg@10']:.4f}" if gate.get("ndcg@10") is not None else "–")
    if gate and not gate.get("passed", True):
        gate_cell += " (forced)"
    seconds = summary.get("seconds") or {}
    return ("*" if current else "", version, created, summary.get("model", "–"),
            count("users_published"), count("items"), count("valid_events"), gate_cell,
            f"{sum(seconds.values()):.1f}" if seconds else "–")
