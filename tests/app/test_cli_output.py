"""What `recsys` prints: one line per error and exit status 1 (the traceback only under
`--log-level DEBUG`), our own log lines without the libraries' chatter, the versions table,
and the model names in `recsys evaluate --help`."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]
OUR_LOG_LINE = re.compile(r"^\S+ \S+ (INFO|WARNING) (app|batch|evaluation|infra|models)\.")


def _run(*argv: str, env: dict | None = None, text: bool = True) -> subprocess.CompletedProcess:
    """`argv` with this Python from the project root; RECSYS_LOG_LEVEL unset unless in `env`."""
    base = {k: v for k, v in os.environ.items() if k != "RECSYS_LOG_LEVEL"}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=text,
                          cwd=ROOT, timeout=120, env={**base, **(env or {})})


def _recsys(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return _run("-m", "app.cli", *args, env=env)


def test_an_input_error_prints_one_line_and_exits_non_zero(tmp_path, redis_client, redis_url):
    """The nightly on interactions without timestamps: before, 130 lines with three
    tracebacks and the message four times, after Beam's and TensorFlow's start-up lines."""
    bad = tmp_path / "interactions.csv"
    pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i1", "i2"]}).to_csv(bad, index=False)
    r = _recsys("nightly", f"--input={bad}", f"--redis-url={redis_url}",
                f"--store={tmp_path / 'store'}", "--model=mf")

    lines = r.stderr.splitlines()
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert lines[-1].startswith("Error: ") and "missing column(s) ['timestamp']" in lines[-1]
    assert [line for line in lines if "missing column" in line] == [lines[-1]]  # once
    assert [line for line in lines[:-1] if not OUR_LOG_LINE.match(line)] == []  # no noise
    assert r.stdout == ""


def test_log_level_debug_shows_the_traceback(redis_client, redis_url):
    r = _recsys("rollback", "no-such-version", f"--redis-url={redis_url}",
                env={"RECSYS_LOG_LEVEL": "DEBUG"})

    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr
    assert "ValueError: version no-such-version was never published" in r.stderr


def test_rollback_to_an_unknown_version_prints_one_line(redis_client, redis_url):
    """Before: a 22-line traceback ending in the message."""
    r = _recsys("rollback", "no-such-version", f"--redis-url={redis_url}")

    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "Error: version no-such-version was never published; see `recsys versions`"]


def test_a_nightly_flag_in_an_error_is_spelled_as_recsys_nightly_takes_it(tmp_path, redis_url):
    r = _recsys("nightly", f"--input={tmp_path}", f"--redis-url={redis_url}",
                "--shard-size=0")

    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "Error: --shard-size=0: use a number of users >= 1"]


def test_libraries_log_only_warnings_and_not_their_start_up_chatter():
    """faiss' loader (INFO), Beam's "Discarding unparseable args" and its "apitools not found"
    on the root logger: the three once printed on every run."""
    code = """if True:
        import logging, sys
        from app.console import configure
        configure(sys.argv[1])
        import apache_beam.io.gcp.internal.clients.bigquery  # logs "apitools not found"
        logging.getLogger("faiss.loader").info("Loading faiss with AVX512 support.")
        logging.getLogger("apache_beam.options.pipeline_options").warning("Discarding args")
        logging.getLogger("apache_beam.io").warning("a library's warning")
        logging.getLogger("batch.nightly").info("our progress")
    """
    quiet = _run("-c", code, "INFO").stderr
    assert [line.split(" ", 4)[-1] for line in quiet.splitlines()] == [
        "a library's warning", "our progress"]
    debug = _run("-c", code, "DEBUG").stderr
    for line in ("apitools not found", "Loading faiss", "Discarding args", "our progress"):
        assert line in debug


def test_native_lines_on_stderr_are_filtered_from_this_process_and_its_children():
    code = r"""if True:
        import os, subprocess, sys
        from app.console import stderr_noise_filtered
        with stderr_noise_filtered():
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called\n")
            os.write(2, b"I0000 00:00:1796023899.636439   30092 po")  # a line in two writes
            os.write(2, b"rt.cc:153] oneDNN ...\n")
            os.write(2, b"models:  50%|#####     | 1/2\r")  # a progress bar's redraw
            os.write(2, b"E0000 00:00:1796023906.854853   30092 cuda_platform.cc:52] cuInit\n")
            print("kept", file=sys.stderr)
            subprocess.run([sys.executable, "-c", "import sys; print('INFO: Created '"
                            "'TensorFlow Lite XNNPACK delegate for CPU.', file=sys.stderr); "
                            "print('INFO:__main__:Logging handler created.', file=sys.stderr); "
                            "print('INFO:faiss.loader:Could not load library with AVX2 support "
                            "due to:', file=sys.stderr); print('ModuleNotFoundError(\"No module "
                            "named \\'faiss.swigfaiss_avx2\\'\")', file=sys.stderr); "
                            "print('WARNING:apache_beam.options.pipeline_options:Discarding "
                            "unparseable args', file=sys.stderr); "
                            "print('ERROR:apache_beam.runners.worker:kept', file=sys.stderr); "
                            "print('child kept', file=sys.stderr)"], check=True)
        print("after", file=sys.stderr)
    """
    assert _run("-c", code, text=False).stderr == (
        b"models:  50%|#####     | 1/2\rkept\nERROR:apache_beam.runners.worker:kept\n"
        b"child kept\nafter\n")


def test_versions_prints_a_table_and_json_on_request(published):
    _, redis_url, summary = published
    args = ["versions", "--redis-url", redis_url, "--namespace", "pub"]

    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, table.output
    header, row = table.output.splitlines()
    assert header.split() == ["version", "created", "(UTC)", "model", "users", "items",
                              "events", "gate", "NDCG", "seconds"]
    cells = row.split()
    assert cells[:5] == ["*", summary["version"], *_created(summary["version"]), "mf"]
    assert cells[5:8] == [f"{summary[k]:,}" for k in ("users_published", "items",
                                                      "valid_events")]
    assert cells[8] == "skipped"  # --skip_gate

    whole = CliRunner().invoke(main, [*args, "--json"])
    assert whole.exit_code == 0, whole.output
    [version] = json.loads(whole.output)
    assert version["current"] and version["summary"]["version"] == summary["version"]
    assert version["summary"]["seconds"] == summary["seconds"]


def _created(version: str) -> list[str]:
    """`20261130T073038Z-d479` -> ["2026-11-30", "07:30:38"]."""
    d, t = version[:8], version[9:15]
    return [f"{d[:4]}-{d[4:6]}-{d[6:]}", f"{t[:2]}:{t[2:4]}:{t[4:]}"]


def test_evaluate_help_lists_every_model_of_the_registry_and_existing_docs():
    from evaluation.registry import MODEL_REGISTRY

    result = CliRunner().invoke(main, ["evaluate", "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    listed = re.search(r"Models \(--models\): ([^.]*)\.", text)
    assert listed, result.output
    assert listed.group(1).split(", ") == list(MODEL_REGISTRY)
    paths = re.findall(r"(?<![\w./])(?:docs|models|evaluation)/[\w/]+\.(?:md|py)", text)
    assert paths and [p for p in paths if not (ROOT / p).exists()] == []


def test_one_line_keeps_the_message_and_says_how_to_see_more_of_a_bug():
    import redis

    from app.console import one_line
    from models.schema import SchemaError

    assert one_line(SchemaError("a.csv: missing column(s) ['timestamp']. See docs/SCHEMA.md. "
                                "[while running 'Read/ReadChunks']")) == (
        "a.csv: missing column(s) ['timestamp']. See docs/SCHEMA.md.")
    relayed = RuntimeError("Pipeline job failed:\nTraceback (most recent call last):\n  File "
                           "\"x.py\", line 1\nValueError: bad shard [while running 'Shard']\n")
    assert one_line(relayed) == "ValueError: bad shard"
    assert one_line(redis.ConnectionError("Error 111 connecting to h:1.")) == (
        "Redis error (Error 111 connecting to h:1.); check --redis-url (REDIS_URL) and that "
        "Redis is reachable from here")
    assert one_line(KeyError("user_id")) == (
        "KeyError: 'user_id' (--log-level DEBUG shows the traceback)")
