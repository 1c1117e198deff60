"""terraform/modules/cache (python-hcl2, no Terraform binary; see test_wiring.py): the serving
cache is a Memorystore instance with RDB snapshots or a Redis Cluster with AOF and replicas,
one of them per environment, and the REDIS_URL it hands out names the kind the clients open.

    .venv-tf/bin/python -m pytest tests/terraform -q      # .ci/terraform-checks sets it up

`terraform validate` needs the google provider from registry.terraform.io, which this machine
cannot reach: these tests read the files instead.
"""

from __future__ import annotations

import re

import pytest

from tests.terraform.test_monitoring_module import _one, _resources
from tests.terraform.test_wiring import ENVIRONMENTS, REPO, TERRAFORM, _scalar, blocks, load_dir

MODULE = TERRAFORM / "modules" / "cache"
CLIENT = REPO / "infra" / "redis" / "client.py"


@pytest.fixture(scope="module")
def module():
    return load_dir(MODULE)


def _tfvars(env: str) -> dict:
    import hcl2

    with (ENVIRONMENTS / f"{env}.tfvars").open() as f:
        return {k: _scalar(v) for k, v in hcl2.load(f).items() if not k.startswith("__")}


def test_prod_runs_the_cluster_and_dev_the_instance():
    assert _tfvars("prod")["cache_type"] == "cluster"
    assert _tfvars("dev")["cache_type"] == "instance"
    call = blocks(load_dir(TERRAFORM), "module")["cache"]
    for name in ("cache_type", "redis_cluster_shard_count", "redis_cluster_node_type"):
        assert _scalar(call[name]) == f"${{var.{name}}}"
    # A dev stack can be destroyed; prod's cluster refuses to be deleted.
    assert _scalar(call["deletion_protection"]) == "${!var.force_destroy}"
    assert _tfvars("prod")["force_destroy"] is False


def test_exactly_one_cache_kind_is_created(module):
    instance = _resources(module, "google_redis_instance")["main"]
    cluster = _resources(module, "google_redis_cluster")["main"]
    assert _scalar(instance["count"]) == '${var.cache_type == "instance" ? 1 : 0}'
    assert _scalar(cluster["count"]) == '${var.cache_type == "cluster" ? 1 : 0}'
    for kind in ("google_compute_subnetwork",
                 "google_network_connectivity_service_connection_policy"):
        for name, body in _resources(module, kind).items():
            if name != "main":  # the workers' subnetwork stays for both kinds
                assert _scalar(body["count"]) == '${var.cache_type == "cluster" ? 1 : 0}', name
    kind = blocks(module, "variable")["cache_type"]
    assert _scalar(kind["default"]) == "instance"
    assert "instance" in str(kind["validation"]) and "cluster" in str(kind["validation"])


def test_the_existing_instance_keeps_its_address(module):
    """Adding count moves google_redis_instance.main to main[0]; without the moved block a plan
    would destroy the running instance and its data."""
    moved = [_one(m) if isinstance(m, list) else m for m in module["moved"]]
    assert {"from": "${google_redis_instance.main}", "to": "${google_redis_instance.main[0]}"} \
        in [{k: v for k, v in m.items() if not k.startswith("__")} for m in moved]


def test_the_cluster_persists_with_aof_and_fails_over_to_replicas(module):
    cluster = _resources(module, "google_redis_cluster")["main"]
    persistence = _one(cluster["persistence_config"])
    assert _scalar(persistence["mode"]) == "AOF"
    assert _scalar(_one(persistence["aof_config"])["append_fsync"]) == \
        "${var.redis_aof_append_fsync}"
    fsync = blocks(module, "variable")["redis_aof_append_fsync"]
    assert _scalar(fsync["default"]) == "ALWAYS"
    assert '"NO"' not in str(fsync["validation"])  # fsync left to the kernel is refused
    replicas = blocks(module, "variable")["redis_cluster_replica_count"]
    assert _scalar(replicas["default"]) >= 1
    assert _scalar(_one(cluster["zone_distribution_config"])["mode"]) == "MULTI_ZONE"
    assert _scalar(cluster["transit_encryption_mode"]) == \
        "TRANSIT_ENCRYPTION_MODE_SERVER_AUTHENTICATION"
    assert _scalar(_one(cluster["psc_configs"])["network"]) == \
        "${google_compute_network.main.id}"
    assert "google_network_connectivity_service_connection_policy.redis" in \
        str(cluster["depends_on"])


def test_the_instance_snapshots_with_rdb(module):
    instance = _resources(module, "google_redis_instance")["main"]
    persistence = _one(instance["persistence_config"])
    assert _scalar(persistence["persistence_mode"]) == "RDB"
    assert _scalar(blocks(module, "variable")["redis_rdb_snapshot_period"]["default"]) == \
        "ONE_HOUR"
    assert instance["auth_enabled"] is True


def test_the_url_names_the_kind_the_clients_open(module):
    """The cluster's URL scheme is one infra/redis/client.py opens as a RedisCluster; the
    instance's stays a plain rediss:// with its AUTH string."""
    url = str(module["locals"][0]["redis_url"])
    schemes = re.findall(r'"(rediss(?:\+cluster)?)://', url)
    assert schemes == ["rediss", "rediss+cluster"]
    assert '"rediss+cluster"' in CLIENT.read_text()
    assert "auth_string" in url.split("rediss+cluster")[0]
    outputs = blocks(module, "output")
    assert _scalar(outputs["redis_url"]["sensitive"]) is True
    for name in ("redis_host", "redis_port", "redis_instance"):
        assert "local." in str(outputs[name]["value"]), name
