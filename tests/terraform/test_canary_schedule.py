"""The canary check's schedule in terraform/ (python-hcl2, no Terraform binary; see
test_wiring.py): Cloud Scheduler runs a Cloud Run job of the batch image that runs `recsys
canary check`, as the nightly's scheduler launches its template; the root can turn canary
nights on.

    .venv-tf/bin/python -m pytest tests/terraform -q      # .ci/terraform-checks sets it up
"""

from __future__ import annotations

import ast
import json
import re

import pytest

from tests.terraform.test_wiring import (
    REPO,
    TERRAFORM,
    _scalar,
    _unquote,
    blocks,
    load_dir,
)

BATCH = TERRAFORM / "modules" / "batch"


def _resources(document: dict, kind: str) -> dict[str, dict]:
    found = {}
    for entry in document.get("resource", []):
        for resource_kind, named in entry.items():
            if _unquote(resource_kind) == kind:
                found.update({_unquote(name): body for name, body in named.items()})
    return found


@pytest.fixture(scope="module")
def batch():
    return load_dir(BATCH)


def _locals(document: dict) -> dict:
    merged = {}
    for entry in document.get("locals", []):
        merged.update(entry)
    return merged


def test_a_cloud_run_job_runs_recsys_canary_check(batch):
    run_jobs = {_unquote(k): [_unquote(a) for a in v]
                for k, v in _locals(batch)["run_jobs"].items()}
    assert run_jobs["canary-check"][:4] == ["canary", "check", "--min-users",
                                            "${tostring(var.canary_min_users)}"]
    assert run_jobs["admin"] == ["--help"]
    job = _resources(batch, "google_cloud_run_v2_job")["main"]
    assert _scalar(job["for_each"]) == "${local.run_jobs}"
    container = job["template"][0]["template"][0]["containers"][0]
    assert container["command"] == ['"recsys"'] and container["args"] == "${each.value}"
    # The admin job keeps its address in existing state.
    assert {_scalar(m["to"]) for m in batch["moved"]} == {
        '${google_cloud_run_v2_job.main["admin"]}'}


def test_the_scheduler_runs_that_job_hourly_by_default_with_its_own_token(batch):
    scheduler = _resources(batch, "google_cloud_scheduler_job")
    check, nightly = scheduler["canary_check"], scheduler["main"]
    assert _scalar(check["schedule"]) == "${var.canary_check_schedule}"
    variables = blocks(batch, "variable")
    assert _scalar(variables["canary_check_schedule"]["default"]) == "0 * * * *"
    target = check["http_target"][0]
    assert _scalar(target["http_method"]) == "POST"
    assert re.fullmatch(r"https://run\.googleapis\.com/v2/projects/\$\{var\.project_id\}/"
                        r"locations/\$\{var\.region\}/jobs/\$\{google_cloud_run_v2_job\.main"
                        r'\["canary-check"\]\.name\}:run', _scalar(target["uri"]))
    token = target["oauth_token"][0]
    assert token == nightly["http_target"][0]["oauth_token"][0]  # the nightly's account
    assert check["retry_config"][0]["retry_count"] == 0
    assert _scalar(check["time_zone"]) == _scalar(nightly["time_zone"])


def test_the_scheduler_may_run_the_check_job_only(batch):
    grants = _resources(batch, "google_cloud_run_v2_job_iam_member")
    assert list(grants) == ["scheduler"]
    grant = grants["scheduler"]
    assert _scalar(grant["role"]) == "roles/run.invoker"  # no run.jobs.runWithOverrides
    assert _scalar(grant["name"]) == '${google_cloud_run_v2_job.main["canary-check"].name}'
    assert _scalar(grant["member"]) == "serviceAccount:${var.scheduler_service_account_email}"


def test_the_root_passes_the_schedule_and_can_turn_canary_nights_on():
    root = load_dir(TERRAFORM)
    call = blocks(root, "module")["batch"]
    assert _scalar(call["canary_check_schedule"]) == "${var.canary_check_schedule}"
    assert _scalar(call["canary_min_users"]) == "${var.canary_min_users}"
    extra = _scalar(call["extra_parameters"])
    assert "var.nightly_canary_percent > 0" in extra and "canary = " in extra
    variables = blocks(root, "variable")
    assert _scalar(variables["nightly_canary_percent"]["default"]) == 0
    # The flex template takes `canary` (launcher -> --canary), as the nightly's flag.
    metadata = json.loads((REPO / "app" / "flex_template" / "metadata.json").read_text())
    canary = [p for p in metadata["parameters"] if p["name"] == "canary"]
    assert len(canary) == 1 and canary[0]["isOptional"]
    assert [s for s in ("0", "10", "50") if re.fullmatch(canary[0]["regexes"][0], s)] == [
        "0", "10", "50"]
    assert not [s for s in ("51", "100", "-1", "5.5") if re.fullmatch(
        canary[0]["regexes"][0], s)]


def test_the_job_s_flags_are_the_commands_own():
    """`recsys canary check --min-users`: the flag the job passes exists in app/canary_cli.py
    (read as text: this environment has python-hcl2 and pytest only)."""
    tree = ast.parse((REPO / "app" / "canary_cli.py").read_text())
    options = {node.value for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str)
               and node.value.startswith("--")}
    assert "--min-users" in options
