"""On object storage, server-side encryption options pass through to every object the registry writes (on top of
ferry's own encryption at rest): FERRY_STORAGE_OPTIONS' ``s3_additional_kwargs`` reach the versions, the channel
pointers and audit log, the online logs and the batch input samples, checked on the S3 server itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sealed_support import new_key_file

from ferry import storage
from ferry.monitor.sources import batch_since, record_batch_input
from ferry.online.logs import FeedbackLog
from ferry.registry import Registry
from ferry.storage import sealed
from ferry.storage.rotation import rotate


def test_objects_on_s3_are_stored_with_server_side_encryption(
    s3_env: str, s3_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.setenv("FERRY_ENCRYPTION_KEY_FILE", str(new_key_file(tmp_path / "data.key")))
    monkeypatch.setenv(
        "FERRY_STORAGE_OPTIONS", json.dumps({"s3_additional_kwargs": {"ServerSideEncryption": "AES256"}})
    )
    url = f"{s3_env}/registry"
    registry = Registry(url, actor="tester@ferry")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    storage.write_parquet(tmp_path / "reference.parquet", pd.DataFrame({"customer_id": ["cust-7f3a9c"], "x": [4.5]}))
    version = registry.register(
        "m", {"model.onnx": tmp_path / "model.onnx", "reference.parquet": tmp_path / "reference.parquet"},
        {"gate": {"passed": True}},
    )  # fmt: skip
    registry.promote(version.id, "online/champion", model="m", reason="test")
    feedback = FeedbackLog(url, "m")
    feedback.record([("p-1", "1")])
    assert feedback.flush() is not None
    record_batch_input(registry, "m", pd.DataFrame({"customer_id": ["cust-7f3a9c"]}), version=version.id, run="r")
    found = batch_since(registry, "m", None, max_rows=10)
    assert found is not None
    assert list(found.frame["customer_id"]) == ["cust-7f3a9c"]  # read back through both layers

    bucket = s3_env.removeprefix("s3://")
    client = boto3.client("s3", endpoint_url=s3_server.moto.url, region_name="us-east-1")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    kinds = {k.split("/")[-1] if "versions" in k else "/".join(k.split("/")[3:5]) for k in keys}
    assert {"model.onnx", "reference.parquet", "manifest.json", "online/feedback", "batch/inputs"} <= kinds
    assert {"channels.json", "audit.jsonl"} & kinds
    assert {k: client.head_object(Bucket=bucket, Key=k).get("ServerSideEncryption") for k in keys} == dict.fromkeys(
        keys, "AES256"
    )
    sample = next(k for k in keys if "batch/inputs" in k)
    body = client.get_object(Bucket=bucket, Key=sample)["Body"].read()
    assert sealed.is_sealed(body)  # and ferry's own encryption underneath

    done = rotate(str(tmp_path / "data.key"), [storage.open_fs(url)])  # a rotation on the object store
    assert done.finished
    assert done.rewritten == sum(sealed.is_sealed(client.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys)
    rotated = client.get_object(Bucket=bucket, Key=sample)
    assert sealed.key_id_of(rotated["Body"].read()) == done.key_id
    assert rotated.get("ServerSideEncryption") == "AES256"  # rewritten objects keep server-side encryption
    assert list(batch_since(registry, "m", None, max_rows=10).frame["customer_id"]) == ["cust-7f3a9c"]  # type: ignore[union-attr]
