"""One contract suite for every artifact store: a local folder and S3 over real HTTP (moto)."""

import pytest

from infra.bundle import BundleWriter, list_bundles, read_bundle
from infra.store import LocalStore, S3Store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, monkeypatch):
    if request.param == "local":
        return LocalStore(str(tmp_path / "artifacts"))
    endpoint = request.getfixturevalue("s3_endpoint")
    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    bucket = f"b{tmp_path.name.lower().replace('_', '')[-20:]}"
    s3 = S3Store(f"s3://{bucket}/prefix", endpoint_url=endpoint)
    s3.client.create_bucket(Bucket=bucket)
    return s3


def test_put_get_list_delete(store):
    store.put_bytes("a/b.bin", b"\x00\x01")
    store.put_bytes("a/c/d.txt", b"hello")
    store.put_bytes("z.txt", b"z")
    assert store.get_bytes("a/b.bin") == b"\x00\x01"
    assert store.exists("a/c/d.txt") and not store.exists("a/nope")
    assert store.list("a") == ["a/b.bin", "a/c/d.txt"]
    with pytest.raises(FileNotFoundError):
        store.get_bytes("missing")
    store.delete_prefix("a")
    assert store.list("a") == [] and store.exists("z.txt")


def test_bundle_without_manifest_is_ignored_and_checksums_are_verified(store):
    import numpy as np

    w = BundleWriter(store, "v1")
    for name in ("item_ids.json", "user_ids.json", "popular.json"):
        w.put_json(name, ["1", "2"])
    w.put_array("item_vectors.npy", np.eye(2, dtype=np.float32))
    w.put_array("user_vectors.npy", np.eye(2, dtype=np.float32))
    assert list_bundles(store) == []  # interrupted export: no manifest yet
    w.commit({"model": "test"})
    assert list_bundles(store) == ["v1"]
    assert read_bundle(store, "v1").item_ids.tolist() == ["1", "2"]
    store.put_bytes("bundles/v1/popular.json", b'["2", "1"]')  # tampered after commit
    with pytest.raises(ValueError, match="checksum mismatch for popular.json"):
        read_bundle(store, "v1")


def test_a_bundle_folder_is_extracted_verified(store, tmp_path):
    import numpy as np

    w = BundleWriter(store, "v2")
    for name in ("item_ids.json", "user_ids.json", "popular.json"):
        w.put_json(name, ["1", "2"])
    w.put_array("item_vectors.npy", np.eye(2, dtype=np.float32))  # no user vectors (served)
    w.put("served/a.bin", b"a")
    w.put("served/sub/b.bin", b"b")
    w.commit({"model": "served"})
    bundle = read_bundle(store, "v2")
    assert bundle.user_ids.tolist() == ["1", "2"]
    out = tmp_path / "all"
    bundle.extract("served", str(out))
    assert (out / "a.bin").read_bytes() == b"a" and (out / "sub/b.bin").read_bytes() == b"b"
    assert bundle.extract("served", str(tmp_path / "one"), ["a.bin"]) == str(tmp_path / "one")
    assert not (tmp_path / "one" / "sub").exists()
    with pytest.raises(KeyError, match="served/c.bin"):
        bundle.extract("served", str(tmp_path / "x"), ["c.bin"])
    store.put_bytes("bundles/v2/served/sub/b.bin", b"B")  # tampered after commit
    with pytest.raises(ValueError, match="checksum mismatch for served/sub/b.bin"):
        bundle.extract("served", str(tmp_path / "y"))
