"""docs/QUICKSTART.md runs as written: its ```bash blocks, extracted in order and run in one
bash in a temporary folder, against tests/conftest.py's Redis server, and give what the page
says they give (a warm user served from the cache, a category filter answering only that
category, a fresh user ranked on demand, an evaluation report).

The test does not run the page's set-up lines (NOT_RUN: the virtual environment and a Redis on
port 6379, which the test environment already has); it points `REDIS_URL` at its own server
and moves port 8080 to a free one. Everything else runs verbatim.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "QUICKSTART.md"
NOT_RUN = ("make ", "source ", "redis-server ", "redis-cli ")
MARK = "@@quickstart-block "
# Each step of the page, as a pattern of the block that does it, in the page's order.
STEPS = {
    "sample": r"^recsys sample-data mydata$",
    "nightly": r"^recsys nightly --input mydata$",
    "serve": r"^recsys serve --port 8080 > serve.log 2>&1 &$",
    "warm": r"recommend\?user_id=1&k=5'$",
    "category": r"recommend\?user_id=1&k=5&category=Comedy'$",
    "unknown_category": r"recommend\?user_id=1&k=5&category=Opera'$",
    "events": r"-X POST localhost:8080/events",
    "fresh": r"recommend\?user_id=new-1&k=5'$",
    "evaluate": r"^recsys evaluate --dataset csv:mydata --models popularity,mf,served "
                r"--report report$",
    "stop": r"^kill %1$",
}


def bash_blocks(text: str) -> list[str]:
    """The page's ```bash blocks, in order."""
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)


def step_blocks(blocks: list[str]) -> dict[str, int]:
    """Step name -> index of the one block that does it (STEPS)."""
    found = {}
    for step, pattern in STEPS.items():
        hits = [n for n, block in enumerate(blocks) if re.search(pattern, block, flags=re.M)]
        assert len(hits) == 1, f"docs/QUICKSTART.md: step {step!r} ({pattern}) in blocks {hits}"
        found[step] = hits[0]
    return found


def script(blocks: list[str], redis_url: str, port: int) -> str:
    """One bash script running the blocks in order, each announced by a MARK line."""
    lines = ["set -eo pipefail"]
    for n, block in enumerate(blocks):
        lines.append(f"printf '\\n{MARK}%d\\n' {n}")
        for line in block.splitlines():
            if line.startswith(NOT_RUN):
                continue
            if line.startswith("export REDIS_URL="):
                line = f"export REDIS_URL={redis_url}"
            lines.append(line.replace("8080", str(port)))
    return "\n".join(lines) + "\n"


def outputs(stdout: str) -> dict[int, str]:
    """Block index -> what it printed."""
    parts = re.split(rf"^{MARK}(\d+)$", stdout, flags=re.M)
    return {int(n): text.strip() for n, text in zip(parts[1::2], parts[2::2], strict=True)}


def test_readme_links_the_quickstart_first():
    links = re.findall(r"\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert links[0] == "docs/QUICKSTART.md"


def test_the_page_has_every_step_in_order_and_skips_only_set_up():
    blocks = bash_blocks(PAGE.read_text())
    found = step_blocks(blocks)
    assert list(found.values()) == sorted(found.values()), found
    skipped = [n for n, block in enumerate(blocks)
               if any(line.startswith(NOT_RUN) for line in block.splitlines())]
    # Only the set-up block (before the first step) and the stop block hold lines not run.
    assert skipped == [0, found["stop"]] and found["sample"] > 0


def _categories(items_csv: Path) -> dict[str, set[str]]:
    with open(items_csv) as f:
        return {row["item_id"]: set(row["category"].split("|")) for row in csv.DictReader(f)}


@pytest.mark.slow
def test_the_quickstart_runs_as_written(tmp_path, redis_url):
    """About 2.5 minutes: the default (served) nightly on the sample, and an evaluation."""
    import redis

    from infra.redis_server import free_port

    url = redis_url.rsplit("/", 1)[0] + "/2"  # apart from the dbs other tests flush
    redis.Redis.from_url(url).flushdb()
    blocks = bash_blocks(PAGE.read_text())
    steps = step_blocks(blocks)
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RECSYS_") and k != "REDIS_URL"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    (tmp_path / "quickstart.sh").write_text(script(blocks, url, port))
    with open(tmp_path / "stdout.txt", "w") as out, open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(["bash", "quickstart.sh"], cwd=tmp_path, env=env, stdout=out,
                                stderr=err, start_new_session=True)
        try:
            rc = proc.wait(timeout=900)
        finally:  # the server of a block that failed half-way is in the same group
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    said = outputs((tmp_path / "stdout.txt").read_text())
    assert rc == 0, (f"block {max(said)} failed (exit {rc}):\n{blocks[max(said)]}\n"
                     + (tmp_path / "stderr.txt").read_text()[-3000:])

    def answer(step: str) -> dict:
        return json.loads(said[steps[step]])

    assert said[steps["sample"]].count("mydata/") == 3
    categories = _categories(tmp_path / "mydata" / "items.csv")
    summary = answer("nightly")
    assert summary["model"] == "served" and summary["users_published"] == 1000
    assert summary["gate"]["passed"] and summary["dead_letters"] == {}
    assert summary["item_filters"]["categories"] == len(categories)
    health = json.loads(said[steps["serve"]].splitlines()[-1])
    assert health["model_version"] == summary["version"]

    warm = answer("warm")
    assert warm["source"] == "cache" and len(warm["items"]) == 5
    comedy = answer("category")
    assert comedy["source"] == "cache" and len(comedy["items"]) == 5
    assert all("Comedy" in categories[i["item_id"]] for i in comedy["items"]), comedy
    assert answer("unknown_category")["error"].startswith("category: ")
    assert answer("events")["stored"] == 2
    fresh = answer("fresh")
    assert fresh["source"] == "on_demand" and len(fresh["items"]) == 5

    report = answer("evaluate")
    assert set(report["models"]) == {"popularity", "mf", "served"}
    assert (tmp_path / "report" / "report.md").exists()
