"""Static wiring checks of terraform/ without a Terraform binary (python-hcl2 parses the files).

    .venv-tf/bin/python -m pytest tests/terraform -q      # .ci/terraform-checks sets it up

- every .tf, .tfvars and .tfbackend file parses;
- every variable has a type and a description, every output a description;
- in the root module (terraform/), every argument of a module call is a variable the module
  declares, and every variable the module requires (no default) is passed;
- every `module.X.Y` reference names a module call X of the root and an output Y of X;
- each environment (terraform/environments/<env>.tfvars) sets the same variables, all declared
  by the root; with the deployment file (deployment.tfvars.example) they set every variable the
  root requires; each environment keeps its state under its own prefix (<env>.gcs.tfbackend);
- each function's entry point in the functions module is a top-level function of
  functions/main.py.
The last tests break a copy of the tree and check that the checker names what broke.
"""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is not installed (.ci/terraform-checks)")

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
ENVIRONMENTS = TERRAFORM / "environments"
DEPLOYMENT_EXAMPLE = "deployment.tfvars.example"
MODULES = sorted(p for p in (TERRAFORM / "modules").iterdir() if p.is_dir())
FUNCTIONS_MAIN = REPO / "functions" / "main.py"
META_ARGUMENTS = {"source", "version", "providers", "depends_on", "count", "for_each"}
MODULE_REFERENCE = re.compile(r"\bmodule\.([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)")
DEPLOYMENT_SPECIFIC = ("project_id", "region")


# python-hcl2 >= 7 keeps the quotes of names and strings and marks blocks with "__*" keys;
# older versions wrap every attribute value in a list. Both shapes are read the same way.
def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _scalar(value):
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return _unquote(value) if isinstance(value, str) else value


def _attributes(body: dict) -> dict:
    return {key: value for key, value in body.items() if not key.startswith("__")}


def parse(path: Path) -> dict:
    """Parses one .tf file; a syntax error names the file."""
    with path.open() as f:
        try:
            return hcl2.load(f)
        except Exception as error:  # the parser raises several lark error types
            raise AssertionError(f"{path}: does not parse: {error}") from error


def load_dir(directory: Path) -> dict[str, list]:
    """Parses every .tf file of a folder into one document (block kind -> entries)."""
    merged: dict[str, list] = {}
    for path in sorted(directory.glob("*.tf")):
        for kind, entries in parse(path).items():
            merged.setdefault(kind, []).extend(entries)
    return merged


def blocks(document: dict, kind: str) -> dict[str, dict]:
    """Named blocks of one kind (variable, output, module) -> their bodies."""
    found = {}
    for entry in document.get(kind, []):
        for name, body in entry.items():
            found[_unquote(name)] = _attributes(body)
    return found


def strings(node) -> Iterator[str]:
    """Every string value in a parsed document (expressions included, comments not)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            if not key.startswith("__"):
                yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def module_interface(directory: Path) -> tuple[dict[str, bool], set[str]]:
    """A module's variables (name -> has a default) and its output names."""
    document = load_dir(directory)
    variables = {name: "default" in body for name, body in blocks(document, "variable").items()}
    return variables, set(blocks(document, "output"))


def check_root(root: Path) -> list[str]:
    """Problems in the module calls and module output references of one root; [] if none."""
    document = load_dir(root)
    calls = blocks(document, "module")
    problems, interfaces = [], {}
    for name, body in calls.items():
        source = _scalar(body.get("source", ""))
        directory = (root / source).resolve()
        if not source.startswith(".") or not directory.is_dir():
            problems.append(f"{root.name}: module {name}: source {source!r} is not a local module")
            continue
        variables, outputs = interfaces[name] = module_interface(directory)
        passed = set(body) - META_ARGUMENTS
        for argument in sorted(passed - set(variables)):
            problems.append(
                f"{root.name}: module {name} passes {argument!r}, which "
                f"{directory.relative_to(directory.parents[2])}/variables.tf does not declare"
            )
        required = {variable for variable, has_default in variables.items() if not has_default}
        for variable in sorted(required - passed):
            problems.append(
                f"{root.name}: module {name} does not pass required variable {variable!r}"
            )
    for text in strings(document):
        for module, output in MODULE_REFERENCE.findall(text):
            if module not in calls:
                problems.append(f"{root.name}: module.{module}.{output}: no module {module!r}")
            elif module in interfaces and output not in interfaces[module][1]:
                problems.append(
                    f"{root.name}: module.{module}.{output}: module {module!r} has no output "
                    f"{output!r} (outputs: {', '.join(sorted(interfaces[module][1]))})"
                )
    return sorted(set(problems))


def assignments(path: Path) -> dict:
    """What a .tfvars or .tfbackend file sets: name -> value (strings unquoted)."""
    return {name: _scalar(value) for name, value in _attributes(parse(path)).items()}


