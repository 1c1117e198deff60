"""The deploy assets that are not Terraform: the functions' source archive, the Flex Template
launcher and its metadata. Standard library only, so these run in any environment.

    python -m pytest tests/terraform/test_deploy_assets.py -q
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import json
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra import build_function_source as bfs

REPO = Path(__file__).resolve().parents[2]
FLEX = REPO / "infra" / "flex_template"


def _load_launcher():
    spec = importlib.util.spec_from_file_location("flex_launcher", FLEX / "launcher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


launcher = _load_launcher()


# --- infra/build_function_source.py ----------------------------------------------------------


@pytest.fixture
def repo(tmp_path) -> Path:
    """A minimal repository: pyproject.toml, the three packages, functions/main.py."""
    (tmp_path / "pyproject.toml").write_text(
        "[project]\nname = 'x'\nversion = '0'\n"
        "dependencies = ['apache-beam>=2.60', 'tensorflow>=2.16', 'faiss-cpu>=1.8', "
        "'redis>=5.0', 'boto3>=1.34', 'numpy>=1.26', 'pandas>=2.1', 'functions-framework>=3.5']\n"
        "[project.optional-dependencies]\nlite = ['ai-edge-litert>=1.0']\n"
    )
    for package in bfs.PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "functions" / "main.py").write_text(
        "def recommend(request):\n    return 'r'\n\n"
        "def events(request):\n    return 'e'\n\n"
        "async def health(request):\n    return 'h'\n"
    )
    (tmp_path / "models" / "__pycache__").mkdir()
    (tmp_path / "models" / "__pycache__" / "mf.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "infra" / "flex_template").mkdir()
    (tmp_path / "infra" / "flex_template" / "Dockerfile").write_text("FROM scratch\n")
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
        "ai-edge-litert>=1.0",
    ]
    tree = ast.parse(main_py)
    imported = [
        alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names
    ]
    assert sorted(imported) == ["events", "health", "recommend"]


def test_archive_is_reproducible(repo, tmp_path):
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    bfs.build(repo, first)
    bfs.build(repo, second)
    assert first.read_bytes() == second.read_bytes()


def test_missing_entry_point_is_named(repo, tmp_path):
    (repo / "functions" / "main.py").write_text("def recommend(request):\n    return 'r'\n")

    with pytest.raises(
        bfs.SourceError, match=r"does not define events, health.*defines: recommend"
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


def test_undeclared_serving_dependency_is_named(repo, tmp_path):
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("'redis>=5.0', ", ""))

    assert bfs.main(["--root", str(repo), "--out", str(tmp_path / "f.zip")]) == 1
    with pytest.raises(bfs.SourceError, match="does not declare redis"):
        bfs.build(repo, tmp_path / "f.zip")


# --- infra/flex_template/launcher.py ---------------------------------------------------------


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
    tree = ast.parse((REPO / "batch" / "nightly.py").read_text())
    pipeline_flags = {
        node.args[0].value.removeprefix("--")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", "") == "add_argument"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
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
