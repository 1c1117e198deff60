"""The import graph: the contracts of pyproject.toml's [tool.importlinter] hold on the checkout,
they name every top-level package, and they catch an upward import, an import between siblings
and a cycle (each planted in a copy of the code).

    python -m pytest tests/test_layers.py -q     # or: .venv/bin/lint-imports
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
ROOTS = CONFIG["root_packages"]
LAYERS = next(c for c in CONFIG["contracts"] if c["type"] == "layers")["layers"]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Runs import-linter on the packages under `root` with the checkout's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
               "lint_imports_command()", "--no-cache", "--no-logo", str(REPO / "pyproject.toml")]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def copy_of_the_code(tmp_path) -> Path:
    """The Python files of every root package, copied under tmp_path."""
    for package in ROOTS:
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=lambda folder, names: [n for n in names if n == "__pycache__" or (
                            not n.endswith(".py") and not (Path(folder) / n).is_dir())])
    return tmp_path


def test_the_checkout_keeps_every_contract():
    result = lint_imports(REPO)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_top_level_package_is_a_root_and_sits_in_one_layer():
    """import-linter's `exhaustive` needs a container; top-level packages have none, so this
    checks that a new package cannot escape the contracts by not being named."""
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")} - {"tests"}
    in_layers = [name.strip() for layer in LAYERS for name in layer.split("|")]

    assert sorted(ROOTS) == sorted(packages)
    assert sorted(in_layers) == sorted(packages)


@pytest.mark.parametrize(("module", "planted", "message"), [
    ("models/rows.py", "import infra.store", "models is not allowed to import infra"),
    ("infra/store.py", "import batch.gate", "infra is not allowed to import batch"),
    ("batch/gate.py", "import functions.params", "batch is not allowed to import functions"),
    ("evaluation/report.py", "import batch.gate", "evaluation is not allowed to import batch"),
    ("models/schema.py", "import models.baselines", "No cycles are allowed in models"),
])
def test_a_planted_import_breaks_a_contract(copy_of_the_code, module, planted, message):
    path = copy_of_the_code / module
    path.write_text(path.read_text() + f"\n{planted}  # planted by tests/test_layers.py\n")

    result = lint_imports(copy_of_the_code)

    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout, result.stdout