def check_environments(root: Path) -> list[str]:
    """Problems in the environment files of a root (root/environments/); [] if none.

    Each <env>.tfvars sets `environment = "<env>"` and the same variables as the others, all
    declared by the root; with the deployment file they set every variable without a default,
    and no variable is in both. Each <env>.gcs.tfbackend sets only `prefix = "recsys/<env>"`.
    """
    variables = blocks(load_dir(root), "variable")
    required = {name for name, body in variables.items() if "default" not in body}
    folder = root / "environments"
    deployment = set(assignments(folder / DEPLOYMENT_EXAMPLE))
    environments = {path.stem: assignments(path) for path in sorted(folder.glob("*.tfvars"))}
    problems = [f"{DEPLOYMENT_EXAMPLE} sets {name!r}, which variables.tf does not declare"
                for name in sorted(deployment - set(variables))]
    every = set().union(*environments.values()) if environments else set()
    for env, values in environments.items():
        file = f"{env}.tfvars"
        problems += [f"{file} sets {name!r}, which variables.tf does not declare"
                     for name in sorted(set(values) - set(variables))]
        unset = required - set(values) - deployment
        problems += [f"{file}: required variable {name!r} is set neither there nor in "
                     f"{DEPLOYMENT_EXAMPLE}" for name in sorted(unset)]
        problems += [f"{file} and {DEPLOYMENT_EXAMPLE} both set {name!r}"
                     for name in sorted(set(values) & deployment)]
        if set(values) != every:
            problems.append(f"{file} does not set {sorted(every - set(values))} (another "
                            "environment does)")
        if values.get("environment") != env:
            problems.append(f"{file} sets environment = {values.get('environment')!r}, not {env!r}")
        backend = folder / f"{env}.gcs.tfbackend"
        if not backend.is_file():
            problems.append(f"{env}: no {backend.name} (the environment's state prefix)")
        elif assignments(backend) != {"prefix": f"recsys/{env}"}:
            problems.append(f"{backend.name} sets {assignments(backend)}, not only prefix = "
                            f"'recsys/{env}' (the bucket is given at init)")
    return sorted(problems)


def entry_points(functions_module: Path) -> set[str]:
    """Literal `entry_point` values anywhere in the functions module."""
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                value_text = _scalar(value)
                if key == "entry_point" and isinstance(value_text, str) and "${" not in value_text:
                    found.add(value_text)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(load_dir(functions_module))
    return found


def remove_block(text: str, kind: str, name: str) -> str:
    """Cuts `kind "name" { ... }` out of HCL text (braces counted; fine for this tree)."""
    start = text.index(f'{kind} "{name}" {{')
    depth, position = 0, text.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        position += 1
        if depth == 0:
            return text[:start] + text[position:]


# --- the checks on the real tree -------------------------------------------------------------


HCL_FILES = [p for pattern in ("*.tf", "*.tfvars", "*.tfbackend", "*.tfvars.example")
             for p in TERRAFORM.rglob(pattern)]


