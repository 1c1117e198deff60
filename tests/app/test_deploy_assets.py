"""The deploy assets that are not Terraform: the functions' source archive, the Flex Template
launcher and its metadata. Standard library only, so these run in any environment.

    python -m pytest tests/app/test_deploy_assets.py -q
"""

from __future__ import annotations

import ast
import base64
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app import build_function_source as bfs

REPO = Path(__file__).resolve().parents[2]
FLEX = REPO / "app" / "flex_template"


def _load_launcher():
    spec = importlib.util.spec_from_file_location("flex_launcher", FLEX / "launcher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


launcher = _load_launcher()


# --- app/build_function_source.py ----------------------------------------------------------


@pytest.fixture
def repo(tmp_path) -> Path:
    """A minimal repository: pyproject.toml, the three packages, functions/main.py."""
    (tmp_path / "pyproject.toml").write_text(
        "[project]\nname = 'x'\nversion = '0'\n"
        "dependencies = ['apache-beam>=2.60', 'tensorflow>=2.16', 'faiss-cpu>=1.8', "
        "'redis>=5.0', 'boto3>=1.34', 'numpy>=1.26', 'pandas>=2.1', 'functions-framework>=3.5', "
        "'prometheus-client>=0.20']\n"
        "[project.optional-dependencies]\nlite = ['ai-edge-litert>=1.0']\n"
    )
    for package in bfs.PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "functions" / "main.py").write_text(
        "def recommend(request):\n    return 'r'\n\n"
        "def events(request):\n    return 'e'\n\n"
        "async def health(request):\n    return 'h'\n\n"
        "def admin_items(request):\n    return 'a'\n\n"
        "def similar_items(request):\n    return 's'\n\n"
        "def trending_items(request):\n    return 't'\n"
    )
    (tmp_path / "models" / "__pycache__").mkdir()
    (tmp_path / "models" / "__pycache__" / "mf.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "app" / "flex_template").mkdir(parents=True)  # the entry points: not packaged
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "flex_template" / "Dockerfile").write_text("FROM scratch\n")
    return tmp_path


def test_archive_holds_packages_entry_module_and_serving_requirements(repo, tmp_path):
    out = tmp_path / "dist" / "functions.zip"

    members = bfs.build(repo, out)

    assert members == [
        "functions/__init__.py",
        "functions/main.py",
        "infra/__init__.py",
        "main.py",
        "models/__init__.py",
        "requirements.txt",
    ]
    with zipfile.ZipFile(out) as archive:
        requirements = archive.read("requirements.txt").decode().split()
        main_py = archive.read("main.py").decode()
    # Serving only: no Beam, no TensorFlow; the light runtime because pyproject declares it.
    assert requirements == [
        "functions-framework>=3.5",
        "redis>=5.0",
        "boto3>=1.34",
        "numpy>=1.26",
        "faiss-cpu>=1.8",
        "pandas>=2.1",
        "prometheus-client>=0.20",
        "ai-edge-litert>=1.0",
    ]
    tree = ast.parse(main_py)
    imported = [
        alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names
    ]
    assert sorted(imported) == ["admin_items", "events", "health", "recommend", "similar_items",
                                "trending_items"]


def test_archive_is_reproducible(repo, tmp_path):
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    bfs.build(repo, first)
    bfs.build(repo, second)
    assert first.read_bytes() == second.read_bytes()


def test_missing_entry_point_is_named(repo, tmp_path):
    (repo / "functions" / "main.py").write_text("def recommend(request):\n    return 'r'\n")

    with pytest.raises(
        bfs.SourceError, match=r"does not define events, health, admin_items.*defines: recommend"
    ):
        bfs.build(repo, tmp_path / "f.zip")


def test_module_level_import_of_an_uninstalled_package_is_named(repo, tmp_path):
    main_py = repo / "functions" / "main.py"
    main_py.write_text("from models import tower\n" + main_py.read_text())
    (repo / "models" / "tower.py").write_text("import numpy as np\nimport tensorflow as tf\n")
    (repo / "models" / "lazy.py").write_text("def load():\n    import tensorflow\n")

    with pytest.raises(bfs.SourceError, match=r"import tensorflow \(imported by models/tower.py\)"):
        bfs.build(repo, tmp_path / "f.zip")

    # Imported inside a function, or optional by design: fine.
    (repo / "models" / "tower.py").write_text(
        "import numpy as np\n"
        "from . import lazy\n\n"
        "try:\n    import tensorflow as tf\nexcept ImportError:\n    tf = None\n"
    )
    bfs.build(repo, tmp_path / "f.zip")