@pytest.mark.parametrize("path", sorted(HCL_FILES), ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_terraform_file_parses(path):
    assert isinstance(parse(path), dict)


@pytest.mark.parametrize("directory", [TERRAFORM, *MODULES], ids=lambda p: p.name)
def test_variables_and_outputs_are_documented(directory):
    document = load_dir(directory)
    problems = [
        f"variable {name}: no {field}"
        for name, body in blocks(document, "variable").items()
        for field in ("type", "description")
        if field not in body
    ]
    problems += [
        f"output {name}: no description"
        for name, body in blocks(document, "output").items()
        if "description" not in body
    ]
    assert not problems, f"{directory}: " + "; ".join(problems)


def test_deployment_specific_variables_have_no_default():
    variables = blocks(load_dir(TERRAFORM), "variable")
    with_default = [name for name in DEPLOYMENT_SPECIFIC if "default" in variables.get(name, {})]
    missing = [name for name in DEPLOYMENT_SPECIFIC if name not in variables]
    assert not missing, f"terraform/variables.tf: variables {missing} are not declared"
    assert not with_default, f"deployment-specific {with_default} must have no default"


def test_module_calls_match_module_interfaces():
    assert blocks(load_dir(TERRAFORM), "module"), "terraform/ calls no module"
    problems = check_root(TERRAFORM)
    assert not problems, "\n".join(problems)


def test_environments_are_variable_files_of_the_one_root():
    assert sorted(p.stem for p in ENVIRONMENTS.glob("*.tfvars")) == ["dev", "prod"]
    assert not [p for p in ENVIRONMENTS.iterdir() if p.is_dir()], "an environment root folder"
    problems = check_environments(TERRAFORM)
    assert not problems, "\n".join(problems)


def test_function_entry_points_exist_in_functions_main():
    declared = entry_points(TERRAFORM / "modules" / "functions")
    assert declared, "terraform/modules/functions declares no literal entry_point"
    if not FUNCTIONS_MAIN.is_file():
        pytest.fail(
            f"{FUNCTIONS_MAIN.relative_to(REPO)} is missing; the functions module deploys "
            f"entry points {sorted(declared)} from it"
        )
    tree = ast.parse(FUNCTIONS_MAIN.read_text(), filename=str(FUNCTIONS_MAIN))
    defined = {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    missing = sorted(declared - defined)
    assert not missing, (
        f"functions/main.py has no top-level function {missing} (defines: {sorted(defined)})"
    )


def test_terraform_entry_points_are_exported_by_the_function_archive():
    from app.build_function_source import ENTRY_POINTS

    declared = entry_points(TERRAFORM / "modules" / "functions")
    missing = sorted(declared - set(ENTRY_POINTS))
    assert not missing, (
        f"terraform/modules/functions deploys {missing}, which the archive's main.py does not "
        "export: add them to ENTRY_POINTS in app/build_function_source.py"
    )


def _locals(directory: Path) -> dict:
    merged: dict = {}
    for entry in load_dir(directory).get("locals", []):
        merged.update(_attributes(entry))
    return merged


def test_hardening_13_admin_items_is_deployed_with_its_own_key_from_secret_manager():
    module = TERRAFORM / "modules" / "functions"
    local = _locals(module)
    functions = list(local["functions"].values())
    admin = [f for f in functions if _scalar(f["entry_point"]) == "admin_items"]
    assert len(admin) == 1, "terraform/modules/functions deploys no admin_items entry point"
    # Only admin-items gets the admin key, from its own secret; never public.
    assert [_scalar(k) for k in admin[0]["keys"]] == ["RECSYS_ADMIN_KEY"]
    assert all("RECSYS_ADMIN_KEY" not in str(f["keys"]) for f in functions if f is not admin[0])
    admin_secret = local["key_environment"]["RECSYS_ADMIN_KEY"]["secret"]
    assert _scalar(admin_secret) == "${var.secret_ids.admin_key}"
    main_tf = (module / "main.tf").read_text()
    assert "local.key_environment[key] }" in main_tf and "each.value.keys" in main_tf
    validation = blocks(load_dir(module), "variable")["admin_invokers"]["validation"]
    assert "allUsers" in str(validation)
    calls = blocks(load_dir(TERRAFORM), "module")
    secret_ids = _attributes(_scalar(calls["functions"]["secret_ids"]))
    passed = _scalar(secret_ids.get("admin_key", ""))
    assert passed == '${module.secrets.secret_ids["admin_key"]}', passed
    readers = _attributes(_scalar(calls["secrets"]["accessors"]))["functions"]["secrets"]
    assert "admin_key" in map(_scalar, readers), "the functions cannot read admin_key"


# --- the checker catches broken wiring (on a copy of the tree) -------------------------------


@pytest.fixture
def tree(tmp_path) -> Path:
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy)
    return copy


def test_checker_reports_a_removed_module_variable(tree):
    variables_tf = tree / "modules" / "cache" / "variables.tf"
    variables_tf.write_text(remove_block(variables_tf.read_text(), "variable", "redis_tier"))

    problems = check_root(tree)

    assert problems == [
        "terraform: module cache passes 'redis_tier', which "
        "terraform/modules/cache/variables.tf does not declare"
    ]


def test_checker_reports_a_required_variable_not_passed(tree):
    main_tf = tree / "main.tf"
    text, removed = re.subn(r"(?m)^\s*image_tag\s*=.*\n", "", main_tf.read_text())
    assert removed == 1
    main_tf.write_text(text)

    problems = check_root(tree)

    assert problems == ["terraform: module batch does not pass required variable 'image_tag'"]


def test_checker_reports_a_reference_to_a_removed_output(tree):
    outputs_tf = tree / "modules" / "storage" / "outputs.tf"
    outputs_tf.write_text(remove_block(outputs_tf.read_text(), "output", "store_uri"))

    problems = check_root(tree)

    assert problems and all("module.storage.store_uri" in p for p in problems), problems
    assert "has no output 'store_uri'" in problems[0]


def test_checker_reports_an_environment_setting_an_undeclared_variable(tree):
    variables_tf = tree / "variables.tf"
    variables_tf.write_text(remove_block(variables_tf.read_text(), "variable", "force_destroy"))

    problems = check_environments(tree)

    assert problems == [f"{env}.tfvars sets 'force_destroy', which variables.tf does not declare"
                        for env in ("dev", "prod")]


def test_checker_reports_a_variable_one_environment_leaves_out(tree):
    prod = tree / "environments" / "prod.tfvars"
    text, removed = re.subn(r"(?m)^force_destroy\s*=.*\n", "", prod.read_text())
    assert removed == 1
    prod.write_text(text)

    problems = check_environments(tree)

    assert problems == [
        "prod.tfvars does not set ['force_destroy'] (another environment does)",
        "prod.tfvars: required variable 'force_destroy' is set neither there nor in "
        "deployment.tfvars.example",
    ]


def test_checker_reports_two_environments_sharing_a_state_prefix(tree):
    environments = tree / "environments"
    shutil.copy(environments / "dev.gcs.tfbackend", environments / "prod.gcs.tfbackend")

    problems = check_environments(tree)

    assert problems == ["prod.gcs.tfbackend sets {'prefix': 'recsys/dev'}, not only prefix = "
                        "'recsys/prod' (the bucket is given at init)"]