def test_a_module_the_functions_load_on_demand_is_checked_too(repo, tmp_path):
    main_py = repo / "functions" / "main.py"
    main_py.write_text("def tower():\n    from models import export\n\n" + main_py.read_text())
    (repo / "models" / "export.py").write_text("from models import schema\n")
    (repo / "models" / "schema.py").write_text("import pyarrow\n")

    assert bfs.deferred_imports(repo) == ["models", "models.export"]
    with pytest.raises(bfs.SourceError, match=r"import pyarrow \(imported by models/schema.py\)"
                       r".*functions/ on demand -> models/export.py -> models/schema.py"):
        bfs.build(repo, tmp_path / "f.zip")


def test_undeclared_serving_dependency_is_named(repo, tmp_path):
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("'redis>=5.0', ", ""))

    assert bfs.main(["--root", str(repo), "--out", str(tmp_path / "f.zip")]) == 1
    with pytest.raises(bfs.SourceError, match="does not declare redis"):
        bfs.build(repo, tmp_path / "f.zip")


# --- the build of the real repository ---------------------------------------------------------

# Imports the archive's main.py as Cloud Functions does, then the modules the functions load on
# demand, in a Python that can import only the standard library, the archive's packages and
# what requirements.txt installs (argv[1]: those import names, as JSON; argv[2]: the unpacked
# archive; argv[3]: the on-demand modules, as JSON). Prints the archive modules it loaded.
IMPORT_ONLY_REQUIREMENTS = """
import importlib, importlib.machinery, json, sys

allowed, archive, deferred = set(json.loads(sys.argv[1])), sys.argv[2], json.loads(sys.argv[3])
local = {"main", "functions", "models", "infra"}


class OnlyRequirements:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in local:
            return importlib.machinery.PathFinder.find_spec(name, path or [archive])
        if top in sys.stdlib_module_names or top in allowed or top.startswith("_"):
            return None
        raise ModuleNotFoundError(f"No module named {name!r}: requirements.txt does not "
                                  "install it", name=name)


sys.meta_path.insert(0, OnlyRequirements())
import main

for name in deferred:
    importlib.import_module(name)

print(json.dumps({"main": main.__file__, "handlers": sorted(main.__all__),
                  "local": sorted(m.__file__ for n, m in sys.modules.items()
                                  if n.partition(".")[0] in local and getattr(m, "__file__", 0))}))
"""


def import_names(requirements: list[str]) -> set[str]:
    """Top-level import names of the installed distributions that `requirements` pull in,
    with their dependencies (markers evaluated; extras followed)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    closure, pending = set(), [Requirement(line) for line in requirements]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in closure:
            continue
        try:
            dist = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: importing it fails in the subprocess, as it should
        closure.add(name)
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra})
                                         for extra in {"", *requirement.extras}):
                pending.append(sub)
    return {top for top, dists in importlib.metadata.packages_distributions().items()
            if any(canonicalize_name(d) in closure for d in dists)}


def test_hardening_11_the_real_repository_builds(tmp_path):
    out = tmp_path / "functions.zip"

    members = bfs.build(REPO, out)

    assert {"main.py", "requirements.txt", "functions/main.py"} <= set(members)
    assert not [m for m in members if m.startswith(("batch/", "tests/")) or ".pyc" in m]
    with zipfile.ZipFile(out) as archive:
        requirements = archive.read("requirements.txt").decode().split()
    assert not {bfs._requirement_name(r) for r in requirements} & {
        "apache-beam", "tensorflow", "pyarrow"}, requirements


def test_hardening_11_the_real_archive_imports_with_only_its_requirements(tmp_path):
    for needed in ("flask", "redis", "numpy", "packaging"):
        pytest.importorskip(needed, reason="the serving packages are not installed here")
    from infra.redis_server import free_port

    out, unpacked = tmp_path / "functions.zip", tmp_path / "unpacked"
    bfs.build(REPO, out)
    with zipfile.ZipFile(out) as archive:
        archive.extractall(unpacked)
        requirements = archive.read("requirements.txt").decode().split()
    (tmp_path / "store").mkdir()
    env = {"PATH": "", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "RECSYS_STORE": str(tmp_path / "store"), "RECSYS_REQUEST_LOG": "0"}

    run = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_ONLY_REQUIREMENTS,
         json.dumps(sorted(import_names(requirements))), str(unpacked),
         json.dumps(bfs.deferred_imports(REPO))],
        cwd=unpacked, env=env, capture_output=True, text=True, timeout=120)

    assert run.returncode == 0, run.stderr[-3000:]
    loaded = json.loads(run.stdout.splitlines()[-1])
    assert loaded["handlers"] == sorted(bfs.ENTRY_POINTS)
    assert all(path.startswith(str(unpacked)) for path in [loaded["main"], *loaded["local"]])
    # The MF kind's on-demand path is loaded; MF's export (TensorFlow) is not.
    assert str(unpacked / "models" / "kinds" / "mf.py") in loaded["local"]
    assert str(unpacked / "models" / "export.py") not in loaded["local"]


def test_an_import_outside_the_requirements_is_refused_in_the_subprocess(tmp_path):
    pytest.importorskip("packaging")
    (tmp_path / "main.py").write_text("import json\nimport pyarrow\n__all__ = []\n")

    run = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_ONLY_REQUIREMENTS,
         json.dumps(sorted(import_names(["redis>=5"]))), str(tmp_path), "[]"],
        cwd=tmp_path, env={"PATH": ""}, capture_output=True, text=True, timeout=60)

    assert run.returncode != 0
    assert "No module named 'pyarrow': requirements.txt does not install it" in run.stderr


# --- app/flex_template/launcher.py ---------------------------------------------------------


def test_split_argv_keeps_pipeline_flags_and_takes_its_own():
    secrets, plain, rest = launcher.split_argv(
        [
            "--input=s3://b/in/",
            "--redis_url_secret",
            "projects/p/secrets/r/versions/latest",
            "--s3_endpoint_url=https://storage.googleapis.com",
            "--aws_access_key_id_secret=",
            "--runner=DataflowRunner",
            "--k=50",
        ]
    )

    assert secrets == {"REDIS_URL": "projects/p/secrets/r/versions/latest"}
    assert plain == {"AWS_ENDPOINT_URL_S3": "https://storage.googleapis.com"}
    assert rest == ["--input=s3://b/in/", "--runner=DataflowRunner", "--k=50"]


class _FakeGoogle(BaseHTTPRequestHandler):
    """The metadata server's token endpoint and Secret Manager's access method."""

    secrets = {"projects/p/secrets/redis-url/versions/latest": "rediss://:pw@10.0.0.3:6378/0"}

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path == "/token" and self.headers.get("Metadata-Flavor") == "Google":
            self._send(200, {"access_token": "tok", "expires_in": 3600})
        elif self.headers.get("Authorization") != "Bearer tok":
            self._send(401, {"error": "no token"})
        elif self.path.startswith("/v1/") and self.path.endswith(":access"):
            name = self.path[len("/v1/") : -len(":access")]
            if name in self.secrets:
                data = base64.b64encode(self.secrets[name].encode()).decode()
                self._send(200, {"name": name, "payload": {"data": data}})
            else:
                self._send(403, {"error": "permission denied"})
        else:
            self._send(404, {})

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def google():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGoogle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_secrets_are_read_over_http_into_the_environment(google):
    token = launcher.access_token(f"{google}/token")

    environment, rest = launcher.resolve_environment(
        [
            "--redis_url_secret=projects/p/secrets/redis-url/versions/latest",
            "--s3_endpoint_url=https://storage.googleapis.com",
            "--store=s3://b/recsys",
        ],
        fetch=lambda name: launcher.access_secret(name, token, api_root=google),
    )

    assert environment == {
        "REDIS_URL": "rediss://:pw@10.0.0.3:6378/0",
        "AWS_ENDPOINT_URL_S3": "https://storage.googleapis.com",
        "AWS_DEFAULT_REGION": "auto",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }
    assert rest == ["--store=s3://b/recsys"]


def test_denied_secret_says_what_to_grant(google):
    with pytest.raises(launcher.SecretAccessError, match="HTTP 403; grant roles/secretmanager"):
        launcher.access_secret("projects/p/secrets/other/versions/1", "tok", api_root=google)


# --- the template's parameters match the pipeline and the scheduler ---------------------------


def _metadata_parameters() -> set[str]:
    return {p["name"] for p in json.loads((FLEX / "metadata.json").read_text())["parameters"]}


def test_template_parameters_are_launcher_or_pipeline_flags():
    from batch.options import fields

    pipeline_flags = {f.name for f in fields()}  # the nightly job's flags, declared once
    launcher_flags = set(launcher.SECRET_FLAGS) | set(launcher.PLAIN_FLAGS)

    unknown = _metadata_parameters() - pipeline_flags - launcher_flags
    assert not unknown, f"metadata.json parameters nobody reads: {sorted(unknown)}"


def test_scheduler_sends_only_declared_parameters():
    main_tf = (REPO / "terraform" / "modules" / "batch" / "main.tf").read_text()
    start = main_tf.index("parameters = {") + len("parameters = {")
    block = main_tf[start : main_tf.index("var.extra_parameters")]
    sent = set(re.findall(r"^\s*(\w+)\s*=", block, flags=re.M))

    assert sent, "found no parameters in the batch module's launch request"
    assert sent <= _metadata_parameters(), sorted(sent - _metadata_parameters())


def test_dockerfile_points_the_launcher_at_this_file():
    dockerfile = (FLEX / "Dockerfile").read_text()
    (path,) = re.findall(r"FLEX_TEMPLATE_PYTHON_PY_FILE=(\S+)", dockerfile)

    assert path.startswith("/template/")
    assert (REPO / path.removeprefix("/template/")).is_file(), path
